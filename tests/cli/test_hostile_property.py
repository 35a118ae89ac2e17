"""Property: no server reply and no header makes popctl misbehave (issue 11, "Proof").

A lenient model POP3 server on 127.0.0.1 serves a small mailbox whose header bytes Hypothesis
draws (hostile encoded-words, control characters, quoting, arbitrary bytes), and replaces chosen
replies with arbitrary bytes or hangs up after them. For every command popctl users run from
cron or a pipe, the run must:

* end within its deadline (the read timeout plus a margin: a hang guard, not a speed target);
* exit with a documented status that a server can cause (0, 3, 4, 5, 6, 75), never "internal error";
* print valid UTF-8 JSON (or NDJSON) on stdout whenever it exits 0 with a JSON format;
* put no raw control character from the server on stderr.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popctl.cli import cli

PASSWORD = "s3cret-Passw0rd"
TIMEOUT = 0.5  # popctl's --timeout in these runs: a stalled reply costs this much
DEADLINE = 10.0  # hang guard for one whole run (login, listing, headers, QUIT)

# Exit statuses a server (not the user, not the local disk) may cause: see errors.ExitCode.
SERVER_CAUSED = {0, 3, 4, 5, 6, 75}

# Raw control characters that must never reach a terminal from server text (TAB and LF are
# popctl's own layout).
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

HOSTILE_WORDS = [
    #U7
    #UE
    #RUE
    b"=?punycode?q?abc-" + b"a" * 200 + b"?=",
    b"=?x-unknown?b?AAAA?=",
    b"=?utf-8?b?4oCu?=",  # U+202E
    b"=?utf-8?q?=1B[2J?=",
    b"=?iso-8859-1?q?caf=E9?=",
    b"=?utf-8?B?not base64?=",
    b"\"Garcia, Trent\" <t@x.example>",
    b"\"unbalanced <a@b>",
    b"<>",
    b"a@b, c@d, \"e, f\" <g@h>",
    b"\x1b]0;title\x07",
    b"\xc2\x9b31m",
    b"\xff\xfe\x00",
    b"Mon, 32 Foo 99999 25:61:61 +9999",
    b"Tue, 1 Jan 1970 00:00:00 -0000",
    b"\r\n continued",
]

header_value = st.lists(st.one_of(st.sampled_from(HOSTILE_WORDS),
                                  st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"")
                                                             .replace(b"\n", b""))),
                        max_size=4).map(b" ".join)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    fields = [(name, draw(header_value)) for name in (b"From", b"Subject", b"Date")]
    extra = draw(st.lists(st.tuples(st.sampled_from([b"Message-ID", b"To", b"X-Junk"]),
                                    header_value), max_size=2))
    head = b"".join(name + b": " + value + b"\r\n" for name, value in [*fields, *extra])
    body = draw(st.sampled_from([b"body\r\n", b".leading dot\r\n..\r\n", b"",
                                 b"x" * 300 + b"\r\n"]))
    return head + b"\r\n" + body


REPLY_PIECES = [b"+OK\r\n", b"-ERR no\r\n", b"-ERR [IN-USE] busy\r\n", b".\r\n", b"\r\n",
                b"+OK 1 10\r\n", b"1 10\r\n", b"1 uid\r\n", b"9223372036854775807 1\r\n",
                b"1 99999999999999999999\r\n", b"-1 5\r\n", b"+ \r\n", b"+OK\n", b"\x1b[2J",
                b"-ERR " + PASSWORD.encode() + b"\r\n", b"\xc2\x9b\x7f\r\n", b"+OK \x00\r\n"]
reply_bytes = st.lists(st.one_of(st.sampled_from(REPLY_PIECES), st.binary(max_size=30)),
                       min_size=1, max_size=6).map(b"".join)


@dataclass
class Plan:
    """What the model server does: its mailbox, its CAPA and the replies it breaks."""

    mailbox: list[bytes]
    uidl: bool
    pipelining: bool
    faults: dict[int, bytes] = field(default_factory=dict)  # reply index -> bytes sent instead
    hang_up_after: int | None = None  # close the connection after this reply index


plans = st.builds(
    Plan,
    mailbox=st.lists(messages(), min_size=0, max_size=3),
    uidl=st.booleans(),
    pipelining=st.booleans(),
    faults=st.dictionaries(st.integers(0, 14), reply_bytes, max_size=2),
    hang_up_after=st.one_of(st.none(), st.integers(0, 14)),
)

COMMANDS = [
    ("stat", "--format", "json"),
    ("list", "--format", "json"),
    ("list", "--format", "ndjson"),
    ("list", "--format", "csv"),
    ("list",),
    ("uidl", "--format", "json"),
    ("top", "1", "--format", "json"),
    ("retr", "1"),
    ("dele", "1", "--yes", "--format", "json"),
    ("dele", "--larger-than", "1", "--yes", "--format", "json"),
    ("rset",),
]


def _stuffed(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


class ModelServer:
    """One connection, one reply per command line, in order (so pipelining just works)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(DEADLINE)
        self.port = self.listener.getsockname()[1]
        self.deleted: set[int] = set()
        self.got_password = False  # a server can only quote back a password it was sent
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _answer(self, line: bytes) -> bytes:
        words = line.split()
        self.got_password |= PASSWORD.encode() in line
        verb = words[0].upper() if words else b""
        args = words[1:]
        box = self.plan.mailbox
        live = [n for n in range(1, len(box) + 1) if n not in self.deleted]

        def number() -> int | None:
            try:
                n = int(args[0])
            except (IndexError, ValueError):
                return None
            return n if n in live else None

        if verb == b"CAPA":
            capa = [b"TOP", b"USER"] + [b"UIDL"] * self.plan.uidl
            capa += [b"PIPELINING"] * self.plan.pipelining
            return b"+OK\r\n" + b"".join(c + b"\r\n" for c in capa) + b".\r\n"
        if verb in (b"USER", b"PASS", b"NOOP"):
            return b"+OK\r\n"
        if verb == b"STAT":
            return b"+OK %d %d\r\n" % (len(live), sum(len(box[n - 1]) for n in live))
        if verb in (b"LIST", b"UIDL") and not (verb == b"UIDL" and not self.plan.uidl):
            def item(n: int) -> bytes:
                return b"%d %d" % (n, len(box[n - 1])) if verb == b"LIST" else b"%d u%d" % (n, n)
            if args:
                n = number()
                return b"+OK " + item(n) + b"\r\n" if n else b"-ERR no such message\r\n"
            return b"+OK\r\n" + b"".join(item(n) + b"\r\n" for n in live) + b".\r\n"
        if verb in (b"TOP", b"RETR"):
            n = number()
            if n is None:
                return b"-ERR no such message\r\n"
            data = box[n - 1]
            if verb == b"TOP":
                head, _, body = data.partition(b"\r\n\r\n")
                count = int(args[1]) if len(args) > 1 and args[1].isdigit() else 0
                data = head + b"\r\n\r\n" + b"".join(
                    line + b"\r\n" for line in body.split(b"\r\n")[:count] if line)
            return b"+OK\r\n" + _stuffed(data) + b".\r\n"
        if verb == b"DELE":
            n = number()
            if n is None:
                return b"-ERR no such message\r\n"
            self.deleted.add(n)
            return b"+OK\r\n"
        if verb == b"RSET":
            self.deleted.clear()
            return b"+OK\r\n"
        if verb == b"QUIT":
            return b"+OK bye\r\n"
        return b"-ERR unknown command\r\n"

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(DEADLINE)
        index = 0
        buffer = b""
        try:
            with conn:
                pending: list[bytes] = [b"+OK model server ready\r\n"]
                while True:
                    for reply in pending:
                        conn.sendall(self.plan.faults.get(index, reply))
                        if index == self.plan.hang_up_after:
                            return
                        index += 1
                    pending = []
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\n" in buffer:
                        line, _, buffer = buffer.partition(b"\n")
                        pending.append(self._answer(line.rstrip(b"\r")))
                        if line.upper().startswith(b"QUIT"):
                            buffer = b""
                            break
        except OSError:
            return

    @contextmanager
    def running(self) -> Iterator[ModelServer]:
        self.thread.start()
        try:
            yield self
        finally:
            self.listener.close()
            self.thread.join(DEADLINE)


