"""Micro-benchmarks of work the tests check for correctness only: header summaries, the
sandbox's sample mailbox, a large RETR from the sandbox. Prints medians; asserts nothing.

    python benchmarks/micro.py [--reps N]
"""

from __future__ import annotations

import argparse
import poplib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from popctl.headers import summarize
from popctl.sandbox import SandboxServer, sample_mailbox

# Eight Received hops, encoded words, a DKIM signature: a header block as real mail has it.
HEADER_BLOCK = (b"".join(
    b"Received: from mx%d.example.org (mx%d.example.org [192.0.2.%d])\r\n"
    b"\tby mail.example.net with ESMTPS id abc%d\r\n"
    b"\tfor <me@example.net>; Fri, 20 Nov 2026 14:03:00 +0100\r\n" % (i, i, i, i)
    for i in range(8))
    + b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n"
    + b"Subject: =?UTF-8?B?8J+OiSBQYXJ0eSE=?=\r\n =?UTF-8?Q?_und_caf=C3=A9?=\r\n"
    + b"Date: Fri, 20 Nov 2026 14:03:00 +0100\r\nMessage-ID: <a@example.org>\r\n"
    + b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n\tb=" + b"A" * 500 + b"\r\n\r\n")


def median(work: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def retr_biggest() -> None:
    messages = sample_mailbox()
    biggest = max(range(len(messages)), key=lambda i: len(messages[i])) + 1
    with SandboxServer(tls=False) as server:
        client = poplib.POP3(*server.address)
        client.user("sandbox")
        client.pass_("sandbox")
        client.retr(biggest)
        client.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=11)
    reps = parser.parse_args().reps
    figures = {
        "summarize a typical header block x1000": median(
            lambda: [summarize(HEADER_BLOCK) for _ in range(1000)], reps),
        "sample_mailbox()": median(sample_mailbox, reps),
        "sandbox: start, log in, RETR the biggest sample, QUIT": median(retr_biggest, reps),
    }
    for name, seconds in figures.items():
        print(f"{seconds * 1000:9.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
