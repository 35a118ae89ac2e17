"""Where secrets come from: the OS keyring, an account's password or token command, the
environment. The only module that imports keyring, and only inside functions, so that commands
which need no secret (``--help``, ``--sandbox``, ``account list``) never load it.

Keyring entries are stored under service ``popctl`` with the user name ``USER@HOST:PORT`` of the
account (host in lower case, the effective port): a secret is bound to the server and login it
was stored for, survives renaming the account, and is never offered to another server.
"""

from __future__ import annotations

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


def run_command(command: str, what: str, account: str) -> str:
    """Run ``command`` with /bin/sh (as msmtp's passwordeval and mbsync's PassCmd do, so that
    ``pass show x | head -1`` works); its standard output's first line is the secret.

    Its standard error goes to ours, so its own messages reach the user. Its standard input is
    ours only on a terminal (gpg may ask there); otherwise /dev/null, so that it cannot eat a
    script or a password popctl itself reads from a pipe.
    """
    import subprocess  # only accounts with a command need it (~5 ms of start-up)

    stdin = None if sys.stdin is not None and sys.stdin.isatty() else subprocess.DEVNULL
    label = f"{what} of account {account!r}"
    try:
        done = subprocess.run(command, shell=True, stdin=stdin, stdout=subprocess.PIPE,
                              check=False)
    except OSError as e:
        raise SecretCommandError(f"{label} could not be run ({e.strerror or e}): {command}"
                                 ) from None
    if done.returncode != 0:
        how = (f"killed by signal {-done.returncode}" if done.returncode < 0
               else f"exit status {done.returncode}")
        raise SecretCommandError(f"{label} failed ({how}): {command}")
    first = done.stdout.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        secret = first.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretCommandError(f"{label} printed something that is not UTF-8: {command}"
                                 ) from None
    if not secret:
        raise SecretCommandError(f"{label} printed nothing on its first line: {command}")
    return secret


class Secret(NamedTuple):
    value: str
    source: str  # "keyring", "password_command", "POPCTL_PASSWORD", "oauth2_token_command"


def find_password(key: str | None, command: str | None, account: str | None,
                  warn: Callable[[str], None] | None = None) -> Secret | None:
    """keyring, then the account's password_command, then POPCTL_PASSWORD; None if none has
    one (the caller may then prompt)."""
    if key is not None:
        stored = get_password(key, warn)
        if stored is not None:
            return Secret(stored, "keyring")
    if command is not None:
        return Secret(run_command(command, "password_command", account or "?"),
                      "password_command")
    value = os.environ.get("POPCTL_PASSWORD")
    if value:
        return Secret(value, "POPCTL_PASSWORD")
    return None