def run(plan: Plan, args: tuple[str, ...]) -> tuple[int, bytes, bytes, float, bool]:
    server = ModelServer(plan)
    with server.running():
        options = ["--host", "127.0.0.1", "--port", str(server.port), "--tls", "none",
                   "--allow-plaintext", "--user", "alice", "--timeout", str(TIMEOUT)]
        started = time.monotonic()
        result = CliRunner().invoke(cli, [*options, *args], env={"POPCTL_PASSWORD": PASSWORD})
        elapsed = time.monotonic() - started
    return (result.exit_code, result.stdout_bytes, result.stderr_bytes, elapsed,
            server.got_password)


def check(plan: Plan, args: tuple[str, ...]) -> tuple[int, str]:
    """Run ``args`` against ``plan`` and check the property; return the status and stderr."""
    status, out, err, elapsed, sent_password = run(plan, args)
    text = err.decode("utf-8", "replace")
    assert "internal error" not in text and "Traceback" not in text, text
    assert status in SERVER_CAUSED, (status, text)
    assert elapsed < DEADLINE, elapsed
    if sent_password:  # quoted back by the server: never shown (a greeting cannot know it)
        assert PASSWORD not in text and PASSWORD.encode() not in out
    assert not CONTROL.search(text), repr(text)
    if status == 0 and "--format" in args:
        decoded = out.decode("utf-8")  # strict: valid UTF-8
        kind = args[args.index("--format") + 1]
        if kind == "json":
            json.loads(decoded)
        elif kind == "ndjson":
            for line in decoded.splitlines():
                json.loads(line)
    return status, text


PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(plans, st.sampled_from(COMMANDS))
def test_no_server_reply_breaks_a_command(plan: Plan, args: tuple[str, ...]) -> None:
    check(plan, args)


@PROPERTY
@given(st.lists(messages(), min_size=1, max_size=3), st.sampled_from(COMMANDS))
def test_no_header_breaks_a_command(mailbox: list[bytes], args: tuple[str, ...]) -> None:
    """An honest server with hostile mail: every command succeeds, with valid output."""
    plan = Plan(mailbox=mailbox, uidl=True, pipelining=True)
    status, err = check(plan, args)
    assert status == 0, err


def test_the_model_server_is_a_working_pop3_server() -> None:
    """The property above means nothing if the model server cannot serve a plain listing."""
    plan = Plan(mailbox=[b"From: a@b\r\nSubject: hi\r\n\r\nbody\r\n"], uidl=True,
                pipelining=True)
    status, out, err, _, sent_password = run(plan, ("list", "--format", "json"))
    assert sent_password
    assert status == 0, err
    (record,) = json.loads(out)
    assert record["subject"] == "hi" and record["uid"] == "u1"


def test_top_json_survives_headers_the_email_package_cannot_parse() -> None:
    """Found by the property above: ``Message-ID: <>`` made the email package raise IndexError
    (an internal error for ``top --format json``); an 8-bit field name or a UTF-7 surrogate
    made JSON that cannot be written."""
    message = (b"From: a@b\r\nMessage-ID: <>\r\nSubject: =?utf-7?q?+2AA-?=\r\n"
               b"X-\xff\xfe: v\r\n\r\nbody\r\n")
    plan = Plan(mailbox=[message], uidl=True, pipelining=True)
    status, err = check(plan, ("top", "1", "--format", "json"))
    assert status == 0, err
    status, out, _, _, _ = run(plan, ("top", "1", "--format", "json"))
    headers = {h["name"]: h["value"] for h in json.loads(out)["headers"]}
    assert headers["Message-ID"] == "<>" and headers["From"] == "a@b"
    assert headers["Subject"] == "\ufffd"
