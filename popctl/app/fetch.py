"""retr --new: fetch only the messages this account has not stored in this store before, leave
them on the server, and delete them some days after popctl first stored them (--keep-days).

The seen-state is ``popctl.seen`` (a journal per account and store). In a session:

1. UIDL (it rode with the login when the server pipelines): with nothing new and nothing to
   expire that is the whole conversation after login (then QUIT);
2. the state is checked against it: a renumbered mailbox is an error (nothing fetched); UIDs
   no longer on the server are forgotten; a message a killed run was committing (``P``) is
   looked for in the store and recorded if it is there;
3. LIST, then the new messages with pipelined RETR: each is recorded ``P`` (where it is going)
   and committed by the store (fsync'd); with ``delete`` its DELE follows (committed at QUIT);
4. the store's directories are synced, then the new messages are recorded ``S`` and the
   journal is synced, and only then are the expired messages DELEd; after QUIT confirmed the
   deletions their UIDs are forgotten.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from popctl.app.context import Opened, Record, RunContext
from popctl.app.mailbox import warner
from popctl.app.runner import Job, run
from popctl.errors import CapabilityError, ServerError

if TYPE_CHECKING:
    from popctl import stores
    from popctl.seen import SeenState

# The renumbering check (a server migration gives every message a new UID): with at least this
# many UIDs recorded, none of them on a non-empty server that holds at least half as many
# messages, the UIDs changed rather than the mail. Fewer recorded UIDs are too little evidence
# (and re-fetching a few messages costs little); a server holding far fewer messages than were
# recorded is what another client deleting the old mail looks like.
RENUMBERED_MINIMUM = 10

# The sandbox's account: its port changes with every run, its sample messages do not.
SANDBOX_ACCOUNT = "sandbox@sandbox"

_MBOX_HEAD = 512  # bytes of a message's mbox record compared to recognise it after a kill
_DAY = 86400


class NewOnly(NamedTuple):
    """retr --new into a store: ``kind`` "output_dir", "maildir" or "mbox"."""

    kind: str
    path: str
    delete: bool = False  # delete each message once stored (and those stored before)
    keep_days: float | None = None  # delete what popctl stored at least this many days ago
    dry_run: bool = False  # say what would be fetched and deleted; do nothing


class RenumberedError(ServerError):
    """The server's UIDs all changed at once: fetching would copy the whole mailbox again."""


def now() -> int:
    """Seconds since the epoch. ``POPCTL_NOW`` (seconds; for tests only) replaces the clock."""
    fake = os.environ.get("POPCTL_NOW")
    return int(float(fake)) if fake else int(time.time())


def fetch_new(context: RunContext, request: NewOnly) -> None:
    from popctl.app.download import STORES, _report_short

    if request.dry_run:
        store: stores.Store | None = None
    else:
        store = STORES[request.kind](request.path)  # the location checked before connecting
    serial = threading.Lock()  # one account at a time into the one store (an mbox is locked)

    def work(opened: Opened) -> list[Record]:
        with serial:
            return _account(opened, request, store)

    try:
        records = run(context, Job(work, uids=True, accounts=True,
                                   emit=context.options.machine or request.dry_run)).records
    finally:
        if store is not None:
            store.close()
    if not context.options.machine:
        _note(context, request, records)
    _report_short(context, records, delete=request.delete, stdout=False)


def _note(context: RunContext, request: NewOnly, records: list[Record]) -> None:
    fetched = sum(1 for r in records if r["action"] in ("fetched", "would fetch"))
    expired = sum(1 for r in records if r["action"] in ("expired", "would delete"))
    if request.dry_run:
        context.ui.note(f"dry run: {fetched} new message(s) would be fetched, {expired} "
                        "deleted from the server")
        return
    text = (f"{fetched} new message(s) stored in {request.path}" if fetched else
            "no new messages")
    deleted = sum(1 for r in records if r["deleted"])
    if deleted:
        text += (f"; {deleted} marked deleted (committed when the shell quits)"
                 if context.in_shell else f"; {deleted} deleted from the server")
    context.ui.note(text)


