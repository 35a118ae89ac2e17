"""popctl seen list|forget: what `retr --new` recorded for an account and a store, and forgetting
it so that those messages are fetched again. No connection is made: the account's identity
(user@host:port) comes from the options and the configuration file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from popctl.app.context import Record, RunContext
from popctl.app.targets import resolve_target, several_accounts
from popctl.errors import UsageError


class StateOf(NamedTuple):
    """Whose state: the store (``kind`` "output_dir", "maildir" or "mbox", and its path)."""

    kind: str
    path: str


def _accounts(context: RunContext) -> list[tuple[str | None, str]]:
    """(account name or None, ``user@host:port``) of each account the options name."""
    from popctl.cache import account_key

    if context.options.sandbox:
        from popctl.app.fetch import SANDBOX_ACCOUNT

        return [(None, SANDBOX_ACCOUNT)]
    names = several_accounts(context.options)
    pairs: list[tuple[str | None, str]] = []
    for name in names if names is not None else [None]:
        options = context.options if name is None else context.options._replace(
            account=(name,), all_accounts=False)
        target = resolve_target(options)
        pairs.append((name, account_key(target.credentials.user, target.endpoint.host,
                                        target.endpoint.effective_port)))
    return pairs


def list_seen(context: RunContext, where: StateOf) -> None:
    """One record per UID recorded: ``uid``, ``stored`` (when popctl first stored it, UTC),
    ``pending`` (a run was committing it when it ended: checked at the next run)."""
    from popctl.app.fetch import _iso
    from popctl.seen import SeenState, store_key

    records: list[Record] = []
    several = several_accounts(context.options) is not None
    for name, account in _accounts(context):
        with SeenState(store_key(account, where.kind, where.path), read_only=True) as seen:
            rows: list[Record] = [
                {"uid": uid, "stored": _iso(when), "pending": False}
                for uid, when in sorted(seen.stored.items(), key=lambda item: item[1])]
            rows += [{"uid": uid, "stored": None, "pending": True} for uid in seen.pending]
        records += [{"account": name, **row} if several else row for row in rows]
    count = context.ui.emit(records)
    if not count and context.options.fmt == "table":
        context.ui.note("nothing recorded for this account and store")


def forget_seen(context: RunContext, where: StateOf, uids: Sequence[str]) -> None:
    """Forget ``uids`` (every one if empty): the next `retr --new` fetches them again."""
    from popctl.seen import SeenState, store_key

    total = 0
    records: list[Record] = []
    several = several_accounts(context.options) is not None
    for name, account in _accounts(context):
        with SeenState(store_key(account, where.kind, where.path)) as seen:
            forgotten = seen.forget(uids or [*seen.stored, *seen.pending])
            if uids:
                seen.sync()
            else:
                seen.compact()  # nothing is left: the journal shrinks to its first line
        total += len(forgotten)
        records += [{"account": name, "uid": u} if several else {"uid": u} for u in forgotten]
    if context.options.machine:
        context.ui.emit(records)
    else:
        context.ui.note(f"{total} UID(s) forgotten: the next retr of new mail fetches them "
                        "again")
    unknown = [u for u in uids if u not in {r["uid"] for r in records}]
    if unknown:
        raise UsageError(f"UID {unknown[0]!r} was not recorded for this account and store")
