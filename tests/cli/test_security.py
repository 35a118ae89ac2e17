"""Security: certificates refused before credentials, STARTTLS stripping and injection, clear
text refused, CR/LF/NUL refused before anything is sent, and the password (or token) never
shown: not on stdout or stderr, not in --trace or --debug tracebacks, not in exception messages,
not in the process's argv, in any form (as typed, or base64 as SASL carries it), for every
mechanism.

The certificate and STARTTLS cases run the command line against the strict scripted server
(tests/support/scripted_server.py), whose recorded bytes prove what the client sent; the mechanism
scans run against a private real Dovecot (tests/support/dovecot_server.py) with a long password of
its own, and XOAUTH2/OAUTHBEARER (which the command line cannot take a token for yet) at the Session
level against the scripted server.
"""

from __future__ import annotations

import base64
import datetime
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from popctl import auth
from popctl.cli import cli
from popctl.errors import PopctlError, UsageError
from popctl.models import Credentials, Endpoint, TLSMode
from popctl.session import Session
from tests.support.ci import skip_or_fail
from tests.support.dovecot_server import DovecotServer, find_dovecot, start_dovecot
from tests.support.scripted_server import (
    ScriptedServer,
    _Leaf,
    close,
    expect,
    expect_eof,
    send,
    stall,
    starttls,
)
from tests.support.secrets import assert_hidden

PASSWORD = "s3cret"
GREET = send(b"+OK POP3 ready\r\n")
CAPA_STLS = [expect(b"CAPA\r\n"), send(b"+OK\r\nSTLS\r\nUSER\r\nPIPELINING\r\n.\r\n")]
CREDENTIAL_VERBS = (b"USER", b"PASS", b"AUTH", b"APOP")


def cli_run(server: ScriptedServer, *args: str, tls: str = "implicit",
            env: dict[str, str] | None = None, input: str | None = None) -> Result:
    options = ["--host", "localhost", "--port", str(server.port), "--tls", tls,
               "--user", "alice", "--timeout", "2"]
    return CliRunner().invoke(cli, [*options, *args], input=input,
                              env={"POPCTL_PASSWORD": PASSWORD} if env is None else env)


def no_credentials_sent(server: ScriptedServer) -> None:
    for line in server.received.split(b"\r\n"):
        assert not line.upper().startswith(CREDENTIAL_VERBS), server.received
    assert PASSWORD.encode() not in server.received


# --- certificates ---------------------------------------------------------------------------------


class _PemCert:
    """What ScriptedServer needs of a trustme.LeafCert: a chain and a key for a context."""

    def __init__(self, chain: bytes, key: bytes, directory: Path) -> None:
        self._chain, self._key = directory / "chain.pem", directory / "key.pem"
        self._chain.write_bytes(chain)
        self._key.write_bytes(key)

    def configure_cert(self, context: object) -> None:
        context.load_cert_chain(str(self._chain), str(self._key))  # type: ignore[attr-defined]


