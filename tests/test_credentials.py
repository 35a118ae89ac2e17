"""popctl/credentials.py against real keyring backends (keyrings.alt's file backend, keyring's
fail backend), and the password and token commands run for real through /bin/sh."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail
from keyrings.alt.file import PlaintextKeyring

from popctl import credentials
from popctl.errors import ConfigError, ExitCode, NoCredentialsError

SECRET = "pä$$ wörd \"'`x"


@pytest.fixture
def file_keyring() -> Iterator[PlaintextKeyring]:
    """keyrings.alt's PlaintextKeyring, its file under the test's temporary HOME."""
    previous = keyring.get_keyring()
    ring = PlaintextKeyring()
    assert str(ring.file_path).startswith(os.environ["HOME"])
    keyring.set_keyring(ring)
    try:
        yield ring
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """What a server without a desktop has: keyring's fail backend."""
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


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


def test_keyring_first(file_keyring: PlaintextKeyring, monkeypatch: pytest.MonkeyPatch,
                       tmp_path: Path) -> None:
    credentials.set_password("u@h:995", "from-keyring")
    monkeypatch.setenv("POPCTL_PASSWORD", "from-env")
    ran = tmp_path / "ran"
    found = credentials.find_password("u@h:995", f"touch {ran}; echo from-command", "a")
    assert found == ("from-keyring", "keyring")
    assert not ran.exists()  # the command is not even run


def test_then_the_command(file_keyring: PlaintextKeyring, monkeypatch: pytest.MonkeyPatch,
                          tmp_path: Path) -> None:
    monkeypatch.setenv("POPCTL_PASSWORD", "from-env")
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-command\r\nsecond line\n")
    found = credentials.find_password("u@h:995", f"cat {secret_file} | head -2", "a")
    assert found == ("from-command", "password_command")


def test_then_the_environment(no_keyring: None, monkeypatch: pytest.MonkeyPatch) -> None:
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
