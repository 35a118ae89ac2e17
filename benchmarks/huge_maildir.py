"""One huge message into a Maildir (issue 13): wall time, CPU time and peak RSS of popctl.

    python benchmarks/huge_maildir.py                   # 200 MB, this checkout's popctl
    python benchmarks/huge_maildir.py --code DIR        # another copy of popctl (DIR/popctl)
    python benchmarks/huge_maildir.py --size 50 --runs 5

The message (``benchmarks/mailboxes.py``'s ``huge``: a base64 attachment, CRLF lines of 76
octets) is served by popctl's own sandbox server (SandboxServer(tls=False), in this process, on
127.0.0.1); popctl runs as a child, ``python -m popctl retr 1 --maildir DIR``, under GNU time.
The delivered file's SHA-256 is printed, so runs of two versions can be compared byte for byte.
Medians of ``--runs``. No timing is asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"
MB = 1000 * 1000


def deliver(code: Path, server_address: tuple[str, int], user: str, password: str
            ) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS (KiB) and SHA-256 of the delivered file."""
    with tempfile.TemporaryDirectory() as home:
        maildir = os.path.join(home, "Maildir")
        host, port = server_address
        command = [GNU_TIME, "-f", "%e %U %S %M", sys.executable, "-m", "popctl",
                   "--host", host, "--port", str(port), "--tls", "none", "--allow-plaintext",
                   "--user", user, "--timeout", "30", "retr", "1", "--maildir", maildir]
        env = {**os.environ, "PYTHONPATH": str(code), "POPCTL_PASSWORD": password,
               "HOME": home, "XDG_CACHE_HOME": os.path.join(home, "cache"),
               "XDG_CONFIG_HOME": os.path.join(home, "config"),
               "POPCTL_CONFIG": os.path.join(home, "none.toml")}
        # cwd: "python -m" puts the working directory first on sys.path, before PYTHONPATH
        done = subprocess.run(command, capture_output=True, env=env, check=False, cwd=home,
                              stdin=subprocess.DEVNULL, timeout=900)
        if done.returncode != 0:
            raise SystemExit(done.stderr.decode(errors="replace")[-2000:])
        wall, user_s, system_s, rss = done.stderr.decode().strip().splitlines()[-1].split()
        [delivered] = list(Path(maildir, "new").iterdir())
        digest = hashlib.sha256()
        with delivered.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return float(wall), float(user_s) + float(system_s), int(rss), digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="directory holding popctl/")
    parser.add_argument("--size", type=int, default=200, help="message size in MB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.mailboxes import huge
    from popctl.sandbox import SandboxServer

    message = huge(args.size * MB)
    runs = []
    with SandboxServer([message], tls=False) as server:
        for _ in range(args.runs):
            runs.append(deliver(args.code.resolve(), server.address, server.user,
                                server.password))
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rss = statistics.median(r[2] for r in runs)
    print(f"popctl from {args.code.resolve()}")
    print(f"{len(message) / MB:.0f} MB message into a Maildir, {args.runs} runs: wall "
          f"{wall:.2f} s, CPU {cpu:.2f} s, peak RSS {rss / 1024:.1f} MiB (medians); "
          f"file sha256 {sorted({r[3] for r in runs})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
