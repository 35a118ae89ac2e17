"""Accounts and credentials through the command line (issue 4), against the private Dovecot and
real keyring backends: keyrings.alt's file backend in the test process, keyring's fail backend
for the headless case, and gnome-keyring's Secret Service under dbus-run-session.

Users: alice and bob of tests/support/dovecot_server.py; "wrong" is carol with a wrong password. The
configuration file is the XDG one under the test's temporary HOME (tests/conftest.py).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from click.testing import Result
from keyrings.alt.file import PlaintextKeyring

from popctl import config
from popctl.app.context import Options
from popctl.app.targets import resolve_target
from popctl.cli import console as console_module
from popctl.cli.hints import describe
from popctl.errors import ConfigError, UsageError
from tests.support.ci import skip_or_fail
from tests.support.cli import closed_port, invoke, outcome
from tests.support.dovecot_server import DovecotServer
from tests.support.scripted_server import ScriptedServer, Step, expect, expect_eof, send
from tests.support.terminal import close_terminal, drain

dovecot = pytest.mark.dovecot

ALICE_MAIL = [b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n",
              b"From: b@example.org\r\nSubject: two\r\n\r\nmore body\r\n"]
BOB_MAIL = [b"From: c@example.org\r\nSubject: three\r\n\r\nx\r\n"]
WRONG = "not-carols-password"


# --- fixtures and helpers -------------------------------------------------------------------------


# Every test here keeps its secrets in the file keyring of the temporary HOME.
pytestmark = pytest.mark.usefixtures("file_keyring")


@pytest.fixture
def server(dovecot_mailbox: DovecotServer) -> Iterator[DovecotServer]:
    """Dovecot with alice holding two messages and bob one."""
    dovecot_mailbox.reset("bob")
    for message in ALICE_MAIL:
        dovecot_mailbox.deliver("alice", message)
    for message in BOB_MAIL:
        dovecot_mailbox.deliver("bob", message)
    yield dovecot_mailbox
    dovecot_mailbox.reset("alice")
    dovecot_mailbox.reset("bob")


def config_file() -> Path:
    return Path(config.config_path())


def account_toml(server: DovecotServer, name: str, user: str, *, tls: str = "implicit",
                 extra: str = "") -> str:
    port = server.tls_port if tls == "implicit" else server.port
    return (f'[accounts.{name}]\nhost = "localhost"\nport = {port}\nuser = "{user}"\n'
            f'tls = "{tls}"\nca_file = "{server.ca_file}"\n{extra}\n')


def write_config(*parts: str, default: str | None = None) -> None:
    head = f'default = "{default}"\n\n' if default else ""
    config_file().write_text(head + "".join(parts))


def store(name: str, user: str, password: str, server: DovecotServer) -> None:
    keyring.set_password("popctl", f"{user}@localhost:{server.tls_port}", password)




def three_accounts(server: DovecotServer) -> None:
    """alice and bob with their passwords in the keyring, "wrong" (carol) with a wrong one."""
    write_config(account_toml(server, "alice", "alice"), account_toml(server, "bob", "bob"),
                 account_toml(server, "wrong", "carol"))
    store("alice", "alice", server.users["alice"], server)
    store("bob", "bob", server.users["bob"], server)
    store("wrong", "carol", WRONG, server)



def popctl_process(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
                   ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "popctl", *args], input=input,
                          capture_output=True, timeout=120, env={**os.environ, **(env or {})},
                          stdin=None if input is not None else subprocess.DEVNULL)


FILE_BACKEND = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"}


# --- where each setting comes from --------------------------------------------------------------

WORK = ('[accounts.work]\nhost = "pop.work.example"\nuser = "me"\nport = 1995\n'
        'tls = "starttls"\ntimeout = 7\nauth = "PLAIN"\n')
HOME = '[accounts.home]\nhost = "pop.home.example"\nuser = "me@home"\n'


def test_the_account_fills_in_what_is_not_given() -> None:
    write_config(WORK, HOME)
    target = resolve_target(Options(account=("work",)))
    endpoint = target.endpoint
    assert (endpoint.host, endpoint.port, endpoint.tls.value, endpoint.timeout) == (
        "pop.work.example", 1995, "starttls", 7.0)
    assert (target.credentials.user, target.credentials.mechanism) == ("me", "PLAIN")
    assert target.account is not None and target.own


def test_built_in_defaults_come_last() -> None:
    write_config(HOME)
    endpoint = resolve_target(Options(account=("home",))).endpoint
    assert (endpoint.port, endpoint.effective_port, endpoint.tls.value, endpoint.timeout) == (
        None, 995, "implicit", 30.0)


def test_options_and_environment_beat_the_account() -> None:
    """Options hold what the command line or the environment gave (Click merged them)."""
    write_config(WORK)
    target = resolve_target(Options(account=("work",), port=2995, tls="implicit", user="you"))
    assert (target.endpoint.port, target.endpoint.tls.value, target.credentials.user) == (
        2995, "implicit", "you")
    assert not target.own  # another login and port: the account's commands are not used


def test_popctl_account_selects_and_the_option_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(WORK, HOME)
    monkeypatch.setenv("POPCTL_ACCOUNT", "home")
    assert resolve_target(Options()).endpoint.host == "pop.home.example"
    assert resolve_target(Options(account=("work",))).endpoint.host == "pop.work.example"


def test_the_default_account_only_without_a_host() -> None:
    write_config(WORK, HOME, default="home")
    assert resolve_target(Options()).endpoint.host == "pop.home.example"
    with pytest.raises(UsageError, match="no user given"):
        resolve_target(Options(host="pop.other.example"))  # an ad-hoc server: no account


def test_accounts_but_no_default_and_no_host() -> None:
    write_config(WORK, HOME)
    with pytest.raises(UsageError) as caught:
        resolve_target(Options())
    assert describe(caught.value) == (
        f"no server given: use --account NAME (work, home), --host HOST (or POPCTL_HOST), or "
        f'set default = "NAME" in {config_file()}')


def test_an_unknown_account() -> None:
    write_config(WORK)
    result = invoke("--account", "nope", "stat")
    assert outcome(result) == (2, "", (
        f"Error: no account 'nope' in {config_file()} (accounts: work); add it with: popctl "
        "account add nope --host HOST --user USER\n"))


def test_a_bad_config_file_is_one_line_exit_2() -> None:
    config_file().write_text(WORK + 'password = "hunter2"\n')
    result = invoke("--account", "work", "stat")
    assert outcome(result) == (2, "", (
        f"Error: {config_file()}:8: a password does not belong in the configuration file: "
        "remove it, and store it with: popctl password set work (or use password_command)\n"))


def test_an_ad_hoc_host_does_not_read_the_file() -> None:
    config_file().write_text("this is [not toml")
    result = invoke("--host", "localhost", "--port", str(closed_port()), "--user", "u", "stat",
                    env={"POPCTL_PASSWORD": "x"})
    assert result.exit_code == 4  # a connection error: the broken file was never read


@dovecot
def test_option_beats_environment_beats_account(server: DovecotServer) -> None:
    write_config(account_toml(server, "bob", "bob").replace(
        f"port = {server.tls_port}", f"port = {closed_port()}"))
    env = {"POPCTL_PASSWORD": server.users["bob"]}
    assert invoke("--account", "bob", "stat", env=env).exit_code == 4  # the account's port
    good = {**env, "POPCTL_PORT": str(server.tls_port)}
    assert outcome(invoke("--account", "bob", "stat", "--json", env=good)) == (
        0, '{\n  "count": 1,\n  "size": 42\n}\n', "")
    bad = {**env, "POPCTL_PORT": str(closed_port())}
    # The option given before the subcommand wins although the subcommand reads the
    # environment again.
    result = invoke("--account", "bob", "--port", str(server.tls_port), "stat", "--json", env=bad)
    assert outcome(result) == (0, '{\n  "count": 1,\n  "size": 42\n}\n', "")


# --- where the password comes from ---------------------------------------------------------------


def record_of(result: Result) -> dict[str, object]:
    assert result.exit_code == 0, result.stderr
    record: dict[str, object] = json.loads(result.stdout)
    return record


@dovecot
def test_from_the_keyring(server: DovecotServer) -> None:
    write_config(account_toml(server, "bob", "bob"))
    store("bob", "bob", server.users["bob"], server)
    record = record_of(invoke("account", "test", "bob", "--json"))
    assert record["credentials"] == "keyring" and record["count"] == 1


@dovecot
def test_from_the_password_command(server: DovecotServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(server.users["bob"] + "\nsecond line\n")
    write_config(account_toml(server, "bob", "bob",
                              extra=f'password_command = "cat {secret} | head -5"'))
    record = record_of(invoke("account", "test", "bob", "--json"))
    assert record["credentials"] == "password_command" and record["count"] == 1


@dovecot
def test_the_keyring_comes_before_the_command(server: DovecotServer, tmp_path: Path) -> None:
    write_config(account_toml(server, "bob", "bob",
                              extra=f'password_command = "touch {tmp_path}/ran; echo nope"'))
    store("bob", "bob", server.users["bob"], server)
    assert record_of(invoke("account", "test", "bob", "--json"))["credentials"] == "keyring"
    assert not (tmp_path / "ran").exists()


@dovecot
def test_from_the_environment(server: DovecotServer) -> None:
    write_config(account_toml(server, "bob", "bob"))
    record = record_of(invoke("account", "test", "bob", "--json",
                                env={"POPCTL_PASSWORD": server.users["bob"]}))
    assert record["credentials"] == "POPCTL_PASSWORD"


@dovecot
def test_the_environment_overrides_a_stored_password(server: DovecotServer,
                                                     tmp_path: Path) -> None:
    """Issue 16: "environment before account" holds for the password too: POPCTL_PASSWORD
    beats a stale keyring entry and the account's password_command (which is not run)."""
    write_config(account_toml(server, "bob", "bob",
                              extra=f'password_command = "touch {tmp_path}/ran; echo nope"'))
    store("bob", "bob", "stale-password", server)
    env = {"POPCTL_PASSWORD": server.users["bob"]}
    assert outcome(invoke("--account", "bob", "stat", "--json", env=env)) == (
        0, '{\n  "count": 1,\n  "size": 42\n}\n', "")
    assert record_of(invoke("account", "test", "bob", "--json", env=env))["credentials"] == (
        "POPCTL_PASSWORD")
    assert not (tmp_path / "ran").exists()


