"""The mailbox commands: stat, list, uidl, top, retr, dele, rset, noop, capa.

Each resolves its options into typed values and calls one function of ``popctl.app``, imported
in the command's body: ``popctl --help`` and ``--version`` load none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from popctl import defaults
from popctl.app.context import RunContext
from popctl.cli.group import cli
from popctl.cli.options import build_query, common_options, pass_run, selection_options
from popctl.cli.seen import NEW_OPTIONS, new_only, new_options
from popctl.errors import UsageError

if TYPE_CHECKING:
    from popctl.app.download import Download
    from popctl.query import Query

F = TypeVar("F", bound=Callable[..., Any])


@cli.command()
@common_options
@pass_run
def stat(run: RunContext) -> None:
    """Message count and total size in octets.

    \b
    Example:
      popctl stat --json
    """
    run = _connect_ahead(run)
    from popctl.app import mailbox

    mailbox.stat(run)


def _connect_ahead(run: RunContext) -> RunContext:
    """``run`` with the connection to its server begun (app.targets.connect_ahead): called
    once the arguments are checked and before the application is imported, whose import
    then overlaps the TCP handshake and the greeting."""
    from popctl.app.targets import connect_ahead

    return connect_ahead(run)


_COLUMNS_HELP = ("Choose and order the columns (table, CSV) or fields (JSON, NDJSON), "
                 "comma-separated: ")


def columns_option(valid: tuple[str, ...]) -> Callable[[F], F]:
    return click.option("--columns", "columns", metavar="LIST",
                        help=_COLUMNS_HELP + ", ".join(valid) + ".")


@cli.command(name="list")
@selection_options
@click.option("--sizes-only", is_flag=True,
              help="Only number and size (one LIST; no headers, no UIDs): fastest.")
@columns_option(defaults.LIST_COLUMNS)
@click.option("--sort", "sort", metavar="FIELDS",
              help="Order the messages by number, size, date, from, subject or uid; a leading "
                   "- for descending, a comma before the field that breaks ties: --sort -size, "
                   "--sort date,-size.")
@common_options
@pass_run
def list_cmd(run: RunContext, sizes_only: bool, columns: str | None, sort: str | None,
             **selection: Any) -> None:
    """What is waiting: number, size, UID, From, Subject, Date (headers only).

    Headers are read with pipelined TOP n 0; nothing is downloaded. On a terminal the table
    fits its width (see --full).

    \b
    Examples:
      popctl list
      popctl list --sort -size --columns number,size,subject
      popctl list --larger-than 1M --format json | jq '.[].uid'
      popctl list last:10 --from 'example\\.org'
    """
    query = build_query(selection)
    if sizes_only and query.header_filters:
        raise UsageError("--sizes-only reads no headers, so it cannot be combined with "
                         "--from, --subject, --header, --older-than or --newer-than")
    valid = defaults.SIZES_ONLY_COLUMNS if sizes_only else defaults.LIST_COLUMNS
    chosen, order = option_columns(columns, valid), option_sort(sort, valid)
    run = _connect_ahead(run)
    from popctl.app import mailbox

    mailbox.list_messages(run, query, sizes_only=sizes_only, columns=chosen, sort=order)


@cli.command()
@selection_options
@columns_option(defaults.UIDL_COLUMNS)
@common_options
@pass_run
def uidl(run: RunContext, columns: str | None, **selection: Any) -> None:
    """Message numbers and their unique ids (stable across sessions).

    \b
    Example:
      popctl uidl --format csv
    """
    query, chosen = build_query(selection), option_columns(columns, defaults.UIDL_COLUMNS)
    run = _connect_ahead(run)
    from popctl.app import mailbox

    mailbox.uidl(run, query, chosen)


@cli.command()
@click.argument("message", required=False)
@click.argument("lines", required=False, type=click.IntRange(0, 10**9), default=0)
@click.option("--uid", "uid", help="Select the message by UIDL unique id.")
@common_options
@pass_run
def top(run: RunContext, message: str | None, lines: int, uid: str | None) -> None:
    """Headers and the first LINES body lines of one message (raw, or parsed with --json).

    \b
    Examples:
      popctl top 3
      popctl top 3 10
      popctl top --uid 000001a2 --json | jq .headers
    """
    if uid is not None and message is not None:
        # `top --uid UID LINES`: the one positional given is the line count.
        if lines or not message.isdigit():
            raise UsageError("with --uid, give only LINES after it: top --uid UID [LINES]")
        lines, message = int(message), None
    if (message is None) == (uid is None):
        raise UsageError("say which message: a number or --uid UID")
    query = build_query({"messages": [message] if message else [], "uids": [uid] if uid else []})
    run = _connect_ahead(run)
    from popctl.app import mailbox

    mailbox.top(run, query, lines)


_STORES = ("output", "output_dir", "maildir", "mbox", "pipe")


@cli.command()
@selection_options
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False),
              help="Write the message to FILE (one message).")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="Write each message to DIR/UID.eml (DIR is created if missing).")
@click.option("--maildir", type=click.Path(file_okay=False),
              help="Deliver into the Maildir DIR (tmp/, then new/).")
@click.option("--mbox", type=click.Path(dir_okay=False, allow_dash=True),
              help="Append to the mbox FILE (mboxrd, locked); '-': mboxrd on stdout.")
@click.option("--pipe", metavar="COMMAND",
              help="Run COMMAND (/bin/sh) for each message, the message on its stdin; "
                   "delivered when it exits 0.")
@click.option("--delete", is_flag=True,
              help="Delete each message from the server once it is safely stored.")
@new_options
@common_options
@pass_run
def retr(run: RunContext, delete: bool, **given: Any) -> None:
    """Download whole messages: to stdout (byte-exact), a file, a directory, a Maildir, an mbox
    or a program.

    With --delete, each message is deleted on the server only after it has been written and
    flushed to disk (fsync), or the --pipe program exited 0; the deletions take effect when the
    session ends cleanly. Several messages go to stdout only as mboxrd (--mbox -).

    With --new, only the messages this account has not stored in that store before are
    fetched, and left on the server; --keep-days N deletes them N days later (popctl seen).

    \b
    Examples:
      popctl retr 3 > message.eml
      popctl retr 1-3 --mbox - | less
      popctl retr --all --maildir ~/Maildir --delete
      popctl retr --all --pipe 'procmail -f "$POPCTL_SENDER"' --delete
      popctl retr --larger-than 5M --output-dir big/
      popctl retr --new --keep-days 30 --maildir ~/Maildir
    """
    from popctl.app import download

    places = {kind: given.pop(kind) for kind in _STORES}
    destinations = {kind: path for kind, path in places.items() if path is not None}
    newness = {name: given.pop(name) for name in NEW_OPTIONS}
    query = build_query(given)
    fresh = new_only(query, destinations, delete, **newness)
    if fresh is not None:
        from popctl.app import fetch

        fetch.fetch_new(run, fresh)
        return
    download.download(run, _download(run, query, destinations, delete))


def _download(run: RunContext, query: Query, destinations: dict[str, str], delete: bool
              ) -> Download:
    """retr's options, checked, as one download.Download."""
    from popctl.app.download import Download

    if not query.explicit:
        raise UsageError("say which messages: numbers or ranges (3, 3-7, last:5), --uid, "
                         "--all, or a filter such as --larger-than")
    if len(destinations) > 1:
        raise UsageError("choose one of --output, --output-dir, --maildir, --mbox, --pipe")
    kind, path = next(iter(destinations.items()), (None, None))
    request = Download(query, kind, None if path == "-" and kind == "mbox" else path, delete)
    if delete and request.to_stdout:
        raise UsageError("--delete needs a place to store messages first: --output-dir, "
                         "--maildir, --mbox FILE, --pipe or --output")
    if run.options.machine and request.to_stdout:
        raise UsageError("retr writes the messages themselves to stdout; --format applies to "
                         "the report when storing with --output, --output-dir, --maildir, "
                         "--mbox FILE or --pipe")
    return request


