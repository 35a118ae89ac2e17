"""popctl/credentials.py against real keyring backends (keyrings.alt's file backend, keyring's
fail backend), and the password and token commands run for real through /bin/sh."""

from __future__ import annotations

import base64
import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from keyrings.alt.file import PlaintextKeyring

from popctl import config, credentials
from popctl.errors import ConfigError, ExitCode, NoCredentialsError
from tests.support.bounded import hang_guard
from tests.support.cli import invoke, outcome
from tests.support.secrets import assert_hidden

SECRET = "pä$$ wörd \"'`x"
SHOWN = "Mw7-popctl-PrintedThenHung-33q"  # printed by a command that then hangs


def test_keyring_user_is_the_login_and_the_server() -> None:
    assert credentials.keyring_user("Me@x", "POP.Example.org", 995) == "Me@x@pop.example.org:995"


def test_file_backend_round_trip(file_keyring: PlaintextKeyring) -> None:
    found = credentials.backend()
    assert found.usable and found.plaintext
    assert found.name == "keyrings.alt.file.PlaintextKeyring"
    assert found.location == str(file_keyring.file_path)
    assert credentials.get_password("u@h:995") is None
    assert credentials.set_password("u@h:995", SECRET) == found
    assert credentials.get_password("u@h:995") == SECRET
    stored = Path(file_keyring.file_path).read_text()
    assert "[popctl]" in stored
    # The warning popctl gives is true: base64, not encryption.
    assert base64.b64encode(SECRET.encode()).decode() in stored.replace("\n", "")
    assert credentials.delete_password("u@h:995") is True
    assert credentials.delete_password("u@h:995") is False
    assert credentials.get_password("u@h:995") is None


def test_no_backend(no_keyring: None) -> None:
    found = credentials.backend()
    assert not found.usable and found.name == "keyring.backends.fail.Keyring"
    warnings: list[str] = []
    assert credentials.get_password("u@h:995", warnings.append) is None
    assert warnings == []  # silently on to the next source
    with pytest.raises(ConfigError) as caught:
        credentials.set_password("u@h:995", SECRET)
    assert str(caught.value) == (
        "no usable keyring backend here (keyring.backends.fail.Keyring): install keyrings.alt "
        "and set PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring (a file, not "
        "encrypted), or give the account a password_command, or set POPCTL_PASSWORD")
    assert credentials.delete_password("u@h:995") is False


