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
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO, TypeVar

import click

from popctl import __version__
from popctl.errors import (
    CapabilityError,
    ExitCode,
    NoCredentialsError,
    PopctlError,
    RemoteProtocolError,
    TransportError,
    UsageError,
)

if TYPE_CHECKING:  # imported lazily below: `popctl --help` must not pay for TLS and parsing
    from popctl.cache import HeaderCache
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
    auth: str | None = None
    allow_plaintext: bool | None = None
    format: str | None = None
    trace: bool | None = None
    debug: bool | None = None
    quiet: bool | None = None
    sandbox: bool | None = None
    no_pipelining: bool | None = None
    no_cache: bool | None = None
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
        if key in names:
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
                 help="Seconds to wait for the connection and for each reply [default: 30]."),
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
                 help="No messages or progress on stderr, only errors."),
    click.option("--sandbox", is_flag=True, default=None,
                 help="Run against popctl's bundled sample server (no real mail touched)."),
]


def common_options(f: F) -> F:
    """Connection and output options, accepted before or after the subcommand."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        obj = ctx.find_object(Settings)
        if obj is None:
            obj = ctx.ensure_object(Settings)
        _merge(obj, kwargs)
        return f(*args, **kwargs)

    for option in reversed(_COMMON_OPTIONS):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


# --- talking to people ----------------------------------------------------------------------------


def note(settings: Settings, text: str) -> None:
    """A human message: stderr, unless --quiet."""
    if not settings.quiet:
        click.echo(text, err=True)


def _trace_printer(start: float) -> Callable[[str, str], None]:
    def trace(direction: str, line: str) -> None:
        click.echo(f"{time.monotonic() - start:9.3f} {direction}: {line}", err=True)
    return trace


# --- connecting -----------------------------------------------------------------------------------


class Target(NamedTuple):
    endpoint: Endpoint
    credentials: Credentials


def _password(settings: Settings, user: str, host: str) -> str:
    password = os.environ.get("POPCTL_PASSWORD")
    if password:
        return password
    if sys.stdin.isatty() and sys.stderr.isatty():
        value: str = click.prompt(f"Password for {user}@{host}", hide_input=True, err=True)
        return value
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
                        ca_file=_sandbox_server.ca_file, timeout=settings.timeout or 30.0)
    return Target(endpoint, Credentials("sandbox", "sandbox", mechanism=settings.auth or "auto"))


def resolve_target(settings: Settings) -> Target:
    if settings.sandbox:
        return _start_sandbox(settings)
    if not settings.host:
        raise UsageError("no server given: use --host HOST (or POPCTL_HOST), or try --sandbox")
    from popctl.models import Credentials, Endpoint, TLSMode

    tls = TLSMode(settings.tls or "implicit")
    if settings.fingerprint is not None:
        from popctl.transport import normalize_fingerprint

        try:
            normalize_fingerprint(settings.fingerprint)
        except ValueError as e:
            raise UsageError(f"--fingerprint: {e}") from None
    if settings.ca_file is not None and not os.path.isfile(settings.ca_file):
        raise UsageError(f"--ca-file {settings.ca_file}: no such file")
    timeout = settings.timeout or 30.0
    endpoint = Endpoint(host=settings.host, port=settings.port, tls=tls, ca_file=settings.ca_file,
                        fingerprint=settings.fingerprint, insecure=bool(settings.insecure),
                        connect_timeout=timeout, timeout=timeout)
    if not settings.user:
        raise UsageError("no user given: use --user NAME (or POPCTL_USER)")
    user = settings.user
    credentials = Credentials(user=user, password=None, mechanism=settings.auth or "auto",
                              allow_plaintext=bool(settings.allow_plaintext))
    return Target(endpoint, credentials)


@contextlib.contextmanager
def open_session(settings: Settings) -> Iterator[Session]:
    """Connect and log in; QUIT on success, close without QUIT on any error.

    Inside ``popctl shell`` the shell's one session is used and stays open.
    """
    live: Session | None = settings.extra.get("session")
    if live is not None:
        yield live
        return
    from dataclasses import replace

    from popctl.models import TLSMode

    target = resolve_target(settings)
    if target.endpoint.insecure and target.endpoint.tls is not TLSMode.NONE:
        note(settings, "warning: --insecure: the server certificate is NOT verified")
    trace = _trace_printer(time.monotonic()) if settings.trace else None
    credentials = target.credentials
    if target.endpoint.tls is TLSMode.NONE and not credentials.allow_plaintext:
        # Refuse before connecting: nothing would be gained by connecting first.
        from popctl.errors import InsecureAuthError

        raise InsecureAuthError(
            "refusing to send credentials over a connection without TLS; use --tls implicit "
            "or --tls starttls, or allow it explicitly with --allow-plaintext")
    from popctl.session import Session

    session = Session.connect(target.endpoint, trace=trace,
                              pipelining=False if settings.no_pipelining else None)
    with session:
        if credentials.password is None and credentials.oauth2_token is None:
            credentials = replace(credentials, password=_password(
                settings, credentials.user, target.endpoint.host))
        session.login(credentials)
        settings.extra["cache_account"] = (credentials.user, target.endpoint.host,
                                           target.endpoint.effective_port)
        yield session


# --- output ---------------------------------------------------------------------------------------


def emit(settings: Settings, records: Iterable[dict[str, object]],
         columns: list[str] | None = None) -> int:
    from popctl import formatters

    return formatters.render(records, settings.fmt, sys.stdout, columns=columns)


def emit_one(settings: Settings, record: dict[str, object]) -> None:
    from popctl import formatters

    formatters.render_one(record, settings.fmt, sys.stdout)


# --- message selection ----------------------------------------------------------------------------


def selection_options(f: F) -> F:
    decorators = [
        click.argument("messages", nargs=-1),
        click.option("--uid", "uids", multiple=True, help="Select by UIDL unique id (repeatable)."),
        click.option("--all", "all_", is_flag=True, help="Select every message."),
        click.option("--larger-than", metavar="SIZE",
                     help="Only messages larger than SIZE (500k, 1.5M, 2G)."),
        click.option("--smaller-than", metavar="SIZE",
                     help="Only messages smaller than SIZE."),
        click.option("--from", "from_", metavar="REGEX",
                     help="Only messages whose From matches REGEX."),
        click.option("--subject", metavar="REGEX",
                     help="Only messages whose Subject matches REGEX."),
        click.option("--header", "header", multiple=True, metavar="'NAME: REGEX'",
                     help="Only messages with a header matching 'Name: REGEX' (repeatable)."),
        click.option("--older-than", metavar="AGE",
                     help="Only messages dated before AGE ago (30d, 12h, 1w)."),
        click.option("--newer-than", metavar="AGE",
                     help="Only messages dated within AGE (30d, 12h, 1w)."),
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
        except Exception as e:
            _report(ctx, f"Error: internal error: {type(e).__name__}: {e} (run with --debug "
                         "for details, and please report it)")
            ctx.exit(ExitCode.FAILURE)


def _report(ctx: click.Context, line: str) -> None:
    settings = ctx.find_object(Settings)
    if (settings is not None and settings.debug) or os.environ.get("POPCTL_DEBUG") == "1":
        import traceback

        traceback.print_exc()
    click.echo(line, err=True)


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
    with open_session(settings) as session:
        rows = _listing(settings, session, query, want_headers=not sizes_only,
                        sizes_only=sizes_only)
        columns = ["number", "size"] if sizes_only else None
        count = emit(settings, (r.to_record(not sizes_only) for r in rows),
                     columns=columns)
    if count == 0 and settings.fmt == "table":
        note(settings, "no messages")


def _listing(settings: Settings, session: Session, query: Query, *, want_headers: bool,
             sizes_only: bool = False) -> Iterator[Row]:
    """The selected rows; headers read with TOP when wanted and the server has TOP."""
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
    return _rows(settings, session, query, want_headers=want_headers, sizes_only=sizes_only)


def _rows(settings: Settings, session: Session, query: Query, *, want_headers: bool,
          sizes_only: bool) -> Iterator[Row]:
    from popctl import query as query_module

    bar: Any = None
    if want_headers and not settings.quiet and sys.stderr.isatty():
        total = session.stat().count
        if total >= 20:
            bar = click.progressbar(length=total, label="reading headers", file=sys.stderr)
    cache = _header_cache(settings) if want_headers or query.header_filters else None
    try:
        yield from query_module.run(session, query, want_headers=want_headers,
                                    sizes_only=sizes_only, cache=cache,
                                    progress=bar.update if bar is not None else None)
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
    with open_session(settings) as session:
        if session.capabilities.known and "UIDL" not in session.capabilities:
            raise CapabilityError("the server does not support UIDL (no unique ids)",
                                  command="UIDL")
        rows = _listing(settings, session, query, want_headers=False)
        emit(settings, ({"number": r.number, "uid": r.uid} for r in rows))


def _one_message(session: Session, settings: Settings, query: Query) -> int:
    from popctl import query as query_module

    rows = list(query_module.run(session, query, want_headers=False))
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
    with open_session(settings) as session:
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
    from email import policy
    from email.parser import BytesParser

    head, _, body = data.partition(b"\r\n\r\n") if b"\r\n\r\n" in data else \
        data.partition(b"\n\n")
    message = BytesParser(policy=policy.default).parsebytes(head + b"\r\n\r\n",
                                                             headersonly=True)
    headers = []
    for name, value in message.items():
        try:
            text = str(value)
        except Exception:  # a malformed header must not lose the rest
            text = str(value.__class__.__str__(value)) if value else ""
        headers.append({"name": name, "value": " ".join(text.split())})
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
        with open_session(settings) as session:
            rows = list(_listing(settings, session, query, want_headers=False))
            if output and len(rows) > 1:  # before any RETR: nothing is fetched or written
                raise UsageError(f"--output FILE takes one message; use --output-dir (the "
                                 f"selection has {len(rows)})")
            uid_of = {r.number: r.uid for r in rows}
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
                                                  finish=finish, delete=delete):
                        record: dict[str, object] = {
                            "number": done.number, "size": done.octets,
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
    if machine:
        emit(settings, records)
    elif targets:
        deleted = sum(1 for r in records if r["deleted"])
        note(settings, f"{len(records)} message(s) stored in {targets[0]}"
                       + (f", {deleted} deleted from the server" if delete else ""))


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
    with open_session(settings) as session:
        rows = list(_listing(settings, session, query, want_headers=True))
        records = []
        for r in rows:
            record = r.to_record(True)
            record["deleted"] = False
            records.append(record)
        if rows and not dry_run:
            if not yes:
                emit_table_to_stderr(records)
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
            words = shlex.split(line, comments=True) if line.strip() else []
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
            if verb == "raw" or (verb.isupper() and verb not in SHELL_COMMANDS):
                text = line.strip()[4:] if verb == "raw" else line.strip()
                _shell_raw(session, text)
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


# --- entry point ----------------------------------------------------------------------------------


def _stop_sandbox() -> None:
    global _sandbox_server
    if _sandbox_server is not None:
        _sandbox_server.stop()
        _sandbox_server = None


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="popctl")
    finally:
        _stop_sandbox()


def _devnull() -> TextIO:
    return open(os.devnull, "w")
