"""The fault-injection matrix: the command line against a strict scripted server that breaks.

Every case runs one popctl command in-process (CliRunner on popctl.cli.cli) against
tests/support/scripted_server.py and asserts, from one table:

* the exit status and the exact one-line ``Error: ...`` message on stderr (no traceback);
* a bounded run time (the read timeout is ``--timeout 0.5`` where a server stalls);
* that the messages stored (``--maildir``/``--output-dir``/``--mbox``) are exactly the complete
  ones, with no partial or temporary file left behind;
* from the bytes the server recorded, whether QUIT was sent (it must not be after a failure:
  that is what makes the server roll back the deletions of the session).

docs/RELIABILITY.md lists this table: keep the two in step.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from popctl import session as session_module
from popctl.cli import cli
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    close,
    expect,
    expect_eof,
    send,
    stall,
)
from tests.support.stored import stored_messages

PASSWORD = "s3cret"
CAPA_REPLY = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"
CAPA_LOCKSTEP_REPLY = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\n.\r\n"

GREET = send(b"+OK POP3 ready\r\n")
CAPA = [expect(b"CAPA\r\n"), send(CAPA_REPLY)]
LOGIN = [expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"), send(b"+OK\r\n+OK\r\n" + CAPA_REPLY)]
READY = [GREET, *CAPA, *LOGIN]  # logged in, pipelining

M1 = b"Subject: one\r\n\r\nbody one\r\n"
M2 = b"Subject: two\r\n\r\nbody two\r\n"
SCAN = [expect(b"UIDL\r\nLIST\r\n"),
        send(b"+OK\r\n1 uid-1\r\n2 uid-2\r\n.\r\n+OK\r\n1 %d\r\n2 %d\r\n.\r\n"
             % (len(M1), len(M2)))]
RETR_BOTH = expect(b"RETR 1\r\nRETR 2\r\n")
TOP_BOTH = expect(b"TOP 1 0\r\nTOP 2 0\r\n")


def ok_data(data: bytes) -> bytes:
    return b"+OK\r\n" + data + b".\r\n"


RETRIEVED = [*READY, *SCAN, RETR_BOTH, send(ok_data(M1)), expect(b"DELE 1\r\n"),
             send(ok_data(M2)), expect(b"DELE 2\r\n"), send(b"+OK\r\n+OK\r\n")]
HEADERS = [TOP_BOTH, send(ok_data(b"Subject: one\r\n\r\n") + ok_data(b"Subject: two\r\n\r\n"))]
# dele --yes with a selection known from LIST: each DELE rides right after its TOP.
TOP_DELE_BOTH = expect(b"TOP 1 0\r\nDELE 1\r\nTOP 2 0\r\nDELE 2\r\n")
MARKED = [*READY, *SCAN, TOP_DELE_BOTH,
          send(ok_data(b"Subject: one\r\n\r\n") + b"+OK\r\n" + ok_data(b"Subject: two\r\n\r\n")
               + b"+OK\r\n")]

LOST_QUIT = ("the 2 deletion(s) of this session may or may not have been made (see what is "
             "left with list)")
RESET = "connection to 127.0.0.1 lost: Connection reset by peer"
TIMED_OUT = "Error: no answer from 127.0.0.1 for 0.5 s (read timeout)"


@dataclass(frozen=True)
class Fault:
    """One row of the matrix."""

    id: str
    args: tuple[str, ...]
    script: Sequence[Step]
    exit: int
    error: str | tuple[str, ...] | None  # the stderr line(s) allowed; None: no error line
    quit: bool = False  # whether QUIT must be among the bytes the server received
    stored: tuple[bytes, ...] = ()  # complete messages that must be in the store, nothing else
    stdout: str | None = None
    timeout: float = 2.0  # --timeout
    patch: dict[str, int] = field(default_factory=dict)  # popctl.session constants
    max_memory: int | None = None  # peak bytes allocated while it runs (tracemalloc)


def retr(store: str) -> tuple[str, ...]:
    return ("retr", "--all", f"--{store}", "{out}", "--delete")


FAULTS = [
    # --- the connection dropped at each stage ----------------------------------------------
    Fault("drop-before-greeting", ("stat",), [close()], 4,
          "Error: server closed the connection while we waited for the reply to the greeting"),
    Fault("reset-before-greeting", ("stat",), [close(reset=True)], 4,
          (f"Error: {RESET}", "Error: cannot connect to 127.0.0.1:{port}: Connection reset by "
           "peer")),
    Fault("drop-during-auth-lockstep", ("stat",),
          [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP_REPLY), expect(b"USER alice\r\n"),
           send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"), close()], 4,
          "Error: server closed the connection while we waited for the reply to PASS"),
    Fault("drop-during-auth-pipelined", ("stat",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"), send(b"+OK\r\n"),
           close()], 4,
          "Error: server closed the connection while we waited for the reply to PASS"),
    Fault("drop-mid-LIST", ("list",),
          [*READY, expect(b"UIDL\r\nLIST\r\n"),
           send(b"+OK\r\n1 uid-1\r\n2 uid-2\r\n.\r\n+OK\r\n1 120\r\n2 1"), close()], 4,
          "Error: server closed the connection in the middle of the reply to LIST"),
    Fault("drop-inside-TOP-window", ("list",),
          [*READY, *SCAN, TOP_BOTH, send(ok_data(b"Subject: one\r\n\r\n")), close()], 4,
          "Error: server closed the connection while we waited for the reply to TOP"),
    Fault("drop-inside-TOP-reply", ("list",),
          [*READY, *SCAN, TOP_BOTH, send(b"+OK\r\nSubject: o"), close()], 4,
          "Error: server closed the connection in the middle of the reply to TOP"),
    Fault("drop-mid-RETR-maildir", retr("maildir"),
          [*READY, *SCAN, RETR_BOTH, send(ok_data(M1)), expect(b"DELE 1\r\n"),
           send(b"+OK\r\nSubject: two\r\n\r\nbo"), close()], 4,
          "Error: server closed the connection in the middle of the reply to RETR",
          stored=(M1,)),
    Fault("drop-mid-RETR-output-dir", retr("output-dir"),
          [*READY, *SCAN, RETR_BOTH, send(ok_data(M1)), expect(b"DELE 1\r\n"),
           send(b"+OK\r\nSubject: two\r\n\r\nbo"), close()], 4,
          "Error: server closed the connection in the middle of the reply to RETR",
          stored=(M1,)),
    Fault("drop-mid-RETR-mbox", retr("mbox"),
          [*READY, *SCAN, RETR_BOTH, send(ok_data(M1)), expect(b"DELE 1\r\n"),
           send(b"+OK\r\nSubject: two\r\n\r\nbo"), close()], 4,
          "Error: server closed the connection in the middle of the reply to RETR",
          stored=(M1,)),
    Fault("drop-after-DELE-before-QUIT", retr("maildir"), [*RETRIEVED, close()], 4,
          (f"Error: server closed the connection while we waited for the reply to QUIT; "
           f"{LOST_QUIT}", f"Error: {RESET}; {LOST_QUIT}"),
          stored=(M1, M2)),
    Fault("drop-after-QUIT-before-reply-retr", retr("maildir"),
          [*RETRIEVED, expect(b"QUIT\r\n"), close()], 4,
          f"Error: server closed the connection while we waited for the reply to QUIT; "
          f"{LOST_QUIT}", quit=True, stored=(M1, M2)),
    Fault("drop-after-QUIT-before-reply-dele", ("dele", "--all", "--yes"),
          [*MARKED, expect(b"QUIT\r\n"), close()], 4,
          f"Error: server closed the connection while we waited for the reply to QUIT; "
          f"{LOST_QUIT}", quit=True),
    Fault("drop-after-QUIT-nothing-deleted", ("stat",),
          [*READY, expect(b"STAT\r\n"), send(b"+OK 2 320\r\n"), expect(b"QUIT\r\n"), close()],
          0, None, quit=True, stdout="count  2\nsize   320\n"),
    # --- a server that stalls: the read timeout ---------------------------------------------
    Fault("stall-before-greeting", ("stat",), [stall(3)], 4,
          f"{TIMED_OUT}; if this is an implicit-TLS port, use --tls implicit", timeout=0.5),
    Fault("stall-during-auth", ("stat",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"), send(b"+OK\r\n"),
           stall(3)], 4, TIMED_OUT, timeout=0.5),
    # A server that announces PIPELINING but loses what came with the credentials.
    Fault("stall-after-login-pipelined", ("list",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
           send(b"+OK\r\n+OK logged in\r\n"), stall(3)], 4,
          f"{TIMED_OUT}; the server accepted the login but did not answer the commands sent "
          "with it, although it announces PIPELINING: retry with --no-pipelining", timeout=0.5),
    Fault("stall-mid-RETR", retr("output-dir"),
          [*READY, *SCAN, RETR_BOTH, send(b"+OK\r\nSubject: one\r\n"), stall(3)], 4,
          TIMED_OUT, timeout=0.5),
    Fault("stall-after-DELE", ("dele", "--all", "--yes"),
          [*READY, *SCAN, TOP_DELE_BOTH, send(ok_data(b"Subject: one\r\n\r\n") + b"+OK\r\n"),
           stall(3)], 4, TIMED_OUT, timeout=0.5),
    Fault("DELE-refused-in-TOP-window", ("dele", "--all", "--yes"),
          [*READY, *SCAN, TOP_DELE_BOTH,
           send(ok_data(b"Subject: one\r\n\r\n") + b"+OK\r\n" + ok_data(b"Subject: two\r\n\r\n")
                + b"-ERR message 2 already deleted\r\n"), expect_eof()], 5,
          "Error: DELE 2 failed: server said: message 2 already deleted"),
    Fault("dele-confirmed-by-filter-on-headers", ("dele", "--subject", "one", "--yes"),
          [*READY, *SCAN, *HEADERS, expect(b"DELE 1\r\n"), send(b"+OK\r\n"),
           expect(b"QUIT\r\n"), send(b"+OK\r\n")], 0, None, quit=True,
          stdout=None),
    Fault("stall-after-QUIT", ("dele", "--all", "--yes"),
          [*MARKED, expect(b"QUIT\r\n"), stall(3)], 4, f"{TIMED_OUT}; {LOST_QUIT}",
          quit=True, timeout=0.5),
    # --- malformed replies ------------------------------------------------------------------
    Fault("no-CRLF-then-stall", ("stat",),
          [*READY, expect(b"STAT\r\n"), send(b"+OK 2 320"), stall(3)], 4, TIMED_OUT,
          timeout=0.5),
    Fault("no-CRLF-then-close", ("stat",),
          [*READY, expect(b"STAT\r\n"), send(b"+OK 2 320"), close()], 4,
          "Error: server closed the connection while we waited for the reply to STAT"),
    Fault("bare-LF-everywhere", ("list", "--format", "csv"),
          [send(b"+OK ready\n"), expect(b"CAPA\r\n"),
           send(b"+OK\nTOP\nUIDL\nUSER\nPIPELINING\n.\n"),
           expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
           send(b"+OK\n+OK\n+OK\nTOP\nUIDL\nUSER\nPIPELINING\n.\n"), expect(b"UIDL\r\nLIST\r\n"),
           send(b"+OK\n1 uid-1\n.\n+OK\n1 20\n.\n"), expect(b"TOP 1 0\r\n"),
           send(b"+OK\nSubject: lf\n\n.\n"), expect(b"QUIT\r\n"), send(b"+OK\n")],
          0, None, quit=True, stdout="number,size,uid,from,subject,date\n1,20,uid-1,,lf,\n"),
    Fault("non-numeric-size", ("list", "--sizes-only"),
          [*READY, expect(b"LIST\r\n"), send(b"+OK\r\n1 12\r\n2 big\r\n.\r\n")], 6,
          "Error: server sent LIST size 'big', not a number"),
    Fault("negative-size", ("list", "--sizes-only"),
          [*READY, expect(b"LIST\r\n"), send(b"+OK\r\n1 -12\r\n.\r\n")], 6,
          "Error: server sent LIST size '-12', not a number"),
    Fault("size-over-2**63", ("list", "--sizes-only"),
          [*READY, expect(b"LIST\r\n"), send(b"+OK\r\n1 9223372036854775808\r\n.\r\n")], 6,
          "Error: server sent LIST size '9223372036854775808', not a number"),
    Fault("negative-STAT", ("stat",), [*READY, expect(b"STAT\r\n"), send(b"+OK -1 0\r\n")], 6,
          "Error: server sent STAT count '-1', not a number"),
    Fault("multi-line-never-ends-stall", ("list",),
          [*READY, expect(b"UIDL\r\nLIST\r\n"), send(b"+OK\r\n1 12\r\n"), stall(3)], 4,
          TIMED_OUT, timeout=0.5),
    Fault("multi-line-never-ends-LIST", ("list",),
          [*READY, expect(b"UIDL\r\nLIST\r\n"),
           # numbers rising, so that only the size can stop it (a repeated number is an
           # error of its own, found first or not depending on how the reads are cut)
           send(b"+OK\r\n1 u\r\n.\r\n+OK\r\n"
                + b"".join(b"%d 12\r\n" % n for n in range(1, 50_001))),
           stall(3)], 6, "Error: LIST reply larger than 65536 octets",
          patch={"MAX_LISTING_BYTES": 65536}, max_memory=4 << 20),
    Fault("multi-line-never-ends-TOP", ("list",),
          [*READY, *SCAN, TOP_BOTH, send(b"+OK\r\n" + b"X-Filler: 0123456789\r\n" * 20_000),
           stall(3)], 6, "Error: TOP reply larger than 65536 octets; stopped reading it",
          patch={"MAX_LISTING_BYTES": 65536}, max_memory=4 << 20),
    Fault("10MB-status-line", ("stat",),
          [*READY, expect(b"STAT\r\n"), send(b"+OK " + b"9" * 10_000_000)], 6,
          "Error: server sent a status line longer than 8192 octets", max_memory=4 << 20),
    Fault("10MB-greeting", ("stat",), [send(b"+OK " + b"x" * 10_000_000 + b"\r\n")], 6,
          "Error: server sent a status line longer than 8192 octets", max_memory=4 << 20),
    Fault("NUL-and-invalid-UTF-8-in-text", ("stat",),
          [send(b"+OK \x00\xff\xfe ready\r\n"), *CAPA, *LOGIN, expect(b"STAT\r\n"),
           send(b"+OK 2 320 \x00\xc3\x28\r\n"), expect(b"QUIT\r\n"), send(b"+OK\r\n")],
          0, None, quit=True, stdout="count  2\nsize   320\n"),
    Fault("NUL-and-invalid-UTF-8-in-number", ("stat",),
          [*READY, expect(b"STAT\r\n"), send(b"+OK 2\x00\xff 320\r\n")], 6,
          "Error: server sent STAT count '2\ufffd\ufffd', not a number"),
    Fault("NUL-and-invalid-UTF-8-in-ERR", ("stat",),
          [*READY, expect(b"STAT\r\n"), send(b"-ERR \x1b[31mno\x00\xff\r\n")], 5,
          "Error: STAT failed: server said: \ufffd[31mno\ufffd\ufffd"),
    Fault("NUL-and-invalid-UTF-8-in-headers", ("list", "--format", "csv"),
          [*READY, expect(b"UIDL\r\nLIST\r\n"), send(b"+OK\r\n1 u\r\n.\r\n+OK\r\n1 30\r\n.\r\n"),
           expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: a\x00b\xff\xfec\r\n\r\n")),
           expect(b"QUIT\r\n"), send(b"+OK\r\n")],
          0, None, quit=True, stdout="number,size,uid,from,subject,date\n1,30,u,,ab\xff\xfec,\n"),
    Fault("garbage-status-line", ("stat",), [*READY, expect(b"STAT\r\n"), send(b"250 OK\r\n")],
          6, "Error: expected +OK or -ERR from the server, got '250 OK'"),
    Fault("reply-with-no-command-pending", ("stat",),
          [*READY, expect(b"STAT\r\n"), send(b"+OK 2 320\r\n+OK stray\r\n")], 6,
          "Error: server sent '+OK stray' when no command was waiting for a reply"),
    Fault("stray-line-after-greeting", ("stat",), [send(b"+OK ready\r\n+OK stray\r\n")], 6,
          "Error: server sent '+OK stray' when no command was waiting for a reply"),
    Fault("another-service-on-the-port", ("stat",), [send(b"SSH-2.0-OpenSSH_9.2\r\n")], 6,
          "Error: expected +OK or -ERR from the server, got 'SSH-2.0-OpenSSH_9.2'; is that a "
          "POP3 port? check the host and the port (--host, --port)"),
    Fault("pipelining-out-of-order-LIST-UIDL", ("list",),
          [*READY, expect(b"UIDL\r\nLIST\r\n"),
           send(b"+OK\r\n1 12\r\n.\r\n+OK\r\n1 uid-1\r\n.\r\n")], 6,
          "Error: server sent LIST size 'uid-1', not a number"),
    Fault("pipelining-out-of-order-login", ("stat",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
           send(CAPA_REPLY + b"+OK\r\n+OK\r\n")], 6,
          "Error: expected +OK or -ERR from the server, got 'TOP'"),
    Fault("pipelining-short-then-stall", ("list",),
          [*READY, *SCAN, TOP_BOTH, send(ok_data(b"Subject: one\r\n\r\n")), stall(3)], 4,
          TIMED_OUT, timeout=0.5),
    Fault("pipelining-extra-reply", ("list", "--format", "csv"),
          [*READY, *SCAN, TOP_BOTH,
           send(ok_data(b"Subject: one\r\n\r\n") + ok_data(b"Subject: two\r\n\r\n")
                + b"+OK\r\n")], 6,
          "Error: server sent '+OK' when no command was waiting for a reply",
          stdout="number,size,uid,from,subject,date\n1,26,uid-1,,one,\n2,26,uid-2,,two,\n"),
    # --- response codes (RFC 2449, RFC 3206) -------------------------------------------------
    Fault("IN-USE", ("stat",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
           send(b"+OK\r\n-ERR [IN-USE] locked\r\n" + CAPA_REPLY)], 75,
          "Error: login failed: server said: [IN-USE] locked (another client holds the "
          "mailbox; try again when it has finished)"),
    Fault("LOGIN-DELAY", ("stat",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
           send(b"+OK\r\n-ERR [LOGIN-DELAY] wait 5 minutes\r\n" + CAPA_REPLY)], 75,
          "Error: login failed: server said: [LOGIN-DELAY] wait 5 minutes (the server limits "
          "how often you may log in; wait and retry)"),
    Fault("SYS/TEMP-at-login", ("stat",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
           send(b"+OK\r\n-ERR [SYS/TEMP] backend down\r\n" + CAPA_REPLY)], 5,
          "Error: login failed: server said: [SYS/TEMP] backend down (temporary server "
          "problem; try again later)"),
    Fault("SYS/TEMP-greeting", ("stat",), [send(b"-ERR [SYS/TEMP] overloaded\r\n")], 5,
          "Error: connecting failed: server said: [SYS/TEMP] overloaded (temporary server "
          "problem; try again later)"),
    Fault("SYS/TEMP-on-DELE", retr("output-dir"),
          [*READY, *SCAN, RETR_BOTH, send(ok_data(M1)), expect(b"DELE 1\r\n"),
           send(ok_data(M2)), expect(b"DELE 2\r\n"),
           send(b"+OK\r\n-ERR [SYS/TEMP] try later\r\n")], 5,
          "Error: DELE 2 failed: server said: [SYS/TEMP] try later (temporary server problem; "
          "try again later)", stored=(M1, M2)),
    Fault("SYS/PERM", ("stat",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
           send(b"+OK\r\n-ERR [SYS/PERM] account disabled\r\n" + CAPA_REPLY)], 5,
          "Error: login failed: server said: [SYS/PERM] account disabled"),
    Fault("AUTH", ("stat",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
           send(b"+OK\r\n-ERR [AUTH] bad password\r\n" + CAPA_REPLY)], 3,
          "Error: login failed: server said: [AUTH] bad password"),
    # Some servers hang up right after refusing PASS: the refusal is what the user must hear.
    Fault("AUTH-then-hang-up", ("list",),
          [GREET, *CAPA, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
           send(b"+OK\r\n-ERR [AUTH] bad password\r\n"), close()], 3,
          "Error: login failed: server said: [AUTH] bad password"),
]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def run(server: ScriptedServer, args: Sequence[str], timeout: float) -> Result:
    options = ["--host", "127.0.0.1", "--port", str(server.port), "--tls", "none",
               "--allow-plaintext", "--user", "alice", "--timeout", str(timeout)]
    return CliRunner().invoke(cli, [*options, *args], env={"POPCTL_PASSWORD": PASSWORD})


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in fault.patch.items():
        monkeypatch.setattr(session_module, name, value)
    kind = next((a[2:] for a in fault.args if a in ("--maildir", "--output-dir", "--mbox")), "")
    out = tmp_path / ("out" if kind != "mbox" else "mbox")
    if kind == "output-dir":
        out.mkdir()
    args = [a.replace("{out}", str(out)) for a in fault.args]
    with ScriptedServer(fault.script, timeout=3.0) as server:
        record = server._event  # the server keeps what it sends: only a sample of that, so
        monkeypatch.setattr(server, "_event",  # that tracemalloc measures popctl's memory
                            lambda who, data: record(who, data[:4096] if who == "S" else data))
        if fault.max_memory is not None:
            tracemalloc.start()
        started = time.monotonic()
        try:
            result = run(server, args, fault.timeout)
            elapsed = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1] if fault.max_memory is not None else 0
        finally:
            tracemalloc.stop()
    # Exit status and one clean line.
    assert result.exit_code == fault.exit, (result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit | None), result.exception
    assert "Traceback" not in result.stderr
    if fault.error is None:
        assert "Error" not in result.stderr, result.stderr
    else:
        allowed = (fault.error,) if isinstance(fault.error, str) else fault.error
        allowed = tuple(line.replace("{port}", str(server.port)) for line in allowed)
        assert result.stderr in [f"{line}\n" for line in allowed], result.stderr
    assert "\x00" not in result.stderr
    if fault.stdout is not None:
        assert result.stdout == fault.stdout
    elif fault.exit:
        assert result.stdout == ""
    # Bounded time and memory.
    assert elapsed < fault.timeout + 1.5, f"took {elapsed:.2f} s"
    if fault.max_memory is not None:
        assert peak < fault.max_memory, f"peak {peak} bytes"
    # QUIT only when it should have been sent: otherwise the server rolls back deletions.
    lines = server.received.split(b"\r\n")
    assert (b"QUIT" in lines) == fault.quit, server.received[-200:]
    if PASSWORD.encode() in server.received:  # sent once, in the login, never again
        assert server.received.count(PASSWORD.encode()) == 1
    # Nothing partial in the store: exactly the complete messages.
    if kind:
        assert stored_messages(kind, out) == sorted(fault.stored)
    else:
        assert not _files(tmp_path)


def test_matrix_ids_are_unique() -> None:
    assert len({f.id for f in FAULTS}) == len(FAULTS)