@cli.command()
@selection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be deleted; delete nothing.")
@columns_option(defaults.DELE_COLUMNS)
@common_options
@pass_run
def dele(run: RunContext, yes: bool, dry_run: bool, columns: str | None,
         **selection: Any) -> None:
    """Delete messages on the server (committed when the session ends cleanly).

    On a terminal popctl asks first; without one it requires --yes.

    \b
    Examples:
      popctl dele 3
      popctl dele --larger-than 10M --older-than 7d --yes --format json
      popctl dele --from spam@example.com --dry-run
    """
    query = build_query(selection)
    if not query.explicit:
        raise UsageError("say which messages to delete: numbers or ranges, --uid, --all, or a "
                         "filter such as --larger-than")
    if not (yes or dry_run or run.ui.interactive()):
        raise UsageError("refusing to delete without confirmation: add --yes (or --dry-run to "
                         "see what would be deleted)")
    chosen = option_columns(columns, defaults.DELE_COLUMNS)
    run = _connect_ahead(run)
    from popctl.app import mailbox

    mailbox.delete(run, query, yes=yes, dry_run=dry_run, columns=chosen)


@cli.command()
@common_options
@pass_run
def rset(run: RunContext) -> None:
    """Undo deletions marked in this session.

    Each popctl command is its own session, so deletions made by a finished `popctl dele`
    are already committed; use RSET inside `popctl shell`, where it really undoes.

    \b
    Example:
      printf 'dele 3 --yes\\nrset\\nquit\\n' | popctl shell    # the shell's rset
      popctl rset --trace
    """
    run = _connect_ahead(run)
    from popctl.app import mailbox

    mailbox.rset(run)


