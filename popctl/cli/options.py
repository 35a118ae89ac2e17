"""The options every command shares, and how they become one immutable ``Options``.

Connection and output options are accepted before and after the subcommand; the later ones win,
and an option given on the command line wins over the environment variable the subcommand reads
again. ``State`` (on ``ctx.obj``) collects them; ``pass_run`` hands a command the typed
``RunContext`` built from it (click's ``examples/repo`` pattern).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click
from click.core import ParameterSource

from popctl import defaults
from popctl.app.context import Opened, Options, RunContext
from popctl.cli.commands import shared_option
from popctl.cli.console import Console
from popctl.errors import UsageError

if TYPE_CHECKING:
    from popctl.query import Query

F = TypeVar("F", bound=Callable[..., Any])

_NAMES = frozenset(Options._fields)


class State:
    """``ctx.obj``: the options merged so far, and what the run holds open until it ends."""

    def __init__(self, options: Options | None = None, *, shell: Opened | None = None,
                 resources: contextlib.ExitStack | None = None) -> None:
        self.options = options or Options()
        self.shell = shell
        self.resources = resources or contextlib.ExitStack()
        # The common options typed on this command line (not from the environment), before or
        # after the subcommand: those a command cannot use are refused. A shell line has its own.
        self.given: set[str] = set()

    def merge(self, values: dict[str, Any]) -> None:
        """Options given (not None, not an unset flag) replace those given before; --account
        adds up; --json is --format json."""
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key == "account":  # repeatable, before and after the command: they add up
                if value:
                    changes[key] = tuple(dict.fromkeys((*self.options.account, *value)))
            elif key == "json_":
                if value:
                    changes["format"] = "json"
            elif key in _NAMES and value is not None and value is not False:
                changes[key] = value
        if changes:
            self.options = self.options._replace(**changes)

    def context(self) -> RunContext:
        return RunContext(self.options, Console(self.options), self.resources, self.shell)


def state() -> State:
    return click.get_current_context().ensure_object(State)


def pass_run(f: Callable[..., None]) -> Callable[..., None]:
    """Hand the command the RunContext of the options given so far, as its first argument."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        f(state().context(), *args, **kwargs)
    return wrapper


def complete_account(ctx: click.Context, param: click.Parameter, incomplete: str
                     ) -> list[str]:
    """Shell completion of --account and of the commands' account NAME: the names in the
    configuration file (POPCTL_CONFIG, else the XDG one)."""
    from popctl.app.accounts import account_names

    return [name for name in account_names() if name.startswith(incomplete)]


def _decorate(f: Callable[..., Any], decorators: list[Callable[[Any], Any]]) -> Any:
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


_CONNECTION_OPTIONS: list[Callable[[F], F]] = [
    shared_option("--host", "-H", envvar="POPCTL_HOST", help="POP3 server host name."),
    shared_option("--port", "-P", type=click.IntRange(1, 65535), envvar="POPCTL_PORT",
                 help=f"Server port [default: {defaults.IMPLICIT_TLS_PORT} for --tls implicit, "
                      f"else {defaults.PLAIN_PORT}]."),
    shared_option("--user", "-u", envvar="POPCTL_USER", help="Login name."),
    shared_option("--tls", type=click.Choice(defaults.TLS_MODES), envvar="POPCTL_TLS",
                 help=f"implicit (port {defaults.IMPLICIT_TLS_PORT}), starttls (STLS on port "
                      f"{defaults.PLAIN_PORT}) or none [default: {defaults.TLS}]."),
    shared_option("--ca-file", type=click.Path(dir_okay=False), envvar="POPCTL_CA_FILE",
                 help="Trust the CA certificates in this PEM file instead of the system's."),
    shared_option("--fingerprint", envvar="POPCTL_FINGERPRINT",
                 help="Accept only the server certificate with this SHA-256 fingerprint."),
    shared_option("--insecure", is_flag=True, default=None,
                 help="Do not verify the server certificate at all (dangerous)."),
    shared_option("--timeout", type=click.FloatRange(*defaults.TIMEOUT_RANGE),
                 envvar="POPCTL_TIMEOUT",
                 help="Seconds to wait for the connection, for any read, and for each reply's "
                      "first line; after that, multi-line replies must keep coming at 1 KiB/s "
                      f"or faster [default: {defaults.TIMEOUT:g}]."),
    shared_option("--session-timeout", type=click.FloatRange(0, 10**7),
                 envvar="POPCTL_SESSION_TIMEOUT",
                 help="Seconds the whole session may spend waiting for the server, 0 for no "
                      f"limit [default: {defaults.SESSION_TIMEOUT:g}, or "
                      f"{defaults.SESSION_TIMEOUT_READS} times --timeout if more]."),
    shared_option("--auth", "auth", envvar="POPCTL_AUTH",
                 help="Authentication mechanism: "
                      f"{', '.join(defaults.MECHANISMS)} [default: {defaults.MECHANISM}]."),
    shared_option("--allow-plaintext", is_flag=True, default=None,
                 help="Allow sending credentials over a connection without TLS."),
    shared_option("--no-pipelining", is_flag=True, default=None,
                 help="Send one command at a time even if the server allows pipelining."),
    shared_option("--no-cache", is_flag=True, default=None,
                 help="Neither read nor update the header cache (list, dele): fetch every "
                      "header."),
]

_OUTPUT_OPTIONS: list[Callable[[F], F]] = [
    shared_option("--format", "-f", "format", type=click.Choice(defaults.FORMATS),
                 help=f"Output format [default: {defaults.FORMAT}]."),
    shared_option("--json", "json_", is_flag=True, default=None, help="Same as --format json."),
]