def test_a_broken_backend_is_reported_and_skipped(file_keyring: PlaintextKeyring) -> None:
    Path(file_keyring.file_path).parent.mkdir(parents=True, exist_ok=True)
    Path(file_keyring.file_path).write_text("[popctl]\nu_40h_3a995 = %%%not base64\n")
    warnings: list[str] = []
    assert credentials.get_password("u@h:995", warnings.append) is None
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: the keyring could not be read (")
    assert warnings[0].endswith("); trying the next source")


# --- the lookup order ------------------------------------------------------------------------


def test_the_environment_first(file_keyring: PlaintextKeyring,
                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 16: the environment before the account, as for every other setting."""
    credentials.set_password("u@h:995", "from-keyring")
    monkeypatch.setenv("POPCTL_PASSWORD", "from-env")
    ran = tmp_path / "ran"
    found = credentials.find_password("u@h:995", f"touch {ran}; echo from-command", "a",
                                      token_command=f"touch {ran}; echo token")
    assert found == ("from-env", "POPCTL_PASSWORD")
    assert not ran.exists()  # neither command is even run


def test_a_token_mechanism_takes_the_token_command_first(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """auth = XOAUTH2 takes no password: POPCTL_PASSWORD does not stand in for the token."""
    monkeypatch.setenv("POPCTL_PASSWORD", "from-env")
    assert credentials.find_password(None, None, "a", token_command="echo token",
                                     token_only=True) == ("token", "oauth2_token_command")


def test_then_the_token_command(file_keyring: PlaintextKeyring, tmp_path: Path) -> None:
    credentials.set_password("u@h:995", "from-keyring")
    found = credentials.find_password("u@h:995", "echo from-command", "a",
                                      token_command="echo token")
    assert found == ("token", "oauth2_token_command")


def test_then_the_keyring(file_keyring: PlaintextKeyring, tmp_path: Path) -> None:
    credentials.set_password("u@h:995", "from-keyring")
    ran = tmp_path / "ran"
    found = credentials.find_password("u@h:995", f"touch {ran}; echo from-command", "a")
    assert found == ("from-keyring", "keyring")
    assert not ran.exists()  # the command is not even run


def test_then_the_command(file_keyring: PlaintextKeyring, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-command\r\nsecond line\n")
    found = credentials.find_password("u@h:995", f"cat {secret_file} | head -2", "a")
    assert found == ("from-command", "password_command")


def test_the_environment_without_an_account(no_keyring: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POPCTL_PASSWORD", "from-env")
    assert credentials.find_password("u@h:995", None, "a") == ("from-env", "POPCTL_PASSWORD")
    assert credentials.find_password(None, None, None) == ("from-env", "POPCTL_PASSWORD")


def test_then_nothing(no_keyring: None) -> None:
    assert credentials.find_password("u@h:995", None, "a") is None


def test_spaces_inside_the_secret_are_kept() -> None:
    assert credentials.run_command("printf '  a b  \\n'", "password_command", "a") == "  a b  "


@pytest.mark.parametrize(("command", "message"), [
    ("exit 3", "password_command of account 'work' failed (exit status 3): exit 3"),
    ("kill -9 $$", "password_command of account 'work' failed (killed by signal 9): kill -9 $$"),
    ("no-such-program-here", "password_command of account 'work' failed (exit status 127): "
                             "no-such-program-here"),
    ("true", "password_command of account 'work' printed nothing on its first line: true"),
    ("printf '\\nsecret\\n'", "password_command of account 'work' printed nothing on its first "
                              "line: printf '\\nsecret\\n'"),
    ("printf '\\377'", "password_command of account 'work' printed something that is not "
                       "UTF-8: printf '\\377'"),
])
def test_a_failing_command_is_a_clear_error(command: str, message: str) -> None:
    with pytest.raises(NoCredentialsError) as caught:
        credentials.run_command(command, "password_command", "work")
    assert caught.value.exit_code == ExitCode.NO_CREDENTIALS
    assert str(caught.value) == message


def test_the_command_cannot_read_our_stdin(tmp_path: Path) -> None:
    # Not a terminal: the command's stdin is /dev/null, so `cat` ends at once with nothing.
    with pytest.raises(NoCredentialsError, match="printed nothing"):
        credentials.run_command("cat", "password_command", "a")


# --- bounded commands (issue 11): a timeout, an output limit, the whole process group stopped ---

ALL_ACCOUNTS_FAILED = "Error: {n} of {n} account(s) failed\n"


def write_config(text: str) -> Path:
    path = Path(config.config_path())
    path.write_text(text)
    return path


def account(name: str, *lines: str) -> str:
    # A port nothing listens on: these runs fail, or are stopped, before connecting.
    return (f'[accounts.{name}]\nhost = "localhost"\nport = 9\nuser = "me"\ntls = "none"\n'
            "allow_plaintext = true\n" + "".join(line + "\n" for line in lines) + "\n")


def popctl(*args: str, within: float) -> tuple[int, str, str]:
    """``popctl ARGS``, failed if it is still running after ``within`` seconds."""
    with hang_guard(within):
        return outcome(invoke(*args))


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped yet counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_hung_and_flooding_commands_are_stopped_under_all_accounts(no_keyring: None) -> None:
    """`sleep 3600` hung popctl and every account after it; `yes` grew to gigabytes."""
    write_config(
        "password_command_timeout = 0.5\n\n"
        + account("hung", 'password_command = "sleep 3600"')
        + account("flood", 'password_command = "yes | head -c 50000000"',
                  "password_command_timeout = 30")
        + account("token", 'oauth2_token_command = "sleep 3600"'))
    code, out, err = popctl("--all-accounts", "stat", within=6)
    assert (code, out) == (7, "")
    assert err == (
        "Error: hung: password_command of account 'hung' did not finish within 0.5 s and was "
        "stopped: sleep 3600 (if it waits for you, e.g. gpg's pinentry, raise "
        "password_command_timeout for the account)\n"
        "Error: flood: password_command of account 'flood' printed more than 64 KiB and was "
        "stopped: yes | head -c 50000000 (it must print the secret on its first line, and "
        "little else)\n"
        "Error: token: oauth2_token_command of account 'token' did not finish within 0.5 s and "
        "was stopped: sleep 3600 (if it waits for you, e.g. gpg's pinentry, raise "
        "password_command_timeout for the account)\n" + ALL_ACCOUNTS_FAILED.format(n=3))


def test_the_whole_process_group_is_stopped(no_keyring: None, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    write_config(account("work", f'password_command = "sleep 3600 & echo $! > {pid_file}; wait"',
                         "password_command_timeout = 0.5"))
    code, _, err = popctl("--all-accounts", "stat", within=5)
    assert code == 7 and "did not finish within 0.5 s and was stopped" in err
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid), "the command's child was left running"


def test_a_secret_printed_before_the_timeout_is_not_shown(no_keyring: None) -> None:
    write_config(account("work", f"password_command = \"echo '{SHOWN}'; sleep 3600\"",
                         "password_command_timeout = 0.3"))
    code, out, err = popctl("--all-accounts", "stat", within=60)
    assert code == 7
    assert "did not finish within 0.3 s" in err
    assert_hidden(out + err.replace(f"echo '{SHOWN}'", ""), SHOWN)  # only the command's text


def test_the_default_timeout_and_limit() -> None:
    assert credentials.DEFAULT_COMMAND_TIMEOUT == 60
    assert credentials.MAX_COMMAND_OUTPUT == 65536
    # Exactly the limit is still a secret (a long token); one byte more is not.
    token = "t" * (credentials.MAX_COMMAND_OUTPUT - 1)
    assert credentials.run_command(f"printf '%s\\n' {token}", "oauth2_token_command",
                                   "a") == token
    with pytest.raises(NoCredentialsError, match="printed more than 64 KiB"):
        credentials.run_command(f"printf '%s\\n\\n' {token}", "oauth2_token_command", "a")


def test_output_is_complete_when_a_child_keeps_the_pipe_open(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with hang_guard(5):
        found = credentials.run_command(f"echo pw; sleep 30 & echo $! > {pid_file}",
                                        "password_command", "a", 10)
    assert found == "pw"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # ours: its group was left alone


def test_a_command_ignoring_sigterm_is_killed() -> None:
    with hang_guard(3), pytest.raises(NoCredentialsError, match=r"did not finish within 0\.2 s"):
        credentials.run_command("trap '' TERM; sleep 30", "password_command", "a", 0.2)


@pytest.mark.parametrize(("line", "message"), [
    ("password_command_timeout = 0", "password_command_timeout of account 'work': expected a "
                                     "number of seconds from 0.1 to 3600"),
    ('password_command_timeout = "60"', "password_command_timeout of account 'work': expected "
                                        "a number of seconds from 0.1 to 3600"),
])
def test_bad_timeouts_are_config_errors(line: str, message: str) -> None:
    path = write_config(account("work", line))
    code, _, err = popctl("--account", "work", "stat", within=60)
    assert (code, err) == (2, f"Error: {path}:7: {message}\n")


def test_a_file_wide_timeout_is_checked_too() -> None:
    path = write_config("password_command_timeout = true\n\n" + account("work"))
    code, _, err = popctl("--account", "work", "stat", within=60)
    assert (code, err) == (2, f"Error: {path}:1: password_command_timeout: expected a number of "
                              "seconds from 0.1 to 3600\n")


# popctl, slow to return from starting the password command: until that has turned echo off.
LOOKS_LATE = """
import runpy, subprocess, termios, time
class Popen(subprocess.Popen):
    def __init__(self, args, *more, **options):
        super().__init__(args, *more, **options)
        if args == "stty -echo; sleep 30":
            deadline = time.monotonic() + 30
            while termios.tcgetattr(0)[3] & termios.ECHO and time.monotonic() < deadline:
                time.sleep(0.01)
subprocess.Popen = Popen
runpy.run_module("popctl", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("start", [["-m", "popctl"], ["-c", LOOKS_LATE]],
                         ids=["prompt", "prompt-faster-than-popctl"])
def test_a_stopped_prompt_leaves_the_terminal_as_it_was(start: list[str]) -> None:
    """A command stopped while it had echo off (a passphrase prompt) would leave it off; also
    when it turned echo off before popctl, under load, had looked at the terminal."""
    write_config(account("work", 'password_command = "stty -echo; sleep 30"',
                         "password_command_timeout = 0.5"))
    master, slave = pty.openpty()
    terminal = os.dup(slave)
    try:
        process = subprocess.Popen(
            [sys.executable, *start, "--all-accounts", "stat"], stdin=slave,
            stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        shown = b""
        while process.poll() is None or select.select([master], [], [], 0.2)[0]:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    shown += os.read(master, 4096)
                except OSError:
                    break
        assert process.wait(timeout=30) == 7, shown
        assert b"did not finish within 0.5 s" in shown
        assert termios.tcgetattr(terminal)[3] & termios.ECHO, "echo left off"
    finally:
        os.close(master)
        os.close(terminal)
