"""``retr --new`` (its options, checked into one app.fetch.NewOnly) and ``popctl seen
list|forget``, the state it keeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from popctl.app.context import RunContext
from popctl.cli.group import cli
from popctl.cli.options import common_options, pass_run
from popctl.errors import UsageError

if TYPE_CHECKING:
    from popctl.app.fetch import NewOnly
    from popctl.app.seen import StateOf
    from popctl.query import Query

F = TypeVar("F", bound=Callable[..., Any])

NEW_OPTIONS = ("new", "keep_days", "dry_run")


def new_options(f: F) -> F:
    """retr's --new, --keep-days and --dry-run."""
    for option in reversed([
        click.option("--new", is_flag=True,
                     help="Only the messages this account has not stored in this store before "
                          "(by UIDL), leaving them on the server; see popctl seen."),
        click.option("--keep-days", type=click.FloatRange(0, 100_000), metavar="N",
                     help="With --new: delete from the server the messages popctl first "
                          "stored at least N days ago (0: at the next run)."),
        click.option("--dry-run", "-n", is_flag=True,
                     help="With --new: show what would be fetched and deleted; do nothing."),
    ]):
        f = option(f)
    return f


def new_only(query: Query, destinations: dict[str, str], delete: bool, *, new: bool,
             keep_days: float | None, dry_run: bool) -> NewOnly | None:
    """retr's --new options, checked, as one NewOnly; None without --new."""
    from popctl.app.fetch import NewOnly

    if not new:
        if keep_days is not None or dry_run:
            raise UsageError("--keep-days and --dry-run go with --new (retr --new --keep-days "
                             "N --maildir DIR)")
        return None
    if query.ranges or query.uids or query.filters:
        raise UsageError("--new chooses the messages itself (those not stored before): drop "
                         "the numbers, --uid and filters")
    if delete and keep_days is not None:
        raise UsageError("choose --delete (delete once stored) or --keep-days N (delete N days "
                         "later), not both")
    # A program (--pipe) or standard output cannot be asked later whether it holds a message,
    # which is what makes a run killed at any moment neither lose nor duplicate one.
    stores = {kind: path for kind, path in destinations.items()
              if kind not in ("output", "pipe") and path != "-"}
    if len(destinations) > 1:
        raise UsageError("choose one of --output-dir, --maildir, --mbox")
    if not stores or len(stores) != len(destinations):
        raise UsageError("--new needs a store to remember what it holds: --maildir, --mbox FILE "
                         "or --output-dir")
    kind, path = next(iter(stores.items()))
    return NewOnly(kind, path, delete=delete, keep_days=keep_days, dry_run=dry_run)


# --- popctl seen ----------------------------------------------------------------------------


def _store_options(f: F) -> F:
    for option in reversed([
        click.option("--maildir", type=click.Path(file_okay=False), help="The Maildir DIR."),
        click.option("--mbox", type=click.Path(dir_okay=False), help="The mbox FILE."),
        click.option("--output-dir", type=click.Path(file_okay=False),
                     help="The directory DIR."),
    ]):
        f = option(f)
    return f


def _state_of(maildir: str | None, mbox: str | None, output_dir: str | None) -> StateOf:
    from popctl.app.seen import StateOf

    given = {k: v for k, v in (("maildir", maildir), ("mbox", mbox),
                               ("output_dir", output_dir)) if v}
    if len(given) != 1:
        raise UsageError("say which store: one of --maildir, --mbox, --output-dir")
    return StateOf(*next(iter(given.items())))


@cli.group()
def seen() -> None:
    """What `retr --new` recorded: the UIDs an account stored into a store, and when.

    \b
    Examples:
      popctl seen list --maildir ~/Maildir
      popctl seen forget --uid 000001a2 --maildir ~/Maildir
      popctl seen forget --all --maildir ~/Maildir
    """


@seen.command(name="list")
@_store_options
@common_options
@pass_run
def seen_list(run: RunContext, maildir: str | None, mbox: str | None,
              output_dir: str | None) -> None:
    """The UIDs recorded for the account and store, with when popctl first stored each.

    \b
    Examples:
      popctl seen list --maildir ~/Maildir
      popctl -a work seen list --mbox ~/mail/work.mbox --format json
    """
    from popctl.app import seen as state

    state.list_seen(run, _state_of(maildir, mbox, output_dir))


@seen.command(name="forget")
@click.option("--uid", "uids", multiple=True, help="Forget this UID (repeatable).")
@click.option("--all", "all_", is_flag=True, help="Forget every UID recorded.")
@_store_options
@common_options
@pass_run
def seen_forget(run: RunContext, uids: tuple[str, ...], all_: bool, maildir: str | None,
                mbox: str | None, output_dir: str | None) -> None:
    """Forget recorded UIDs, so that the next `retr --new` fetches those messages again.

    \b
    Examples:
      popctl seen forget --uid 000001a2 --maildir ~/Maildir
      popctl seen forget --all --output-dir ~/mail/saved
    """
    from popctl.app import seen as state

    if bool(uids) == all_:
        raise UsageError("say what to forget: --uid UID (repeatable) or --all")
    state.forget_seen(run, _state_of(maildir, mbox, output_dir), uids)
