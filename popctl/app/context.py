"""The typed values every command carries: what the user asked for, and how to talk to people.

``Options`` is immutable: the command line builds it once (options before and after the
subcommand merged, the environment under them) and nothing below changes it. ``UI`` is what the
application may ask of the person at the keyboard; the command line supplies it with Click, a
test with a few lines. Cheap to import: ``popctl --help`` loads this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol

from popctl import defaults

if TYPE_CHECKING:
    from popctl.models import Progress
    from popctl.session import Session
    from popctl.transport import PendingConnection

Record = Mapping[str, object]
TraceHook = Callable[[str, str], None]


class Options(NamedTuple):
    """The options of a run, from the command line or the environment; None: not given.

    Everything a setting of an account can also say stays None until given, so that the
    account's value can fill it in (``targets.resolve_target``).
    """

    host: str | None = None
    port: int | None = None
    user: str | None = None
    tls: str | None = None
    ca_file: str | None = None
    fingerprint: str | None = None
    insecure: bool = False
    timeout: float | None = None
    session_timeout: float | None = None
    auth: str | None = None
    allow_plaintext: bool | None = None
    format: str | None = None
    trace: bool = False
    debug: bool = False
    quiet: bool = False
    sandbox: bool = False
    no_pipelining: bool = False
    no_cache: bool = False
    full: bool = False  # tables as when piped: every value whole, octets, ISO 8601 dates
    account: tuple[str, ...] = ()
    all_accounts: bool = False

    @property
    def fmt(self) -> str:
        return self.format or defaults.FORMAT

    @property
    def machine(self) -> bool:
        """A format was asked for: the command's report goes to stdout in it."""
        return self.format is not None


class UI(Protocol):
    """What the application may ask of the person at the keyboard, and where output goes."""

    def note(self, text: str) -> None:
        """A message for people on stderr, unless --quiet."""

    def warn(self, text: str) -> None:
        """A message on stderr, even with --quiet."""

    def error(self, text: str) -> None:
        """An ``Error: ...`` line that does not end the command (one account of several)."""

    def describe(self, error: BaseException) -> str:
        """An error as people read it: with what they can do about it, in their words."""

    def hint(self, key: str, **args: str) -> str:
        """What the user can do, in the command line's words (a key of its table of hints),
        for the application's own notes and warnings."""

    def interactive(self) -> bool:
        """Whether someone is there to answer: stdin and stderr are terminals."""

    def ask(self, question: str, *, hidden: bool = False, twice: bool = False) -> str: ...

    def confirm(self, question: str, *, default: bool = False) -> bool: ...

    def require(self, question: str, *, declined: str = "nothing was changed") -> None:
        """Ask; a no (or the end of input) raises DeclinedError (status 8) saying ``declined``
        (what was therefore not done). Ctrl-C at any question is a KeyboardInterrupt."""

    def progress(self, total: int, label: str, *, octets: bool = False
                 ) -> contextlib.AbstractContextManager[Progress | None]:
        """A progress bar on stderr (None when there is no terminal, or with --quiet), of
        ``total`` items or octets (``expect`` may change it); whatever figure it reached, it is
        gone from the screen when the block ends."""

    def tracer(self, label: str | None = None) -> TraceHook:
        """Where the POP3 dialogue goes with --trace."""

    def emit(self, records: Iterable[Record], columns: Sequence[str] | None = None) -> int:
        """Records on stdout, in the chosen format; how many there were."""

    def emit_one(self, record: Record) -> None:
        """One result (not a listing) on stdout, in the chosen format."""

    def show(self, records: Sequence[Record]) -> None:
        """Records as a table on stderr, for a question about them."""

    def echo(self, text: str, *, newline: bool = True) -> None:
        """Text on stdout."""

    @property
    def stdout(self) -> BinaryIO:
        """Standard output for bytes (messages written as they are)."""


class RunContext(NamedTuple):
    """One run of a command: its options, its UI, what it holds open, and where it runs.

    ``resources`` closes what the run started (the sandbox server) when the command ends.
    ``shell`` is the session of ``popctl shell`` when the command runs inside it; ``label`` the
    account's name in a run across several accounts; ``ahead`` the connection to its server,
    once begun (targets.connect_ahead).
    """

    options: Options
    ui: UI
    resources: contextlib.ExitStack
    shell: Opened | None = None
    label: str | None = None
    ahead: PendingConnection | None = None

    @property
    def in_shell(self) -> bool:
        return self.shell is not None


class Opened(NamedTuple):
    """A logged-in session and what the login found out."""

    session: Session
    context: RunContext
    cache_key: tuple[str, str, int] | None = None  # user, host, port whose header cache to use
    secret_source: str | None = None  # where the secret came from (account test shows it)
    account: str | None = None  # the configured account's name, if one is in use