def _account(opened: Opened, request: NewOnly, store: stores.Store | None) -> list[Record]:
    from popctl.cache import account_key
    from popctl.seen import SeenState, store_key

    session = opened.session
    if session.lacks("UIDL"):
        raise _no_uidl()
    try:
        listing = session.uidl()
    except CapabilityError as e:
        raise _no_uidl() from e
    assert opened.cache_key is not None
    account = (SANDBOX_ACCOUNT if opened.context.options.sandbox
               else account_key(*opened.cache_key))
    key = store_key(account, request.kind, request.path)
    server: dict[str, int] = {}
    shared: dict[str, list[int]] = {}
    for entry in listing:
        if server.setdefault(entry.uid, entry.number) != entry.number:
            shared.setdefault(entry.uid, [server[entry.uid]]).append(entry.number)
    del listing
    for uid, numbers in shared.items():
        # popa3d derives UIDs from a few header fields: identical ones share a UID, and the
        # state cannot tell them apart. The first is fetched; the others are left alone.
        warner(opened.context)(
            f"warning: messages {', '.join(map(str, numbers))} share the UID {uid!r}, so only "
            f"message {numbers[0]} is fetched as new; fetch the others by number")
    clock = now()
    with SeenState(key, read_only=request.dry_run) as seen:
        _check_renumbered(seen, server, request)
        if not request.dry_run:
            seen.forget([u for u in [*seen.stored, *seen.pending] if u not in server])
            _recover(seen, request, clock)
        known = dict(seen.stored)
        new = [(n, uid) for uid, n in server.items() if uid not in known]
        new.sort()
        cutoff = (clock if request.delete else
                  None if request.keep_days is None else clock - request.keep_days * _DAY)
        expired = sorted((server[uid], uid) for uid, when in known.items()
                         if cutoff is not None and when <= cutoff and uid in server)
        if request.dry_run:
            return [_record(n, uid, "would fetch", None) for n, uid in new] + [
                _record(n, uid, "would delete", known[uid]) for n, uid in expired]
        if not new and not expired:
            return []
        assert store is not None
        records, committed = _fetch(opened, request, store, seen, new, clock) if new else ([], [])
        store.sync()  # the stored messages' directory entries, durable before their records
        for uid in committed:
            seen.stored_now(uid, clock)
        if request.delete:
            seen.deleting(committed)
        seen.sync()  # the records, durable before any deletion is committed
        if expired:
            seen.deleting([uid for _, uid in expired])
            seen.sync()
            session.dele([n for n, _ in expired])
            records += [{**_record(n, uid, "expired", known[uid]), "deleted": True}
                        for n, uid in expired]
        gone = [str(r["uid"]) for r in records if r["deleted"]]
        if gone and not opened.context.in_shell:
            session.quit()  # the deletions are made: their UIDs can go from the state
            seen.forget(gone)
        return records


def _no_uidl() -> CapabilityError:
    return CapabilityError("the server does not support UIDL (unique ids), so popctl cannot "
                           "tell which messages are new", command="UIDL", hint="new-needs-uidl")


def _check_renumbered(seen: SeenState, server: dict[str, int], request: NewOnly) -> None:
    recorded = [u for u in seen.stored if u not in seen.being_deleted]
    if (len(recorded) >= RENUMBERED_MINIMUM and server and len(server) >= len(recorded) / 2
            and not any(uid in seen.stored for uid in server)):
        raise RenumberedError(
            f"none of the {len(recorded)} messages popctl stored in {request.path} is on the "
            f"server any more, which holds {len(server)} message(s) with other unique ids: the "
            "server seems to have renumbered them (after a migration?); nothing was fetched",
            hint="renumbered")


def _recover(seen: SeenState, request: NewOnly, clock: int) -> None:
    """Messages a killed run was committing: recorded if the store has them, else forgotten
    (they are fetched again; an output directory recognises its own copy by name and bytes)."""
    for uid, where in list(seen.pending.items()):
        if where and _in_store(request, where):
            seen.stored_now(uid, clock)
        else:
            seen.forget([uid])


def _in_store(request: NewOnly, where: str) -> bool:
    if request.kind == "maildir":
        # Delivered to new/NAME; a mail reader may since have moved it to cur/NAME:2,FLAGS.
        if os.path.exists(os.path.join(request.path, "new", where)):
            return True
        try:
            names = os.listdir(os.path.join(request.path, "cur"))
        except OSError:
            return False
        return any(n == where or n.startswith(where + ":") for n in names)
    if request.kind == "mbox":
        offset, _, digest = where.partition(" ")
        return _mbox_record_at(request.path, int(offset), digest)
    return False