REFUSED = "Error: login failed: server said: [AUTH] Authentication failed; "


@dovecot
def test_a_refused_login_names_where_the_password_came_from(server: DovecotServer,
                                                            tmp_path: Path) -> None:
    write_config(account_toml(server, "bob", "bob"))
    store("bob", "bob", "stale-password", server)
    key = f"bob@localhost:{server.tls_port}"
    assert outcome(invoke("--account", "bob", "stat")) == (3, "", (
        f"{REFUSED}the password came from the keyring (popctl, {key}): if it has changed, "
        "store the new one with: popctl password set bob\n"))
    assert outcome(invoke("--account", "bob", "stat", env={"POPCTL_PASSWORD": "typo"})) == (
        3, "", f"{REFUSED}the password came from POPCTL_PASSWORD (it comes before an account's "
               "keyring entry and password_command): correct or unset it\n")
    keyring.delete_password("popctl", key)
    write_config(account_toml(server, "bob", "bob", extra='password_command = "echo typo"'))
    assert outcome(invoke("--account", "bob", "stat")) == (3, "", (
        f"{REFUSED}the password came from the password_command of account bob: check what "
        "it prints\n"))


def test_several_accounts_refuse_popctl_password() -> None:
    """POPCTL_PASSWORD comes before every account's own secret: across accounts it would be
    sent to each of their servers. Refused before connecting anywhere."""
    write_config(WORK, HOME)
    for args in (["--all-accounts"], ["-a", "work", "-a", "home"]):
        result = invoke(*args, "stat", env={"POPCTL_PASSWORD": "secret"})
        assert outcome(result) == (2, "", (
            "Error: POPCTL_PASSWORD would be sent to the server of every account: unset it for "
            "a run across accounts (each then uses its keyring entry or password_command)\n"))


