"""The command line: parse arguments, open a session, call one method, hand results to a formatter.

Errors become one ``Error: ...`` line on stderr and a documented exit code, in ``main`` only.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TextIO, TypeVar

import click
from click.core import ParameterSource

from popctl import __version__
from popctl.display import safe
from popctl.errors import (
    CapabilityError,
    ExitCode,
    NoCredentialsError,
    PopctlError,
    RemoteProtocolError,
    ShortMessageError,
    TransportError,
    UsageError,
)

if TYPE_CHECKING:  # imported lazily below: `popctl --help` must not pay for TLS and parsing
    from popctl.cache import HeaderCache
    from popctl.config import Account
    from popctl.models import Credentials, Endpoint
    from popctl.query import Query, Row
    from popctl.session import Session

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json", "ndjson", "csv")
# TLSMode's values (tests/test_startup.py checks): models.py is not imported at start-up.
TLS_MODES = ("implicit", "starttls", "none")


class Settings:
    """Options given before or after the subcommand; the later ones win.

    Every annotated attribute is an option (its class value the default), plus ``extra``. A
    plain class rather than a dataclass: importing dataclasses would cost every start-up ~10 ms.
    """

    host: str | None = None
    port: int | None = None
    user: str | None = None
    tls: str | None = None
    ca_file: str | None = None
    fingerprint: str | None = None
    insecure: bool | None = None
    timeout: float | None = None
    session_timeout: float | None = None
    auth: str | None = None
    allow_plaintext: bool | None = None
    format: str | None = None
    trace: bool | None = None
    debug: bool | None = None
    quiet: bool | None = None
    sandbox: bool | None = None
    no_pipelining: bool | None = None
    no_cache: bool | None = None
    account: tuple[str, ...] | None = None
    all_accounts: bool | None = None
    extra: dict[str, Any]

    def __init__(self, **values: Any) -> None:
        self.extra = {}
        for name, value in values.items():
            if name not in _SETTINGS:
                raise TypeError(f"Settings has no option {name!r}")
            setattr(self, name, value)

    def copy(self, **changes: Any) -> Settings:
        return Settings(**{**{name: getattr(self, name) for name in _SETTINGS}, **changes})

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in _SETTINGS
                           if name != "extra" and getattr(self, name) is not None)
        return f"Settings({values})"

    @property
    def fmt(self) -> str:
        return self.format or "table"


_SETTINGS = tuple(Settings.__annotations__)


def _merge(obj: Settings, values: dict[str, Any]) -> None:
    names = set(_SETTINGS) - {"extra"}
    for key in list(values):
        if key == "account":  # repeatable, before and after the command: they add up
            given = values.pop(key) or ()
            obj.account = tuple(dict.fromkeys((*(obj.account or ()), *given))) or None
        elif key in names:
            value = values.pop(key)
            if value is not None and value is not False:
                setattr(obj, key, value)
        elif key == "json_" and values.pop(key):
            obj.format = "json"


_COMMON_OPTIONS: list[Callable[[F], F]] = [
    click.option("--host", "-H", envvar="POPCTL_HOST", help="POP3 server host name."),
    click.option("--port", "-P", type=click.IntRange(1, 65535), envvar="POPCTL_PORT",
                 help="Server port [default: 995 for --tls implicit, else 110]."),
    click.option("--user", "-u", envvar="POPCTL_USER", help="Login name."),
    click.option("--tls", type=click.Choice(TLS_MODES), envvar="POPCTL_TLS",
                 help="implicit (port 995), starttls (STLS on port 110) or none "
                      "[default: implicit]."),
    click.option("--ca-file", type=click.Path(dir_okay=False), envvar="POPCTL_CA_FILE",
                 help="Trust the CA certificates in this PEM file instead of the system's."),
    click.option("--fingerprint", envvar="POPCTL_FINGERPRINT",
                 help="Accept only the server certificate with this SHA-256 fingerprint."),
    click.option("--insecure", is_flag=True, default=None,
                 help="Do not verify the server certificate at all (dangerous)."),
    click.option("--timeout", type=click.FloatRange(0.1, 3600), envvar="POPCTL_TIMEOUT",
                 help="Seconds to wait for the connection, for any read, and for each reply's "
                      "first line; after that, multi-line replies must keep coming at 1 KiB/s "
                      "or faster [default: 30]."),
    click.option("--session-timeout", type=click.FloatRange(0, 10**7),
                 envvar="POPCTL_SESSION_TIMEOUT",
                 help="Seconds the whole session may spend waiting for the server, 0 for no "
                      "limit [default: 3600, or 120 times --timeout if more]."),
    click.option("--auth", "auth", envvar="POPCTL_AUTH",
                 help="Authentication mechanism: auto, USER, APOP, PLAIN, LOGIN, CRAM-MD5, "
                      "SCRAM-SHA-256, XOAUTH2, OAUTHBEARER [default: auto]."),
    click.option("--allow-plaintext", is_flag=True, default=None,
                 help="Allow sending credentials over a connection without TLS."),
    click.option("--no-pipelining", is_flag=True, default=None,
                 help="Send one command at a time even if the server allows pipelining."),
    click.option("--no-cache", is_flag=True, default=None,
                 help="Neither read nor update the header cache (list, dele): fetch every "
                      "header."),
    click.option("--format", "-f", "format", type=click.Choice(FORMATS),
                 help="Output format [default: table]."),
    click.option("--json", "json_", is_flag=True, default=None, help="Same as --format json."),
    click.option("--trace", is_flag=True, default=None,
                 help="Show the POP3 dialogue on stderr (credentials redacted)."),
    click.option("--debug", is_flag=True, default=None, help="Show tracebacks on errors."),
    click.option("--quiet", "-q", is_flag=True, default=None,
                 help="No messages or progress on stderr, only errors and security warnings."),
    click.option("--sandbox", is_flag=True, default=None,
                 help="Run against popctl's bundled sample server (no real mail touched; "
                      "its own server and login, so not with --host, --user, --account, ...)."),
    click.option("--account", "-a", "account", multiple=True, metavar="NAME",
                 help="Use this account of the configuration file (repeatable for stat, list, "
                      "uidl, dele) [default: POPCTL_ACCOUNT, else the file's default]."),
    click.option("--all-accounts", is_flag=True, default=None,
                 help="Run stat, list, uidl or dele for every configured account at once."),
]


_OPTION_NAMES = (*(name for name in _SETTINGS if name != "extra"), "json_")
# What --sandbox would otherwise ignore without a word: it brings its own server and login.
_NOT_WITH_SANDBOX = ("host", "port", "user", "tls", "ca_file", "fingerprint", "insecure",
                     "allow_plaintext", "account", "all_accounts")


def _given(ctx: click.Context) -> set[str]:
    """The common options typed on this command line, before or after the subcommand (not
    those from the environment): the ones a command that cannot use them must refuse. Kept in
    ``ctx.meta``, which the contexts of one invocation share; each shell line has its own."""
    given: set[str] = ctx.meta.setdefault("popctl.given", set())
    return given


def _flag(name: str) -> str:
    return "--json" if name == "json_" else "--" + name.replace("_", "-")


def _refuse_unused(ctx: click.Context, used: Iterable[str]) -> None:
    """Refuse the common options given before a subcommand that does not use them (``popctl
    --all-accounts account list``): silently ignoring them would let the user believe they
    applied."""
    unused = sorted(_given(ctx) - set(used), key=_OPTION_NAMES.index)
    if not unused:
        return
    path, parent = [], ctx
    while parent.parent is not None:
        path.append(parent.info_name or "")
        parent = parent.parent
    command = " ".join(reversed(path))
    flag = _flag(unused[0])
    if unused[0] in {p.name for p in ctx.command.params}:
        raise UsageError(f"{flag} given before '{command}' does not apply to it; put it after "
                         f"'{command}'")
    raise UsageError(f"{flag} does not apply to '{command}'")


def common_options(f: F) -> F:
    """Connection and output options, accepted before or after the subcommand."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        obj = ctx.find_object(Settings)
        if obj is None:
            obj = ctx.ensure_object(Settings)
        for name in _SETTINGS:
            # `POPCTL_HOST=a popctl --host b stat`: the subcommand also reads POPCTL_HOST,
            # but the command line (before the subcommand) wins over the environment.
            if (name in kwargs and getattr(obj, name) is not None
                    and ctx.get_parameter_source(name) is ParameterSource.ENVIRONMENT):
                kwargs[name] = None
        given = _given(ctx)
        given.update(name for name in _OPTION_NAMES if kwargs.get(name) not in (None, False, ())
                     and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE)
        _merge(obj, kwargs)
        clash = [name for name in _NOT_WITH_SANDBOX if name in given]
        if obj.sandbox and clash:
            if clash[0] in ("account", "all_accounts"):
                raise UsageError("--sandbox has no accounts: drop --all-accounts and --account")
            raise UsageError(f"--sandbox runs popctl's own sample server, with its own login: "
                             f"{_flag(clash[0])} cannot be combined with it")
        return f(*args, **kwargs)

    for option in reversed(_COMMON_OPTIONS):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


