"""TLS mistakes name their fix, and --trace shows the start of a long reply, not all of it
(issue 16, "Progress and messages").

Each case runs the command line against the strict scripted server
(tests/support/scripted_server.py):
implicit TLS against a plain port, STARTTLS or plain against an implicit-TLS port (silent, or
answering with a TLS record), a certificate rejected (what to pin and how to see it), and a
3,000-line message under --trace (abbreviated, or whole with POPCTL_TRACE_ALL=1).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from popctl.cli import cli
from popctl.sandbox import SandboxServer
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    expect,
    expect_eof,
    send,
    stall,
    starttls,
)

PASSWORD = "s3cret"
GREET = send(b"+OK POP3 ready\r\n")


def run(server: ScriptedServer, tls: str, *args: str, env: dict[str, str] | None = None,
        timeout: str = "0.5") -> Result:
    options = ["--host", "localhost", "--port", str(server.port), "--tls", tls,
               "--user", "alice", "--timeout", timeout]
    return CliRunner().invoke(cli, [*options, *args],
                              env={"POPCTL_PASSWORD": PASSWORD, **(env or {})})


def error(result: Result) -> tuple[int, str, str]:
    return result.exit_code, result.stdout, result.stderr


# --- implicit TLS against a plain port --------------------------------------------------------


@pytest.mark.parametrize("greeting", [b"+OK POP3 ready\r\n", b"-ERR too busy\r\n"])
def test_implicit_tls_against_a_plain_port_says_use_starttls(greeting: bytes) -> None:
    # Before: "TLS handshake with localhost failed: [SSL: WRONG_VERSION_NUMBER] wrong version
    # number (_ssl.c:1006)".
    with ScriptedServer([send(greeting), stall(2)], timeout=2.0) as server:
        result = run(server, "implicit", "stat")
    assert error(result) == (
        4, "", f"Error: localhost:{server.port} did not answer in TLS (it looks like a plain "
               "POP3 port): use --tls starttls, or the implicit-TLS port (995)\n")


# --- STARTTLS or no TLS against an implicit-TLS port ------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "none"])
def test_silent_server_before_the_greeting_suggests_implicit_tls(tls: str) -> None:
    """An implicit-TLS server waits for a ClientHello: the greeting never comes."""
    extra = ("--allow-plaintext",) if tls == "none" else ()
    with ScriptedServer([], tls="implicit", timeout=2.0) as server:
        result = run(server, tls, *extra, "stat")
    assert error(result) == (
        4, "", "Error: no answer from localhost for 0.5 s (read timeout); if this is an "
               "implicit-TLS port, use --tls implicit\n")


def test_silence_after_the_greeting_keeps_the_plain_read_timeout() -> None:
    """The hint is for the greeting only: a server that greeted is not a TLS port."""
    with ScriptedServer([GREET, expect(b"CAPA\r\n"), stall(2)], timeout=2.0) as server:
        result = run(server, "starttls", "stat")
    assert error(result) == (4, "", "Error: no answer from localhost for 0.5 s (read timeout)\n")


@pytest.mark.parametrize("record", [
    b"\x15\x03\x03\x00\x02\x02\x46",  # an alert (protocol_version)
    b"\x16\x03\x03\x00\x04\x0e\x00\x00\x00",  # a handshake record
], ids=["alert", "handshake"])
@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
def test_a_tls_record_instead_of_a_greeting_is_recognised_at_once(record: bytes,
                                                                  split: bool) -> None:
    # Before: the record has no line end, so popctl waited the whole read timeout.
    steps = [send(record[:1]), stall(0.05), send(record[1:])] if split else [send(record)]
    with ScriptedServer([*steps, stall(3)], timeout=4.0) as server:
        started = time.monotonic()
        result = run(server, "starttls", "stat", timeout="3")
        elapsed = time.monotonic() - started
    assert error(result) == (
        4, "", f"Error: localhost:{server.port} answered in TLS, not with a POP3 greeting (it "
               "looks like an implicit-TLS port): use --tls implicit\n")
    assert elapsed < 2.0, f"took {elapsed:.1f} s"
    assert server.received == b""


# --- certificate rejections --------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_certificate_rejection_names_ca_file_fingerprint_and_how_to_see_it(tls: str) -> None:
    script = ([] if tls == "implicit" else
              [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
               expect(b"STLS\r\n"), send(b"+OK begin TLS\r\n"), starttls()])
    with ScriptedServer(script, tls="implicit" if tls == "implicit" else "none",
                        timeout=2.0) as server:
        result = run(server, tls, "stat", timeout="2")  # the system CAs: the test CA unknown
    option = " -starttls pop3" if tls == "starttls" else ""
    assert error(result) == (
        4, "", "Error: TLS certificate of localhost rejected: unable to get local issuer "
               "certificate; nothing was sent; trust its CA with --ca-file FILE, or pin the "
               "certificate with --fingerprint SHA256 (see it with: openssl s_client -connect "
               f"localhost:{server.port}{option} </dev/null | openssl x509 -noout "
               "-fingerprint -sha256)\n")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_line_of_the_openssl_command_the_rejection_names_is_a_fingerprint() -> None:
    """A new user runs the command the error shows and pastes what it printed, the
    ``sha256 Fingerprint=AB:CD:...`` line as it is."""
    with SandboxServer() as server:  # STLS with a certificate of its own: not trusted
        options = ["--host", "localhost", "--port", str(server.address[1]), "--tls", "starttls",
                   "--user", "sandbox"]
        env = {"POPCTL_PASSWORD": "sandbox"}
        refused = CliRunner().invoke(cli, [*options, "stat"], env=env)
        assert refused.exit_code == 4, refused.stderr
        shown = re.search(r"\(see it with: (openssl .*)\)$", refused.stderr.rstrip("\n"))
        assert shown is not None, refused.stderr
        printed = subprocess.run(["/bin/sh", "-c", shown.group(1)], capture_output=True,
                                 text=True, timeout=30, check=True).stdout.strip()
        assert printed.lower().startswith("sha256 fingerprint="), printed
        result = CliRunner().invoke(cli, [*options, "--fingerprint", printed, "stat", "-f", "csv"],
                                    env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("count,size\n50,")


# --- --trace and long replies ------------------------------------------------------------------

BODY_LINES = 3000
MESSAGE = b"Subject: big\r\n\r\n" + b"".join(b"line %d of the body\r\n" % i
                                             for i in range(BODY_LINES))
TRACE_SHOWN = 10


def _retr_script(*reply: Step) -> list[Step]:
    """The dialogue of `retr 1`; ``reply`` replaces the RETR reply sent in one write."""
    return [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\n.\r\n"),
            expect(b"USER alice\r\n"), send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"),
            send(b"+OK logged in\r\n"), expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\n.\r\n"),
            expect(b"UIDL 1\r\n"), send(b"+OK 1 uid-1\r\n"),
            expect(b"LIST 1\r\n"), send(b"+OK 1 %d\r\n" % len(MESSAGE)),
            expect(b"RETR 1\r\n"),
            *(reply or [send(b"+OK message follows\r\n" + MESSAGE + b".\r\n")]),
            expect(b"QUIT\r\n"), send(b"+OK bye\r\n"), expect_eof()]


def _server_lines(stderr: str) -> list[str]:
    return [re.sub(r"^\s*[\d.]+ S: ", "", line) for line in stderr.splitlines()
            if re.match(r"^\s*[\d.]+ S: ", line)]


def test_trace_shows_the_first_lines_of_a_long_reply_and_counts_the_rest() -> None:
    # Before: every one of the 3,002 lines of the message was traced.
    with ScriptedServer(_retr_script(), tls="none", timeout=2.0) as server:
        result = run(server, "none", "--allow-plaintext", "--trace", "retr", "1",
                     timeout="2", env={"POPCTL_TRACE_ALL": ""})
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.encode() == MESSAGE.replace(b"\r\n", b"\n")
    lines = _server_lines(result.stderr)
    start = lines.index("+OK message follows")
    shown = MESSAGE.split(b"\r\n")[:TRACE_SHOWN]
    hidden = MESSAGE.split(b"\r\n")[TRACE_SHOWN:-1]
    octets = sum(len(line) + 2 for line in hidden)
    assert lines[start + 1:] == [
        *(line.decode() for line in shown),
        f"... ({len(hidden)} more lines, {octets} octets)",
        ".",
    ]  # QUIT's reply is not awaited: nothing was deleted
    assert len(result.stderr.splitlines()) < 40


def test_trace_all_shows_every_line() -> None:
    with ScriptedServer(_retr_script(), tls="none", timeout=2.0) as server:
        result = run(server, "none", "--allow-plaintext", "--trace", "retr", "1",
                     timeout="2", env={"POPCTL_TRACE_ALL": "1"})
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    lines = _server_lines(result.stderr)
    start = lines.index("+OK message follows")
    body = [line.decode() for line in MESSAGE.split(b"\r\n")[:-1]]
    assert lines[start + 1:] == [*body, "."]


def test_trace_of_a_short_reply_is_whole() -> None:
    """A reply of at most the lines shown is traced as it was, with no count line."""
    listing = b"".join(b"%d 100\r\n" % i for i in range(1, TRACE_SHOWN + 1))
    script = [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\n.\r\n"),
              expect(b"USER alice\r\n"), send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"),
              send(b"+OK logged in\r\n"), expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n" + listing + b".\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK bye\r\n"), expect_eof()]
    with ScriptedServer(script, tls="none", timeout=2.0) as server:
        result = run(server, "none", "--allow-plaintext", "--trace", "list", "--sizes-only",
                     "--json", timeout="2")
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    lines = _server_lines(result.stderr)
    start = lines.index("+OK", lines.index("+OK logged in") + 1) + 1  # CAPA's, then LIST's
    start = lines.index("+OK", start) + 1
    assert lines[start:] == [*(line.decode() for line in listing.split(b"\r\n")[:-1]), "."]


@pytest.mark.parametrize("show_all", ["", "1"])
def test_a_line_split_between_two_reads_is_traced_whole(show_all: str) -> None:
    # Before: each piece was a trace line of its own (and the full-trace test was flaky on a
    # busy machine, where a long reply arrives in pieces).
    middle = MESSAGE.index(b"\r\n", 100) + 7  # inside the line after that line end
    script = _retr_script(send(b"+OK message follows\r\n" + MESSAGE[:middle]), stall(0.2),
                          send(MESSAGE[middle:] + b".\r\n"))
    with ScriptedServer(script, tls="none", timeout=2.0) as server:
        result = run(server, "none", "--allow-plaintext", "--trace", "retr", "1",
                     timeout="2", env={"POPCTL_TRACE_ALL": show_all})
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    lines = _server_lines(result.stderr)
    start = lines.index("+OK message follows")
    body = [line.decode() for line in MESSAGE.split(b"\r\n")[:-1]]
    shown = lines[start + 1:start + 1 + (len(body) if show_all else TRACE_SHOWN)]
    assert shown == body[:len(shown)]


# --- the TLS context is built while the connection is made ------------------------------------


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_ca_file_that_is_not_pem_is_one_line_and_nothing_is_sent(tls: str,
                                                                   tmp_path: Path) -> None:
    """The context is built on a thread of its own (transport.PendingTLSContext): what building it
    raises still reaches the user as the one error, before anything is sent in clear."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    script = [expect_eof()] if tls == "implicit" else [GREET, expect(b"CAPA\r\n"),
                                                       send(b"+OK\r\nSTLS\r\n.\r\n"),
                                                       expect(b"STLS\r\n"),
                                                       send(b"+OK go ahead\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        result = run(server, tls, "--ca-file", str(bogus), "stat")
    code, out, err = error(result)
    assert (code, out) == (4, "")
    assert err.startswith(f"Error: cannot load CA file {bogus}: ") and err.count("\n") == 1


def test_the_tls_context_is_built_while_the_connection_is_made(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing ssl and loading the system's CAs (~35 ms) overlaps the TCP handshake: the
    context is already being built when the connection completes. Built after it (as before),
    the connect below would wait in vain."""
    from popctl import session as session_module
    from popctl import transport
    from popctl.models import Endpoint, TLSMode

    building = threading.Event()
    real = transport.make_tls_context

    def make(*args: object, **kwargs: object) -> object:
        building.set()
        return real(*args, **kwargs)  # type: ignore[arg-type]

    class Connected(Exception):
        pass

    def connect(*args: object, **kwargs: object) -> object:
        assert building.wait(5), "the TLS context was not being built during the connect"
        raise Connected

    class Inert:  # the connection begun before the context: not made here
        def __init__(self, *args: object) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(transport, "make_tls_context", make)
    monkeypatch.setattr(transport, "Connecting", Inert)
    monkeypatch.setattr(transport.Transport, "connect", connect)
    for mode in (TLSMode.IMPLICIT, TLSMode.STARTTLS):
        building.clear()
        with pytest.raises(Connected):
            session_module.Session.connect(Endpoint("localhost", tls=mode))