@dovecot
def test_headless_the_keyring_is_skipped_silently(server: DovecotServer,
                                                  no_keyring: None) -> None:
    write_config(account_toml(server, "bob", "bob"))
    result = invoke("--account", "bob", "stat", env={"POPCTL_PASSWORD": server.users["bob"]})
    assert outcome(result) == (0, "count  1\nsize   42\n", "")


@pytest.mark.parametrize("keyring_usable", [True, False], ids=["keyring", "headless"])
def test_nothing_anywhere_names_the_fix(keyring_usable: bool,
                                        request: pytest.FixtureRequest) -> None:
    """Headless, `popctl password set` could not store a password, so it is not the fix."""
    if not keyring_usable:
        request.getfixturevalue("no_keyring")
    with ScriptedServer([send(b"+OK ready\r\n"), expect(b"CAPA\r\n"),
                         send(b"+OK\r\nUSER\r\n.\r\n"), expect_eof()], tls="implicit") as s:
        write_config(f'[accounts.bob]\nhost = "localhost"\nport = {s.port}\nuser = "bob"\n'
                     f'ca_file = "{s.ca_file}"\n')
        result = invoke("--account", "bob", "stat")
    fix = ("store one with: popctl password set bob (or give the account a password_command, or "
           "set POPCTL_PASSWORD)" if keyring_usable else
           "and no usable keyring backend here (keyring.backends.fail.Keyring) to store one in: "
           "install keyrings.alt and set "
           "PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring (a file, not encrypted), "
           "or give the account a password_command, or set POPCTL_PASSWORD")
    separator = ": " if keyring_usable else ", "
    assert outcome(result) == (7, "", f"Error: no password for account bob "
                                      f"(bob@localhost:{s.port}){separator}{fix}\n")


@dovecot
def test_a_failing_password_command(server: DovecotServer) -> None:
    write_config(account_toml(server, "bob", "bob", extra='password_command = "exit 4"'))
    result = invoke("--account", "bob", "stat")
    assert outcome(result) == (7, "", "Error: password_command of account 'bob' failed (exit "
                                      "status 4): exit 4\n")


@dovecot
def test_overridden_login_does_not_run_the_accounts_command(server: DovecotServer,
                                                            tmp_path: Path) -> None:
    write_config(account_toml(server, "bob", "bob",
                              extra=f'password_command = "touch {tmp_path}/ran; echo x"'))
    result = invoke("--account", "bob", "--user", "alice", "stat",
                    env={"POPCTL_PASSWORD": server.users["alice"]})
    assert outcome(result) == (0, f"count  2\nsize   {sum(map(len, ALICE_MAIL))}\n", (
        "note: not using the password or token command of account bob: the user, host or port "
        "was overridden\n"))
    assert not (tmp_path / "ran").exists()


OAUTH_TOKEN = "ya29.popctl-Token-NeverShown-0123456789abcdef"


def _oauthbearer_dialogue(capa: bytes) -> list[Step]:
    """A login with OAUTHBEARER and OAUTH_TOKEN, then STAT and QUIT."""
    payload = base64.b64encode(f"n,a=me@gmail.com,\x01auth=Bearer {OAUTH_TOKEN}\x01\x01".encode())
    return [send(b"+OK ready\r\n"), expect(b"CAPA\r\n"), send(capa),
            expect(b"AUTH OAUTHBEARER " + payload + b"\r\n"), send(b"+OK welcome\r\n"),
            expect(b"CAPA\r\n"), send(capa), expect(b"STAT\r\n"), send(b"+OK 4 400\r\n"),
            expect(b"QUIT\r\n"), send(b"+OK bye\r\n"), expect_eof()]