# --- talking to people ----------------------------------------------------------------------------


def note(settings: Settings, text: str) -> None:
    """A human message: stderr, unless --quiet. It may quote the server (probe): made safe."""
    if not settings.quiet:
        click.echo(safe(text), err=True)


def warn(text: str) -> None:
    """A security warning: stderr even with --quiet, which silences chatter, not risks."""
    click.echo(safe(text), err=True)


def _trace_printer(start: float, label: str | None = None) -> Callable[[str, str], None]:
    tag = f" [{label}]" if label else ""  # several accounts' dialogues interleave

    def trace(direction: str, line: str) -> None:
        click.echo(f"{time.monotonic() - start:9.3f}{tag} {direction}: {line}", err=True)
    return trace


# --- connecting -----------------------------------------------------------------------------------


class Target(NamedTuple):
    endpoint: Endpoint
    credentials: Credentials
    account: Account | None = None  # the configured account in use
    own: bool = False  # its own user, host and port: its password/token commands may be used


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _credentials(settings: Settings, target: Target) -> Credentials:
    """The credentials with their secret: an account's oauth2_token_command; else the keyring,
    the account's password_command, POPCTL_PASSWORD, a prompt on a terminal (in that order)."""
    credentials = target.credentials
    if credentials.password is not None or credentials.oauth2_token is not None:
        return credentials
    from popctl import credentials as secrets

    account = target.account
    user, host = credentials.user, target.endpoint.host
    if account is not None and not target.own and (account.password_command
                                                   or account.oauth2_token_command):
        note(settings, f"note: not using the password or token command of account "
                       f"{account.name}: the user, host or port was overridden")
    if (account is not None and target.own and account.oauth2_token_command
            and credentials.mechanism.upper() in ("AUTO", "XOAUTH2", "OAUTHBEARER")):
        settings.extra["secret_source"] = "oauth2_token_command"
        token = secrets.run_command(account.oauth2_token_command, "oauth2_token_command",
                                    account.name, account.password_command_timeout)
        return credentials._replace(oauth2_token=token)
    key = None
    if account is not None:
        key = secrets.keyring_user(user, host, target.endpoint.effective_port)
    command = account.password_command if account is not None and target.own else None
    found = secrets.find_password(key, command, account.name if account else None,
                                  warn=lambda text: note(settings, text),
                                  timeout=account.password_command_timeout if account else None)
    if found is not None:
        settings.extra["secret_source"] = found.source
        return credentials._replace(password=found.value)
    if _interactive():
        settings.extra["secret_source"] = "prompt"
        value: str = click.prompt(f"Password for {user}@{host}", hide_input=True, err=True)
        return credentials._replace(password=value)
    if account is not None:
        raise NoCredentialsError(
            f"no password for account {account.name} ({key}): store one with: popctl password "
            f"set {account.name} (or give the account a password_command, or set "
            "POPCTL_PASSWORD)")
    raise NoCredentialsError(
        f"no password for {user}@{host}: set POPCTL_PASSWORD, or run popctl on a terminal "
        "to be asked")


_sandbox_server: Any = None


def _start_sandbox(settings: Settings) -> Target:
    global _sandbox_server
    if _sandbox_server is None:
        from popctl.sandbox import SandboxServer

        _sandbox_server = SandboxServer().start()
        click.get_current_context().call_on_close(_stop_sandbox)
        note(settings, f"sandbox: sample POP3 server on {_sandbox_server.address[0]} port "
                       f"{_sandbox_server.address[1]} (user sandbox, password sandbox)")
    from popctl.models import Credentials, Endpoint, TLSMode

    _host, port = _sandbox_server.address
    endpoint = Endpoint(host="localhost", port=port, tls=TLSMode.STARTTLS,
                        ca_file=_sandbox_server.ca_file, timeout=settings.timeout or 30.0,
                        session_timeout=settings.session_timeout)
    return Target(endpoint, Credentials("sandbox", "sandbox", mechanism=settings.auth or "auto"))


def _account_names(settings: Settings) -> tuple[str, ...]:
    """--account (all of them), else POPCTL_ACCOUNT (one name)."""
    if settings.account:
        return settings.account
    name = os.environ.get("POPCTL_ACCOUNT", "").strip()
    return (name,) if name else ()


def _several_accounts(settings: Settings) -> list[str] | None:
    """The accounts of a run across accounts (--all-accounts, --account twice or more)."""
    if settings.all_accounts:
        if settings.account:
            raise UsageError("give either --account or --all-accounts, not both")
        from popctl import config

        loaded = config.load()
        if not loaded.accounts:
            raise UsageError(f"--all-accounts: no accounts in {loaded.path}; add one with: "
                             "popctl account add NAME --host HOST --user USER")
        return list(loaded.accounts)
    names = _account_names(settings)
    return list(names) if len(names) > 1 else None


def _selected_account(settings: Settings) -> Account | None:
    """The account in use: --account or POPCTL_ACCOUNT; else, when no host was given at all,
    the file's default account."""
    names = _account_names(settings)
    if settings.all_accounts or len(names) > 1:
        raise UsageError("--all-accounts and a repeated --account work with stat, list, uidl "
                         "and dele only")
    if not names and settings.host:
        return None  # a server named on the command line or in POPCTL_HOST: no file needed
    from popctl import config

    loaded = config.load()
    if names:
        return loaded.account(names[0])
    if loaded.default is not None:
        return loaded.account(loaded.default)
    if loaded.accounts:
        raise UsageError(f"no server given: use --account NAME ({', '.join(loaded.accounts)}), "
                         "--host HOST (or POPCTL_HOST), or set default = \"NAME\" in "
                         f"{loaded.path}")
    return None


def resolve_target(settings: Settings) -> Target:
    """Endpoint and credentials (without the secret). Each value comes from the command line,
    else the environment (both already in ``settings``), else the account, else the default."""
    if settings.sandbox:
        return _start_sandbox(settings)
    account = _selected_account(settings)

    def pick(name: str) -> Any:
        value = getattr(settings, name)
        return getattr(account, name) if value is None and account is not None else value

    host = pick("host")
    if not host:
        raise UsageError("no server given: use --host HOST (or POPCTL_HOST), or try --sandbox")
    from popctl.models import Credentials, Endpoint, TLSMode

    tls = TLSMode(pick("tls") or "implicit")
    fingerprint = pick("fingerprint")
    if fingerprint is not None:
        from popctl.transport import normalize_fingerprint

        try:
            normalize_fingerprint(fingerprint)
        except ValueError as e:
            raise UsageError(f"--fingerprint: {e}") from None
    ca_file = settings.ca_file
    if ca_file is None and account is not None and account.ca_file is not None:
        from popctl import config

        # ~ and paths relative to the configuration file's directory
        ca_file = os.path.join(os.path.dirname(config.config_path()),
                               os.path.expanduser(account.ca_file))
        if not os.path.isfile(ca_file):
            raise UsageError(f"ca_file {ca_file} of account {account.name}: no such file")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise UsageError(f"--ca-file {ca_file}: no such file")
    timeout = pick("timeout") or 30.0
    endpoint = Endpoint(host=host, port=pick("port"), tls=tls, ca_file=ca_file,
                        fingerprint=fingerprint, insecure=bool(settings.insecure),
                        connect_timeout=timeout, timeout=timeout,
                        session_timeout=settings.session_timeout)
    user = pick("user")
    if not user:
        raise UsageError("no user given: use --user NAME (or POPCTL_USER)")
    credentials = Credentials(user=user, password=None, mechanism=pick("auth") or "auto",
                              allow_plaintext=bool(pick("allow_plaintext")))
    own = account is not None and (user, host.lower(), endpoint.effective_port) == (
        account.user, (account.host or "").lower(), account.effective_port)
    return Target(endpoint, credentials, account, own)