_TABLE_OPTIONS: list[Callable[[F], F]] = [
    click.option("--full", is_flag=True, default=None,
                 help="Tables on a terminal as when piped: every column, values whole, sizes "
                      "in octets, dates in ISO 8601 (by default a terminal's table fits its "
                      "width)."),
]

_REPORT_OPTIONS: list[Callable[[F], F]] = [
    shared_option("--debug", is_flag=True, default=None, help="Show tracebacks on errors."),
    shared_option("--quiet", "-q", is_flag=True, default=None,
                 help="No messages or progress on stderr, only errors and security warnings."),
]

_RUN_OPTIONS: list[Callable[[F], F]] = [
    shared_option("--trace", is_flag=True, default=None,
                 help="Show the POP3 dialogue on stderr (credentials redacted)."),
    *_REPORT_OPTIONS,
    shared_option("--sandbox", is_flag=True, default=None,
                 help="Run against popctl's bundled sample server (no real mail touched; "
                      "its own server and login, so not with --host, --user, --account, ...)."),
    shared_option("--account", "-a", "account", multiple=True, metavar="NAME",
                  shell_complete=complete_account,
                 help="Use this account of the configuration file (repeatable for stat, list, "
                      "uidl, dele, retr --new) [default: POPCTL_ACCOUNT, else the file's "
                      "default]."),
    shared_option("--all-accounts", is_flag=True, default=None,
                 help="Run stat, list, uidl, dele or retr --new for every configured account "
                      "at once."),
]


def common_options(f: F) -> F:
    """Connection and output options, accepted before or after the subcommand."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        obj = state()
        for name in _NAMES:
            # `POPCTL_HOST=a popctl --host b stat`: the subcommand also reads POPCTL_HOST,
            # but the command line (before the subcommand) wins over the environment.
            if (name in kwargs and getattr(obj.options, name) is not None
                    and ctx.get_parameter_source(name) is ParameterSource.ENVIRONMENT):
                kwargs[name] = None
        obj.given.update(name for name in _OPTION_ORDER if kwargs.get(name) not in (None, False, ())
                         and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE)
        obj.merge(kwargs)
        _refuse_with_sandbox(obj)
        return f(*args, **{k: v for k, v in kwargs.items() if k not in _OPTION_NAMES})

    return cast(F, _decorate(wrapper, [*_CONNECTION_OPTIONS, *_OUTPUT_OPTIONS, *_TABLE_OPTIONS,
                                       *_RUN_OPTIONS]))


def output_options(f: F) -> F:
    """--format, --json, --debug, --quiet: for the commands that do not connect to a server."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ours = {name: kwargs.pop(name) for name in ("format", "json_", "debug", "quiet")}
        refuse_unused(ours)
        state().merge(ours)
        return f(*args, **kwargs)

    return cast(F, _decorate(wrapper, [*_OUTPUT_OPTIONS, *_REPORT_OPTIONS]))


_OPTION_NAMES = _NAMES | {"json_"}
_OPTION_ORDER = (*Options._fields, "json_")
# What --sandbox would otherwise ignore without a word: it brings its own server and login.
_NOT_WITH_SANDBOX = ("host", "port", "user", "tls", "ca_file", "fingerprint", "insecure",
                     "allow_plaintext", "account", "all_accounts")


def flag(name: str) -> str:
    """The option a name of Options stands for."""
    return "--json" if name == "json_" else "--" + name.replace("_", "-")


def _refuse_with_sandbox(obj: State) -> None:
    clash = [name for name in _NOT_WITH_SANDBOX if name in obj.given]
    if obj.options.sandbox and clash:
        if clash[0] in ("account", "all_accounts"):
            raise UsageError("the sandbox has no accounts", hint="sandbox-accounts")
        raise UsageError(f"--sandbox runs popctl's own sample server, with its own login: "
                         f"{flag(clash[0])} cannot be combined with it")


def refuse_unused(used: Iterable[str]) -> None:
    """Refuse the common options given before a subcommand that does not use them (``popctl
    --all-accounts account list``): silently ignoring them would let the user believe they
    applied."""
    ctx = click.get_current_context()
    unused = sorted(state().given - set(used), key=_OPTION_ORDER.index)
    if not unused:
        return
    path, parent = [], ctx
    while parent.parent is not None:
        path.append(parent.info_name or "")
        parent = parent.parent
    command = " ".join(reversed(path))
    if unused[0] in {p.name for p in ctx.command.params}:
        raise UsageError(f"{flag(unused[0])} given before '{command}' does not apply to it; "
                         f"put it after '{command}'")
    raise UsageError(f"{flag(unused[0])} does not apply to '{command}'")


# --- which messages -------------------------------------------------------------------------------


def selection_options(f: F) -> F:
    """Message numbers and ranges, --uid, --all and the filters: gathered into ``selection``."""
    return cast(F, _decorate(f, [
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
    ]))


def build_query(selection: dict[str, Any]) -> Query:
    """The selection options as a validated Query (a bad value is refused before connecting)."""
    from popctl import selection as parse
    from popctl.query import Query

    def opt(name: str, convert: Callable[[str], Any]) -> Any:
        value = selection.get(name)
        return convert(value) if value is not None else None

    return Query(
        ranges=tuple(selection.get("messages", ())),
        uids=tuple(selection.get("uids", ())),
        all=bool(selection.get("all_", False)),
        larger_than=opt("larger_than", parse.parse_size),
        smaller_than=opt("smaller_than", parse.parse_size),
        sender=opt("from_", lambda v: parse.compile_regex(v, "--from")),
        subject=opt("subject", lambda v: parse.compile_regex(v, "--subject")),
        header=tuple(parse.parse_header_filter(h, "--header") for h in selection.get("header", ())),
        older_than=opt("older_than", parse.parse_duration),
        newer_than=opt("newer_than", parse.parse_duration),
    )