def _self_signed(hostname: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _use_certificate(server: ScriptedServer, chain: bytes, key: bytes, directory: Path) -> None:
    server._leaf = _Leaf(_PemCert(chain, key, directory), "")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def expired_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """A CA file and a certificate for localhost it issued, which expired yesterday."""
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    leaf = ca.issue_cert("localhost", not_before=now - datetime.timedelta(days=30),
                         not_after=now - datetime.timedelta(days=1))
    ca_file = tmp_path_factory.mktemp("expired") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return ca_file, chain, leaf.private_key_pem.bytes()


REJECTED = "Error: TLS certificate of localhost rejected: {reason}; nothing was sent; {fix}"
CERT_CASES = {
    # case: (exit message reason, the fix it names before pinning)
    "self-signed": ("self-signed certificate", ""),
    "untrusted-CA": ("unable to get local issuer certificate",
                     "trust its CA with --ca-file FILE, or "),
    "wrong-host-name": ("Hostname mismatch, certificate is not valid for 'localhost'",
                        "connect by a name the certificate is for, or "),
    "expired": ("certificate has expired", ""),
    "fingerprint-mismatch": None,
}


def pin_hint(port: int, tls: str) -> str:
    """The end of every certificate rejection: how to pin, and how to see what to pin."""
    starttls = " -starttls pop3" if tls == "starttls" else ""
    return (f"pin the certificate with --fingerprint SHA256 (see it with: openssl s_client "
            f"-connect localhost:{port}{starttls} </dev/null | openssl x509 -noout -fingerprint "
            "-sha256)")


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
@pytest.mark.parametrize("case", list(CERT_CASES))
def test_bad_certificate_is_refused_before_credentials(
        case: str, tls: str, tmp_path: Path, expired_ca: tuple[Path, bytes, bytes]) -> None:
    script = [] if tls == "implicit" else [GREET, *CAPA_STLS, expect(b"STLS\r\n"),
                                           send(b"+OK begin TLS\r\n"), starttls()]
    if tls == "implicit":
        script = [GREET, *CAPA_STLS]
    hostname = "mail.example.org" if case == "wrong-host-name" else "localhost"
    with ScriptedServer(script, tls="implicit" if tls == "implicit" else "none", timeout=3.0,
                        cert_hostname=hostname) as server:
        options = ["--ca-file", server.ca_file]
        if case == "self-signed":
            _use_certificate(server, *_self_signed("localhost"), tmp_path)
            options = []
        elif case == "untrusted-CA":
            options = []  # the system's CAs
        elif case == "expired":
            ca_file, chain, key = expired_ca
            _use_certificate(server, chain, key, tmp_path)
            options = ["--ca-file", str(ca_file)]
        elif case == "fingerprint-mismatch":
            options = ["--fingerprint", "sha256:" + "ab" * 32]
        result = cli_run(server, *options, "stat", tls=tls)
    rejection = CERT_CASES[case]
    if rejection is None:
        expected = (f"Error: certificate fingerprint of localhost is {server.cert_sha256}, not "
                    "the pinned one; refusing to continue (nothing was sent)")
    else:
        reason, fix = rejection
        expected = REJECTED.format(reason=reason, fix=fix + pin_hint(server.port, tls))
    assert (result.exit_code, result.stderr) == (4, expected + "\n")
    assert result.stdout == ""
    no_credentials_sent(server)
    assert server.received == (b"" if tls == "implicit" else b"CAPA\r\nSTLS\r\n")


def test_pinned_fingerprint_accepts_a_self_signed_certificate(tmp_path: Path) -> None:
    """The positive control of the cases above: pinning is how self-signed servers are used."""
    chain, key = _self_signed("localhost")
    der = x509.load_pem_x509_certificate(chain).fingerprint(hashes.SHA256()).hex()
    script = [GREET, *CAPA_STLS, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
              send(b"+OK\r\n+OK\r\n+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"), expect(b"STAT\r\n"),
              send(b"+OK 0 0\r\n"), expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        _use_certificate(server, chain, key, tmp_path)
        result = cli_run(server, "--fingerprint", der, "stat", "--json")
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert result.stdout == '{\n  "count": 0,\n  "size": 0\n}\n'


# --- STARTTLS ---------------------------------------------------------------------------------


STLS_CASES = {
    "stripped": ([GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"),
                  expect_eof()], 4,
                 "Error: the server does not offer STLS, so the connection cannot be encrypted "
                 "(an attacker may have removed it); refusing to continue. Use --tls implicit, "
                 "or --tls none if you really mean it", b"CAPA\r\n"),
    "refused": ([GREET, expect(b"CAPA\r\n"), send(b"-ERR no CAPA\r\n"), expect(b"STLS\r\n"),
                 send(b"-ERR not now\r\n"), expect_eof()], 4,
                "Error: the server refused STLS: not now; refusing to continue without TLS",
                b"CAPA\r\nSTLS\r\n"),
    "injected-after-OK": ([GREET, *CAPA_STLS, expect(b"STLS\r\n"),
                           send(b"+OK begin TLS\r\n+OK injected\r\n"), expect_eof()], 6,
                          "Error: server sent data after +OK to STLS before TLS began (possible "
                          "STARTTLS command injection); refusing to continue",
                          b"CAPA\r\nSTLS\r\n"),
    "injected-in-greeting": ([send(b"+OK ready\r\n-ERR injected\r\n")], 6,
                             "Error: server sent '-ERR injected' when no command was waiting for "
                             "a reply", b""),
}


@pytest.mark.parametrize("case", list(STLS_CASES))
def test_starttls_stripped_or_injected_is_refused(case: str) -> None:
    script, code, message, received = STLS_CASES[case]
    with ScriptedServer(script, timeout=3.0) as server:
        result = cli_run(server, "--ca-file", server.ca_file, "stat", tls="starttls")
    assert (result.exit_code, result.stderr) == (code, message + "\n")
    no_credentials_sent(server)
    assert server.received == received


def test_plaintext_credentials_are_refused_before_connecting() -> None:
    with ScriptedServer([GREET], timeout=0.5) as server:
        result = cli_run(server, "stat", tls="none")
    assert (result.exit_code, result.stderr) == (
        4, "Error: refusing to send credentials over a connection without TLS; use --tls "
           "implicit or --tls starttls, or allow it explicitly with --allow-plaintext\n")
    assert not any(who == "*" and data == b"connected" for who, data in server.transcript)


def test_plaintext_credentials_go_only_with_allow_plaintext() -> None:
    script = [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\n.\r\n"),
              expect(b"USER alice\r\n"), send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"),
              send(b"+OK\r\n"), expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\n.\r\n"),
              expect(b"NOOP\r\n"), send(b"+OK\r\n"), expect(b"QUIT\r\n"), send(b"+OK\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        result = cli_run(server, "--allow-plaintext", "noop", tls="none")
    server.assert_done()
    assert result.exit_code == 0, result.stderr


def test_session_refuses_clear_credentials_for_every_mechanism() -> None:
    for mechanism in ("auto", "USER", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"):
        script = [GREET, expect(b"CAPA\r\n"),
                  send(b"+OK\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\n.\r\n"),
                  expect_eof()]
        with ScriptedServer(script, timeout=3.0) as server:
            endpoint = Endpoint("localhost", server.port, TLSMode.NONE, timeout=2)
            with pytest.raises(PopctlError, match="without TLS") as info, \
                    Session.connect(endpoint) as session:
                session.login(Credentials("alice", PASSWORD, mechanism=mechanism))
        server.assert_done()
        assert info.value.exit_code == 4


# --- CR, LF and NUL in what the user supplies -------------------------------------------------


LOGGED_OUT = [GREET, expect(b"CAPA\r\n"),
              send(b"+OK\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\n.\r\n"),
              expect_eof()]
INJECTIONS = ["alice\r\nDELE 1", "alice\nDELE 1", "alice\rDELE 1"]


@pytest.mark.parametrize("mechanism", ["auto", "USER", "PLAIN", "LOGIN", "CRAM-MD5",
                                       "SCRAM-SHA-256"])
@pytest.mark.parametrize("value", INJECTIONS)
def test_line_breaks_in_user_or_password_are_refused(value: str, mechanism: str) -> None:
    for what, user, password in (("user name", value, PASSWORD), ("password", "alice", value)):
        with ScriptedServer(LOGGED_OUT, timeout=3.0) as server:
            result = CliRunner().invoke(cli, [
                "--host", "localhost", "--port", str(server.port), "--tls", "none",
                "--allow-plaintext", "--auth", mechanism, "--user", user, "--timeout", "2",
                "stat"], env={"POPCTL_PASSWORD": password})
        server.assert_done()
        assert (result.exit_code, result.stderr) == (
            2, f"Error: the {what} contains a CR, LF or NUL character; no credentials were "
               "sent\n")
        assert server.received == b"CAPA\r\n"


@pytest.mark.parametrize("mechanism", ["USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5",
                                       "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"])
def test_nul_in_credentials_is_refused_by_the_session(mechanism: str) -> None:
    # No environment variable or argv can hold a NUL: this reaches the session from a library
    # caller (or a future keyring), so it is checked there.
    oauth = mechanism in ("XOAUTH2", "OAUTHBEARER")
    greeting = send(b"+OK ready <1.2@test>\r\n")
    script = [greeting, expect(b"CAPA\r\n"),
              send(b"+OK\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256 XOAUTH2 "
                   b"OAUTHBEARER\r\n.\r\n"), expect_eof()]
    for secret in ("pass\0word", "x\0alice\0y"):
        with ScriptedServer(script, timeout=3.0) as server:
            endpoint = Endpoint("localhost", server.port, TLSMode.NONE, timeout=2)
            credentials = Credentials("alice", None if oauth else secret,
                                      oauth2_token=secret if oauth else None,
                                      mechanism=mechanism, allow_plaintext=True)
            with pytest.raises(UsageError, match="CR, LF or NUL") as info, \
                    Session.connect(endpoint) as session:
                session.login(credentials)
        server.assert_done()
        assert secret not in str(info.value)
        assert server.received == b"CAPA\r\n"


@pytest.mark.parametrize("uid", ["abc\r\nDELE 1", "abc\nDELE 1", "abc\0", "a b", "abc\r"])
@pytest.mark.parametrize("command", [("dele", "--yes"), ("retr",), ("list",), ("top",),
                                     ("uidl",)])
def test_control_characters_in_a_uid_are_refused_before_connecting(
        uid: str, command: tuple[str, ...]) -> None:
    with ScriptedServer([GREET], timeout=0.5) as server:
        result = cli_run(server, "--allow-plaintext", *command, "--uid", uid, tls="none")
    assert (result.exit_code, result.stderr) == (
        2, f"Error: {uid!r} is not a UID (a UID has no spaces or control characters); "
           "nothing was done\n")
    assert not any(who == "*" and data == b"connected" for who, data in server.transcript)


SHELL_LOGIN = [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"),
               expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
               send(b"+OK\r\n+OK\r\n+OK\r\nUSER\r\nPIPELINING\r\n.\r\n")]


@pytest.mark.parametrize("line", [b"raw NOOP x\rDELE 1", b"NOOP\rDELE 1", b"raw USER a\rb",
                                  b"raw NOOP \x00DELE 1", b"raw PASS a\x00b"])
def test_control_characters_in_a_raw_shell_command_are_refused(line: bytes) -> None:
    # A real process: click's CliRunner reads its input with universal newlines, which would
    # turn the CR into a line break before the shell sees it.
    script = [*SHELL_LOGIN, expect(b"NOOP\r\n"), send(b"+OK\r\n"), expect(b"QUIT\r\n"),
              send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=5.0) as server:
        process = subprocess.run(
            [sys.executable, "-m", "popctl", "--host", "localhost", "--port", str(server.port),
             "--tls", "none", "--allow-plaintext", "--user", "alice", "shell"],
            input=line + b"\nNOOP\nquit\n", capture_output=True, timeout=30,
            env={**os.environ, "POPCTL_PASSWORD": PASSWORD})
    server.assert_done()
    assert process.returncode == 0, process.stderr
    assert process.stderr == b"Error: CR, LF or NUL inside a command line; nothing was sent\n"
    assert process.stdout == b"+OK\n"
    assert b"DELE" not in server.received


# --- the password in every output, for every mechanism ----------------------------------------


SECRET = "Zq8-popctl-NeverShowThis-71x0"  # a password of the private Dovecot below
WRONG = "Kp3-popctl-AlsoNeverShown-94y2"  # a wrong one, for the failure paths


def test_secret_forms_find_base64() -> None:
    for prefix in (b"", b"\0alice\0", b"n,,\x01auth=Bearer "):
        carried = base64.b64encode(prefix + SECRET.encode())
        with pytest.raises(AssertionError):
            assert_hidden(carried, SECRET)


@pytest.fixture(scope="module")
def secret_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    if find_dovecot() is None:
        skip_or_fail("dovecot is not installed (apt-get install dovecot-core dovecot-pop3d)")
    server = start_dovecot(tmp_path_factory.mktemp("dovecot-secret"), {"sam": SECRET})
    server.deliver("sam", b"From: a@example.org\nSubject: hello\n\nbody\n")
    try:
        yield server
    finally:
        server.stop()


MECHANISMS = ["USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]


def _dovecot_args(server: DovecotServer, mechanism: str, *args: str) -> list[str]:
    return ["--host", "localhost", "--port", str(server.port), "--tls", "starttls",
            "--ca-file", server.ca_file, "--user", "sam", "--auth", mechanism, "--timeout", "10",
            "--trace", "--debug", *args]


@pytest.mark.dovecot
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_password_never_shown(secret_dovecot: DovecotServer, mechanism: str) -> None:
    runner = CliRunner()
    # Logged in (trace of the whole login), then an error with a --debug traceback.
    ok = runner.invoke(cli, _dovecot_args(secret_dovecot, mechanism, "retr", "9"),
                       env={"POPCTL_PASSWORD": SECRET})
    assert ok.exit_code == 5, ok.stderr
    assert f"authenticating as sam with {mechanism}" in ok.stderr
    assert "Traceback" in ok.stderr and "NoSuchMessageError" in ok.stderr
    # A wrong password: the failure paths, traced and with a traceback.
    bad = runner.invoke(cli, _dovecot_args(secret_dovecot, mechanism, "stat"),
                        env={"POPCTL_PASSWORD": WRONG})
    assert bad.exit_code == 3, bad.stderr
    assert "Traceback" in bad.stderr and "AuthenticationError" in bad.stderr
    for result in (ok, bad):
        assert_hidden(result.stdout, SECRET, WRONG)
        assert_hidden(result.stderr, SECRET, WRONG)


@pytest.mark.dovecot
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_password_not_in_exceptions(secret_dovecot: DovecotServer, mechanism: str) -> None:
    lines: list[str] = []
    endpoint = Endpoint("localhost", secret_dovecot.port, TLSMode.STARTTLS,
                        ca_file=secret_dovecot.ca_file, timeout=10)
    credentials = Credentials("sam", WRONG, mechanism=mechanism)
    with pytest.raises(PopctlError) as info, Session.connect(
            endpoint, trace=lambda who, line: lines.append(f"{who}: {line}")) as session:
        session.login(credentials)
    error = info.value
    text = "".join(traceback.format_exception(error)) + repr(error) + repr(vars(error))
    text += repr(credentials) + repr(session) + "\n".join(lines)
    assert_hidden(text, WRONG)


@pytest.mark.dovecot
def test_password_not_in_argv_of_the_process(secret_dovecot: DovecotServer) -> None:
    """popctl takes no password option; the process's argv (/proc/PID/cmdline, what ps shows)
    and its output hold no trace of it."""
    for param in cli.params:
        assert "pass" not in (param.name or "").lower()
    # The shell waits for its commands on stdin: the process is surely running and logged in
    # while its argv is read.
    args = [sys.executable, "-m", "popctl", *_dovecot_args(secret_dovecot, "PLAIN", "shell")]
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               env={**os.environ, "POPCTL_PASSWORD": SECRET})
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write(b"list --format json\n")
    process.stdin.flush()
    seen = b""
    while b"authenticating as sam" not in seen and len(seen) < 100_000:
        line = process.stderr.readline()
        assert line, seen
        seen += line
    with open(f"/proc/{process.pid}/cmdline", "rb") as f:
        cmdline = f.read()
    out, err = process.communicate(b"quit\n", timeout=30)
    err = seen + err
    assert process.returncode == 0, err
    assert b'"subject": "hello"' in out
    assert b"popctl" in cmdline and b"--user\0sam" in cmdline
    for data in (cmdline, out, err):
        assert_hidden(data, SECRET)


OAUTH_TOKEN = "ya29.popctl-Token-NeverShown-0123456789abcdef"


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
@pytest.mark.parametrize("outcome", ["accepted", "refused"])
def test_oauth_token_never_shown(mechanism: str, outcome: str) -> None:
    """The CLI has no way to take a token yet, so this runs the Session with a trace hook."""
    if mechanism == "XOAUTH2":
        payload = f"user=alice\x01auth=Bearer {OAUTH_TOKEN}\x01\x01".encode()
    else:
        payload = f"n,a=alice,\x01auth=Bearer {OAUTH_TOKEN}\x01\x01".encode()
    initial = b"AUTH " + mechanism.encode() + b" " + base64.b64encode(payload) + b"\r\n"
    capa = b"+OK\r\nUSER\r\nSASL " + mechanism.encode() + b"\r\n.\r\n"
    if outcome == "accepted":
        tail = [send(b"+OK\r\n"), expect(b"CAPA\r\n"), send(capa), expect(b"NOOP\r\n"),
                send(b"+OK\r\n"), expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    else:
        error = base64.b64encode(b'{"status":"401","schemes":"bearer"}')
        answer = b"\r\n" if mechanism == "XOAUTH2" else b"AQ==\r\n"
        tail = [send(b"+ " + error + b"\r\n"), expect(answer),
                send(b"-ERR [AUTH] invalid token\r\n"), expect_eof()]
    script = [GREET, expect(b"CAPA\r\n"), send(capa), expect(initial), *tail]
    lines: list[str] = []
    credentials = Credentials("alice", oauth2_token=OAUTH_TOKEN, allow_plaintext=True)
    text = ""
    with ScriptedServer(script, timeout=3.0) as server:
        endpoint = Endpoint("localhost", server.port, TLSMode.NONE, timeout=2)
        try:
            with Session.connect(endpoint, trace=lambda w, line: lines.append(line)) as session:
                assert session.login(credentials) == mechanism
                session.noop()
        except PopctlError as e:
            assert outcome == "refused"
            text = "".join(traceback.format_exception(e)) + repr(vars(e))
    server.assert_done()
    assert any(line.startswith(f"AUTH {mechanism} ***") for line in lines), lines
    assert_hidden("\n".join(lines) + text + repr(credentials), OAUTH_TOKEN)


def test_trace_of_the_pipelined_login_hides_the_password() -> None:
    """USER+PASS+CAPA in one write: the trace shows PASS as ***."""
    script = [*SHELL_LOGIN, expect(b"QUIT\r\n"), send(b"+OK\r\n"), close()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = cli_run(server, "--allow-plaintext", "--trace", "shell", tls="none",
                         input="quit\n")
    server.assert_done()
    assert "C: PASS ***" in result.stderr
    assert_hidden(result.stderr + result.stdout, PASSWORD)


def test_stalled_server_does_not_hold_the_credentials_back_for_ever() -> None:
    """Bounded: a server that never answers the login is given up on at the read timeout."""
    script = [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\n.\r\n"),
              expect(b"USER alice\r\n"), stall(3)]
    with ScriptedServer(script, timeout=4.0) as server:
        result = CliRunner().invoke(cli, [
            "--host", "localhost", "--port", str(server.port), "--tls", "none",
            "--allow-plaintext", "--user", "alice", "--timeout", "0.5", "stat"],
            env={"POPCTL_PASSWORD": PASSWORD})
    assert (result.exit_code, result.stderr) == (
        4, "Error: no answer from localhost for 0.5 s (read timeout)\n")
    assert PASSWORD.encode() not in server.received


# --- issue 11: a malformed SCRAM challenge, a secret that is not UTF-8 ------------------------


SCRAM_NONCE = base64.b64encode(b"\x01" * 24)  # what auth.urandom gives, patched below
SCRAM_CAPA = [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\nSASL SCRAM-SHA-256\r\n.\r\n")]
GOOD_SALT, SERVER_NONCE = b"QSXCR+Q6sek8bf92", SCRAM_NONCE + b"srv"


BAD_SALT = "malformed SCRAM challenge from the server: the salt is not base64"
BAD_COUNT = ("malformed SCRAM challenge from the server: the iteration count is not a whole "
             "number from 1 to 1,000,000")
MISSING = ("malformed SCRAM challenge from the server (RFC 5802 needs r=, s= and i=, and our "
           "nonce)")


@pytest.mark.parametrize(("first", "message"), [
    (b"r=%n,s=QQ=,i=4096", BAD_SALT),
    (b"r=%n,s=!!!!,i=4096", BAD_SALT),
    (b"r=%n,s=%s,i=\xc2\xb2", BAD_COUNT),  # "²": str.isdigit() says yes, int() says no
    (b"r=%n,s=%s,i=" + b"9" * 5000, BAD_COUNT),  # past int()'s 4300-digit limit
    (b"r=%n,s=%s,i=0", BAD_COUNT),
    (b"r=%n,s=%s,i=-1", BAD_COUNT),
    (b"r=%n,s=%s", MISSING),
    (b"r=someone-elses,s=%s,i=4096", MISSING),
], ids=["bad-padding", "not-base64", "superscript-2", "5000-digits", "zero", "negative",
        "no-i", "wrong-nonce"])
def test_malformed_scram_challenge_is_a_protocol_error(
        first: bytes, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "urandom", lambda n: b"\x01" * n)
    first = first.replace(b"%n", SERVER_NONCE).replace(b"%s", GOOD_SALT)
    script = [*SCRAM_CAPA,
              expect(b"AUTH SCRAM-SHA-256 " + base64.b64encode(b"n,,n=alice,r=" + SCRAM_NONCE)
                     + b"\r\n"),
              send(b"+ " + base64.b64encode(first) + b"\r\n"),
              expect(b"*\r\n"), expect_eof()]  # the exchange cancelled, then no QUIT
    with ScriptedServer(script, timeout=3.0) as server:
        result = cli_run(server, "--allow-plaintext", "--auth", "SCRAM-SHA-256", "stat",
                         tls="none")
    server.assert_done()
    assert (result.exit_code, result.stdout, result.stderr) == (6, "", f"Error: {message}\n")
    assert_hidden(result.stderr, PASSWORD)


def test_too_many_scram_iterations_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "urandom", lambda n: b"\x01" * n)
    first = b"r=" + SERVER_NONCE + b",s=" + GOOD_SALT + b",i=9999999"
    script = [*SCRAM_CAPA,
              expect(b"AUTH SCRAM-SHA-256 " + base64.b64encode(b"n,,n=alice,r=" + SCRAM_NONCE)
                     + b"\r\n"),
              send(b"+ " + base64.b64encode(first) + b"\r\n"), expect(b"*\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = cli_run(server, "--allow-plaintext", "--auth", "SCRAM-SHA-256", "stat",
                         tls="none")
    server.assert_done()
    assert (result.exit_code, result.stderr) == (
        6, "Error: the server asks for 9,999,999 SCRAM iterations, more than popctl's limit of "
           "1,000,000\n")


NOT_UTF8 = b"Vb5-popctl-\xff-NotUtf8Secret-28k"


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "CRAM-MD5", "LOGIN", "SCRAM-SHA-256", "USER",
                                       "auto"])
def test_a_password_that_is_not_utf8_is_refused_without_showing_it(
        mechanism: str, debug: bool) -> None:
    """POPCTL_PASSWORD with byte 0xFF: an internal error quoted the byte and its position."""
    script = [GREET, expect(b"CAPA\r\n"),
              send(b"+OK\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\n.\r\n"),
              expect_eof()]
    with ScriptedServer(script, timeout=5.0) as server:
        process = subprocess.run(
            [sys.executable, "-m", "popctl", *(["--debug"] if debug else []), "--host",
             "localhost", "--port", str(server.port), "--tls", "none", "--allow-plaintext",
             "--user", "alice", "--auth", mechanism, "--timeout", "2", "stat"],
            capture_output=True, timeout=30,
            env={**os.environ, "POPCTL_PASSWORD": os.fsdecode(NOT_UTF8)})
    server.assert_done()
    assert server.received == b"CAPA\r\n"  # no credentials, in any form
    assert process.returncode == 2
    assert process.stderr.endswith(
        b"Error: the password is not UTF-8 text (it holds a byte that is not part of a UTF-8 "
        b"character); no credentials were sent\n")
    assert process.stdout == b""
    if not debug:
        assert process.stderr.count(b"\n") == 1
    for part in [*NOT_UTF8.split(b"\xff"), b"\xff", b"\\xff", b"udcff", b"position"]:
        assert part not in process.stderr, part
