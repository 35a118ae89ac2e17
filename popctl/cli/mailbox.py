"""The mailbox commands: stat, list, uidl, top, retr, dele, rset, noop, capa.

Each resolves its options into typed values and calls one function of ``popctl.app``, imported
in the command's body: ``popctl --help`` and ``--version`` load none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from popctl.app.context import RunContext
from popctl.cli.group import cli
from popctl.cli.options import build_query, common_options, pass_run, selection_options
from popctl.cli.seen import NEW_OPTIONS, new_only, new_options
from popctl.errors import UsageError

if TYPE_CHECKING:
    from popctl.app.download import Download
    from popctl.query import Query


@cli.command()
@common_options
@pass_run
def stat(run: RunContext) -> None:
    """Message count and total size in octets.

    \b
    Example:
      popctl stat --json
    """
    from popctl.app import mailbox

    mailbox.stat(run)


@cli.command(name="list")
@selection_options
@click.option("--sizes-only", is_flag=True,
              help="Only number and size (one LIST; no headers, no UIDs): fastest.")
@common_options
@pass_run
def list_cmd(run: RunContext, sizes_only: bool, **selection: Any) -> None:
    """What is waiting: number, size, UID, From, Subject, Date (headers only).

    Headers are read with pipelined TOP n 0; nothing is downloaded.

    \b
    Examples:
      popctl list
      popctl list --larger-than 1M --format json | jq '.[].uid'
      popctl list last:10 --from 'example\\.org'
    """
    from popctl.app import mailbox

    query = build_query(selection)
    if sizes_only and query.header_filters:
        raise UsageError("--sizes-only reads no headers, so it cannot be combined with "
                         "--from, --subject, --header, --older-than or --newer-than")
    mailbox.list_messages(run, query, sizes_only=sizes_only)


@cli.command()
@selection_options
@common_options
@pass_run
def uidl(run: RunContext, **selection: Any) -> None:
    """Message numbers and their unique ids (stable across sessions).

    \b
    Example:
      popctl uidl --format csv
    """
    from popctl.app import mailbox

    mailbox.uidl(run, build_query(selection))


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
    from popctl.app import mailbox

    if uid is not None and message is not None:
        # `top --uid UID LINES`: the one positional given is the line count.
        if lines or not message.isdigit():
            raise UsageError("with --uid, give only LINES after it: top --uid UID [LINES]")
        lines, message = int(message), None
    if (message is None) == (uid is None):
        raise UsageError("say which message: a number or --uid UID")
    mailbox.top(run, build_query({"messages": [message] if message else [],
                                  "uids": [uid] if uid else []}), lines)


_STORES = ("output", "output_dir", "maildir", "mbox")


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
@new_options
@common_options
@pass_run
def retr(run: RunContext, delete: bool, **given: Any) -> None:
    """Download whole messages: to stdout (byte-exact), a file, a directory, a Maildir or mbox.

    With --delete, each message is deleted on the server only after it has been written and
    flushed to disk (fsync); the deletions take effect when the session ends cleanly.

    With --new, only the messages this account has not stored in that store before are
    fetched, and left on the server; --keep-days N deletes them N days later (popctl seen).

    \b
    Examples:
      popctl retr 3 > message.eml
      popctl retr --all --maildir ~/Maildir --delete
      popctl retr --larger-than 5M --output-dir big/
      popctl retr --new --keep-days 30 --maildir ~/Maildir
    """
    from popctl.app import download

    places = {kind: given.pop(kind) for kind in _STORES}
    destinations = {kind: path for kind, path in places.items() if path}
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
        raise UsageError("choose one of --output, --output-dir, --maildir, --mbox")
    if delete and not destinations:
        raise UsageError("--delete needs a place to store messages first: --output-dir, "
                         "--maildir, --mbox or --output")
    if run.options.machine and not destinations:
        raise UsageError("retr writes the messages themselves to stdout; --format applies to "
                         "the report when storing with --output, --output-dir, --maildir or --mbox")
    kind, path = next(iter(destinations.items()), (None, None))
    return Download(query, kind, path, delete)


@cli.command()
@selection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be deleted; delete nothing.")
@common_options
@pass_run
def dele(run: RunContext, yes: bool, dry_run: bool, **selection: Any) -> None:
    """Delete messages on the server (committed when the session ends cleanly).

    On a terminal popctl asks first; without one it requires --yes.

    \b
    Examples:
      popctl dele 3
      popctl dele --larger-than 10M --older-than 7d --yes --format json
      popctl dele --from spam@example.com --dry-run
    """
    from popctl.app import mailbox

    query = build_query(selection)
    if not query.explicit:
        raise UsageError("say which messages to delete: numbers or ranges, --uid, --all, or a "
                         "filter such as --larger-than")
    if not (yes or dry_run or run.ui.interactive()):
        raise UsageError("refusing to delete without confirmation: add --yes (or --dry-run to "
                         "see what would be deleted)")
    mailbox.delete(run, query, yes=yes, dry_run=dry_run)


@cli.command()
@common_options
@pass_run
def rset(run: RunContext) -> None:
    """Undo deletions marked in this session.

    Each popctl command is its own session, so deletions made by a finished `popctl dele`
    are already committed; use RSET inside `popctl shell`, where it really undoes.
    """
    from popctl.app import mailbox

    mailbox.rset(run)


@cli.command()
@common_options
@pass_run
def noop(run: RunContext) -> None:
    """Check that the server answers (connect, log in, NOOP)."""
    from popctl.app import mailbox

    mailbox.noop(run)


@cli.command()
@common_options
@pass_run
def capa(run: RunContext) -> None:
    """Server information: capabilities, implementation, SASL, TLS and certificate."""
    from popctl.app import mailbox

    mailbox.capa(run)
