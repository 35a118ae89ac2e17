"""Streamed output as a pipe meets it (issue 13) and the UTC dates as jq reads them (issue 16):
``python -m popctl`` in a child process against a sandbox server of many messages.

The child's stdout is the real file descriptor behind a wrapper that counts its write(2) calls
(as Python's own stdout: buffered into a pipe, line-buffered on a terminal), so the test sees how
often popctl pushes data out, without a clock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from popctl.output.streams import FLUSH_RECORDS
from popctl.sandbox import SandboxServer
from tests.support.ci import skip_or_fail

COUNT = 3 * FLUSH_RECORDS + 17

# Runs popctl's entry point with sys.stdout replaced by one that counts the writes it makes to
# file descriptor 1, and leaves the count in $WRITES_FILE when the program ends. The flush after
# a pause is put out of reach (a loaded machine would make pauses): only the count rule is left.
COUNTING_MAIN = """
import atexit, io, os, sys
import popctl.output.streams
popctl.output.streams.FLUSH_SECONDS = 3600.0

class Counting(io.RawIOBase):
    calls = 0
    def writable(self): return True
    def isatty(self): return os.isatty(1)
    def fileno(self): return 1
    def write(self, data):
        Counting.calls += 1
        return os.write(1, data)

raw = Counting()
sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8",
                              line_buffering=raw.isatty())
atexit.register(lambda: open(os.environ["WRITES_FILE"], "w").write(str(Counting.calls)))
from popctl.cli import main
main()
"""


def tiny(n: int) -> bytes:
    # Half the messages an hour east of UTC, half seven hours west: the UTC day changes for some.
    zone = b"+0100" if n % 2 else b"-0700"
    return (b"From: Sender %d <s%d@example.org>\r\nSubject: message %d\r\n"
            b"Date: Thu, 26 Nov 2026 %02d:30:00 %s\r\n\r\nbody\r\n" % (n, n, n, n * 9 % 24, zone))


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer([tiny(n) for n in range(1, COUNT + 1)]) as sandbox:
        yield sandbox


def popctl(server: SandboxServer, tmp_path: Path, *args: str) -> tuple[bytes, int]:
    """stdout of ``popctl ARGS`` into a pipe, and the write calls it took."""
    writes = tmp_path / "writes"
    env = {**os.environ, "POPCTL_PASSWORD": "sandbox", "WRITES_FILE": str(writes),
           "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", COUNTING_MAIN, "--host", "localhost", "--port",
         str(server.address[1]), "--tls", "starttls", "--ca-file", server.ca_file, "--user",
         "sandbox", *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=120, env=env)
    assert (done.returncode, done.stderr) == (0, b"")
    return done.stdout, int(writes.read_text())


@pytest.mark.parametrize("fmt", ["ndjson", "json", "csv"])
def test_a_piped_listing_is_written_in_blocks_not_per_line(server: SandboxServer,
                                                           tmp_path: Path, fmt: str) -> None:
    """One write call per FLUSH_RECORDS records (half a pipelining window) or per full buffer
    (8 KiB), not one per line: 100,002 calls for 100,000 messages before."""
    out, writes = popctl(server, tmp_path, "list", "--format", fmt, "--no-cache")
    if fmt == "json":
        assert len(json.loads(out)) == COUNT
    else:
        assert out.count(b"\n") == COUNT + (fmt == "csv")
    # Every 8 KiB of text (Python's buffer), every FLUSH_RECORDS records, the end.
    assert writes <= len(out) // 8192 + COUNT // FLUSH_RECORDS + 4, writes
    assert writes < COUNT // 10


def test_dates_in_utc_as_jq_reads_them(server: SandboxServer, tmp_path: Path) -> None:
    """Issue 16: jq 1.6's fromdateiso8601 refuses the offsets of ``date``; ``date_utc`` it
    reads, to the second ``date_epoch`` gives."""
    jq = shutil.which("jq")
    if jq is None:
        skip_or_fail("jq is not installed (apt-get install jq)")
    out, _ = popctl(server, tmp_path, "list", "--format", "ndjson", "--no-cache", "1-4")
    program = "[.date, .date_utc, (.date_utc | fromdateiso8601), .date_epoch]"
    done = subprocess.run([jq, "-c", program], input=out, capture_output=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, b"")
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        ["2026-11-26T09:30:00+01:00", "2026-11-26T08:30:00Z", 1795681800, 1795681800],
        ["2026-11-26T18:30:00-07:00", "2026-11-27T01:30:00Z", 1795743000, 1795743000],
        ["2026-11-26T03:30:00+01:00", "2026-11-26T02:30:00Z", 1795660200, 1795660200],
        ["2026-11-26T12:30:00-07:00", "2026-11-26T19:30:00Z", 1795721400, 1795721400],
    ]
    # and the offset form is what jq 1.6 cannot read
    refused = subprocess.run([jq, ".date | fromdateiso8601"], input=out.splitlines()[0],
                             capture_output=True, timeout=60)
    assert refused.returncode != 0