def _mbox_record_at(path: str, offset: int, digest: str) -> bool:
    """Whether the mbox holds, at ``offset`` (after the blank lines completing the previous
    record), a record whose first bytes after its From_ line have this digest."""
    import hashlib

    length, _, expected = digest.partition(":")
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(2 + 1024 + int(length))
    except OSError:
        return False
    for _ in range(2):  # the separator completing the previous record's blank line
        data = data.removeprefix(b"\n")
    if not data.startswith(b"From ") or b"\n" not in data:
        return False
    head = data[data.index(b"\n") + 1:][:int(length)]
    return len(head) == int(length) and hashlib.sha256(head).hexdigest()[:32] == expected


class _Tracked:
    """A store's sink that counts what passes and keeps the first bytes (an mbox record's)."""

    def __init__(self, sink: stores.MessageSink, head: bool) -> None:
        self.sink = sink
        self.octets = 0
        self.head = bytearray() if head else None

    def write(self, data: bytes, /) -> None:
        self.sink.write(data)
        self.octets += len(data)
        if self.head is not None and len(self.head) < 4 * _MBOX_HEAD:
            self.head += data[:4 * _MBOX_HEAD]


def _mbox_where(store: stores.Store, tracked: _Tracked) -> str:
    """An mbox record's place and signature: the mbox's length now (the store holds the lock,
    so its record goes there) and the digest of its first bytes as the store writes them."""
    import hashlib

    from popctl.stores.convert import _CRLFToLF, _MboxrdQuoter

    path = getattr(store, "path", "")
    # A prefix of the record as the store writes it (what converters hold back is left out).
    head = _MboxrdQuoter().feed(_CRLFToLF().feed(bytes(tracked.head or b"")))[:_MBOX_HEAD]
    if not head:
        return ""  # an empty message cannot be told from another: fetched again after a kill
    return (f"{os.path.getsize(path)} {len(head)}:"
            f"{hashlib.sha256(head).hexdigest()[:32]}")


def _fetch(opened: Opened, request: NewOnly, store: stores.Store, seen: SeenState,
           new: list[tuple[int, str]], clock: int) -> tuple[list[Record], list[str]]:
    """LIST, then the RETRs of ``new``: the records, and the UIDs committed to the store.

    Each message is recorded ``P`` (where it is going) before the store's commit; its ``S``
    record waits until the store has synced its directories (the caller's job), so that no
    record reaches the disk before its message. A run killed meanwhile leaves the ``P``
    records, which the next run checks against the store.
    """
    session = opened.session
    sizes = session.list()
    listed = {m.number: m.size for m in sizes if m is not None}
    uid_of = dict(new)
    tracked: dict[int, _Tracked] = {}
    stored: dict[int, str] = {}
    committed: list[str] = []

    def open_sink(n: int) -> _Tracked:
        tracked[n] = _Tracked(store.open(n, uid_of[n]), head=request.kind == "mbox")
        return tracked[n]

    def finish(n: int, _sink: object) -> None:
        done = tracked.pop(n)
        uid = uid_of[n]
        if request.kind == "maildir":
            seen.will_store(uid, os.path.basename(str(getattr(done.sink, "destination", ""))))
        elif request.kind == "mbox":
            seen.will_store(uid, _mbox_where(store, done))
        stored[n] = done.sink.commit()
        if done.octets < listed.get(n, 0):  # short: kept on the server, fetched again
            seen.forget([uid])
        else:
            committed.append(uid)

    records: list[Record] = []
    total = sum(listed.get(n, 0) for n, _ in new) if len(new) > 1 else 0
    try:
        with opened.context.ui.progress(total, "retrieving") as progress:
            for done in session.retr_many([n for n, _ in new], open_sink, finish=finish,
                                          delete=request.delete, sizes=listed):
                records.append({**_record(done.number, uid_of[done.number], "fetched", clock),
                                "size": done.octets, "listed_size": listed.get(done.number),
                                "short": done.short, "stored": stored.get(done.number),
                                "deleted": done.deleted})
                if progress is not None:
                    progress(done.octets)
    except BaseException:
        for sink in tracked.values():
            sink.sink.discard()
        raise
    order = {n: i for i, (n, _) in enumerate(new)}
    records.sort(key=lambda r: order[int(str(r["number"]))])
    return records, committed


def _record(number: int, uid: str, action: str, first_stored: int | None) -> Record:
    """A record of retr's keys (docs/JSON.md), then ``action`` and ``first_stored``."""
    return {"number": number, "size": None, "listed_size": None, "short": False, "uid": uid,
            "stored": None, "deleted": False, "action": action,
            "first_stored": _iso(first_stored)}


def _iso(when: int | None) -> str | None:
    return None if when is None else datetime.fromtimestamp(when, UTC).isoformat()
