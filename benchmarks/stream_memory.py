"""Time, peak RSS and write calls of a streamed listing at 1k, 10k and 100k messages (issue 13).

    python benchmarks/stream_memory.py                        # list --format ndjson --no-cache
    python benchmarks/stream_memory.py --counts 1000,10000 --reps 3 --format json
    python benchmarks/stream_memory.py --strace               # also count write(2) calls
    python benchmarks/stream_memory.py --code DIR             # another copy of popctl (DIR/popctl)

Starts a private Dovecot on 127.0.0.1 (tests/support/dovecot_server.py) with the scale
mailboxes of ``benchmarks/mailboxes.py`` (``tiny(n)``), runs ``popctl list --format FMT
--no-cache`` against each with stdout to a pipe that is read and counted, and prints the median
wall time and CPU time (user + system: steadier on a loaded machine), the peak RSS (GNU time's
%M, the client's own) and the wall time per message (flat when the cost is linear). With
``--strace`` one more run per size counts popctl's write(2) calls on stdout (strace slows that
run, so it is not timed). No figure is asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import mailboxes  # noqa: E402
from benchmarks.run import GNU_TIME  # noqa: E402
from tests.support.dovecot_server import start_dovecot  # noqa: E402


def measure(command: list[str], env: dict[str, str]) -> tuple[float, int, int, float]:
    """Seconds, peak RSS in KiB, stdout lines and CPU seconds (user + system) of one run,
    stdout read from a pipe."""
    with tempfile.NamedTemporaryFile(prefix="rss-") as rss:
        start = time.perf_counter()
        process = subprocess.Popen([GNU_TIME, "-q", "-f", "%M %U %S", "-o", rss.name, *command],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, cwd=env["HOME"])
        assert process.stdout is not None
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: process.stdout.read(65536), b""))
        stderr = process.stderr.read() if process.stderr else b""
        if process.wait():
            raise RuntimeError(f"{command} failed: {stderr.decode(errors='replace')[-2000:]}")
        seconds = time.perf_counter() - start
        peak, user, system = rss.read().decode().split()[-3:]
        return seconds, int(peak), lines, float(user) + float(system)


def writes(command: list[str], env: dict[str, str]) -> int:
    """write(2) calls on file descriptor 1 in one run, counted by strace."""
    with tempfile.NamedTemporaryFile(prefix="strace-") as log:
        subprocess.run(["strace", "-f", "-e", "trace=write", "-o", log.name, *command],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env, cwd=env["HOME"])
        return sum(1 for line in log.read().decode(errors="replace").splitlines()
                   if re.search(r"\bwrite\(1,", line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1000,10000,100000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--format", default="ndjson")
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the directory holding the popctl package to run")
    args = parser.parse_args()
    code = args.code.resolve()
    if not (code / "popctl" / "__init__.py").is_file():
        parser.error(f"no popctl package in {code}")
    counts = [int(n) for n in args.counts.split(",")]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("POPCTL_") and k not in ("PYTHONDONTWRITEBYTECODE",
                                                         "PYTHONUNBUFFERED")}
    env["PYTHONPATH"] = str(code)
    with tempfile.TemporaryDirectory(prefix="popctl-stream-") as scratch:
        env.update(HOME=scratch, XDG_CACHE_HOME=f"{scratch}/cache", LC_ALL="C.UTF-8",
                   XDG_CONFIG_HOME=f"{scratch}/config", PYTHONPYCACHEPREFIX=f"{scratch}/pyc")
        users = {f"scale{n}": f"pw-scale{n}" for n in counts}
        server = start_dovecot(Path(scratch) / "dovecot", users)
        try:
            for n in counts:
                for message in mailboxes.tiny(n):
                    server.deliver(f"scale{n}", message)
            print(f"popctl list --format {args.format} --no-cache ({code}), "
                  f"load {os.getloadavg()[0]:.2f}")
            for n in counts:
                command = [sys.executable, "-m", "popctl", "--host", "127.0.0.1", "--port",
                           str(server.port), "--tls", "none", "--allow-plaintext", "--user",
                           f"scale{n}", "--auth", "USER", "list", "--format", args.format,
                           "--no-cache"]
                run_env = dict(env, POPCTL_PASSWORD=users[f"scale{n}"])
                # From HOME, a scratch directory: `python -m` puts the working directory
                # first on the path, before PYTHONPATH.
                measure(command, run_env)  # warm-up: Dovecot indexes the mailbox, bytecode
                runs = [measure(command, run_env) for _ in range(args.reps)]
                seconds = statistics.median(r[0] for r in runs)
                rss = max(r[1] for r in runs)
                cpu = statistics.median(r[3] for r in runs)
                calls = f"  {writes(command, run_env):7,} write calls" if args.strace \
                    and shutil.which("strace") else ""
                print(f"{n:8,} messages  {seconds:7.3f} s  {seconds / n * 1e6:6.1f} us/msg  "
                      f"CPU {cpu:6.2f} s  "
                      f"peak RSS {rss / 1024:6.1f} MiB  ({runs[0][2]:,} lines){calls}",
                      flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