@cli.command()
@common_options
@pass_run
def noop(run: RunContext) -> None:
    """Check that the server answers (connect, log in, NOOP).

    \b
    Example:
      popctl noop --account work && echo reachable
    """
    run = _connect_ahead(run)
    from popctl.app import mailbox

    mailbox.noop(run)


@cli.command()
@common_options
@pass_run
def capa(run: RunContext) -> None:
    """Server information: capabilities, implementation, SASL, TLS and certificate.

    \b
    Examples:
      popctl capa --host pop.example.org
      popctl capa --json | jq .capabilities
    """
    run = _connect_ahead(run)
    from popctl.app import mailbox

    mailbox.capa(run)


def _names(text: str, what: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise UsageError(f"name at least one {what}, separated by commas")
    return names


def option_columns(text: str | None, valid: Sequence[str]) -> tuple[str, ...] | None:
    """--columns: comma-separated column names, checked against ``valid``; None when not
    given (a usage error names the valid columns)."""
    if text is None:
        return None
    names = _names(text, "column")
    for name in names:
        if name not in valid:
            raise UsageError(f"unknown column {name!r}: the columns are {', '.join(valid)}")
    return tuple(names)


def option_sort(text: str | None, valid: Sequence[str] = defaults.SORT_FIELDS
                ) -> tuple[tuple[str, bool], ...]:
    """--sort: comma-separated fields to sort by, each descending with a leading ``-``
    (``-size,date``), checked against the fields the listing has (--sizes-only: number and
    size)."""
    if text is None:
        return ()
    fields = [f for f in defaults.SORT_FIELDS if f in valid]
    keys = []
    for name in _names(text, "field to sort by"):
        field = name.removeprefix("-")
        if field not in fields:
            raise UsageError(f"cannot sort by {field!r}: sort by {', '.join(fields)} (a leading "
                             "- for descending: -size)")
        keys.append((field, name.startswith("-")))
    return tuple(keys)