@contextlib.contextmanager
def open_session(settings: Settings, *, scan: bool = False) -> Iterator[Session]:
    """Connect and log in; QUIT on success, close without QUIT on any error.

    ``scan``: the command will list the mailbox (Session.scan), so UIDL and LIST may ride
    with the login. Inside ``popctl shell`` the shell's one session is used and stays open.
    """
    live: Session | None = settings.extra.get("session")
    if live is not None:
        yield live
        return
    from popctl.models import TLSMode

    target: Target = settings.extra.get("target") or resolve_target(settings)
    if target.endpoint.insecure and target.endpoint.tls is not TLSMode.NONE:
        warn("warning: --insecure: the server certificate is NOT verified")
    label = settings.extra.get("label")
    trace = _trace_printer(time.monotonic(), label) if settings.trace else None
    credentials = target.credentials
    if target.endpoint.tls is TLSMode.NONE and not credentials.allow_plaintext:
        # Refuse before connecting: nothing would be gained by connecting first.
        from popctl.errors import InsecureAuthError

        raise InsecureAuthError(
            "refusing to send credentials over a connection without TLS; use --tls implicit "
            "or --tls starttls, or allow it explicitly with --allow-plaintext")
    from popctl.session import Session

    preload(settings.fmt, scan=scan)
    session = Session.connect(target.endpoint, trace=trace,
                              pipelining=False if settings.no_pipelining else None)
    with session:
        credentials = _credentials(settings, target)
        session.login(credentials, scan=scan)
        settings.extra["cache_account"] = (credentials.user, target.endpoint.host,
                                           target.endpoint.effective_port)
        yield session


def preload(fmt: str, *, scan: bool) -> None:
    """Import on a daemon thread what the command needs once the server has answered: the
    output format's modules (tabulate for a table, ~25 ms), and header parsing and the header
    cache for a listing. Called before connecting, the imports overlap the waits for the server
    instead of following them; a module still loading is waited for (the import lock), and one
    that failed is imported again, and its error reported, where it is used."""
    names = ["popctl.formatters", *(["tabulate"] if fmt == "table" else []),
             *(["popctl.headers", "popctl.cache"] if scan else [])]
    missing = [name for name in names if name not in sys.modules]
    if missing:
        import importlib
        import threading

        def work() -> None:
            for name in missing:
                with contextlib.suppress(BaseException):
                    importlib.import_module(name)

        threading.Thread(target=work, name="popctl-preload", daemon=True).start()


# --- output ---------------------------------------------------------------------------------------


def emit(settings: Settings, records: Iterable[dict[str, object]],
         columns: list[str] | None = None) -> int:
    from popctl import formatters

    return formatters.render(records, settings.fmt, sys.stdout, columns=columns)


def _from_parts(settings: Settings) -> bool:
    """Whether listing records carry ``from_name`` and ``from_address``: JSON and NDJSON do; CSV
    and the table keep the columns of 0.1 (docs/JSON.md)."""
    return settings.fmt in ("json", "ndjson")


def emit_one(settings: Settings, record: dict[str, object]) -> None:
    from popctl import formatters

    formatters.render_one(record, settings.fmt, sys.stdout)


# --- many accounts at once ------------------------------------------------------------------------

# A thread per account, at most this many at once: each holds one TLS connection, a run lasts as
# long as its slowest server whatever the number, and providers limit connections per address.
MAX_ACCOUNT_WORKERS = 8


class AccountsFailed(PopctlError):
    """Some accounts of a run across accounts failed; each one was reported already."""

    def __init__(self, failures: dict[str, PopctlError], total: int) -> None:
        super().__init__(f"{len(failures)} of {total} account(s) failed")
        codes = {e.exit_code for e in failures.values()}
        self.exit_code = codes.pop() if len(codes) == 1 else ExitCode.FAILURE


def across_accounts(settings: Settings, names: list[str],
                    work: Callable[[Settings, Session], list[dict[str, object]]], *,
                    columns: list[str] | None = None, scan: bool = False
                    ) -> list[dict[str, object]]:
    """Run ``work`` in a session of each account, concurrently; emit every row with its
    ``account`` first, in the order of ``names``; report each failure as ``Error: NAME: ...``.

    Secrets are looked up first, one account after the other in this thread (a prompt, a
    keyring unlock or a gpg pinentry cannot be shared by threads); then each account's session
    runs in its own thread, independent of the others: its own QUIT, or none if it failed.
    """
    if "session" in settings.extra:
        raise UsageError("inside popctl shell there is one session: no --account or "
                         "--all-accounts")
    if settings.sandbox:
        raise UsageError("--sandbox has no accounts: drop --all-accounts and --account")
    import queue
    import threading

    failures: dict[str, PopctlError] = {}
    jobs: queue.SimpleQueue[tuple[str, Settings]] = queue.SimpleQueue()
    for name in names:
        child = settings.copy(account=(name,), all_accounts=None, extra={"label": name})
        try:
            target = resolve_target(child)
            child.extra["target"] = target._replace(credentials=_credentials(child, target))
        except PopctlError as e:
            failures[name] = e
            continue
        jobs.put((name, child))
    results: dict[str, list[dict[str, object]]] = {}
    finished: queue.SimpleQueue[str] = queue.SimpleQueue()
    cancelled = threading.Event()

    def worker() -> None:
        while True:
            try:
                name, child = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                with open_session(child, scan=scan) as session:
                    rows = work(child, session)
                    if cancelled.is_set():  # Ctrl-C: leave without QUIT, commit nothing
                        raise KeyboardInterrupt
                results[name] = rows
            except PopctlError as e:
                failures[name] = e
            except Exception as e:
                failures[name] = PopctlError(f"internal error: {type(e).__name__}: {e}")
            except BaseException:
                failures[name] = PopctlError("interrupted")
            finally:
                finished.put(name)

    count = jobs.qsize()
    for i in range(min(MAX_ACCOUNT_WORKERS, count)):
        # Daemon threads: after Ctrl-C the process exits at once, closing their connections
        # without QUIT, so an interrupted dele commits nothing.
        threading.Thread(target=worker, name=f"popctl-account-{i}", daemon=True).start()
    try:
        for _ in range(count):
            finished.get()
    except BaseException:
        cancelled.set()
        raise
    records: list[dict[str, object]] = []
    for name in names:
        if name in failures:
            click.echo(f"Error: {name}: {failures[name]}", err=True)
        else:
            records += [{"account": name, **row} for row in results[name]]
    emit(settings, records, columns=["account", *columns] if columns else None)
    if failures:
        raise AccountsFailed(failures, len(names))
    return records


# --- message selection ----------------------------------------------------------------------------


