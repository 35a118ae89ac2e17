"""The sans-IO protocol core: whole input, byte at a time, trailing data, and fuzzed splits."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popctl.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    PopctlError,
    RemoteProtocolError,
)
from popctl.protocol import (
    CLOSED,
    MAX_STATUS_LINE,
    NEED_DATA,
    Challenge,
    Command,
    Data,
    EndOfData,
    Event,
    Greeting,
    POP3Protocol,
    Reply,
    State,
    parse_status,
)


def stuff(body: bytes) -> bytes:
    """Dot-stuff a CRLF body the way a server must (RFC 1939 section 3)."""
    lines = body.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)


def drain(protocol: POP3Protocol) -> list[Event]:
    events = []
    while (event := protocol.next_event()) is not NEED_DATA:
        events.append(event)
        if event is CLOSED:
            break
    return events


def feed(protocol: POP3Protocol, data: bytes, chunks: list[int] | None = None) -> list[Event]:
    """Feed ``data`` whole, or cut at the given sizes; collect every event."""
    events: list[Event] = []
    if chunks is None:
        protocol.receive_data(data)
        return drain(protocol)
    pos = 0
    for size in chunks:
        if pos >= len(data):
            break
        protocol.receive_data(data[pos:pos + size])
        pos += size
        events += drain(protocol)
    if pos < len(data):
        protocol.receive_data(data[pos:])
        events += drain(protocol)
    return events


def merge_data(events: list[Event]) -> list[Event]:
    """Adjacent Data events joined: how a body is split must not matter."""
    merged: list[Event] = []
    for event in events:
        if isinstance(event, Data) and merged and isinstance(merged[-1], Data):
            merged[-1] = Data(event.command, merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def logged_in() -> POP3Protocol:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK ready\r\n")
    assert isinstance(protocol.next_event(), Greeting)
    protocol.send(Command("USER", ("u",)))
    protocol.send(Command("PASS", ("p",)))
    protocol.receive_data(b"+OK\r\n+OK\r\n")
    drain(protocol)
    assert protocol.state is State.TRANSACTION
    return protocol


SESSION = (
    b"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n"
    b"+OK\r\n"
    b"+OK logged in\r\n"
    b"+OK 2 320\r\n"
    b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n"
    b"+OK 120 octets\r\nSubject: x\r\n\r\n..dot\r\nline\r\n.\r\n"
    b"-ERR [SYS/TEMP] try later\r\n"
)


def run_session(chunks: list[int] | None) -> list[Event]:
    protocol = POP3Protocol()
    commands = [Command("USER", ("mrose",)), Command("PASS", ("secret pw",)), Command("STAT"),
                Command("LIST"), Command("RETR", ("1",)), Command("DELE", ("1",))]
    sent = b"".join(protocol.send(c) for c in commands[:2])
    assert sent == b"USER mrose\r\nPASS secret pw\r\n"
    events: list[Event] = []
    # Transaction commands may only be sent once PASS succeeded: feed up to that point first.
    head_end = SESSION.index(b"+OK 2 320")
    events += feed(protocol, SESSION[:head_end], chunks)
    for command in commands[2:]:
        protocol.send(command)
    events += feed(protocol, SESSION[head_end:], chunks)
    return merge_data(events)


EXPECTED_KINDS = [
    ("Greeting", None), ("Reply", "USER"), ("Reply", "PASS"), ("Reply", "STAT"),
    ("Reply", "LIST"), ("Data", "LIST"), ("EndOfData", "LIST"),
    ("Reply", "RETR"), ("Data", "RETR"), ("EndOfData", "RETR"), ("Reply", "DELE"),
]


def kinds(events: list[Event]) -> list[tuple[str, str | None]]:
    out = []
    for event in events:
        command = getattr(event, "command", None)
        out.append((type(event).__name__, command.verb if command else None))
    return out


def test_whole_session_at_once() -> None:
    events = run_session(None)
    assert kinds(events) == EXPECTED_KINDS
    greeting = events[0]
    assert isinstance(greeting, Greeting)
    assert greeting.timestamp == "<1896.697170952@dbc.mtview.ca.us>"
    assert isinstance(events[5], Data) and events[5].data == b"1 120\r\n2 200\r\n"
    assert isinstance(events[8], Data) and events[8].data == b"Subject: x\r\n\r\n.dot\r\nline\r\n"
    last = events[-1]
    assert isinstance(last, Reply) and not last.ok
    assert (last.code, last.text) == ("SYS/TEMP", "try later")


def test_one_byte_at_a_time() -> None:
    assert run_session([1] * len(SESSION)) == run_session(None)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
def test_any_split_gives_the_same_events(chunks: list[int]) -> None:
    assert run_session(chunks) == run_session(None)


def test_trailing_data_stays_buffered() -> None:
    protocol = logged_in()
    protocol.send(Command("NOOP"))
    events = feed(protocol, b"+OK\r\n+OK extra")
    assert kinds(events) == [("Reply", "NOOP")]
    assert protocol.trailing_data() == b"+OK extra"
    assert protocol.buffered == len(b"+OK extra")


def test_greeted_and_receiving_say_what_is_awaited() -> None:
    """The session's clocks read these: a status line (greeting or reply) or a reply's data."""
    protocol = POP3Protocol()
    assert not protocol.greeted
    feed(protocol, b"+OK hi\r\n")
    assert protocol.greeted and protocol.receiving is None
    protocol.send(Command("CAPA"))
    feed(protocol, b"+OK\r\nTOP\r\n")
    assert protocol.receiving is not None and protocol.receiving.verb == "CAPA"


def test_reply_with_nothing_pending_is_the_servers_error() -> None:
    protocol = logged_in()
    protocol.receive_data(b"+OK surprise\r\n")
    with pytest.raises(RemoteProtocolError, match="no command was waiting"):
        protocol.next_event()


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_dot_stuffing_round_trip(body: bytes) -> None:
    # Any bytes as body lines (CRLF-terminated), stuffed by the server, unstuffed by us.
    lines = body.replace(b"\r", b"").split(b"\n")
    text = b"".join(line + b"\r\n" for line in lines)
    protocol = logged_in()
    protocol.send(Command("RETR", ("1",)))
    events = merge_data(feed(protocol, b"+OK\r\n" + stuff(text) + b".\r\n"))
    data = b"".join(e.data for e in events if isinstance(e, Data))
    assert data == text
    assert isinstance(events[-1], EndOfData)


@given(st.binary(max_size=600), st.lists(st.integers(min_value=1, max_value=7), max_size=200))
def test_dot_stuffing_round_trip_split(body: bytes, chunks: list[int]) -> None:
    lines = body.replace(b"\r", b"").split(b"\n")
    text = b"".join(line + b"\r\n" for line in lines)
    protocol = logged_in()
    protocol.send(Command("RETR", ("1",)))
    events = feed(protocol, b"+OK\r\n" + stuff(text) + b".\r\n", chunks)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == text
    assert isinstance(events[-1], EndOfData)


@pytest.mark.parametrize("cut", range(1, 6))
def test_terminator_split_across_reads(cut: int) -> None:
    tail = b"end\r\n.\r\n"
    protocol = logged_in()
    protocol.send(Command("TOP", ("1", "0")))
    protocol.receive_data(b"+OK\r\nHeader: v\r\n" + tail[:-cut])
    first = drain(protocol)
    assert not any(isinstance(e, EndOfData) for e in first)
    protocol.receive_data(tail[-cut:])
    events = merge_data(first + drain(protocol))
    assert isinstance(events[-1], EndOfData)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"Header: v\r\nend\r\n"


def test_long_body_line_is_delivered_in_pieces() -> None:
    protocol = logged_in()
    protocol.send(Command("RETR", ("1",)))
    protocol.receive_data(b"+OK\r\n")
    drain(protocol)
    received = b""
    for _ in range(100):  # 1 MB line with no line end yet: must not be buffered whole
        protocol.receive_data(b"x" * 10_000)
        events = drain(protocol)
        assert events and all(isinstance(e, Data) for e in events)
        received += b"".join(e.data for e in events if isinstance(e, Data))
    assert received == b"x" * 1_000_000
    protocol.receive_data(b"\r\n.\r\n")
    assert isinstance(drain(protocol)[-1], EndOfData)


def test_overlong_status_line_is_refused() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK " + b"a" * MAX_STATUS_LINE)
    with pytest.raises(RemoteProtocolError, match="longer than"):
        protocol.next_event()


def test_status_line_just_under_the_limit_is_fine() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK " + b"a" * (MAX_STATUS_LINE - 7) + b"\r\n")
    event = protocol.next_event()
    assert isinstance(event, Greeting) and len(event.text) == MAX_STATUS_LINE - 7


def test_bare_lf_lines_are_accepted() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK hi\n")
    assert isinstance(protocol.next_event(), Greeting)
    protocol.send(Command("CAPA"))
    events = merge_data(feed(protocol, b"+OK\nTOP\nUIDL\n.\n"))
    assert kinds(events) == [("Reply", "CAPA"), ("Data", "CAPA"), ("EndOfData", "CAPA")]
    assert isinstance(events[1], Data) and events[1].data == b"TOP\nUIDL\n"


def test_err_to_multiline_command_is_single_line() -> None:
    protocol = logged_in()
    protocol.send(Command("RETR", ("9",)))
    protocol.send(Command("NOOP"))
    events = feed(protocol, b"-ERR no such message\r\n+OK\r\n")
    assert kinds(events) == [("Reply", "RETR"), ("Reply", "NOOP")]


def test_list_with_argument_is_single_line() -> None:
    assert not Command("LIST", ("1",)).multiline
    assert Command("LIST").multiline
    assert not Command("UIDL", ("1",)).multiline
    assert Command("TOP", ("1", "0")).multiline


@pytest.mark.parametrize("arg", ["a\rb", "a\nb", "a\0b", "x\r\nDELE 1"])
def test_cr_lf_nul_in_arguments_are_refused(arg: str) -> None:
    with pytest.raises(LocalProtocolError, match="CR, LF or NUL"):
        Command("USER", (arg,))


def test_command_line_limit() -> None:
    Command("USER", ("u" * (255 - len("USER \r\n")),))
    with pytest.raises(LocalProtocolError, match="255"):
        Command("USER", ("u" * (256 - len("USER \r\n")),))


def test_bad_verb_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        Command("RE TR")
    with pytest.raises(LocalProtocolError):
        Command("")


def test_state_table() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK\r\n")
    protocol.next_event()
    with pytest.raises(LocalProtocolError, match="not allowed in the AUTHORIZATION state"):
        protocol.send(Command("STAT"))
    protocol = logged_in()
    with pytest.raises(LocalProtocolError, match="TRANSACTION"):
        protocol.send(Command("USER", ("x",)))
    protocol.send(Command("QUIT"))
    with pytest.raises(LocalProtocolError, match="UPDATE"):
        protocol.send(Command("NOOP"))


def test_transaction_commands_may_follow_a_pending_login() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK\r\n")
    protocol.next_event()
    with pytest.raises(LocalProtocolError, match="not allowed in the AUTHORIZATION state"):
        protocol.send(Command("UIDL"))  # nothing pending: certainly not logged in
    protocol.send(Command("USER", ("a",)))
    with pytest.raises(LocalProtocolError, match="not allowed in the AUTHORIZATION state"):
        protocol.send(Command("LIST"))  # USER alone logs nobody in
    protocol.send(Command("PASS", ("b",)))
    protocol.send(Command("UIDL"))
    protocol.send(Command("LIST"))
    # The login fails: the pipelined commands are answered -ERR and the state stays put.
    protocol.receive_data(b"+OK\r\n-ERR [AUTH] no\r\n-ERR not yet\r\n-ERR not yet\r\n")
    assert [protocol.next_event().ok for _ in range(4)] == [True, False, False, False]
    assert protocol.state is State.AUTHORIZATION
    with pytest.raises(LocalProtocolError, match="not allowed in the AUTHORIZATION state"):
        protocol.send(Command("LIST"))


def test_nothing_may_follow_stls_until_its_reply() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK\r\n")
    protocol.next_event()
    protocol.send(Command("STLS"))
    with pytest.raises(LocalProtocolError, match="STLS awaits"):
        protocol.send(Command("CAPA"))


def test_data_after_stls_ok_is_refused() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK\r\n")
    protocol.next_event()
    protocol.send(Command("STLS"))
    protocol.receive_data(b"+OK begin TLS\r\n+OK injected\r\n")
    with pytest.raises(RemoteProtocolError, match="injection"):
        protocol.next_event()


def test_stls_ok_alone_is_accepted() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK\r\n")
    protocol.next_event()
    protocol.send(Command("STLS"))
    protocol.receive_data(b"+OK begin TLS\r\n")
    assert isinstance(protocol.next_event(), Reply)
    assert protocol.stls_done


def test_sasl_challenge_and_auth_state() -> None:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK\r\n")
    protocol.next_event()
    auth = Command("AUTH", ("CRAM-MD5",))
    protocol.send(auth)
    protocol.receive_data(b"+ PDEyMzQ+\r\n")
    challenge = protocol.next_event()
    assert challenge == Challenge(auth, "PDEyMzQ+")
    assert protocol.send_auth_response("dXNlciBkaWdlc3Q=") == b"dXNlciBkaWdlc3Q=\r\n"
    protocol.receive_data(b"+OK welcome\r\n")
    assert isinstance(protocol.next_event(), Reply)
    assert protocol.state is State.TRANSACTION


def _greeted() -> POP3Protocol:
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK\r\n")
    protocol.next_event()
    return protocol


def test_commands_follow_an_auth_only_after_its_last_message() -> None:
    protocol = _greeted()
    auth = Command("AUTH", ("PLAIN", "AGEAYg=="))
    protocol.send(auth)
    with pytest.raises(LocalProtocolError, match="AUTH awaits"):
        protocol.send(Command("CAPA"))  # a challenge may come: CAPA would be taken as answer
    protocol.auth_sent_last()
    protocol.send(Command("CAPA"))
    protocol.send(Command("UIDL"))  # legal once logged in, pipelined on that bet
    protocol.receive_data(b"+OK\r\n+OK\r\nTOP\r\n.\r\n+OK\r\n1 a\r\n.\r\n")
    assert protocol.next_event() == Reply(auth, True, "")
    assert protocol.state is State.TRANSACTION
    assert [type(protocol.next_event()) for _ in range(6)] == [
        Reply, Data, EndOfData, Reply, Data, EndOfData]
    assert not protocol.pending


def test_a_refused_auth_leaves_the_pipelined_commands_refused_in_authorization() -> None:
    protocol = _greeted()
    protocol.send(Command("AUTH", ("PLAIN", "AGEAYg==")))
    protocol.auth_sent_last()
    protocol.send(Command("UIDL"))
    protocol.send(Command("LIST"))
    protocol.receive_data(b"-ERR [AUTH] no\r\n-ERR not yet\r\n-ERR not yet\r\n")
    replies = [protocol.next_event() for _ in range(3)]
    assert [r.ok for r in replies if isinstance(r, Reply)] == [False, False, False]
    assert protocol.state is State.AUTHORIZATION
    with pytest.raises(LocalProtocolError, match="not allowed in the AUTHORIZATION state"):
        protocol.send(Command("LIST"))


def test_a_challenge_after_the_last_message_takes_the_next_command_as_its_answer() -> None:
    """An OAuth error (RFC 7628 3.2.2) comes as a challenge: the server reads the first line
    pipelined behind the token as the answer, which then gets no reply of its own."""
    protocol = _greeted()
    auth = Command("AUTH", ("XOAUTH2", "dG9rZW4="))
    capa, uidl = Command("CAPA"), Command("UIDL")
    protocol.send(auth)
    protocol.auth_sent_last()
    protocol.send(capa)
    protocol.send(uidl)
    protocol.receive_data(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n-ERR [AUTH] bad token\r\n"
                          b"-ERR not yet\r\n")
    assert protocol.next_event() == Challenge(auth, "eyJzdGF0dXMiOiI0MDEifQ==", capa)
    assert protocol.pending == (auth, uidl)
    with pytest.raises(LocalProtocolError, match="behind pipelined commands"):
        protocol.send_auth_response("")
    assert protocol.next_event() == Reply(auth, False, "bad token", "AUTH")
    assert protocol.next_event() == Reply(uidl, False, "not yet")
    assert protocol.state is State.AUTHORIZATION


def test_an_answer_sent_early_takes_the_next_challenge_and_keeps_the_queue() -> None:
    """SCRAM: client-final, the empty line for server-final and the commands go together;
    server-final is answered by that line, so CAPA and UIDL keep their own replies. A challenge
    beyond it would take CAPA as its answer, as behind any last message."""
    protocol = _greeted()
    auth = Command("AUTH", ("SCRAM-SHA-256", "biwsbj1h"))
    capa, uidl = Command("CAPA"), Command("UIDL")
    protocol.send(auth)
    protocol.receive_data(b"+ c2VydmVyLWZpcnN0\r\n")
    assert protocol.next_event() == Challenge(auth, "c2VydmVyLWZpcnN0")
    assert protocol.send_auth_response("Yz1iaXdz") + protocol.send_auth_response(
        "", early=True) == b"Yz1iaXdz\r\n\r\n"
    protocol.auth_sent_last()
    protocol.send(capa)
    protocol.send(uidl)
    protocol.receive_data(b"+ dj1zaWc=\r\n+ bW9yZQ==\r\n")
    assert protocol.next_event() == Challenge(auth, "dj1zaWc=", answered_early=True)
    assert protocol.pending == (auth, capa, uidl)
    assert protocol.next_event() == Challenge(auth, "bW9yZQ==", capa)
    assert protocol.pending == (auth, uidl)


def test_an_early_answer_left_over_is_forgotten_with_the_exchange() -> None:
    protocol = _greeted()
    auth = Command("AUTH", ("SCRAM-SHA-256", "biwsbj1h"))
    protocol.send(auth)
    protocol.send_auth_response("", early=True)
    protocol.receive_data(b"-ERR [AUTH] no\r\n")
    assert protocol.next_event() == Reply(auth, False, "no", "AUTH")
    second = Command("AUTH", ("PLAIN", "AGEAYg=="))
    protocol.send(second)
    protocol.receive_data(b"+ \r\n")
    assert protocol.next_event() == Challenge(second, "")  # answered by nothing yet


def test_the_last_message_is_declared_only_for_a_pending_auth() -> None:
    protocol = _greeted()
    with pytest.raises(LocalProtocolError, match="no AUTH"):
        protocol.auth_sent_last()
    protocol.send(Command("USER", ("a",)))
    with pytest.raises(LocalProtocolError, match="no AUTH"):
        protocol.auth_sent_last()


def test_eof_while_waiting_is_a_lost_connection() -> None:
    # Exit status 4 like a reset, not 6: a dropped connection is no protocol violation.
    protocol = logged_in()
    protocol.send(Command("STAT"))
    protocol.receive_data(b"")
    with pytest.raises(ConnectionClosedError, match="closed the connection"):
        protocol.next_event()


def test_eof_mid_body() -> None:
    protocol = logged_in()
    protocol.send(Command("RETR", ("1",)))
    protocol.receive_data(b"+OK\r\npartial")
    drain(protocol)
    protocol.receive_data(b"")
    with pytest.raises(ConnectionClosedError, match="middle of the reply to RETR"):
        protocol.next_event()


def test_eof_after_quit_is_clean() -> None:
    protocol = logged_in()
    protocol.send(Command("QUIT"))
    events = feed(protocol, b"+OK bye\r\n")
    protocol.receive_data(b"")
    assert kinds(events) == [("Reply", "QUIT")]
    assert protocol.next_event() is CLOSED


@pytest.mark.parametrize("line", [b"OK", b"+OKAY", b"-ERROR x", b"", b"250 hello", b"+ x"])
def test_garbage_status_lines(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_status(line)


def test_status_parsing() -> None:
    assert parse_status(b"+OK") == (True, "", None)
    assert parse_status(b"-ERR [IN-USE] locked") == (False, "locked", "IN-USE")
    assert parse_status(b"-ERR [sys/perm] gone") == (False, "gone", "SYS/PERM")
    assert parse_status(b"+ok lower case") == (True, "lower case", None)
    ok, text, _ = parse_status(b"-ERR bad \x1b[31mred\x00 \xff")
    assert not ok and "\x1b" not in text and "\x00" not in text


def test_redaction() -> None:
    assert Command("PASS", ("hunter2",)).redacted() == "PASS ***"
    assert Command("APOP", ("u", "digest")).redacted() == "APOP ***"
    assert Command("AUTH", ("PLAIN", "AHUAcA==")).redacted() == "AUTH PLAIN ***"
    assert "hunter2" not in repr(Command("PASS", ("hunter2",)))


@given(st.integers(min_value=-10**300, max_value=10**300)
       | st.integers(min_value=0, max_value=10**9),
       st.integers(min_value=-10, max_value=10**6))
@settings(max_examples=200)
def test_top_is_the_checked_command(message: int, lines: int) -> None:
    # The batch's unchecked TOP is the same command as the checked one, or the same error.
    try:
        checked = Command("TOP", (str(message), str(lines)))
    except LocalProtocolError as e:
        with pytest.raises(LocalProtocolError, match=re.escape(str(e))):
            Command.top(message, lines)
        return
    fast = Command.top(message, lines)
    assert (fast.verb, fast.args, fast.encode(), fast.multiline, fast.redacted()) == (
        checked.verb, checked.args, checked.encode(), checked.multiline, checked.redacted())
    assert fast == checked and hash(fast) == hash(checked)


@given(st.binary(max_size=3000), st.lists(st.integers(min_value=1, max_value=500), max_size=50))
@settings(max_examples=300)
def test_fuzz_only_our_errors_escape(data: bytes, chunks: list[int]) -> None:
    protocol = POP3Protocol()
    try:
        events = feed(protocol, data, chunks)
        if events and isinstance(events[0], Greeting) and events[0].ok:
            protocol.send(Command("USER", ("u",)))
            protocol.send(Command("PASS", ("p",)))
            drain(protocol)
    except PopctlError:
        pass
    assert len(protocol._buf) <= len(data) + 1


# --- whole_data: a complete multi-line reply at once, the same as its events ---------------------

_WIRE_PIECES = st.sampled_from([b"\r\n", b"\n", b".", b"..", b"\r", b"x", b"+OK", b".\r\n",
                                b"\n.\r\n", b"\n.\n", b"\r\n.\r\n+OK\r\n", b"\n..\r\n"])


def events_of(protocol: POP3Protocol) -> list[Event]:
    """Every event the protocol gives until it needs data, the data merged (an error raised on
    the way stands as a last Data event, so that two paths can be compared)."""
    events: list[Event] = []
    try:
        while (event := protocol.next_event()) is not NEED_DATA:
            events.append(event)
    except PopctlError as e:  # the same error either way
        events.append(Data(Command("NOOP"), repr(e).encode()))
    return merge_data(events)


@given(st.lists(_WIRE_PIECES | st.binary(max_size=8), max_size=40),
       st.integers(min_value=0, max_value=400))
@settings(max_examples=200)
def test_whole_data_is_the_events_data_joined(pieces: list[bytes], cut: int) -> None:
    # Whatever follows the +OK (stuffed or not, CRLF or LF, a terminator or none, cut anywhere),
    # whole_data either returns what the events' data joined gives, leaving the same events
    # after it, or returns None and consumes nothing.
    wire = b"+OK\r\n" + b"".join(pieces)
    wire = wire[:len(wire) - cut] if cut < len(wire) - 5 else wire[:5]

    def started() -> POP3Protocol:
        protocol = logged_in()
        protocol.send(Command("TOP", ("1", "0")))
        protocol.send(Command("TOP", ("2", "0")))
        protocol.receive_data(wire)
        assert isinstance(protocol.next_event(), Reply)
        return protocol

    fast = started()
    whole = fast.whole_data()
    slow = events_of(started())
    if whole is None:
        assert events_of(fast) == slow
        return
    end = next(i for i, e in enumerate(slow) if isinstance(e, EndOfData))
    assert slow[end].command is not None and slow[end].command.args == ("1", "0")
    assert whole == b"".join(e.data for e in slow[:end] if isinstance(e, Data))
    assert fast.receiving is None
    assert kinds(events_of(fast)) == kinds(slow[end + 1:])


@given(st.lists(st.binary(max_size=12) | st.sampled_from([b".", b"..", b".x", b""]),
                max_size=20), st.booleans())
@settings(max_examples=200)
def test_whole_data_unstuffs_a_complete_reply(lines: list[bytes], crlf: bool) -> None:
    end = b"\r\n" if crlf else b"\n"
    lines = [line.replace(b"\r", b"").replace(b"\n", b"") for line in lines]
    body = b"".join(line + end for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + end for line in lines)
    protocol = logged_in()
    protocol.send(Command("TOP", ("1", "0")))
    protocol.receive_data(b"+OK" + end + stuffed + b"." + end)
    assert isinstance(protocol.next_event(), Reply)
    whole = protocol.whole_data()
    if whole is None:  # only when the first line starts with a dot
        assert stuffed.startswith(b".")
        events = drain(protocol)
        whole = b"".join(e.data for e in events if isinstance(e, Data))
    assert whole == body
    assert protocol.receiving is None and protocol.buffered == 0


def test_whole_data_of_a_batch_of_replies() -> None:
    protocol = logged_in()
    commands = [Command("TOP", (str(n), "0")) for n in range(1, 5)]
    for command in commands:
        protocol.send(command)
    protocol.receive_data(b"+OK\r\nA: 1\r\n\r\n.\r\n+OK\r\n.\r\n+OK 3\r\n..B: 3\r\n.\r\n"
                          b"+OK\nC: 4\n..\n.\n")
    got: list[bytes | None] = []
    for command in commands:
        reply = protocol.next_event()
        assert isinstance(reply, Reply) and reply.command is command
        got.append(protocol.whole_data())
        if got[-1] is None:  # read by events instead
            assert kinds(drain_reply(protocol)) == [("Data", "TOP"), ("EndOfData", "TOP")]
    # The third starts with a stuffed dot: left to the events; a stuffed line further on is not.
    assert got == [b"A: 1\r\n\r\n", b"", None, b"C: 4\n.\n"]
    assert protocol.receiving is None and protocol.buffered == 0


def drain_reply(protocol: POP3Protocol) -> list[Event]:
    events = [protocol.next_event()]
    while not isinstance(events[-1], EndOfData):
        events.append(protocol.next_event())
    return events


@given(st.lists(st.sampled_from([b"+OK\r\n", b"+OK 12 octets\r\n", b"-ERR no\r\n", b"+OK [X] y\n",
                                 b"+NO\r\n", b"A: 1\r\n", b"..b\r\n", b".\r\n", b".\n", b"\r\n",
                                 b"\n.", b"x"]), max_size=30),
       st.integers(min_value=0, max_value=200))
@settings(max_examples=200)
def test_next_whole_reply_is_next_event_in_one(pieces: list[bytes], cut: int) -> None:
    # Whatever the server sent (cut anywhere), a reply read by next_whole_reply is the Reply and
    # the joined Data of next_event up to EndOfData, leaving the same events after it; None
    # leaves everything to next_event.
    wire = b"".join(pieces)
    wire = wire[:max(0, len(wire) - cut)]
    commands = [Command("TOP", (str(n), "0")) for n in range(1, 4)]

    def started() -> POP3Protocol:
        protocol = logged_in()
        for command in commands:
            protocol.send(command)
        protocol.receive_data(wire)
        return protocol

    fast, slow = started(), events_of(started())
    got = fast.next_whole_reply(commands[0])
    if got is None:
        assert events_of(fast) == slow
        return
    reply, data = got
    assert slow[0] == reply and reply.ok
    end = next(i for i, e in enumerate(slow) if isinstance(e, EndOfData))
    assert data == b"".join(e.data for e in slow[1:end] if isinstance(e, Data))
    assert events_of(fast) == slow[end + 1:]
    assert fast.next_whole_reply(commands[0]) is None  # no longer the oldest pending


def test_next_whole_reply_leaves_incomplete_and_failed_replies_to_next_event() -> None:
    protocol = logged_in()
    top, dele = Command("TOP", ("1", "0")), Command("DELE", ("1",))
    protocol.send(top)
    protocol.send(dele)
    protocol.receive_data(b"+OK\r\nA: 1\r\n")
    assert protocol.next_whole_reply(top) is None
    assert protocol.next_whole_reply(dele) is None  # not the oldest, nor multi-line
    protocol.receive_data(b".\r\n+OK\r\n")
    assert protocol.next_whole_reply(top) == (Reply(top, True, ""), b"A: 1\r\n")
    assert protocol.next_whole_reply(dele) is None
    assert protocol.next_event() == Reply(dele, True, "")


# --- send_many and next_whole_replies: a window at once, the same as one command at a time -------

_VERBS = st.sampled_from(["TOP", "TOP", "DELE", "LIST", "UIDL", "NOOP", "RETR", "QUIT", "STLS",
                          "AUTH", "USER", "PASS", "CAPA", "XTND"])


def _prepared(where: str, first: str | None) -> POP3Protocol:
    """A protocol greeted, logged in, logged in with a reply left unread, or with a PASS
    pending; and with ``first`` sent before the window (a QUIT, STLS or AUTH still pending)."""
    if where == "greeted":
        protocol = _greeted()
    elif where == "pending-pass":
        protocol = _greeted()
        protocol.send(Command("USER", ("u",)))
        protocol.send(Command("PASS", ("p",)))
    else:
        protocol = logged_in()
        if where == "stray":  # bytes no command asked for
            protocol.receive_data(b"+OK stray\r\n")
    if first is not None:
        # Refused: STLS or AUTH once logged in, anything after stray bytes.
        with contextlib.suppress(PopctlError):
            protocol.send(Command(first, ("PLAIN",) if first == "AUTH" else ()))
    return protocol


@given(st.lists(_VERBS, max_size=12),
       st.sampled_from(["greeted", "logged-in", "stray", "pending-pass"]),
       st.sampled_from([None, None, "NOOP", "QUIT", "STLS", "AUTH"]))
@settings(max_examples=200)
def test_send_many_is_send_in_turn(verbs: list[str], where: str, first: str | None) -> None:
    commands = [Command(verb, ("1", "0") if verb == "TOP" else ("1",) if verb in
                        ("DELE", "RETR", "USER", "PASS") else ()) for verb in verbs]

    def outcome(send: Callable[[POP3Protocol], bytes]) -> tuple[object, ...]:
        protocol = _prepared(where, first)
        try:
            result: object = send(protocol)
        except PopctlError as e:
            result = repr(e)
        return result, protocol.pending, protocol.state

    one_by_one = outcome(lambda p: b"".join(p.send(c) for c in commands))
    assert outcome(lambda p: p.send_many(commands)) == one_by_one


_LINE_END = st.sampled_from([b"\r\n", b"\r\n", b"\n"])
# A reply as a server may send it: a status line, and after +OK lines (some stuffed, some
# with a dot inside) and a terminator, each line ending in CRLF or LF; or a stray piece.
_SERVER_REPLY = st.one_of(
    st.tuples(st.sampled_from([b"+OK", b"+OK", b"+OK 12 octets", b"+OK [X] y", b"-ERR no"]),
              _LINE_END,
              st.lists(st.tuples(st.sampled_from([b"A: 1", b"..b", b"x.y", b"", b"..", b"B"]),
                                 _LINE_END), max_size=4),
              st.sampled_from([b".\r\n", b".\r\n", b".\n", b"", b".", b".\r"])).map(
        lambda r: r[0] + r[1] if r[0].startswith(b"-") else
        r[0] + r[1] + b"".join(line + end for line, end in r[2]) + r[3]),
    st.sampled_from([b"\r", b"\n.", b"x", b".\r\n", b"+OK\r\n"]))


@given(st.lists(_SERVER_REPLY, max_size=10), st.integers(min_value=0, max_value=30),
       st.lists(st.sampled_from(["TOP", "TOP", "TOP", "LIST", "DELE"]), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=9))
@settings(max_examples=200)
def test_next_whole_replies_is_next_whole_reply_in_turn(replies: list[bytes], cut: int,
                                                         verbs: list[str], limit: int) -> None:
    # Whatever the server sent (cut anywhere), next_whole_replies gives what next_whole_reply
    # gives for the oldest pending command, called again until it gives None or ``limit``
    # replies, and leaves the same events after them.
    wire = b"".join(replies)
    wire = wire[:max(0, len(wire) - cut)]
    commands = [Command(verb, ("1", "0") if verb == "TOP" else ("1",) if verb == "DELE" else ())
                for verb in verbs]

    def started() -> POP3Protocol:
        protocol = logged_in()
        protocol.send_many(commands)
        protocol.receive_data(wire)
        return protocol

    fast, slow = started(), started()
    try:
        got: object = fast.next_whole_replies(limit)
    except PopctlError as e:
        got = repr(e)
    expected: list[tuple[Reply, bytes]] = []
    try:
        while len(expected) < limit and slow.pending:
            whole = slow.next_whole_reply(slow.pending[0])
            if whole is None:
                break
            expected.append(whole)
    except PopctlError as e:
        assert got == repr(e)
        return
    assert got == expected
    assert all(a[0].command is b[0].command for a, b in zip(got, expected, strict=True))
    assert events_of(fast) == events_of(slow)


def test_next_whole_replies_reads_a_window_of_tops_at_once() -> None:
    protocol = logged_in()
    commands = [Command.top(n, 0) for n in range(1, 6)]
    protocol.send_many(commands)
    protocol.receive_data(b"+OK\r\nA: 1\r\n\r\n.\r\n+OK\r\n.\r\n+OK\r\nB: x.y\r\n.\r\n"
                          b"+OK\r\n..C: 4\r\n.\r\n+OK\r\nD: 5\r\n")
    got = protocol.next_whole_replies(10)
    # The fourth starts with a stuffed dot: left to the events, as the fifth, not all here.
    assert got == [(Reply(commands[0], True, ""), b"A: 1\r\n\r\n"),
                   (Reply(commands[1], True, ""), b""),
                   (Reply(commands[2], True, ""), b"B: x.y\r\n")]
    assert protocol.pending == tuple(commands[3:])
    assert protocol.next_whole_replies(1) == []
    assert kinds(drain_reply(protocol)) == [("Reply", "TOP"), ("Data", "TOP"), ("EndOfData", "TOP")]
