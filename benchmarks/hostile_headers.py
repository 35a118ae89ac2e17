"""Hostile headers (issue 11): parse time, CPU and memory for mail built to hurt the parser.

    python benchmarks/hostile_headers.py                 # every case, this checkout's popctl
    python benchmarks/hostile_headers.py --code DIR      # another copy of popctl (DIR/popctl)
    python benchmarks/hostile_headers.py --case from --case punycode

Cases (each message is served by popctl's own sandbox server, SandboxServer(tls=False), in this
process; popctl runs as a child process, ``python -m popctl --timeout 5 list --format json``,
under GNU time for its wall time, CPU time and peak RSS):

* ``from``: a 99 KB From that is not an address: a name, then white space folded into lines of
  900 characters, then one more letter. ``parse`` is one ``headers.summarize`` of that block;
  the listing has two such messages.
* ``punycode``: a 190 KB Subject of folded encoded words in the ``punycode`` charset whose
  digits never end a number (``-999...``): Python's punycode decoder is quadratic in that.
* ``subjects``: 1,000 messages with a 200 KB Subject each; the figure that matters is the peak
  RSS and the size of the header cache written.

docs/RELIABILITY.md ("Hostile headers") quotes the figures. No timing is asserted anywhere: this
is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from popctl.sandbox import SandboxServer  # noqa: E402

GNU_TIME = "/usr/bin/time"
KB = 1000


def fold(value: str, width: int = 900) -> str:
    """``value`` folded into lines of at most ``width`` characters, each continuation starting
    with white space (a space is added where the value has none to fold at)."""
    lines = []
    while len(value) > width:
        cut = value.rfind(" ", 1, width)
        if cut <= 0:
            lines.append(value[:width])
            value = " " + value[width:]
        else:
            lines.append(value[:cut])
            value = value[cut:]
    lines.append(value)
    return "\r\n".join(lines)


def long_from(size: int = 99 * KB) -> bytes:
    value = "Mallory" + " " * (size - 8) + "x"
    return f"From: {fold(value)}\r\nSubject: hello\r\n\r\n".encode()


def punycode_subject(size: int = 190 * KB) -> bytes:
    count = size // len(" =?punycode?q?" + "9" * 60 + "?=")  # the field about ``size`` long
    digits = "-" + "9" * (60 * count - 1)
    words = [f"=?punycode?q?{digits[i:i + 60]}?=" for i in range(0, len(digits), 60)]
    return f"From: a@b.example\r\nSubject: {fold(' '.join(words))}\r\n\r\n".encode()


def long_subject(n: int, size: int = 200 * KB) -> bytes:
    subject = " ".join(f"word{n}-{i:06d}" for i in range(size // 12))[:size]
    return (f"From: Sender {n} <s{n}@example.org>\r\nSubject: {fold(subject)}\r\n"
            f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n").encode()


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.2f} ms"


def parse_time(code: Path, message: bytes) -> float:
    """Seconds for one headers.summarize(message), in a child running ``code``'s popctl."""
    with tempfile.NamedTemporaryFile(suffix=".eml") as f:
        f.write(message)
        f.flush()
        script = ("import sys, time; from popctl import headers; data = open(sys.argv[1], 'rb')"
                  ".read(); t = time.perf_counter(); headers.summarize(data); "
                  "print(time.perf_counter() - t)")
        done = subprocess.run([sys.executable, "-c", script, f.name], capture_output=True,
                              text=True, check=True, env={**os.environ, "PYTHONPATH": str(code)})
    return float(done.stdout)


class Run(NamedTuple):
    wall: float  # seconds
    cpu: float  # user + system seconds
    rss_kib: int  # peak resident set size
    exit: int
    cache: int  # octets of header cache written
    error: str  # popctl's "Error: ..." line, if any


def listing(code: Path, messages: list[bytes], *, cache: bool = False) -> Run:
    """Wall seconds, CPU seconds, peak RSS (KiB), exit status and cache size of one listing."""
    with SandboxServer(messages, tls=False) as server, \
            tempfile.TemporaryDirectory() as home:
        host, port = server.address
        command = [GNU_TIME, "-f", "%e %U %S %M", sys.executable, "-m", "popctl",
                   "--host", host, "--port", str(port), "--tls", "none", "--allow-plaintext",
                   "--user", server.user, "--timeout", "5", "list", "--format", "json",
                   *([] if cache else ["--no-cache"])]
        env = {**os.environ, "PYTHONPATH": str(code), "POPCTL_PASSWORD": server.password,
               "HOME": home, "XDG_CACHE_HOME": os.path.join(home, "cache"),
               "XDG_CONFIG_HOME": os.path.join(home, "config"),
               "POPCTL_CONFIG": os.path.join(home, "none.toml")}
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, env=env, check=False,
                              stdin=subprocess.DEVNULL, timeout=900)
        elapsed = time.perf_counter() - started
        wall, user, system, rss = done.stderr.decode().strip().splitlines()[-1].split()
        cached = sum(p.stat().st_size for p in Path(home, "cache").rglob("*.json"))
        error = next((line for line in done.stderr.decode().splitlines()
                      if line.startswith("Error")), "")
    return Run(float(wall) or elapsed, float(user) + float(system), int(rss), done.returncode,
               cached, error[:100])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the directory holding the popctl package to measure")
    parser.add_argument("--case", action="append", choices=["from", "punycode", "subjects"])
    args = parser.parse_args(argv)
    cases = args.case or ["from", "punycode", "subjects"]
    code = args.code.resolve()
    print(f"popctl from {code}")
    print("| case | parse one | listing: wall | CPU | peak RSS | exit | cache file |")
    print("|---|---|---|---|---|---|---|")
    if "from" in cases:
        message = long_from()
        run = listing(code, [message, message])
        print(f"| 99 KB From (x2) | {seconds(parse_time(code, message))} | {run.wall:.2f} s | "
              f"{run.cpu:.2f} s | {run.rss_kib // 1024} MiB | {run.exit} | — |")
    if "punycode" in cases:
        message = punycode_subject()
        run = listing(code, [message])
        print(f"| 190 KB punycode Subject | {seconds(parse_time(code, message))} | "
              f"{run.wall:.2f} s | {run.cpu:.2f} s | {run.rss_kib // 1024} MiB | "
              f"{run.exit} | — |")
    if "subjects" in cases:
        messages = [long_subject(n) for n in range(1, 1001)]
        run = listing(code, messages, cache=True)
        print(f"| 1,000 x 200 KB Subject | {seconds(parse_time(code, messages[0]))} | "
              f"{run.wall:.2f} s | {run.cpu:.2f} s | {run.rss_kib // 1024} MiB | "
              f"{run.exit} | {run.cache / 1e6:.2f} MB |")
        if run.error:
            print(f"  ({run.error})")


if __name__ == "__main__":
    main()
