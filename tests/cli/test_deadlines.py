"""Hangs and unbounded resources (issue 11): servers that drip, stall, or list absurd mailboxes.

Each case runs the command line against tests/support/scripted_server.py and asserts the exit
status, the one ``Error:`` line and that the command ended within a generous bound (``timeout + 5``
s: a hang guard, not a speed target). The absurd listings run ``python -m popctl`` under an address-
space limit, so a regression fails with MemoryError instead of eating the machine.
docs/RELIABILITY.md ("Hangs and unbounded resources") lists the attacks and the figures measured.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from popctl.cli import cli
from popctl.errors import RemoteProtocolError
from popctl.models import Credentials, Endpoint, TLSMode
from popctl.session import Session
from tests.support.scripted_server import (
    _CERTIFICATES,
    ScriptedServer,
    Step,
    expect,
    send,
    stall,
)

PASSWORD = "s3cret"
CAPA_REPLY = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"
GREET = send(b"+OK POP3 ready\r\n")
READY = [GREET, expect(b"CAPA\r\n"), send(CAPA_REPLY),
         expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"), send(b"+OK\r\n+OK\r\n" + CAPA_REPLY)]
UIDL_OK = b"+OK\r\n1 uid-1\r\n2 uid-2\r\n.\r\n"
MESSAGE = b"Subject: one\r\n\r\nbody one\r\n"
HANG_GUARD = 5.0  # seconds allowed beyond the timeout: generous, only to catch a hang
ADDRESS_SPACE = 1 << 30  # the subprocess cases' memory limit (a regression needed 8.8 GB)


def drip(data: bytes, interval: float, piece: int = 1) -> list[Step]:
    """``data`` sent ``piece`` octets at a time, ``interval`` seconds apart."""
    steps: list[Step] = []
    for at in range(0, len(data), piece):
        steps += [send(data[at:at + piece]), stall(interval)]
    return steps


def run(server: ScriptedServer, args: Sequence[str], timeout: float,
        *options: str) -> tuple[Result, float]:
    base = ["--host", "127.0.0.1", "--port", str(server.port), "--tls", "none",
            "--allow-plaintext", "--user", "alice", "--timeout", str(timeout), *options]
    started = time.monotonic()
    result = CliRunner().invoke(cli, [*base, *args], env={"POPCTL_PASSWORD": PASSWORD})
    return result, time.monotonic() - started


def assert_error(result: Result, status: int, line: str) -> None:
    assert (result.exit_code, result.stderr) == (status, f"Error: {line}\n"), result.exception
    assert isinstance(result.exception, SystemExit | None), result.exception


# --- a reply must finish within its deadline ----------------------------------------------------

# A status line dripped one octet every 0.25 s: 10 s for the whole line, each read well inside the
# 1 s read timeout. Before, popctl read it to the end (a greeting at 1 byte/s ran until killed).
DRIPPED = b"+OK " + b"x" * 36 + b"\r\n"
STATUS_LINE_CASES = {
    "greeting": ([*drip(DRIPPED, 0.25)], ("stat",), "no complete greeting from 127.0.0.1 "
                                                    "within 1 s (reply timeout)"),
    "CAPA-status": ([send(b"+OK ready\r\n"), expect(b"CAPA\r\n"), *drip(DRIPPED, 0.25)],
                    ("stat",), "no complete reply to CAPA from 127.0.0.1 within 1 s "
                               "(reply timeout)"),
    "STAT": ([*READY, expect(b"STAT\r\n"), *drip(b"+OK 2 320" + b" " * 30 + b"\r\n", 0.25)],
             ("stat",), "no complete reply to STAT from 127.0.0.1 within 1 s (reply timeout)"),
    "STLS": ([send(b"+OK ready\r\n"), expect(b"CAPA\r\n"), send(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
              expect(b"STLS\r\n"), *drip(DRIPPED, 0.25)],
             ("--tls", "starttls", "stat"),
             "no complete reply to STLS from 127.0.0.1 within 1 s (reply timeout)"),
}


@pytest.mark.parametrize("case", STATUS_LINE_CASES, ids=list(STATUS_LINE_CASES))
def test_a_dripped_status_line_ends_at_the_timeout(case: str) -> None:
    script, args, error = STATUS_LINE_CASES[case]
    with ScriptedServer(script, timeout=3.0) as server:
        result, elapsed = run(server, args, 1.0)
    assert_error(result, 4, error)
    assert elapsed < 1.0 + HANG_GUARD, f"took {elapsed:.1f} s"
    assert b"QUIT" not in server.received


# One line of a multi-line reply every 0.3 s (20 octets/s) for 12 s: each read within the read
# timeout, so before, popctl waited for all of it (a LIST at a line per 0.5 s ran until killed).
SLOW_LINES = b"".join(b"%d 1000\r\n" % n for n in range(1, 41))
SLOW_DATA_CASES = {
    "LIST": ([*READY, expect(b"LIST\r\n"), send(b"+OK\r\n"), *drip(SLOW_LINES, 0.3, 8)],
             ("list", "--sizes-only")),
    "UIDL": ([*READY, expect(b"UIDL\r\nLIST\r\n"), send(b"+OK\r\n"),
              *drip(SLOW_LINES, 0.3, 8)], ("uidl",)),
    "RETR": ([*READY, expect(b"UIDL\r\nLIST\r\n"),
              send(UIDL_OK + b"+OK\r\n1 1000\r\n2 1000\r\n.\r\n"), expect(b"RETR 1\r\n"),
              send(b"+OK\r\n"), *drip(b"Subject: slow\r\n\r\n" + SLOW_LINES, 0.3, 8)],
             ("retr", "1-1")),
}


@pytest.mark.parametrize("verb", SLOW_DATA_CASES, ids=list(SLOW_DATA_CASES))
def test_a_dripped_multi_line_reply_ends_soon_after_the_timeout(verb: str) -> None:
    script, args = SLOW_DATA_CASES[verb]
    with ScriptedServer(script, timeout=3.0) as server:
        result, elapsed = run(server, args, 1.0)
    assert_error(result, 4, f"reply to {verb} from 127.0.0.1 too slow: less than 1024 octets/s "
                            "after the first 1 s (reply timeout)")
    assert elapsed < 1.0 + HANG_GUARD, f"took {elapsed:.1f} s"
    assert b"QUIT" not in server.received


def test_the_session_timeout_bounds_a_server_just_fast_enough() -> None:
    """4 KiB/s passes every per-reply deadline; 10 s of it does not pass --session-timeout 2."""
    body = b"Subject: long\r\n\r\n" + b"x" * 1022 + b"\r\n"
    script = [*READY, expect(b"UIDL\r\nLIST\r\n"),
              send(UIDL_OK + b"+OK\r\n1 40000\r\n2 40000\r\n.\r\n"), expect(b"RETR 1\r\n"),
              send(b"+OK\r\n"), *drip(body * 40, 0.25, 1024)]
    with ScriptedServer(script, timeout=3.0) as server:
        result, elapsed = run(server, ["retr", "1-1"], 1.0, "--session-timeout", "2")
    assert_error(result, 4, "waited more than 2 s in all for 127.0.0.1 (session timeout; "
                            "raise it with --session-timeout)")
    assert elapsed < 2.0 + HANG_GUARD, f"took {elapsed:.1f} s"


def _tls_drip_server(listener: socket.socket, stop: threading.Event) -> None:
    """Answer a ClientHello with a real server's handshake, one octet every 0.05 s."""
    conn, _ = listener.accept()
    with conn:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _CERTIFICATES.leaf("localhost").cert.configure_cert(context)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        conn.settimeout(5)
        incoming.write(conn.recv(65536))
        with contextlib.suppress(ssl.SSLWantReadError):  # it waits for our answer: fine
            tls.do_handshake()
        for octet in outgoing.read():
            if stop.wait(0.05):
                return
            try:
                conn.sendall(bytes([octet]))
            except OSError:
                return