def selection_options(f: F) -> F:
    decorators = [
        click.argument("messages", nargs=-1),
        click.option("--uid", "uids", multiple=True, help="Select by UIDL unique id (repeatable)."),
        click.option("--all", "all_", is_flag=True, help="Select every message."),
        click.option("--larger-than", metavar="SIZE",
                     help="Only messages larger than SIZE: bytes, or a number with k, M, G or "
                          "T (1024-based, any case: 5m is 5M); decimals allowed: 500k, 1.5M, "
                          "2G."),
        click.option("--smaller-than", metavar="SIZE",
                     help="Only messages smaller than SIZE (as --larger-than)."),
        click.option("--from", "from_", metavar="REGEX",
                     help="Only messages whose From matches REGEX."),
        click.option("--subject", metavar="REGEX",
                     help="Only messages whose Subject matches REGEX."),
        click.option("--header", "header", multiple=True, metavar="'NAME: REGEX'",
                     help="Only messages with a header matching 'Name: REGEX' (repeatable)."),
        click.option("--older-than", metavar="AGE",
                     help="Only messages dated more than AGE ago. AGE is a number and a unit: "
                          "s, min, h, d, w, mo (30 days) or y (365 days); decimals and sums "
                          "allowed: 90min, 1.5d, 6mo, 1d12h. A bare m is refused: write min "
                          "or mo."),
        click.option("--newer-than", metavar="AGE",
                     help="Only messages dated less than AGE ago (AGE as for --older-than)."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def build_query(kwargs: dict[str, Any]) -> Query:
    from popctl import selection
    from popctl.query import Query
    def opt(name: str, parse: Callable[[str], Any]) -> Any:
        value = kwargs.pop(name, None)
        return parse(value) if value is not None else None

    return Query(
        ranges=tuple(kwargs.pop("messages", ())),
        uids=tuple(kwargs.pop("uids", ())),
        all=bool(kwargs.pop("all_", False)),
        larger_than=opt("larger_than", selection.parse_size),
        smaller_than=opt("smaller_than", selection.parse_size),
        sender=opt("from_", lambda v: selection.compile_regex(v, "--from")),
        subject=opt("subject", lambda v: selection.compile_regex(v, "--subject")),
        header=tuple(selection.parse_header_filter(h) for h in kwargs.pop("header", ())),
        older_than=opt("older_than", selection.parse_duration),
        newer_than=opt("newer_than", selection.parse_duration),
    )


def _progress(settings: Settings, total: int, label: str) -> Any:
    """A progress bar on stderr only when stderr is a terminal (and not --quiet); total 0: none."""
    if settings.quiet or total <= 0 or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    return click.progressbar(length=total, label=label, file=sys.stderr)


# --- the commands ---------------------------------------------------------------------------------


class PopctlGroup(click.Group):
    """Turns every error into one ``Error: ...`` line and its documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PopctlError as e:
            if getattr(e, "errno", None) == errno.EPIPE:  # stdout closed: as for BrokenPipeError
                with contextlib.suppress(OSError):
                    sys.stdout = _devnull()
                ctx.exit(ExitCode.OK)
            _report(ctx, f"Error: {e}")
            settings = ctx.find_object(Settings)
            if settings is not None:
                settings.extra["error"] = e
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(ExitCode.INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            with contextlib.suppress(OSError):
                sys.stdout = _devnull()
            ctx.exit(ExitCode.OK)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG):
                raise self._internal(ctx, e) from e
            # Stores report their own failures; what reaches here is the output itself.
            _report(ctx, f"Error: cannot write to standard output: {e.strerror}")
            ctx.exit(ExitCode.FAILURE)
        except Exception as e:
            raise self._internal(ctx, e) from e

    @staticmethod
    def _internal(ctx: click.Context, e: Exception) -> click.exceptions.Exit:
        _report(ctx, f"Error: internal error: {type(e).__name__}: {e} (run with --debug "
                     "for details, and please report it)")
        return click.exceptions.Exit(ExitCode.FAILURE)


def _report(ctx: click.Context, line: str) -> None:
    settings = ctx.find_object(Settings)
    if (settings is not None and settings.debug) or os.environ.get("POPCTL_DEBUG") == "1":
        import traceback

        traceback.print_exc()
    click.echo(safe(line), err=True)


@click.group(cls=PopctlGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 ok, 1 local write failed, 2 usage, 3 authentication, "
                    "4 connection/TLS/timeout, "
                    "5 server error, 6 protocol error, 7 no credentials, 130 interrupted. "
                    "See popctl(1).")
@click.version_option(__version__, "--version", "-V", prog_name="popctl")
@common_options
def cli(**kwargs: Any) -> None:
    """Manage a POP3 mailbox without downloading it.

    \b
    Examples:
      popctl --sandbox list
      popctl --host pop.example.org --user me list --larger-than 5M
      popctl dele --larger-than 10M --older-than 7d --yes --format json
      popctl retr --all --maildir ~/Maildir --delete
    """


def _settings() -> Settings:
    return click.get_current_context().ensure_object(Settings)


@cli.command()
@common_options
def stat(**kwargs: Any) -> None:
    """Message count and total size in octets.

    \b
    Example:
      popctl stat --json
    """
    settings = _settings()
    names = _several_accounts(settings)
    if names is not None:
        def one(child: Settings, session: Session) -> list[dict[str, object]]:
            result = session.stat()
            return [{"count": result.count, "size": result.size}]

        across_accounts(settings, names, one)
        return
    with open_session(settings) as session:
        result = session.stat()
    emit_one(settings, {"count": result.count, "size": result.size})


@cli.command(name="list")
@selection_options
@click.option("--sizes-only", is_flag=True,
              help="Only number and size (one LIST; no headers, no UIDs): fastest.")
@common_options
def list_cmd(sizes_only: bool, **kwargs: Any) -> None:
    """What is waiting: number, size, UID, From, Subject, Date (headers only).

    Headers are read with pipelined TOP n 0; nothing is downloaded.

    \b
    Examples:
      popctl list
      popctl list --larger-than 1M --format json | jq '.[].uid'
      popctl list last:10 --from 'example\\.org'
    """
    settings = _settings()
    query = build_query(kwargs)
    if sizes_only and query.header_filters:
        raise UsageError("--sizes-only reads no headers, so it cannot be combined with "
                         "--from, --subject, --header, --older-than or --newer-than")
    names = _several_accounts(settings)
    if names is not None:
        def one(child: Settings, session: Session) -> list[dict[str, object]]:
            rows = _listing(child, session, query, want_headers=not sizes_only,
                            sizes_only=sizes_only)
            return [r.to_record(not sizes_only, _from_parts(child)) for r in rows]

        records = across_accounts(settings, names, one,
                                  columns=["number", "size"] if sizes_only else None,
                                  scan=not sizes_only or bool(query.uids))
        if not records and settings.fmt == "table":
            note(settings, "no messages")
        return
    with open_session(settings, scan=not sizes_only or bool(query.uids)) as session:
        rows = _listing(settings, session, query, want_headers=not sizes_only,
                        sizes_only=sizes_only)
        columns = ["number", "size"] if sizes_only else None
        count = emit(settings, (r.to_record(not sizes_only, _from_parts(settings)) for r in rows),
                     columns=columns)
    if count == 0 and settings.fmt == "table":
        note(settings, "no messages")


def _listing(settings: Settings, session: Session, query: Query, *, want_headers: bool,
             sizes_only: bool = False, delete: bool = False) -> Iterator[Row]:
    """The selected rows; headers read with TOP when wanted and the server has TOP; with
    ``delete``, marked deleted as they are read (see query.run)."""
    if want_headers and session.lacks("TOP"):
        # RFC 1939 makes TOP optional (mpopd has none). Numbers, sizes and UIDs still come
        # from LIST and UIDL; header filters would need whole messages, so they are refused.
        if query.header_filters:
            raise CapabilityError(
                "the server does not support TOP, so --from, --subject, --header, --older-than "
                "and --newer-than cannot be applied without downloading whole messages; "
                "nothing was done", command="TOP")
        note(settings, "note: the server does not support TOP, so From, Subject and Date "
                       "are not shown")
        want_headers = False
    return _rows(settings, session, query, want_headers=want_headers, sizes_only=sizes_only,
                 delete=delete)


def _rows(settings: Settings, session: Session, query: Query, *, want_headers: bool,
          sizes_only: bool, delete: bool) -> Iterator[Row]:
    from popctl import query as query_module

    bar: Any = None
    # No bar in a run across accounts: several threads would draw over each other.
    if want_headers and not settings.quiet and sys.stderr.isatty() \
            and "label" not in settings.extra:
        total = session.stat().count
        if total >= 20:
            bar = click.progressbar(length=total, label="reading headers", file=sys.stderr)
    cache = _header_cache(settings) if want_headers or query.header_filters else None
    try:
        yield from query_module.run(session, query, want_headers=want_headers,
                                    sizes_only=sizes_only, cache=cache, delete=delete,
                                    progress=bar.update if bar is not None else None,
                                    warn=_warner(settings))
    finally:
        if cache is not None:
            cache.save()
        if bar is not None:
            bar.render_finish()


def _header_cache(settings: Settings) -> HeaderCache | None:
    """The account's header cache; None with --no-cache, in the sandbox, or before login."""
    account = settings.extra.get("cache_account")
    if settings.no_cache or settings.sandbox or account is None:
        return None
    from popctl.cache import HeaderCache, account_key

    return HeaderCache(account_key(*account))


@cli.command()
@selection_options
@common_options
def uidl(**kwargs: Any) -> None:
    """Message numbers and their unique ids (stable across sessions).

    \b
    Example:
      popctl uidl --format csv
    """
    settings = _settings()
    query = build_query(kwargs)

    def uids(child: Settings, session: Session) -> Iterator[dict[str, object]]:
        if session.capabilities.known and "UIDL" not in session.capabilities:
            raise CapabilityError("the server does not support UIDL (no unique ids)",
                                  command="UIDL")
        rows = _listing(child, session, query, want_headers=False)
        return ({"number": r.number, "uid": r.uid} for r in rows)

    names = _several_accounts(settings)
    if names is not None:
        across_accounts(settings, names, lambda child, session: list(uids(child, session)),
                        scan=True)
        return
    with open_session(settings, scan=True) as session:
        emit(settings, uids(settings, session))


def _warner(settings: Settings) -> Callable[[str], None]:
    """note(), with the account's name in a run across accounts (their lines interleave)."""
    label = settings.extra.get("label")
    return lambda text: note(settings, f"{label}: {text}" if label else text)


def _one_message(session: Session, settings: Settings, query: Query) -> int:
    from popctl import query as query_module

    rows = list(query_module.run(session, query, want_headers=False, warn=_warner(settings)))
    if len(rows) != 1:
        raise UsageError(f"this command takes exactly one message; the selection has {len(rows)}")
    return rows[0].number


@cli.command()
@click.argument("message", required=False)
@click.argument("lines", required=False, type=click.IntRange(0, 10**9), default=0)
@click.option("--uid", "uid", help="Select the message by UIDL unique id.")
@common_options
def top(message: str | None, lines: int, uid: str | None, **kwargs: Any) -> None:
    """Headers and the first LINES body lines of one message (raw, or parsed with --json).

    \b
    Examples:
      popctl top 3
      popctl top 3 10
      popctl top --uid 000001a2 --json | jq .headers
    """
    settings = _settings()
    from popctl import selection
    from popctl.query import Query

    if uid is not None and message is not None:
        # `top --uid UID LINES`: the one positional given is the line count.
        if lines or not message.isdigit():
            raise UsageError("with --uid, give only LINES after it: top --uid UID [LINES]")
        lines = int(message)
        message = None
    if (message is None) == (uid is None):
        raise UsageError("say which message: a number or --uid UID")
    query = Query(ranges=(message,) if message else (), uids=(uid,) if uid else ())
    if message is not None:
        selection.parse_ranges([message])
    import io

    buffer = io.BytesIO()
    with open_session(settings, scan=True) as session:
        number = _one_message(session, settings, query)
        if settings.format is None:
            out = sys.stdout.buffer
            session.top(number, lines, out)
            out.flush()
            return
        session.top(number, lines, buffer)
    emit_one(settings, _parsed_top(number, buffer.getvalue()))


def _parsed_top(number: int, data: bytes) -> dict[str, object]:
    """TOP's output as JSON: every header (decoded, in order) and the body lines as text."""
    from popctl.headers import every_header

    head, _, body = data.partition(b"\r\n\r\n") if b"\r\n\r\n" in data else \
        data.partition(b"\n\n")
    headers = [{"name": name, "value": value} for name, value in every_header(head)]
    return {"number": number, "size": len(data), "headers": headers,
            "body": body.decode("utf-8", "replace")}


@cli.command()
@selection_options
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False),
              help="Write the message to FILE (one message).")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="Write each message to DIR/UID.eml.")