def test_oauth2_token_command_logs_in_with_oauthbearer(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(OAUTH_TOKEN + "\n")
    capa = b"+OK\r\nUSER\r\nSASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n"
    script = _oauthbearer_dialogue(capa)
    with ScriptedServer(script, tls="implicit") as s:
        write_config(f'[accounts.gmail]\nhost = "localhost"\nport = {s.port}\n'
                     f'user = "me@gmail.com"\nca_file = "{s.ca_file}"\n'
                     f'oauth2_token_command = "cat {token_file}"\n')
        result = invoke("--trace", "account", "test", "gmail", "--json")
    s.assert_done()
    record = json.loads(result.stdout)
    assert (record["mechanism"], record["credentials"], record["count"]) == (
        "OAUTHBEARER", "oauth2_token_command", 4)
    assert "AUTH OAUTHBEARER ***" in result.stderr
    assert OAUTH_TOKEN not in result.stdout + result.stderr


def test_a_token_mechanism_ignores_popctl_password(tmp_path: Path) -> None:
    """auth = "OAUTHBEARER" takes a token, never a password: POPCTL_PASSWORD does not stand
    in for the account's token command (issue 16's "environment first" stops there)."""
    token_file = tmp_path / "token"
    token_file.write_text(OAUTH_TOKEN + "\n")
    capa = b"+OK\r\nUSER\r\nSASL PLAIN OAUTHBEARER\r\n.\r\n"
    script = _oauthbearer_dialogue(capa)
    with ScriptedServer(script, tls="implicit") as s:
        write_config(f'[accounts.gmail]\nhost = "localhost"\nport = {s.port}\n'
                     f'user = "me@gmail.com"\nca_file = "{s.ca_file}"\nauth = "OAUTHBEARER"\n'
                     f'oauth2_token_command = "cat {token_file}"\n')
        result = invoke("account", "test", "gmail", "--json",
                        env={"POPCTL_PASSWORD": "an-app-password"})
    s.assert_done()
    assert json.loads(result.stdout)["credentials"] == "oauth2_token_command"


def _on_terminal(args: list[str], answers: list[tuple[bytes, bytes]],
                 env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run popctl with a pseudo-terminal as its controlling terminal, stdin and stderr (stdout a
    pipe); answer each prompt; return the status, stdout and what the terminal showed."""
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # after setsid(): the pty becomes /dev/tty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen([sys.executable, "-m", "popctl", *args], stdin=slave,
                               stderr=slave, stdout=subprocess.PIPE, start_new_session=True,
                               preexec_fn=controlling_terminal, env={**os.environ, **env})
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        for prompt, answer in answers:
            while prompt not in shown:
                assert time.monotonic() < deadline, shown
                ready, _, _ = select.select([master], [], [], 1)
                if ready:
                    shown += os.read(master, 4096)
            shown = shown.replace(prompt, b"<" + prompt + b">", 1)
            os.write(master, answer + b"\n")
        stdout, _ = process.communicate(timeout=60)
        shown += drain(master)
    finally:
        close_terminal(process, master)
    return process.returncode, stdout, shown


@dovecot
def test_a_hidden_prompt_on_a_terminal(server: DovecotServer) -> None:
    write_config(account_toml(server, "bob", "bob"))
    password = server.users["bob"].encode()
    status, stdout, shown = _on_terminal(["--account", "bob", "stat", "--json"],
                                         [(b"Password for bob@localhost: ", password)],
                                         FILE_BACKEND)
    assert (status, stdout) == (0, b'{\n  "count": 1,\n  "size": 42\n}\n'), shown
    assert password not in shown  # not echoed


@dovecot
def test_a_refused_typed_password_says_it_was_typed(server: DovecotServer) -> None:
    write_config(account_toml(server, "bob", "bob"))
    status, stdout, shown = _on_terminal(["--account", "bob", "stat"],
                                         [(b"Password for bob@localhost: ", b"typo")],
                                         FILE_BACKEND)
    assert (status, stdout) == (3, b""), shown
    assert shown.replace(b"\r\n", b"\n").endswith(
        b"Error: login failed: server said: [AUTH] Authentication failed; the password was "
        b"the one typed at the prompt (none was stored for bob@localhost:"
        + str(server.tls_port).encode() + b"): check it, or store it with: popctl password "
        b"set bob\n")


def test_password_set_asks_twice_hidden_on_a_terminal() -> None:
    write_config(WORK)
    key = "me@pop.work.example:1995"
    status, stdout, shown = _on_terminal(
        ["password", "set", "work"],
        [(f"Password for {key}: ".encode(), b"s3cr3t-typed"),
         (b"Repeat for confirmation: ", b"s3cr3t-typed")], FILE_BACKEND)
    assert (status, stdout) == (0, b""), shown
    assert b"s3cr3t-typed" not in shown
    assert PlaintextKeyring().get_password("popctl", key) == "s3cr3t-typed"


# --- account commands ----------------------------------------------------------------------------


def test_account_add_writes_the_file() -> None:
    result = invoke("account", "add", "work", "--host", "pop.example.org", "--user",
                    "me@example.org", "--tls", "starttls", "--timeout", "12",
                    "--password-command", 'pass show "mail/work"', "--default")
    assert outcome(result) == (0, "", f"account work added to {config_file()}\n")
    assert config_file().read_text() == (
        "# popctl accounts: see popctl(1), FILES. Passwords do not belong here.\n"
        'default = "work"\n'
        "\n"
        "[accounts.work]\n"
        'host = "pop.example.org"\n'
        'user = "me@example.org"\n'
        'tls = "starttls"\n'
        "timeout = 12.0\n"
        'password_command = "pass show \\"mail/work\\""\n')
    assert oct(config_file().stat().st_mode & 0o777) == "0o600"
    result = invoke("account", "add", "home", "--host", "pop.home.example", "--user", "me",
                    "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "name": "home", "default": False, "host": "pop.home.example", "port": 995,
        "user": "me", "tls": "implicit", "auth": "auto", "timeout": 30.0, "ca_file": None,
        "fingerprint": None, "password_command": None, "oauth2_token_command": None,
        "allow_plaintext": False}
    assert result.stderr == (f"account home added to {config_file()}\n"
                             "store its password with: popctl password set home\n")


def test_account_add_keeps_a_pasted_fingerprint_as_hex_digits() -> None:
    """The line `openssl x509 -noout -fingerprint -sha256` prints, pasted whole."""
    pasted = "sha256 Fingerprint=" + ":".join(["AB"] * 32)
    result = invoke("account", "add", "box", "--host", "pop.box.example", "--user", "me",
                    "--fingerprint", pasted)
    assert result.exit_code == 0, result.stderr
    assert f'fingerprint = "{"ab" * 32}"\n' in config_file().read_text()


def test_account_add_refusals() -> None:
    assert outcome(invoke("account", "add", "w", "--user", "me")) == (
        2, "", "Error: account add needs --host\n")
    assert outcome(invoke("account", "add", "w w", "--host", "h", "--user", "me")) == (
        2, "", "Error: bad account name 'w w': use letters, digits, - and _ (at most 64)\n")
    assert outcome(invoke("account", "add", "w", "--host", "h", "--user", "me", "--auth",
                          "NTLM")) == (
        2, "", "Error: --auth: expected one of auto, USER, APOP, PLAIN, LOGIN, CRAM-MD5, "
               "SCRAM-SHA-256, XOAUTH2, OAUTHBEARER\n")
    assert outcome(invoke("account", "add", "w", "--host", "h", "--user", "me",
                          "--fingerprint", "abc")) == (
        2, "", "Error: --fingerprint: a SHA-256 fingerprint is 64 hex digits (colons allowed)\n")
    assert not config_file().exists()
    assert invoke("account", "add", "w", "--host", "h", "--user", "me").exit_code == 0
    assert outcome(invoke("account", "add", "w", "--host", "h2", "--user", "me")) == (
        2, "", f"Error: account 'w' already exists in {config_file()}: remove it first "
               "(popctl account remove w) or edit the file\n")
    # No option takes a password.
    result = invoke("account", "add", "x", "--host", "h", "--user", "me", "--password", "pw")
    assert result.exit_code == 2 and "No such option '--password'" in result.stderr


def test_account_add_asks_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_module, "interactive", lambda: True)
    result = invoke("account", "add", "work", input="pop.example.org\nme\n")
    assert result.exit_code == 0, result.stderr
    assert "POP3 server: " in result.stderr and "Login name: " in result.stderr
    assert 'host = "pop.example.org"\nuser = "me"\n' in config_file().read_text()


@dovecot
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_account_add_probe(server: DovecotServer, tls: str) -> None:
    port = server.tls_port if tls == "implicit" else server.port
    result = invoke("account", "add", "bob", "--host", "localhost", "--port", str(port),
                    "--user", "bob", "--ca-file", server.ca_file, "--probe")
    assert result.exit_code == 0, result.stderr
    how = "implicit TLS" if tls == "implicit" else "STLS"
    assert f"probe: {how} works on port {port} (TLSv1.3); SASL offered: PLAIN LOGIN CRAM-MD5 " \
           f"SCRAM-SHA-256; proposed: tls = {tls}, auth = SCRAM-SHA-256\n" in result.stderr
    text = config_file().read_text()
    assert f'tls = "{tls}"\nauth = "SCRAM-SHA-256"\n' in text
    env = {"POPCTL_PASSWORD": server.users["bob"]}
    record = record_of(invoke("account", "test", "bob", "--json", env=env))
    assert (record["tls"], record["mechanism"], record["count"]) == (tls, "SCRAM-SHA-256", 1)


def test_account_add_probe_finds_nothing() -> None:
    port = closed_port()
    result = invoke("account", "add", "x", "--host", "localhost", "--port", str(port),
                    "--user", "u", "--probe")
    assert result.exit_code == 4
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: probe: no TLS connection to localhost worked (implicit port {port}: ")
    assert not config_file().exists()


def test_account_list_and_show() -> None:
    write_config(WORK, HOME, default="home")
    assert outcome(invoke("account", "list")) == (0, (
        "name    default    host                port  user     tls       auth\n"
        "------  ---------  ----------------  ------  -------  --------  ------\n"
        "work    no         pop.work.example    1995  me       starttls  PLAIN\n"
        "home    yes        pop.home.example     995  me@home  implicit  auto\n"), "")
    assert outcome(invoke("account", "list", "--format", "csv")) == (0, (
        "name,default,host,port,user,tls,auth\n"
        "work,false,pop.work.example,1995,me,starttls,PLAIN\n"
        "home,true,pop.home.example,995,me@home,implicit,auto\n"), "")
    keyring.set_password("popctl", "me@home@pop.home.example:995", "pw")
    record = json.loads(invoke("account", "show", "home", "--json").stdout)
    assert record["keyring_user"] == "me@home@pop.home.example:995"
    assert record["keyring"] == "stored"
    assert record["keyring_backend"].startswith("keyrings.alt.file.PlaintextKeyring (file ")
    assert json.loads(invoke("account", "show", "work", "--json").stdout)["keyring"] == \
        "not stored"


def test_account_list_empty() -> None:
    assert outcome(invoke("account", "list")) == (0, "", (
        f"no accounts in {config_file()}; add one with: popctl account add NAME --host HOST "
        "--user USER\n"))
    assert outcome(invoke("account", "list", "--json")) == (0, "[]\n", "")


def test_account_show_without_a_keyring(no_keyring: None) -> None:
    write_config(HOME)
    record = json.loads(invoke("account", "show", "home", "--json").stdout)
    assert (record["keyring"], record["keyring_backend"]) == (
        "unavailable", "keyring.backends.fail.Keyring")


def test_account_remove() -> None:
    write_config("# mine\n", WORK, "# home, the last one\n", HOME, default="work")
    keyring.set_password("popctl", "me@pop.work.example:1995", "pw")
    keyring.set_password("popctl", "me@home@pop.home.example:995", "pw2")
    assert outcome(invoke("account", "remove", "work")) == (
        2, "", "Error: refusing to remove an account without confirmation: add --yes\n")
    result = invoke("account", "remove", "work", "--yes", "--format", "json")
    assert outcome(result) == (0, '{\n  "name": "work",\n  "removed": true,\n'
                                  '  "keyring_deleted": true\n}\n', (
        f"account work removed from {config_file()}\n"
        "its password (me@pop.work.example:1995) was deleted from the keyring\n"))
    assert config_file().read_text() == "\n# mine\n# home, the last one\n" + HOME
    assert keyring.get_password("popctl", "me@pop.work.example:1995") is None
    assert keyring.get_password("popctl", "me@home@pop.home.example:995") == "pw2"


def test_account_remove_keeps_a_shared_keyring_entry() -> None:
    write_config(HOME, HOME.replace("[accounts.home]", "[accounts.alias]"))
    keyring.set_password("popctl", "me@home@pop.home.example:995", "pw")
    result = invoke("account", "remove", "alias", "--yes")
    assert result.exit_code == 0
    assert "its keyring entry me@home@pop.home.example:995 is kept: account home uses it too" \
        in result.stderr
    assert keyring.get_password("popctl", "me@home@pop.home.example:995") == "pw"


def test_account_remove_asks_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(HOME)
    monkeypatch.setattr(console_module, "interactive", lambda: True)
    result = invoke("account", "remove", "home", input="n\n")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        8, "Declined: account home was kept.")  # 8: declined, nothing changed (issue 16)
    assert "[accounts.home]" in config_file().read_text()
    assert invoke("account", "remove", "home", input="y\n").exit_code == 0
    assert "[accounts.home]" not in config_file().read_text()


@dovecot
def test_account_test_reports_the_negotiation(server: DovecotServer) -> None:
    write_config(account_toml(server, "bob", "bob", tls="starttls"))
    result = invoke("account", "test", "bob", env={"POPCTL_PASSWORD": server.users["bob"]})
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines == {
        "account": "bob", "host": "localhost", "port": str(server.port), "user": "bob",
        "tls": "starttls", "tls_version": "TLSv1.3", "tls_cipher": lines["tls_cipher"],
        "mechanism": "SCRAM-SHA-256", "credentials": "POPCTL_PASSWORD", "count": "1",
        "size": "42"}


# --- password set and delete ------------------------------------------------------------------


def test_password_set_from_stdin_and_delete(file_keyring: PlaintextKeyring) -> None:
    write_config(WORK)
    key = "me@pop.work.example:1995"
    result = invoke("password", "set", "work", input="line one \nline two\n")
    location = file_keyring.file_path
    assert outcome(result) == (0, "", (
        f"the password of account work ({key}) goes to the keyring backend "
        f"keyrings.alt.file.PlaintextKeyring (file {location})\n"
        f"warning: PlaintextKeyring does not encrypt: the password is only base64-encoded in "
        f"{location}\n"
        "password of account work stored\n"))
    assert keyring.get_password("popctl", key) == "line one "
    assert outcome(invoke("password", "delete", "work", "--json")) == (0, (
        f'{{\n  "account": "work",\n  "keyring_user": "{key}",\n  "deleted": true\n}}\n'),
        f"password of account work ({key}) deleted from the keyring\n")
    assert outcome(invoke("password", "delete", "work")) == (0, "", (
        f"no password of account work ({key}) was stored in keyrings.alt.file.PlaintextKeyring"
        "\n"))


def test_password_set_says_when_the_environment_overrides_it(
        file_keyring: PlaintextKeyring) -> None:
    write_config(WORK)
    result = invoke("password", "set", "work", input="stored\n",
                    env={"POPCTL_PASSWORD": "from-env"})
    assert result.exit_code == 0
    assert result.stderr.endswith(
        "password of account work stored\nnote: POPCTL_PASSWORD is set here, and comes before "
        "the keyring: unset it for popctl to use the stored password\n")


def test_password_set_refusals() -> None:
    write_config(WORK)
    assert invoke("password", "set", "work", input="").stderr.endswith(
        "Error: no password on standard input (one line is read)\n")
    assert invoke("password", "set", "work", input="a\0b\n").stderr.endswith(
        "Error: the password contains a CR, LF or NUL character; nothing was stored\n")
    assert invoke("password", "set", "nope", input="x\n").exit_code == 2
    result = invoke("password", "set", "work", "hunter2")
    assert result.exit_code == 2 and "Got unexpected extra argument (hunter2)" in result.stderr
    assert keyring.get_password("popctl", "me@pop.work.example:1995") is None


def test_password_set_without_a_keyring_says_what_to_do(no_keyring: None) -> None:
    write_config(WORK)
    assert outcome(invoke("password", "set", "work", input="pw\n")) == (2, "", (
        "Error: no usable keyring backend here (keyring.backends.fail.Keyring): install "
        "keyrings.alt and set PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring (a "
        "file, not encrypted), or give the account a password_command, or set "
        "POPCTL_PASSWORD\n"))


def test_password_set_without_a_keyring_as_a_process(tmp_path: Path) -> None:
    """The real headless case: keyring's own choice of backend is the fail one."""
    write_config(WORK)
    done = popctl_process("password", "set", "work", input=b"pw\n",
                          env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr.startswith(b"Error: no usable keyring backend here (")
    assert done.stderr.count(b"\n") == 1


# --- many accounts at once ----------------------------------------------------------------------


@dovecot
def test_all_accounts_stat_two_results_one_error(server: DovecotServer) -> None:
    """The acceptance case of issue 4, as a user runs it: one process, three accounts."""
    three_accounts(server)
    started = time.monotonic()
    done = popctl_process("--all-accounts", "stat", "--format", "json", env=FILE_BACKEND)
    elapsed = time.monotonic() - started
    assert json.loads(done.stdout) == [
        {"account": "alice", "count": 2, "size": sum(map(len, ALICE_MAIL))},
        {"account": "bob", "count": 1, "size": 42}]
    assert done.stderr.decode() == (
        "Error: wrong: login failed: server said: [AUTH] Authentication failed; the password "
        f"came from the keyring (popctl, carol@localhost:{server.tls_port}): if it has "
        "changed, store the new one with: popctl password set wrong\n"
        "Error: 1 of 3 account(s) failed\n")
    assert done.returncode == 3
    assert elapsed < 60


@dovecot
def test_different_failures_exit_1(server: DovecotServer) -> None:
    three_accounts(server)
    config_file().write_text(config_file().read_text() + account_toml(
        server, "nobody", "bob").replace(f"port = {server.tls_port}", f"port = {closed_port()}"))
    keyring.set_password("popctl", "bob@localhost:1", "x")  # irrelevant entry
    result = invoke("--all-accounts", "stat", "--format", "ndjson")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f'{{"account":"alice","count":2,"size":{sum(map(len, ALICE_MAIL))}}}',
        '{"account":"bob","count":1,"size":42}']
    errors = result.stderr.splitlines()
    assert errors[0].startswith("Error: wrong: login failed: server said: [AUTH] "
                                "Authentication failed; the password came from the keyring")
    assert errors[1].startswith("Error: nobody: ")
    assert errors[2] == "Error: 2 of 4 account(s) failed"


@dovecot
def test_repeated_account_list_and_uidl(server: DovecotServer) -> None:
    three_accounts(server)
    result = invoke("--account", "bob", "list", "--account", "alice", "--format", "csv",
                    "--sizes-only")
    assert outcome(result) == (0, (
        f"account,number,size\nbob,1,42\nalice,1,{len(ALICE_MAIL[0])}\n"
        f"alice,2,{len(ALICE_MAIL[1])}\n"),
        "")
    result = invoke("-a", "alice", "-a", "bob", "list", "--json")
    records = json.loads(result.stdout)
    assert [(r["account"], r["subject"]) for r in records] == [
        ("alice", "one"), ("alice", "two"), ("bob", "three")]
    assert list(records[0])[:3] == ["account", "number", "size"]
    uids = json.loads(invoke("-a", "alice", "-a", "bob", "uidl", "--json").stdout)
    assert [(u["account"], u["number"]) for u in uids] == [("alice", 1), ("alice", 2),
                                                          ("bob", 1)]


@dovecot
def test_dele_across_accounts(server: DovecotServer) -> None:
    three_accounts(server)
    assert outcome(invoke("-a", "alice", "-a", "bob", "dele", "--all")) == (
        2, "", "Error: refusing to delete without confirmation: add --yes (or --dry-run to see "
               "what would be deleted)\n")
    result = invoke("--all-accounts", "dele", "--subject", "^t", "--yes", "--json")
    assert result.exit_code == 3  # "wrong" failed; the others still deleted theirs
    assert [(r["account"], r["subject"], r["deleted"]) for r in json.loads(result.stdout)] == [
        ("alice", "two", True), ("bob", "three", True)]
    after = json.loads(invoke("-a", "alice", "-a", "bob", "stat", "--json").stdout)
    assert [(r["account"], r["count"]) for r in after] == [("alice", 1), ("bob", 0)]


@dovecot
def test_retr_new_across_accounts_into_one_maildir(server: DovecotServer,
                                                   tmp_path: Path) -> None:
    """Issue 14: each account has its own state for the one store."""
    three_accounts(server)
    maildir = tmp_path / "Maildir"
    result = invoke("--all-accounts", "retr", "--new", "--maildir", str(maildir), "--json")
    assert result.exit_code == 3  # "wrong" failed; the others fetched theirs
    assert [(r["account"], r["uid"] is not None, r["action"])
            for r in json.loads(result.stdout)] == [
        ("alice", True, "fetched"), ("alice", True, "fetched"), ("bob", True, "fetched")]
    assert len(list((maildir / "new").iterdir())) == 3
    server.deliver("bob", BOB_MAIL[0])
    again = invoke("-a", "alice", "-a", "bob", "retr", "--new", "--maildir", str(maildir))
    assert outcome(again) == (0, "", f"1 new message(s) stored in {maildir}\n")
    assert len(list((maildir / "new").iterdir())) == 4


@dovecot
def test_a_failure_commits_nothing_of_that_account(server: DovecotServer) -> None:
    """Each session is independent: wrong's refused login does not stop alice's QUIT."""
    three_accounts(server)
    result = invoke("-a", "alice", "-a", "wrong", "dele", "--all", "--yes", "--json")
    assert result.exit_code == 3
    assert [r["account"] for r in json.loads(result.stdout)] == ["alice", "alice"]
    assert json.loads(invoke("-a", "alice", "stat", "--json").stdout)["count"] == 0


@dovecot
def test_trace_across_accounts_is_labelled_and_hides_passwords(server: DovecotServer) -> None:
    three_accounts(server)
    result = invoke("--trace", "--all-accounts", "stat", "--json")
    lines = result.stderr.splitlines()
    for name in ("alice", "bob", "wrong"):
        assert any(f" [{name}] C: " in line for line in lines), name
    for password in (server.users["alice"], server.users["bob"], WRONG):
        assert password not in result.stdout + result.stderr


def test_across_accounts_refusals() -> None:
    write_config(WORK, HOME)
    assert outcome(invoke("--all-accounts", "-a", "work", "stat")) == (
        2, "", "Error: one account and all accounts were both asked for: give either --account "
               "or --all-accounts, not both\n")
    assert outcome(invoke("--all-accounts", "top", "1")) == (
        2, "", "Error: this command works on one account at a time (--all-accounts and a "
               "repeated --account work with stat, list, uidl, dele and retr --new only)\n")
    assert outcome(invoke("--sandbox", "--all-accounts", "stat")) == (
        2, "", "Error: the sandbox has no accounts: drop --all-accounts and --account\n")
    config_file().unlink()
    assert outcome(invoke("--all-accounts", "stat")) == (2, "", (
        f"Error: all accounts were asked for, and there are none in {config_file()}; add one "
        "with: popctl account add NAME --host HOST --user USER\n"))


def test_an_account_without_a_password_fails_alone(tmp_path: Path) -> None:
    write_config(WORK, HOME)
    result = invoke("--all-accounts", "stat")
    assert result.exit_code == 7
    assert result.stderr.splitlines() == [
        "Error: work: no password for account work (me@pop.work.example:1995): store one with: "
        "popctl password set work (or give the account a password_command, or set "
        "POPCTL_PASSWORD)",
        "Error: home: no password for account home (me@home@pop.home.example:995): store one "
        "with: popctl password set home (or give the account a password_command, or set "
        "POPCTL_PASSWORD)",
        "Error: 2 of 2 account(s) failed"]


# --- the password is never shown ------------------------------------------------------------------

SECRET = "Sup3r-Secret-Never-Shown-\u00e9\u00df"


@dovecot
def test_password_never_in_file_output_trace_or_traceback(tmp_path: Path) -> None:
    """A Dovecot of its own whose bob has a long, distinctive password."""
    from tests.support.dovecot_server import start_dovecot

    own = start_dovecot(tmp_path / "dovecot", users={"bob": SECRET})
    try:
        invoke("account", "add", "bob", "--host", "localhost", "--port", str(own.tls_port),
               "--user", "bob", "--ca-file", own.ca_file, "--default")
        seen = [invoke("password", "set", "bob", input=SECRET + "\n")]
        seen.append(invoke("--trace", "--debug", "account", "test", "bob"))
        seen.append(invoke("--trace", "-a", "bob", "-a", "bob2", "stat"))
        keyring.set_password("popctl", f"bob@localhost:{own.tls_port}", SECRET + "x")
        seen.append(invoke("--trace", "--debug", "stat"))  # refused: a traceback with --debug
        assert seen[-1].exit_code == 3
        seen.append(invoke("account", "show", "bob", "--json"))
        seen.append(invoke("account", "list", "--json"))
        for result in seen:
            for text in (result.stdout, result.stderr):
                for form in (SECRET, base64.b64encode(SECRET.encode()).decode()):
                    assert form not in text
        assert SECRET not in config_file().read_text()
        assert SECRET.encode() not in config_file().read_bytes()
    finally:
        own.stop()


def test_password_never_in_argv_or_environment(tmp_path: Path) -> None:
    """`password set` reads it from stdin: while it waits there, its command line and
    environment (as any user sees them in /proc) hold no password."""
    write_config(WORK)
    with subprocess.Popen([sys.executable, "-m", "popctl", "password", "set", "work"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, **FILE_BACKEND}) as process:
        assert process.stderr is not None
        # It has told where the password goes: it is reading stdin now.
        first = process.stderr.readline()
        assert first.startswith(b"the password of account work")
        proc = Path(f"/proc/{process.pid}")
        cmdline = (proc / "cmdline").read_bytes()
        environ = (proc / "environ").read_bytes()
        assert cmdline.split(b"\0")[-4:] == [b"password", b"set", b"work", b""]
        stdout, stderr = process.communicate(SECRET.encode() + b"\n", timeout=60)
        assert (process.returncode, stdout) == (0, b"")
    for text in (cmdline, environ, first + stderr):
        assert SECRET.encode() not in text
    assert PlaintextKeyring().get_password("popctl", "me@pop.work.example:1995") == SECRET


# --- the Secret Service, through a real gnome-keyring daemon -------------------------------------


@dovecot
def test_secret_service_keyring_headless(server: DovecotServer, tmp_path: Path) -> None:
    """password set, stat, account show and password delete against gnome-keyring's Secret
    Service in a private D-Bus session, as a cron job on a server would use it."""
    for tool in ("dbus-run-session", "gnome-keyring-daemon"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (apt-get install gnome-keyring dbus-x11)")
    write_config(account_toml(server, "bob", "bob"))
    password_file = tmp_path / "bob-password"
    password_file.write_text(server.users["bob"] + "\n")
    out = tmp_path / "out"
    out.mkdir()
    script = """
printf %s "$UNLOCK" | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 90
run() {
    name=$1; shift
    "$PY" -m popctl "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"; echo $? >"$OUT/$name.rc"
}
run set password set bob <"$PASSWORD_FILE"
run stat --account bob stat --json
run show account show bob --json
run delete password delete bob
run gone --account bob stat --json
"""
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
           "UNLOCK": "keyring-unlock-pw", "PY": sys.executable, "OUT": str(out),
           "PASSWORD_FILE": str(password_file)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env.pop("POPCTL_PASSWORD", None)
    done = subprocess.run(["dbus-run-session", "--", "sh", "-c", script], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr

    def result(name: str) -> tuple[int, str, str]:
        return (int((out / f"{name}.rc").read_text()), (out / f"{name}.out").read_text(),
                (out / f"{name}.err").read_text())

    status, stdout, stderr = result("set")
    assert (status, stdout) == (0, ""), stderr
    assert stderr == (f"the password of account bob (bob@localhost:{server.tls_port}) goes to "
                      "the keyring backend keyring.backends.SecretService.Keyring\n"
                      "password of account bob stored\n")  # no plaintext warning
    assert result("stat") == (0, '{\n  "count": 1,\n  "size": 42\n}\n', "")
    status, stdout, _ = result("show")
    assert status == 0 and json.loads(stdout)["keyring"] == "stored"
    assert result("delete")[0] == 0
    status, stdout, stderr = result("gone")
    assert (status, stdout) == (7, "")
    assert "popctl password set bob" in stderr
    # gnome-keyring encrypts its file: the password is nowhere in clear under HOME.
    secret = server.users["bob"].encode()
    for path in Path(os.environ["HOME"]).rglob("*"):
        if path.is_file() and path != password_file:
            assert secret not in path.read_bytes(), path


def test_config_error_type() -> None:
    assert issubclass(ConfigError, UsageError)