def test_a_dripped_tls_handshake_ends_at_the_timeout() -> None:
    """The handshake (implicit TLS here; STLS uses the same call) has one deadline in all.
    CPython already counts the socket timeout so; this keeps it so, with the session's clock."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=_tls_drip_server, args=(listener, stop), daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        result = CliRunner().invoke(cli, [
            "--host", "localhost", "--port", str(listener.getsockname()[1]), "--tls",
            "implicit", "--ca-file", _CERTIFICATES.ca_file(), "--user", "alice",
            "--timeout", "1", "stat"], env={"POPCTL_PASSWORD": PASSWORD})
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert_error(result, 4, "TLS handshake with localhost not complete after 1 s "
                            "(handshake timeout)")
    assert elapsed < 1.0 + HANG_GUARD, f"took {elapsed:.1f} s"


# --- what still works -----------------------------------------------------------------------------


def test_a_message_on_a_slow_link_still_arrives() -> None:
    """600 KB at 2 Mbit/s (8 KB every 32 ms): 2.4 s of transfer with a 1 s timeout."""
    body = b"Subject: big\r\n\r\n" + b"".join(b"%07d %s\r\n" % (n, b"y" * 90)
                                               for n in range(6000))
    script = [*READY, expect(b"UIDL\r\nLIST\r\n"),
              send(UIDL_OK + b"+OK\r\n1 %d\r\n2 10\r\n.\r\n" % len(body)),
              expect(b"RETR 1\r\n"), send(b"+OK\r\n"), *drip(body + b".\r\n", 0.032, 8000)]
    with ScriptedServer(script, timeout=5.0) as server:
        result, _ = run(server, ["retr", "1-1"], 1.0)
    assert (result.exit_code, result.stderr) == (0, ""), result.stderr
    assert result.stdout_bytes == body


def test_only_time_spent_waiting_for_the_server_counts() -> None:
    """A consumer slower than the server (a pager, a slow disk) is not the server's fault: the
    reply arrives at once, the sink takes 0.3 s a chunk, 2 s in all, with a 0.5 s timeout."""
    chunk = b"z" * 100 + b"\r\n"

    class SlowSink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, data: bytes) -> None:
            self.data += data
            time.sleep(0.3)

    script = [*READY, expect(b"RETR 1\r\n"), *drip(b"+OK\r\n" + chunk * 7 + b".\r\n", 0.01,
                                                   len(chunk)),
              expect(b"QUIT\r\n")]
    sink = SlowSink()
    with ScriptedServer(script, timeout=5.0) as server:
        endpoint = Endpoint("127.0.0.1", server.port, TLSMode.NONE, timeout=0.5,
                            connect_timeout=0.5)
        with Session.connect(endpoint) as session:
            session.login(Credentials("alice", PASSWORD, allow_plaintext=True))
            session.retr(1, sink)
    server.assert_done()
    assert bytes(sink.data) == chunk * 7


# --- absurd listings are the server's error -------------------------------------------------------


def listing_script(uidl: bytes, listing: bytes, *more: Step) -> list[Step]:
    return [*READY, expect(b"UIDL\r\nLIST\r\n"), send(uidl + listing), *more]


TOO_BIG = 9223372036854775807
ABSURD = b"+OK\r\n1 10\r\n%d 10\r\n.\r\n" % TOO_BIG
ABSURD_CASES = {
    # Before: 8.8 GB in 30 s (uidl 1-); MemoryError, "internal error" under a limit (retr 2-).
    "huge-number-uidl-range": (listing_script(UIDL_OK, ABSURD), ("uidl", "1-"),
                               f"server sent LIST message number {TOO_BIG}, more messages than "
                               "any mailbox holds (the limit is 2147483647)"),
    "huge-number-retr-range": (listing_script(UIDL_OK, ABSURD), ("retr", "2-"),
                               f"server sent LIST message number {TOO_BIG}, more messages than "
                               "any mailbox holds (the limit is 2147483647)"),
    "huge-number-in-UIDL": (listing_script(b"+OK\r\n1 a\r\n%d b\r\n.\r\n" % TOO_BIG,
                                           b"+OK\r\n1 10\r\n.\r\n"), ("uidl",),
                            f"server sent UIDL message number {TOO_BIG}, more messages than any "
                            "mailbox holds (the limit is 2147483647)"),
    # Numbers run 1 to the count: 5000 in a listing of 2 cannot be (before: a range of 5000).
    "number-beyond-the-count": (listing_script(UIDL_OK, b"+OK\r\n1 10\r\n5000 10\r\n.\r\n"),
                                ("retr", "2-"),
                                "server listed message 5000 in a LIST reply of 2 message(s) "
                                "after 0 deletion(s) in this session: messages are numbered "
                                "from 1 to their count (at most 104 allowed)"),
    # Before: "internal error: KeyError: 1".
    "duplicate-number": (listing_script(UIDL_OK, b"+OK\r\n1 10\r\n1 10\r\n2 10\r\n.\r\n"),
                         ("retr", "1-1"), "server listed message 1 twice in its LIST reply"),
    # Before: quietly sorted.
    "decreasing-numbers": (listing_script(UIDL_OK, b"+OK\r\n2 10\r\n1 10\r\n.\r\n"),
                           ("list", "--format", "csv"),
                           "server listed message 1 after message 2 in its LIST reply (a "
                           "listing is in increasing order)"),
    "message-zero": (listing_script(b"+OK\r\n0 a\r\n.\r\n", b"+OK\r\n0 10\r\n.\r\n"), ("uidl",),
                     "server sent UIDL message number 0 (message numbers start at 1)"),
    "size-over-1-TiB": ([*READY, expect(b"LIST\r\n"), send(b"+OK\r\n1 2000000000000\r\n.\r\n")],
                        ("list", "--sizes-only"),
                        "server sent LIST size 2000000000000 for message 1: more than any "
                        "message can be (the limit is 1099511627776 octets)"),
    "STAT-count": ([*READY, expect(b"STAT\r\n"), send(b"+OK %d 10\r\n" % TOO_BIG)], ("stat",),
                   f"server sent STAT count {TOO_BIG}, more messages than any mailbox holds "
                   "(the limit is 2147483647)"),
    "UID-of-10-KB": (listing_script(b"+OK\r\n1 " + b"u" * 10000 + b"\r\n.\r\n",
                                    b"+OK\r\n1 10\r\n.\r\n"), ("uidl",),
                     "server sent a UIDL line longer than 8192 octets"),
}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.mark.parametrize("case", ABSURD_CASES, ids=list(ABSURD_CASES))
def test_an_absurd_listing_is_a_protocol_error(case: str, tmp_path: Path) -> None:
    script, args, error = ABSURD_CASES[case]
    with ScriptedServer(script, timeout=3.0) as server:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "popctl", "--host", "127.0.0.1", "--port", str(server.port),
             "--tls", "none", "--allow-plaintext", "--user", "alice", "--timeout", "2", *args],
            stdin=subprocess.DEVNULL, capture_output=True, cwd=tmp_path, timeout=60,
            env={**os.environ, "POPCTL_PASSWORD": PASSWORD}, preexec_fn=_limit_memory)
        elapsed = time.monotonic() - started
    assert (done.returncode, done.stderr.decode()) == (6, f"Error: {error}\n")
    assert done.stdout == b""
    assert elapsed < 2.0 + HANG_GUARD, f"took {elapsed:.1f} s"
    assert b"QUIT" not in server.received


def test_a_listing_longer_than_stat_said_is_a_protocol_error() -> None:
    script = [*READY, expect(b"STAT\r\n"), send(b"+OK 1 10\r\n"), expect(b"LIST\r\n"),
              send(b"+OK\r\n1 10\r\n2 10\r\n.\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        endpoint = Endpoint("127.0.0.1", server.port, TLSMode.NONE, timeout=1.0)
        with pytest.raises(RemoteProtocolError, match="listed 2 messages in its LIST reply, "
                                                      "but its STAT said 1"):
            with Session.connect(endpoint) as session:
                session.login(Credentials("alice", PASSWORD, allow_plaintext=True))
                session.stat()
                session.list()
    assert b"QUIT" not in server.received


# --- a huge listing costs what popctl keeps -------------------------------------------------------


def test_a_huge_listing_takes_memory_in_proportion_to_what_is_kept() -> None:
    """3.6 MiB of LIST and 3.7 MiB of UIDL (800,000 lines) for `retr 1-1` (a range needs the
    listings; `retr 1` now asks LIST 1 and UIDL 1 only): about 140 MB of
    Python objects before (NamedTuples, ints and strings per line, then a Row each); now a few
    octets per message in arrays (12 MiB at the peak, most of it one read's transient parse)."""
    count = 400_000
    uidl = b"+OK\r\n" + b"".join(b"%d %x\r\n" % (n, n) for n in range(1, count)) + b".\r\n"
    listing = b"+OK\r\n" + b"".join(b"%d 1\r\n" % n for n in range(1, count)) + b".\r\n"
    script = [*READY, expect(b"UIDL\r\nLIST\r\n"), send(uidl), send(listing),
              expect(b"RETR 1\r\n"), send(b"+OK\r\n" + MESSAGE + b".\r\n")]
    with ScriptedServer(script, timeout=10.0) as server:
        record = server._event  # the server keeps what it sends: only a sample of that, so
        server._event = (  # type: ignore[method-assign]  # that tracemalloc measures popctl
            lambda who, data: record(who, data[:4096] if who == "S" else data))
        tracemalloc.start()
        try:
            result, elapsed = run(server, ["retr", "1-1"], 5.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert (result.exit_code, result.stderr) == (0, ""), result.stderr
    assert result.stdout_bytes == MESSAGE
    assert peak < 32 << 20, f"peak {peak / 2**20:.0f} MiB"
    assert elapsed < 5.0 + HANG_GUARD, f"took {elapsed:.1f} s"

