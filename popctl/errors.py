"""The exception hierarchy and the exit status each error maps to.

Every error popctl raises on purpose is a PopctlError; its ``exit_code`` is the documented process
exit status the command line uses (see man/popctl.1, EXIT STATUS).

An error's text is always safe to show: whatever server text went into it, ``str(error)`` has
its control characters neutralised (display.safe), so no caller can print a raw escape sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType

from popctl.display import safe


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # a local write failed, or an internal error
    USAGE = 2  # bad argument, bad configuration
    AUTH = 3  # the server refused our credentials
    CONNECTION = 4  # could not connect, TLS failure, timeout, refused to send in clear
    SERVER = 5  # the server answered -ERR
    PROTOCOL = 6  # the server broke the POP3 protocol
    NO_CREDENTIALS = 7  # no password or token could be found
    DECLINED = 8  # you declined the confirmation; nothing was changed
    TEMPFAIL = 75  # try again later: the mailbox is in use, a login delay (sysexits EX_TEMPFAIL)
    INTERRUPTED = 130  # Ctrl-C


class PopctlError(Exception):
    """Base class of every error popctl raises deliberately.

    ``hint`` names what the user can do about it, as a key of the command line's table of hints
    (``popctl/cli/hints.py``): the layers below the command line know no option names.
    ``hint_args`` fill the hint's ``{placeholders}`` (a host, an account name).
    """

    exit_code: ExitCode = ExitCode.FAILURE
    hint: str | None = None
    hint_args: Mapping[str, str] = MappingProxyType({})

    def __init__(self, *args: object, hint: str | None = None,
                 hint_args: Mapping[str, str] | None = None) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint
        if hint_args:
            self.hint_args = dict(hint_args)

    def __str__(self) -> str:
        # Messages quote the server (-ERR text, CAPA, SCRAM's e=): neutralised here, where every
        # rendering of the error (the Error: line, a --debug traceback) takes its text from.
        return safe(super().__str__())

    @property
    def message(self) -> str:
        return str(self)


# --- our side ------------------------------------------------------------------------------------


class UsageError(PopctlError):
    """A bad argument or value supplied by the user."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration file or environment is wrong."""


class LocalProtocolError(UsageError):
    """We were about to break the protocol: an illegal command, or a bad argument to one.

    Raised before anything is sent, so the server never sees the offending bytes.
    """


class NoCredentialsError(PopctlError):
    exit_code = ExitCode.NO_CREDENTIALS


class DeclinedError(PopctlError):
    """The user answered no to a confirmation: nothing was changed. Not a failure, so its text
    is shown without ``Error:``."""

    exit_code = ExitCode.DECLINED


class Interrupted(PopctlError):
    """Ctrl-C, with what had been done by then (``Interrupted: ...``); a KeyboardInterrupt
    that says nothing more is reported as ``Interrupted.`` with the same status."""

    exit_code = ExitCode.INTERRUPTED


# --- the network ---------------------------------------------------------------------------------


class TransportError(PopctlError):
    """Connecting, reading or writing failed."""

    exit_code = ExitCode.CONNECTION


class ConnectionClosedError(TransportError):
    """The server closed the connection while we still expected a reply."""


class NetworkTimeoutError(TransportError):
    pass


class TLSError(TransportError):
    """TLS could not be negotiated or the server's certificate was not acceptable."""


class InsecureAuthError(TLSError):
    """Credentials would have crossed the network in clear and the user did not allow it."""


# --- the server ----------------------------------------------------------------------------------


class RemoteProtocolError(PopctlError):
    """The server sent something that is not POP3."""

    exit_code = ExitCode.PROTOCOL


class ShortMessageError(PopctlError):
    """A message arrived with fewer octets than LIST announced (cut short?), so it was kept on
    the server. Exit 6 like a protocol error, but the session itself is sound (the shell goes
    on)."""

    exit_code = ExitCode.PROTOCOL


class ServerError(PopctlError):
    """The server answered -ERR.

    ``code`` is the RFC 2449 response code without brackets (``"IN-USE"``, ``"SYS/TEMP"``) or None,
    ``text`` the human-readable rest of the line, ``command`` the verb it answered.
    """

    exit_code = ExitCode.SERVER

    def __init__(self, message: str, *, command: str = "", code: str | None = None,
                 text: str = "", hint: str | None = None,
                 hint_args: Mapping[str, str] | None = None) -> None:
        super().__init__(message, hint=hint, hint_args=hint_args)
        self.command = command
        self.code = code
        self.text = text


class AuthenticationError(ServerError):
    exit_code = ExitCode.AUTH


class MailboxInUseError(ServerError):
    """RFC 2449 [IN-USE]: another session holds the maildrop lock; exit 75, try later."""

    exit_code = ExitCode.TEMPFAIL


class LoginDelayError(ServerError):
    """RFC 2449 [LOGIN-DELAY]: logged in too soon after the last session; exit 75."""

    exit_code = ExitCode.TEMPFAIL


class TemporaryServerError(ServerError):
    """RFC 3206 [SYS/TEMP]: a transient failure on the server; trying later may work."""


class PermanentServerError(ServerError):
    """RFC 3206 [SYS/PERM]: a failure on the server that will not go away by itself."""


class NoSuchMessageError(ServerError):
    """The message number or UID does not exist, or is already marked deleted."""


class CapabilityError(ServerError):
    """The server lacks a capability the operation needs (TOP, UIDL, STLS, a SASL mechanism)."""
