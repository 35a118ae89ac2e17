"""retr: whole messages into a store (stdout, a file, a directory, a Maildir, an mbox, a
program).

With ``delete``, a message's DELE is sent only after the store committed it (written, flushed
to disk, renamed into place; or the program it was piped to exited 0); the stored directories
are synced once before QUIT. A failed write or delivery stops the batch and the session ends
without QUIT, so the server keeps every message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from popctl import stores
from popctl.app.context import Opened, Record, RunContext
from popctl.app.mailbox import account_label, acted, known_numbers, listing
from popctl.app.runner import Job, run
from popctl.errors import ShortMessageError, UsageError
from popctl.query import Plan, Query


class Download(NamedTuple):
    """What to fetch and where to put it; ``kind`` None: stdout as they are, "mbox" without a
    ``path``: mboxrd on stdout."""

    query: Query
    kind: str | None = None  # "output" (one file), "output_dir", "maildir", "mbox" or "pipe"
    path: str | None = None  # the file or directory; for "pipe", the command
    delete: bool = False

    @property
    def to_stdout(self) -> bool:
        return self.kind is None or self.path is None


STORES: dict[str, Callable[[str], stores.Store]] = {
    "output": stores.FileStore,
    "output_dir": stores.DirectoryStore,
    "maildir": stores.MaildirStore,
    "mbox": stores.MboxStore,
    "pipe": stores.PipeStore,
}


def _store(context: RunContext, request: Download) -> stores.Store:
    if request.kind is None:
        return stores.StdoutStore(context.ui.stdout)
    if request.path is None:  # "mbox" on stdout
        return stores.MboxStreamStore(context.ui.stdout)
    return STORES[request.kind](request.path)


def download(context: RunContext, request: Download) -> None:
    store = _store(context, request)
    # Where the cache last saw the UIDs asked for (never to delete: a guess checked by UIDL n
    # cannot see a copy that shares the UID).
    known = None if request.delete else known_numbers(context, request.query)
    plan = Plan(request.query, known=known)
    try:
        records = run(context, Job(lambda opened: _fetch(opened, request, store, plan),
                                   scan=True, lookup=plan.lookup,
                                   emit=context.options.machine)).records
    finally:
        store.close()
    if not context.options.machine and not request.to_stdout:
        deleted = sum(1 for r in records if r["deleted"])
        where = f"delivered to {request.path}" if request.kind == "pipe" else \
            f"stored in {request.path}"
        context.ui.note(f"{len(records)} message(s) {where}"
                        + (f", {deleted} deleted from the server" if request.delete else ""))
    _report_short(context, records, delete=request.delete, stdout=request.to_stdout)


def _report_short(context: RunContext, records: list[Record], *, delete: bool,
                  stdout: bool) -> None:
    """A ShortMessageError (exit 6) if a message arrived with fewer octets than LIST announced
    (cut short?): one ``Error:`` line per message, and a summary when there are several."""
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
            context.ui.error(line)
        raise ShortMessageError(f"{len(lines)} messages arrived shorter than LIST announced"
                                + ("; they were kept on the server" if delete else ""))


def _fetch(opened: Opened, request: Download, store: stores.Store, plan: Plan
           ) -> list[Record]:
    rows = list(listing(opened, plan))
    if request.kind == "output" and len(rows) > 1:  # before any RETR: nothing fetched or written
        raise UsageError(f"the selection has {len(rows)} messages", hint="one-file")
    if request.kind is None and len(rows) > 1:  # nothing would tell them apart
        raise UsageError(f"the selection has {len(rows)} messages, which would run together on "
                         "standard output with nothing between them", hint="several-to-stdout")
    if isinstance(store, stores.PipeStore):
        store.account = account_label(opened)
    uid_of = {r.number: r.uid for r in rows}
    listed = {r.number: r.size for r in rows}
    sinks: dict[int, stores.MessageSink] = {}
    stored: dict[int, str] = {}

    def open_sink(n: int) -> stores.MessageSink:
        sinks[n] = store.open(n, uid_of.get(n))
        return sinks[n]

    def finish(n: int, _sink: object) -> None:
        stored[n] = sinks.pop(n).commit()

    # A bar for several messages into a store (never over a message written to stdout).
    total = sum(r.size for r in rows) if not request.to_stdout and len(rows) > 1 else 0
    records: list[Record] = []
    try:
        with opened.context.ui.progress(total, "retrieving") as progress:
            for done in opened.session.retr_many([r.number for r in rows], open_sink,
                                                 finish=finish, delete=request.delete,
                                                 sizes=listed):
                records.append({"number": done.number, "size": done.octets,
                                "listed_size": listed.get(done.number), "short": done.short,
                                "uid": uid_of.get(done.number),
                                "stored": stored.get(done.number), "deleted": done.deleted,
                                **acted(opened)})
                if progress is not None:
                    progress(done.octets)
    except BaseException:
        for sink in sinks.values():
            sink.discard()
        raise
    store.sync()  # the stored messages' directory entries, durable before QUIT
    order: dict[object, int] = {r.number: i for i, r in enumerate(rows)}
    records.sort(key=lambda r: order[r["number"]])  # the deleted ones came after their DELE
    return records