@click.option("--maildir", type=click.Path(file_okay=False),
              help="Deliver into the Maildir DIR (tmp/, then new/).")
@click.option("--mbox", type=click.Path(dir_okay=False),
              help="Append to the mbox FILE (mboxrd, locked).")
@click.option("--delete", is_flag=True,
              help="Delete each message from the server once it is safely stored.")
@common_options
def retr(output: str | None, output_dir: str | None, maildir: str | None, mbox: str | None,
         delete: bool, **kwargs: Any) -> None:
    """Download whole messages: to stdout (byte-exact), a file, a directory, a Maildir or mbox.

    With --delete, each message is deleted on the server only after it has been written and
    flushed to disk (fsync); the deletions take effect when the session ends cleanly.

    \b
    Examples:
      popctl retr 3 > message.eml
      popctl retr --all --maildir ~/Maildir --delete
      popctl retr --larger-than 5M --output-dir big/
    """
    settings = _settings()
    query = build_query(kwargs)
    if not query.explicit:
        raise UsageError("say which messages: numbers or ranges (3, 3-7, last:5), --uid, "
                         "--all, or a filter such as --larger-than")
    targets = [t for t in (output, output_dir, maildir, mbox) if t]
    if len(targets) > 1:
        raise UsageError("choose one of --output, --output-dir, --maildir, --mbox")
    if delete and not targets:
        raise UsageError("--delete needs a place to store messages first: --output-dir, "
                         "--maildir, --mbox or --output")
    if settings.format is not None and not targets:
        raise UsageError("retr writes the messages themselves to stdout; --format applies to "
                         "the report when storing with --output, --output-dir, --maildir or --mbox")
    from popctl import stores

    store: stores.Store
    if output:
        store = stores.FileStore(output)
    elif output_dir:
        store = stores.DirectoryStore(output_dir)
    elif maildir:
        store = stores.MaildirStore(maildir)
    elif mbox:
        store = stores.MboxStore(mbox)
    else:
        store = stores.StdoutStore(sys.stdout.buffer)
    machine = settings.format is not None
    records: list[dict[str, object]] = []
    try:
        with open_session(settings, scan=True) as session:
            rows = list(_listing(settings, session, query, want_headers=False))
            if output and len(rows) > 1:  # before any RETR: nothing is fetched or written
                raise UsageError(f"--output FILE takes one message; use --output-dir (the "
                                 f"selection has {len(rows)})")
            uid_of = {r.number: r.uid for r in rows}
            listed = {r.number: r.size for r in rows}
            listed_order: dict[object, int] = {r.number: i for i, r in enumerate(rows)}
            sinks: dict[int, Any] = {}

            def open_sink(n: int) -> Any:
                sinks[n] = store.open(n, uid_of.get(n))
                return sinks[n]

            stored: dict[int, str] = {}

            def finish(n: int, sink: Any) -> None:
                stored[n] = sinks.pop(n).commit()

            total = sum(r.size for r in rows)
            bar = _progress(settings, total if targets and len(rows) > 1 else 0, "retrieving")
            try:
                with bar as progress:
                    for done in session.retr_many([r.number for r in rows], open_sink,
                                                  finish=finish, delete=delete, sizes=listed):
                        record: dict[str, object] = {
                            "number": done.number, "size": done.octets,
                            "listed_size": listed.get(done.number), "short": done.short,
                            "uid": uid_of.get(done.number), "stored": stored.get(done.number),
                            "deleted": done.deleted}
                        records.append(record)
                        if progress is not None:
                            progress.update(done.octets)
            except BaseException:
                for sink in sinks.values():
                    sink.discard()
                raise
            store.sync()  # the stored messages' directory entries, durable before QUIT
    finally:
        store.close()
    records.sort(key=lambda r: listed_order[r["number"]])  # deleted ones came after DELE
    if machine:
        emit(settings, records)
    elif targets:
        deleted = sum(1 for r in records if r["deleted"])
        note(settings, f"{len(records)} message(s) stored in {targets[0]}"
                       + (f", {deleted} deleted from the server" if delete else ""))
    _report_short(records, delete=delete, stdout=not targets)


def _report_short(records: list[dict[str, object]], *, delete: bool, stdout: bool) -> None:
    """Exit 6 if a message arrived with fewer octets than LIST announced (cut short?): one
    ``Error:`` line per message, and a summary when there are several."""
    lines = []
    for r in records:
        if not r["short"]:
            continue
        where = ("what was written to standard output may be incomplete" if stdout
                 else f"the copy in {r['stored']} may be incomplete")
        lines.append(f"message {r['number']} arrived short: {r['size']} of the "
                     f"{r['listed_size']} octets LIST announced; "
                     + (f"kept on the server ({where})" if delete else where))
    if len(lines) == 1:
        raise ShortMessageError(lines[0])
    if lines:
        for line in lines:
            click.echo(f"Error: {line}", err=True)
        raise ShortMessageError(f"{len(lines)} messages arrived shorter than LIST announced"
                                + ("; they were kept on the server" if delete else ""))


