"""Where secrets come from: the OS keyring, an account's password or token command, the
environment. The only module that imports keyring, and only inside functions, so that commands
which need no secret (``--help``, ``--sandbox``, ``account list``) never load it.

Keyring entries are stored under service ``popctl`` with the user name ``USER@HOST:PORT`` of the
account (host in lower case, the effective port): a secret is bound to the server and login it
was stored for, survives renaming the account, and is never offered to another server.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from popctl.errors import ConfigError, NoCredentialsError, PopctlError

SERVICE = "popctl"

NO_BACKEND_WAYS_OUT = (
    "install keyrings.alt and set PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring "
    "(a file, not encrypted), or give the account a password_command, or set POPCTL_PASSWORD")


def keyring_user(user: str, host: str, port: int) -> str:
    """The keyring user name of a login: stable, and specific to one server and port."""
    return f"{user}@{host.lower()}:{port}"


class SecretCommandError(NoCredentialsError):
    """A password_command or oauth2_token_command failed or printed nothing."""


class KeyringWriteError(PopctlError):
    """The keyring backend refused to store or delete a secret."""


class Backend(NamedTuple):
    """What ``keyring.get_keyring()`` is, in terms a person can act on."""

    name: str  # module.Class, or a list of them for a chainer
    usable: bool  # False: the fail backend, the null backend, a chainer of none
    plaintext: bool  # keyrings.alt's PlaintextKeyring: base64 in a file, readable by anyone
    location: str | None = None  # the file a keyrings.alt backend keeps

    def describe(self) -> str:
        return self.name + (f" (file {self.location})" if self.location else "")


def _class_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _parts(ring: Any) -> list[Any]:
    from keyring.backends import chainer

    return list(ring.backends) if isinstance(ring, chainer.ChainerBackend) else [ring]


def _usable(ring: Any) -> bool:
    from keyring.backends import fail, null

    return not isinstance(ring, fail.Keyring | null.Keyring)


def backend() -> Backend:
    import keyring

    ring = keyring.get_keyring()
    members = _parts(ring)
    parts = [r for r in members if _usable(r)]
    name = _class_name(ring)
    if members != [ring]:  # a chainer: what it chains
        name += " [" + ", ".join(_class_name(r) for r in members) + "]"
    first = parts[0] if parts else None
    plaintext = first is not None and type(first).__name__ == "PlaintextKeyring"
    location = getattr(first, "file_path", None) if first is not None else None
    return Backend(name, bool(parts), plaintext, str(location) if location else None)


def no_backend_error(found: Backend) -> ConfigError:
    return ConfigError(f"no usable keyring backend here ({found.name}): {NO_BACKEND_WAYS_OUT}")


def get_password(key: str, warn: Callable[[str], None] | None = None) -> str | None:
    """The stored secret, or None: nothing stored, no usable backend (silently), or the backend
    failed (then ``warn`` is told, without the secret, and the lookup moves on)."""
    try:
        found = backend()
        if not found.usable:
            return None
        import keyring

        value: str | None = keyring.get_password(SERVICE, key)
    except Exception as e:  # a locked collection, no D-Bus, a broken backend: try the next source
        if warn is not None:
            warn(f"warning: the keyring could not be read ({type(e).__name__}: {e}); "
                 "trying the next source")
        return None
    return value or None


def set_password(key: str, secret: str) -> Backend:
    found = backend()
    if not found.usable:
        raise no_backend_error(found)
    import keyring

    try:
        keyring.set_password(SERVICE, key, secret)
    except Exception as e:
        raise KeyringWriteError(f"the keyring ({found.name}) could not store the password: "
                                f"{type(e).__name__}: {e}") from None
    return found


def delete_password(key: str) -> bool:
    """Delete the entry; False when there was none (or no usable backend to hold one)."""
    found = backend()
    if not found.usable:
        return False
    import keyring
    from keyring.errors import PasswordDeleteError

    try:
        if keyring.get_password(SERVICE, key) is None:
            return False
        keyring.delete_password(SERVICE, key)
    except PasswordDeleteError:
        return False
    except Exception as e:
        raise KeyringWriteError(f"the keyring ({found.name}) could not delete the password: "
                                f"{type(e).__name__}: {e}") from None
    return True


# A password or token command may wait for a person (gpg's pinentry, a hardware key's touch),
# so the default is generous; a command still running after it is stopped, so that a hung
# helper cannot hang popctl, or every account of a run across accounts, for ever.
DEFAULT_COMMAND_TIMEOUT = 60.0
# A password is one short line and an OAuth2 access token a few KiB (a JWT with claims); 16
# times that is not a secret but a runaway command (`yes`), stopped before it eats memory.
MAX_COMMAND_OUTPUT = 64 * 1024
# After SIGTERM, how long the command's process group has to exit (and a curses or no-echo
# prompt to restore the terminal) before SIGKILL.
_TERM_GRACE = 1.0
_POLL = 0.05  # seconds between looks at whether the command has exited


def run_command(command: str, what: str, account: str,
                timeout: float | None = None) -> str:
    """Run ``command`` with /bin/sh (as msmtp's passwordeval and mbsync's PassCmd do, so that
    ``pass show x | head -1`` works); its standard output's first line is the secret.

    Its standard error goes to ours, so its own messages reach the user. Its standard input is
    ours only on a terminal (gpg may ask there); otherwise /dev/null, so that it cannot eat a
    script or a password popctl itself reads from a pipe. It runs in a session of its own (it
    can prompt on that terminal, or through gpg-agent's pinentry, but has no /dev/tty), and
    its whole process group is stopped when it outlives ``timeout`` seconds (default
    DEFAULT_COMMAND_TIMEOUT), prints more than MAX_COMMAND_OUTPUT bytes, or popctl is
    interrupted: nothing it started is left running. No error quotes what it printed.
    """
    import subprocess  # only accounts with a command need it (~5 ms of start-up)

    limit = DEFAULT_COMMAND_TIMEOUT if timeout is None else timeout
    on_terminal = sys.stdin is not None and sys.stdin.isatty()
    label = f"{what} of account {account!r}"
    # Before the command starts: a prompt may turn echo off before Popen() has even returned.
    terminal = _terminal_state() if on_terminal else None
    try:
        process = subprocess.Popen(command, shell=True,
                                   stdin=None if on_terminal else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        raise SecretCommandError(f"{label} could not be run ({e.strerror or e}): {command}"
                                 ) from None
    finished = False
    try:
        output, problem = _read_bounded(process, limit)
        finished = problem is None
    finally:
        if not finished:  # too slow, too much, or popctl itself interrupted (Ctrl-C)
            _stop_group(process, terminal)
        assert process.stdout is not None
        process.stdout.close()
    if problem == "timeout":
        raise SecretCommandError(
            f"{label} did not finish within {limit:g} s and was stopped: {command} (if it "
            "waits for you, e.g. gpg's pinentry, raise password_command_timeout for the "
            "account)")
    if problem == "overflow":
        raise SecretCommandError(
            f"{label} printed more than {MAX_COMMAND_OUTPUT // 1024} KiB and was stopped: "
            f"{command} (it must print the secret on its first line, and little else)")
    returncode = process.returncode
    if returncode != 0:
        how = (f"killed by signal {-returncode}" if returncode < 0
               else f"exit status {returncode}")
        raise SecretCommandError(f"{label} failed ({how}): {command}")
    first = output.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        secret = first.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretCommandError(f"{label} printed something that is not UTF-8: {command}"
                                 ) from None
    if not secret:
        raise SecretCommandError(f"{label} printed nothing on its first line: {command}")
    return secret


def _read_bounded(process: Any, timeout: float) -> tuple[bytes, str | None]:
    """The command's standard output, read until it ends and the command has exited; or what
    went wrong: "timeout" or "overflow" (the command is then still running)."""
    import select
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    fd = process.stdout.fileno()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"", "timeout"
        ready, _, _ = select.select([fd], [], [], min(remaining, _POLL))
        # Read when there is data, and once more after the command has exited: what it wrote
        # before exiting is in the pipe even if a child it left behind holds the pipe open.
        exited = process.poll() is not None
        ended = False
        if ready or exited:
            while True:
                try:
                    chunk = os.read(fd, MAX_COMMAND_OUTPUT + 1 - size)
                except BlockingIOError:
                    break
                if not chunk:
                    ended = True
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_COMMAND_OUTPUT:
                    return b"", "overflow"
        if ended and not exited:  # its output is complete: wait for it to exit, as long as left
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return b"", "timeout"
            exited = True
        if exited:
            return b"".join(chunks), None


def _stop_group(process: Any, terminal: list[Any] | None) -> None:
    """SIGTERM to the command's whole process group, SIGKILL to what is left of it after a
    grace period; then the terminal's settings put back (a prompt stopped with echo off would
    leave it so)."""
    import signal
    import subprocess

    try:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_TERM_GRACE)
        os.killpg(process.pid, signal.SIGKILL)  # the leader's children get no more grace
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is gone already
    process.wait()
    if terminal is not None:
        _restore_terminal(terminal)


def _terminal_state() -> list[Any] | None:
    import termios

    try:
        return termios.tcgetattr(sys.stdin.fileno())
    except (termios.error, OSError, ValueError):
        return None


def _restore_terminal(state: list[Any]) -> None:
    import termios

    with contextlib.suppress(termios.error, OSError, ValueError):
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, state)


class Secret(NamedTuple):
    value: str
    source: str  # "POPCTL_PASSWORD", "oauth2_token_command", "keyring", "password_command"


ENVIRONMENT = "POPCTL_PASSWORD"


def find_password(key: str | None, command: str | None, account: str | None,
                  warn: Callable[[str], None] | None = None,
                  timeout: float | None = None, *,
                  token_command: str | None = None, token_only: bool = False) -> Secret | None:
    """The secret from the first source that has one, in the one order of precedence, the
    environment before the account (as for every other setting): POPCTL_PASSWORD; the account's
    oauth2_token_command (``token_command``: given only when the mechanism can use a token);
    its keyring entry ``key``; its password_command. None if none has one (the caller may then
    prompt). A source later in the order is not even tried (no keyring unlock, no command run).
    ``token_only``: the mechanism takes a token, never a password (XOAUTH2, OAUTHBEARER asked
    for), so POPCTL_PASSWORD does not stand in for the token command.
    """
    value = os.environ.get(ENVIRONMENT)
    if value and not (token_only and token_command is not None):
        return Secret(value, ENVIRONMENT)
    if token_command is not None:
        return Secret(run_command(token_command, "oauth2_token_command", account or "?",
                                  timeout), "oauth2_token_command")
    if key is not None:
        stored = get_password(key, warn)
        if stored is not None:
            return Secret(stored, "keyring")
    if command is not None:
        return Secret(run_command(command, "password_command", account or "?", timeout),
                      "password_command")
    return None
