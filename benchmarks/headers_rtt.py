"""Reading the headers of N messages from a private Dovecot at 0 and 20 ms round trip.

Prints, for popctl's pipelined Session.headers and for a plain poplib `TOP n 0` loop, the time
and the number of round trips it cost (extra time over the 0 ms run divided by the RTT).

    python benchmarks/headers_rtt.py [N] [RTT_MS]

Needs Dovecot installed (apt-get install dovecot-core dovecot-pop3d) and the test extras.
"""

from __future__ import annotations

import poplib
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.delay_proxy import DelayProxy
from popctl.models import Credentials, Endpoint, TLSMode
from popctl.session import Session
from tests.support.dovecot_server import start_dovecot

USER = "bob"


def message(n: int) -> bytes:
    body = b"x" * 70 + b"\r\n"
    return (b"From: Sender %d <s%d@example.org>\r\nSubject: message %d\r\n"
            b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n" % (n, n, n)) + body * 60


def popctl_headers(port: int, ca_file: str, password: str, count: int) -> float:
    endpoint = Endpoint("localhost", port, TLSMode.STARTTLS, ca_file=ca_file, timeout=60)
    start = time.perf_counter()
    with Session.connect(endpoint) as session:
        session.login(Credentials(USER, password, mechanism="PLAIN"))
        got = sum(1 for _ in session.headers(range(1, count + 1)))
    assert got == count
    return time.perf_counter() - start


def poplib_headers(port: int, ca_file: str, password: str, count: int) -> float:
    start = time.perf_counter()
    client = poplib.POP3("localhost", port, timeout=60)
    client.stls(ssl.create_default_context(cafile=ca_file))
    client.user(USER)
    client.pass_(password)
    for n in range(1, count + 1):
        client.top(n, 0)
    client.quit()
    return time.perf_counter() - start


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rtt = (float(sys.argv[2]) if len(sys.argv) > 2 else 20.0) / 1000
    with tempfile.TemporaryDirectory() as root:
        server = start_dovecot(Path(root))
        try:
            for n in range(1, count + 1):
                server.deliver(USER, message(n))
            password = server.users[USER]
            rows = []
            for name, run in (("popctl headers (pipelined)", popctl_headers),
                              ("poplib TOP n 0 loop", poplib_headers)):
                base = statistics.median(run(server.port, server.ca_file, password, count)
                                         for _ in range(3))
                with DelayProxy(("127.0.0.1", server.port), rtt / 2) as proxy:
                    reps = 3 if name.startswith("popctl") else 1
                    slow = statistics.median(run(proxy.port, server.ca_file, password, count)
                                             for _ in range(reps))
                rows.append((name, base, slow, (slow - base) / rtt))
        finally:
            server.stop()
    print(f"{count} messages, headers only; round trip {rtt * 1000:.0f} ms")
    print(f"{'client':32} {'0 ms':>9} {f'{rtt * 1000:.0f} ms':>9} {'round trips':>12}")
    for name, base, slow, trips in rows:
        print(f"{name:32} {base:8.3f}s {slow:8.3f}s {trips:12.1f}")
    print(f"speed-up at {rtt * 1000:.0f} ms: {rows[1][2] / rows[0][2]:.1f}x")


if __name__ == "__main__":
    main()