@cli.command()
@selection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be deleted; delete nothing.")
@common_options
def dele(yes: bool, dry_run: bool, **kwargs: Any) -> None:
    """Delete messages on the server (committed when the session ends cleanly).

    On a terminal popctl asks first; without one it requires --yes.

    \b
    Examples:
      popctl dele 3
      popctl dele --larger-than 10M --older-than 7d --yes --format json
      popctl dele --from spam@example.com --dry-run
    """
    settings = _settings()
    query = build_query(kwargs)
    if not query.explicit:
        raise UsageError("say which messages to delete: numbers or ranges, --uid, --all, or a "
                         "filter such as --larger-than")
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if not (yes or dry_run or interactive):
        raise UsageError("refusing to delete without confirmation: add --yes (or --dry-run to "
                         "see what would be deleted)")
    # Nothing to ask and a selection known before the headers arrive: the DELEs go in the same
    # pipelined window as the TOPs that read what is deleted (one round trip fewer).
    at_once = yes and not dry_run and not query.header_filters
    names = _several_accounts(settings)
    if names is not None:
        if not (yes or dry_run):
            # One question per account from several threads would be a mess: decide up front.
            raise UsageError("deleting across accounts needs --yes (see first what would be "
                             "deleted with --dry-run)")

        def one(child: Settings, session: Session) -> list[dict[str, object]]:
            rows = list(_listing(child, session, query, want_headers=True, delete=at_once))
            if rows and not (dry_run or at_once):
                session.dele([r.number for r in rows])
            return [{**r.to_record(True, _from_parts(child)), "deleted": not dry_run} for r in rows]

        records = across_accounts(settings, names, one, scan=True)
        if settings.fmt == "table":
            note(settings, f"dry run: {len(records)} message(s) would be deleted" if dry_run
                 else f"{len(records)} message(s) deleted")
        return
    with open_session(settings, scan=True) as session:
        rows = list(_listing(settings, session, query, want_headers=True, delete=at_once))
        records = []
        for r in rows:
            record = r.to_record(True, _from_parts(settings))
            record["deleted"] = at_once
            records.append(record)
        if rows and not (dry_run or at_once):
            if not yes:
                emit_table_to_stderr([{**r.to_record(True), "deleted": False} for r in rows])
                if not click.confirm(f"Delete {len(rows)} message(s)?", err=True):
                    raise click.Abort()
            session.dele([r.number for r in rows])
            for record in records:
                record["deleted"] = True
    emit(settings, records)
    if settings.fmt == "table":
        if dry_run:
            note(settings, f"dry run: {len(records)} message(s) would be deleted")
        elif not records:
            note(settings, "no messages matched; nothing deleted")
        else:
            note(settings, f"{len(records)} message(s) marked deleted (committed when the shell "
                           "quits; rset undoes)" if "session" in settings.extra
                 else f"{len(records)} message(s) deleted")


def emit_table_to_stderr(records: list[dict[str, object]]) -> None:
    from popctl import formatters

    formatters.render(records, "table", sys.stderr)


@cli.command()
@common_options
def rset(**kwargs: Any) -> None:
    """Undo deletions marked in this session.

    Each popctl command is its own session, so deletions made by a finished `popctl dele`
    are already committed; use RSET inside `popctl shell`, where it really undoes.
    """
    settings = _settings()
    with open_session(settings) as session:
        session.rset()
    note(settings, "deletion marks removed" if "session" in settings.extra
         else "RSET done (no deletions were pending in this session)")


@cli.command()
@common_options
def noop(**kwargs: Any) -> None:
    """Check that the server answers (connect, log in, NOOP)."""
    settings = _settings()
    with open_session(settings) as session:
        session.noop()
    note(settings, "server answered NOOP")


@cli.command()
@common_options
def capa(**kwargs: Any) -> None:
    """Server information: capabilities, implementation, SASL, TLS and certificate."""
    settings = _settings()
    with open_session(settings) as session:
        caps = session.capabilities
        tls = session.tls
        record: dict[str, object] = {
            "capabilities": sorted(caps.items) if caps.known else None,
            "implementation": caps.implementation,
            "sasl": list(session.login_capabilities.sasl or caps.sasl),
            "login_delay": caps.login_delay,
            "expire": caps.expire,
            "pipelining": caps.pipelining,
            "mechanism": session.mechanism,
            "tls_version": tls.version if tls else None,
            "tls_cipher": tls.cipher if tls else None,
            "cert_sha256": tls.cert_sha256 if tls else None,
            "greeting": session.greeting.text if session.greeting else None,
        }
    emit_one(settings, record)


SHELL_HELP = """\
Commands (same options as on the command line; one session for all of them):
  stat | list | uidl | top | retr | dele | rset | noop | capa   e.g.  list --larger-than 1M
  LAST, NOOP, STAT, ... (upper case) or  raw LINE               send a POP3 command as typed
  trace on|off                                                  show the dialogue on stderr
  help                                                          this text
  quit | exit | Ctrl-D                                          QUIT: commit deletions, leave
Deletions take effect only when you quit; rset undoes them before that."""

SHELL_COMMANDS = ("stat", "list", "uidl", "top", "retr", "dele", "rset", "noop", "capa")


@cli.command()
@common_options
def shell(**kwargs: Any) -> None:
    """An interactive prompt in ONE POP3 session, where dele then rset really undoes.

    Takes the same commands and options as the command line, plus raw POP3 commands
    (e.g. LAST), `trace on|off` and `help`. Deletions are committed when you quit. When stdin
    is not a terminal it reads commands from stdin as a script and stops at the first error,
    closing without QUIT so that nothing is deleted.

    \b
    Example:
      printf 'list --larger-than 5M\\ndele 3 --yes\\nquit\\n' | popctl shell
    """
    import shlex

    settings = _settings()
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - gives input() line editing and history
    with open_session(settings) as session:
        if interactive:
            note(settings, f"connected; {session.stat().count} message(s). Type help.")
        while True:
            try:
                line = input("popctl> " if interactive else "")
            except EOFError:
                break
            except KeyboardInterrupt:
                click.echo("", err=True)
                continue
            first = line.split(None, 1)[0] if line.strip() else "#"
            if first.startswith("#"):  # a blank line or a comment
                continue
            if first == "raw" or (first.isupper() and first not in SHELL_COMMANDS):
                # Sent as typed: quotes are the POP3 argument's own (APOP, PASS), not shell's.
                _shell_raw(session, line.strip()[4:] if first == "raw" else line.strip())
                continue
            try:
                words = shlex.split(line, comments=True)
            except ValueError as e:  # an unbalanced quote, a trailing backslash
                problem = f"cannot split that line: {str(e).lower()}"
                if not interactive:
                    raise UsageError(f"{problem}: script stopped, the session was closed "
                                     "without QUIT, so nothing was deleted") from None
                click.echo(f"Error: {problem}; nothing was done", err=True)
                continue
            if not words:
                continue
            verb = words[0]
            if verb in ("quit", "exit"):
                break
            if verb == "help":
                click.echo(SHELL_HELP, err=True)
                continue
            if verb == "trace":
                on = words[1:] == ["on"]
                session.set_trace(_trace_printer(time.monotonic()) if on else None)
                continue
            if verb not in SHELL_COMMANDS:
                if not interactive:
                    raise UsageError(f"unknown command {verb!r}: script stopped, the session "
                                     "was closed without QUIT, so nothing was deleted")
                click.echo(f"Error: unknown command {verb!r}; type help", err=True)
                continue
            child = settings.copy(extra=settings.extra)
            settings.extra.pop("error", None)
            settings.extra["session"] = session
            try:
                code = cli.main(args=words, prog_name="popctl", standalone_mode=False,
                                obj=child)
            finally:
                settings.extra.pop("session", None)
            error = settings.extra.pop("error", None)
            fatal = isinstance(error, TransportError | RemoteProtocolError)
            if fatal or (not interactive and (error is not None or code not in (None, 0))):
                raise ShellStopped(error.exit_code if error is not None else int(code or 1))


class ShellStopped(PopctlError):
    """A shell script failed; the error was already reported."""

    def __init__(self, code: int) -> None:
        super().__init__("shell stopped; the session was closed without QUIT, so nothing "
                         "was deleted")
        self.exit_code = ExitCode(code)


def _shell_raw(session: Session, line: str) -> None:
    import io

    data = io.BytesIO()
    try:
        reply = session.raw(line, data)
    except UsageError as e:
        click.echo(f"Error: {e}", err=True)
        return
    sign = "+OK" if reply.ok else "-ERR"
    code = f" [{reply.code}]" if reply.code else ""
    click.echo(f"{sign}{code} {reply.text}".rstrip())
    if data.getvalue():
        sys.stdout.write(data.getvalue().decode("utf-8", "replace"))
        sys.stdout.flush()


@cli.group()
def sandbox() -> None:
    """popctl's bundled sample POP3 server."""


@sandbox.command(name="serve")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
def sandbox_serve(port: int) -> None:
    """Run the sample server in the foreground (Ctrl-C stops it).

    It listens on 127.0.0.1 only, with user "sandbox", password "sandbox", and about 50 sample
    messages; deletions are kept in memory and never touch real mail.
    """
    from popctl.sandbox import SandboxServer

    _refuse_unused(click.get_current_context(), ("debug",))
    server = SandboxServer(port=port).start()
    host, bound = server.address
    click.echo(f"sandbox POP3 server on {host} port {bound}: user sandbox, password sandbox",
               err=True)
    if server.ca_file:
        click.echo(f"STLS certificate (trust it with --ca-file): {server.ca_file}", err=True)
    click.echo(f"try: popctl --host localhost --port {bound} --tls starttls --ca-file "
               f"{server.ca_file} --user sandbox list", err=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


# --- accounts and passwords -----------------------------------------------------------------------


_OUTPUT_OPTIONS: list[Callable[[F], F]] = [
    click.option("--format", "-f", "format", type=click.Choice(FORMATS),
                 help="Output format [default: table]."),
    click.option("--json", "json_", is_flag=True, default=None, help="Same as --format json."),
    click.option("--debug", is_flag=True, default=None, help="Show tracebacks on errors."),
    click.option("--quiet", "-q", is_flag=True, default=None,
                 help="No messages or progress on stderr, only errors and security warnings."),
]


def output_options(f: F) -> F:
    """--format, --json, --debug, --quiet: for the commands that do not connect to a server."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ours = {name: kwargs.pop(name) for name in ("format", "json_", "debug", "quiet")}
        ctx = click.get_current_context()
        _refuse_unused(ctx, ours)
        _merge(ctx.ensure_object(Settings), ours)
        return f(*args, **kwargs)

    for option in reversed(_OUTPUT_OPTIONS):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def _keyring_key(account: Account) -> str:
    from popctl import credentials

    return credentials.keyring_user(account.user or "", account.host or "",
                                    account.effective_port)


def _account_record(account: Account, default: str | None) -> dict[str, object]:
    """An account with the values popctl will use (defaults filled in), for list and show."""
    return {
        "name": account.name, "default": account.name == default, "host": account.host,
        "port": account.effective_port, "user": account.user,
        "tls": account.tls or "implicit", "auth": account.auth or "auto",
        "timeout": account.timeout or 30.0, "ca_file": account.ca_file,
        "fingerprint": account.fingerprint, "password_command": account.password_command,
        "oauth2_token_command": account.oauth2_token_command,
        "allow_plaintext": bool(account.allow_plaintext),
    }


@cli.group()
def account() -> None:
    """Named accounts in the configuration file (see popctl(1), FILES).

    \b
    Examples:
      popctl account add work --host pop.example.org --user me@example.org --default
      popctl password set work
      popctl account test work
      popctl --all-accounts list --larger-than 5M
    """


@account.command(name="add")
@click.argument("name")
@click.option("--host", "-H", "host", help="POP3 server host name (asked on a terminal).")
@click.option("--port", "-P", "port", type=click.IntRange(1, 65535),
              help="Server port [default: 995 for --tls implicit, else 110].")
@click.option("--user", "-u", "user", help="Login name (asked on a terminal).")
@click.option("--tls", "tls", type=click.Choice(TLS_MODES), help="implicit, starttls or none.")
@click.option("--auth", "auth", help="Authentication mechanism [default: auto].")
@click.option("--timeout", "timeout", type=click.FloatRange(0.1, 3600), help="Seconds.")
@click.option("--ca-file", "ca_file", help="CA certificates (PEM) to trust for this server.")
@click.option("--fingerprint", "fingerprint", help="SHA-256 fingerprint to pin.")
@click.option("--password-command", "password_command", metavar="COMMAND",
              help="Shell command whose first output line is the password.")
@click.option("--oauth2-token-command", "oauth2_token_command", metavar="COMMAND",
              help="Shell command whose first output line is an OAuth2 access token.")
@click.option("--allow-plaintext", "allow_plaintext", is_flag=True, default=None,
              help="Allow credentials over a connection without TLS.")
@click.option("--default", "make_default", is_flag=True,
              help="Make it the default account.")
@click.option("--probe", is_flag=True,
              help="Connect first: find the TLS mode (implicit TLS, then STLS) and the best "
                   "mechanism the server offers, and propose them.")
@output_options
def account_add(name: str, make_default: bool, probe: bool, **kwargs: Any) -> None:
    """Add an account to the configuration file (never its password: see password set).

    \b
    Examples:
      popctl account add work --host pop.example.org --user me@example.org
      popctl account add gmail --host pop.gmail.com --user me@gmail.com --probe
    """
    from popctl import config

    settings = _settings()
    if not config.NAME.fullmatch(name):
        raise UsageError(f"bad account name {name!r}: use letters, digits, - and _ (at most 64)")
    loaded = config.load(create=True)
    loaded.ensure_absent(name)  # before any question is asked
    values = {key: value for key, value in kwargs.items() if value is not None}
    for key, question in (("host", "POP3 server"), ("user", "Login name")):
        if key not in values and _interactive():
            values[key] = click.prompt(question, err=True)
        if key not in values:
            raise UsageError(f"account add needs --{key}")
    for key, value in values.items():
        problem = config.check_value(key, value)
        if problem:
            raise UsageError(f"--{key.replace('_', '-')}: {problem}")
    if probe:
        values.update(_probe(settings, values))
    new = config.Account(name, **values)
    rewritten = config.add_account(loaded, new, make_default=make_default)
    note(settings, f"account {name} added to {loaded.path}"
         + (" (the file was rewritten: its comments could not be kept)" if rewritten else ""))
    if not (new.password_command or new.oauth2_token_command):
        note(settings, f"store its password with: popctl password set {name}")
    if settings.format is not None:
        emit_one(settings, _account_record(new, name if make_default else loaded.default))


def _probe(settings: Settings, values: dict[str, Any]) -> dict[str, Any]:
    """Try implicit TLS, then STLS; read CAPA; return the settings to propose."""
    from popctl import auth
    from popctl.errors import ServerError
    from popctl.models import Credentials, Endpoint, TLSMode
    from popctl.session import Session

    host, port = values["host"], values.get("port")
    modes = [TLSMode(values["tls"])] if "tls" in values else [TLSMode.IMPLICIT, TLSMode.STARTTLS]
    timeout = min(values.get("timeout", 10.0), 10.0)
    ca_file = os.path.expanduser(values["ca_file"]) if "ca_file" in values else None
    tried = []
    for mode in modes:
        endpoint = Endpoint(host=host, port=port, tls=mode, ca_file=ca_file,
                            fingerprint=values.get("fingerprint"), connect_timeout=timeout,
                            timeout=timeout)
        note(settings, f"probe: {mode.value} on port {endpoint.effective_port} ...")
        try:
            with Session.connect(endpoint) as session:
                caps, tls = session.capabilities, session.tls
                timestamp = session.greeting.timestamp if session.greeting else None
        except (TransportError, RemoteProtocolError, ServerError) as e:
            tried.append(f"{mode.value} port {endpoint.effective_port}: {e}")
            continue
        oauth = "oauth2_token_command" in values  # placeholders: only the choice matters
        trial = Credentials(values["user"], password=None if oauth else "x",
                            oauth2_token="x" if oauth else None,
                            mechanism=values.get("auth", "auto"))
        mechanism = None
        try:
            mechanism = auth.choose_mechanism(trial, caps, encrypted=tls is not None,
                                              apop_timestamp=timestamp)
        except PopctlError as e:
            note(settings, f"probe: no usable mechanism: {e}")
        proposal: dict[str, Any] = {"tls": mode.value}
        if port is None and endpoint.effective_port != mode.default_port:
            proposal["port"] = endpoint.effective_port
        if mechanism is not None:
            proposal["auth"] = mechanism
        how = "implicit TLS" if mode is TLSMode.IMPLICIT else "STLS"
        note(settings, f"probe: {how} works on port {endpoint.effective_port}"
                       f" ({tls.version if tls else 'no TLS'}); SASL offered: "
                       f"{' '.join(caps.sasl) or 'none'}; proposed: "
                       + ", ".join(f"{k} = {v}" for k, v in proposal.items()))
        if _interactive() and not click.confirm("Use these settings?", default=True, err=True):
            return {}
        return proposal
    raise TransportError(f"probe: no TLS connection to {host} worked ("
                         + "; ".join(tried) + "); give --tls and --port yourself (--tls none "
                         "needs --allow-plaintext)")


@account.command(name="list")
@output_options
def account_list(**kwargs: Any) -> None:
    """The configured accounts (no secrets)."""
    from popctl import config

    settings = _settings()
    loaded = config.load()
    columns = ["name", "default", "host", "port", "user", "tls", "auth"]
    count = emit(settings, (_account_record(a, loaded.default)
                            for a in loaded.accounts.values()), columns=columns)
    if count == 0 and settings.fmt == "table":
        note(settings, f"no accounts in {loaded.path}; add one with: popctl account add NAME "
                       "--host HOST --user USER")


@account.command(name="show")
@click.argument("name")
@output_options
def account_show(name: str, **kwargs: Any) -> None:
    """One account's settings and whether the keyring holds its password."""
    from popctl import config
    from popctl import credentials as secrets

    settings = _settings()
    loaded = config.load()
    chosen = loaded.account(name)
    record = _account_record(chosen, loaded.default)
    key = _keyring_key(chosen)
    record["keyring_user"] = key
    found = secrets.backend()
    record["keyring_backend"] = found.describe()
    if not found.usable:
        record["keyring"] = "unavailable"
    else:
        record["keyring"] = "stored" if secrets.get_password(
            key, lambda text: note(settings, text)) is not None else "not stored"
    emit_one(settings, record)


@account.command(name="remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output_options
def account_remove(name: str, yes: bool, **kwargs: Any) -> None:
    """Remove an account from the configuration file, and its password from the keyring.

    On a terminal popctl asks first; without one it requires --yes.
    """
    from popctl import config
    from popctl import credentials as secrets

    settings = _settings()
    loaded = config.load()
    chosen = loaded.account(name)
    key = _keyring_key(chosen)
    if not yes:
        if not _interactive():
            raise UsageError("refusing to remove an account without confirmation: add --yes")
        if not click.confirm(f"Remove account {name} ({key}) and its keyring entry?", err=True):
            raise click.Abort()
    rewritten = config.remove_account(loaded, name)
    note(settings, f"account {name} removed from {loaded.path}"
         + (" (the file was rewritten: its comments could not be kept)" if rewritten else ""))
    shared = [a.name for a in loaded.accounts.values() if a.name != name
              and _keyring_key(a) == key]
    deleted = False
    if shared:
        note(settings, f"its keyring entry {key} is kept: account {shared[0]} uses it too")
    else:
        deleted = secrets.delete_password(key)
        if deleted:
            note(settings, f"its password ({key}) was deleted from the keyring")
    if settings.format is not None:
        emit_one(settings, {"name": name, "removed": True, "keyring_deleted": deleted})


@account.command(name="test")
@click.argument("name")
@common_options
def account_test(name: str, **kwargs: Any) -> None:
    """Connect, authenticate and STAT; report what was negotiated.

    \b
    Example:
      popctl account test work --trace
    """
    given = _given(click.get_current_context())
    for option in ("account", "all_accounts"):
        if option in given:
            raise UsageError(f"account test takes the account as its argument: drop "
                             f"{_flag(option)}")
    if "sandbox" in given:
        raise UsageError("account test tests a configured account, not the sandbox: drop "
                         "--sandbox (popctl --sandbox capa shows the sandbox's side)")
    settings = _settings().copy(account=(name,), all_accounts=None, extra={})
    target = settings.extra["target"] = resolve_target(settings)
    with open_session(settings) as session:
        result = session.stat()
        tls = session.tls
    emit_one(settings, {
        "account": name, "host": target.endpoint.host, "port": target.endpoint.effective_port,
        "user": target.credentials.user, "tls": target.endpoint.tls.value,
        "tls_version": tls.version if tls else None, "tls_cipher": tls.cipher if tls else None,
        "mechanism": session.mechanism, "credentials": settings.extra.get("secret_source"),
        "count": result.count, "size": result.size,
    })


@cli.group()
def password() -> None:
    """An account's password in the OS keyring (service "popctl").

    \b
    Examples:
      popctl password set work                 # asks, hidden, twice
      pass show mail/work | popctl password set work
      popctl password delete work
    """


@password.command(name="set")
@click.argument("name")
@output_options
def password_set(name: str, **kwargs: Any) -> None:
    """Store an account's password in the keyring: asked (hidden) on a terminal, else one line
    read from standard input. Never from the command line."""
    from popctl import config
    from popctl import credentials as secrets

    settings = _settings()
    chosen = config.load().account(name)
    key = _keyring_key(chosen)
    found = secrets.backend()
    if not found.usable:
        raise secrets.no_backend_error(found)
    note(settings, f"the password of account {name} ({key}) goes to the keyring backend "
                   f"{found.describe()}")
    if found.plaintext:
        # Said even with --quiet: the user must know the password sits in a readable file.
        click.echo(f"warning: {found.name.rsplit('.', 1)[-1]} does not encrypt: the password is "
                   f"only base64-encoded in {found.location or 'a file'}", err=True)
    if _interactive():
        value: str = click.prompt(f"Password for {key}", hide_input=True,
                                  confirmation_prompt=True, err=True)
    else:
        value = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not value:
            raise UsageError("no password on standard input (one line is read)")
    if any(c in value for c in "\r\n\0"):
        raise UsageError("the password contains a CR, LF or NUL character; nothing was stored")
    secrets.set_password(key, value)
    note(settings, f"password of account {name} stored")
    if settings.format is not None:
        emit_one(settings, {"account": name, "keyring_user": key, "backend": found.name,
                            "stored": True})


@password.command(name="delete")
@click.argument("name")
@output_options
def password_delete(name: str, **kwargs: Any) -> None:
    """Delete an account's password from the keyring (nothing stored is not an error)."""
    from popctl import config
    from popctl import credentials as secrets

    settings = _settings()
    key = _keyring_key(config.load().account(name))
    found = secrets.backend()
    if not found.usable:
        raise secrets.no_backend_error(found)
    deleted = secrets.delete_password(key)
    note(settings, f"password of account {name} ({key}) deleted from the keyring" if deleted
         else f"no password of account {name} ({key}) was stored in {found.name}")
    if settings.format is not None:
        emit_one(settings, {"account": name, "keyring_user": key, "deleted": deleted})


# --- entry point ----------------------------------------------------------------------------------


def _stop_sandbox() -> None:
    global _sandbox_server
    if _sandbox_server is not None:
        _sandbox_server.stop()
        _sandbox_server = None


def main(argv: list[str] | None = None) -> NoReturn:
    status: object = 0
    try:
        cli.main(args=argv, prog_name="popctl")
    except SystemExit as e:
        status = e.code
    finally:
        _stop_sandbox()
    _leave(status)


def _leave(status: object) -> NoReturn:
    """Exit as ``sys.exit(status)`` would, without the interpreter's teardown: freeing every
    module and object costs ~30 ms, a sixth of a whole purge. Standard output and error are
    flushed and the atexit handlers run first; while a non-daemon thread runs, the ordinary
    exit (which waits for it) is taken instead."""
    import atexit
    import threading

    if status is None or isinstance(status, int):
        code = status or 0
    else:  # sys.exit("message"): the message on stderr, status 1
        print(status, file=sys.stderr)
        code = 1
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader left (popctl ... | head): not an error, as above
            pass
        except OSError as e:
            if stream is sys.stdout:
                with contextlib.suppress(OSError):
                    sys.stderr.write(f"Error: cannot write to standard output: {e.strerror or e}\n")
                    sys.stderr.flush()
                code = code or ExitCode.FAILURE
    atexit._run_exitfuncs()
    os._exit(code)


def _devnull() -> TextIO:
    return open(os.devnull, "w")
