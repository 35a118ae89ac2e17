"""retr: whole messages into a store (stdout, a file, a directory, a Maildir, an mbox, a
program).

With ``delete``, a message's DELE is sent only after the store committed it (written, flushed
to disk, renamed into place; or the program it was piped to exited 0); the stored directories
are synced once before QUIT. A failed write or delivery stops the batch and the session ends
without QUIT, so the server keeps every message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from popctl import stores
from popctl.app.context import Opened, Record, RunContext
from popctl.app.mailbox import account_label, acted, known_numbers, listing
from popctl.app.runner import Job, run
from popctl.errors import Interrupted, PopctlError, ShortMessageError, UsageError
from popctl.query import Plan, Query

if TYPE_CHECKING:
    from popctl.models import Progress


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
    fetched: list[Record] = []  # what _fetch returned, should the session's end fail

    def work(opened: Opened) -> list[Record]:
        fetched[:] = _fetch(opened, request, store, plan)
        return fetched

    try:
        records = run(context, Job(work, scan=True, lookup=plan.lookup,
                                   emit=context.options.machine)).records
    except PopctlError:
        # The messages were stored, then the session's end failed (a stray line from the
        # server before QUIT: the end of a message it forgot to dot-stuff). A copy that came
        # short is still worth its line: it is the one that may hold only part of a message.
        for line in _short_lines(fetched, delete=request.delete, stdout=request.to_stdout):
            context.ui.error(line)
        raise
    finally:
        store.close()
    if not context.options.machine and not request.to_stdout:
        deleted = sum(1 for r in records if r["deleted"])
        where = f"delivered to {request.path}" if request.kind == "pipe" else \
            f"stored in {request.path}"
        context.ui.note(f"{len(records)} message(s) {where}"
                        + (f", {deleted} deleted from the server" if request.delete else ""))
    _report_short(context, records, delete=request.delete, stdout=request.to_stdout)


def _short_lines(records: list[Record], *, delete: bool, stdout: bool) -> list[str]:
    """One line per message that arrived with fewer octets than LIST announced."""
    lines = []
    for r in records:
        if not r["short"]:
            continue
        where = ("what was written to standard output may be incomplete" if stdout
                 else f"the copy in {r['stored']} may be incomplete")
        lines.append(f"message {r['number']} arrived short: {r['size']} of the "
                     f"{r['listed_size']} octets LIST announced; "
                     + (f"kept on the server ({where})" if delete else where))
    return lines


def _report_short(context: RunContext, records: list[Record], *, delete: bool,
                  stdout: bool) -> None:
    """A ShortMessageError (exit 6) if a message arrived with fewer octets than LIST announced
    (cut short?): one ``Error:`` line per message, and a summary when there are several."""
    lines = _short_lines(records, delete=delete, stdout=stdout)
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
    ui = opened.context.ui
    # A bar by octets as they arrive (a 3 MB message over a slow link moves it), never over a
    # message written to the terminal itself.
    bar = (contextlib.nullcontext() if request.to_stdout and ui.stdout.isatty()
           else ui.progress(sum(listed.values()), "retrieving", octets=True))
    records: list[Record] = []
    try:
        with bar as progress:
            def open_sink(n: int) -> stores.MessageSink | _Reporting:
                sinks[n] = store.open(n, uid_of.get(n))
                return sinks[n] if progress is None else _Reporting(sinks[n], progress)

            def finish(n: int, _sink: object) -> None:
                stored[n] = sinks.pop(n).commit()

            for done in opened.session.retr_many([r.number for r in rows], open_sink,
                                                 finish=finish, delete=request.delete,
                                                 sizes=listed):
                records.append({"number": done.number, "size": done.octets,
                                "listed_size": listed.get(done.number), "short": done.short,
                                "uid": uid_of.get(done.number),
                                "stored": stored.get(done.number), "deleted": done.deleted,
                                **acted(opened)})
    except BaseException as e:
        for sink in sinks.values():
            sink.discard()
        _so_far(opened.context, request, e, len(stored))
        raise
    store.sync()  # the stored messages' directory entries, durable before QUIT
    order: dict[object, int] = {r.number: i for i, r in enumerate(rows)}
    records.sort(key=lambda r: order[r["number"]])  # the deleted ones came after their DELE
    return records


class _Reporting:
    """A message's sink that tells the bar of each piece as it arrives."""

    def __init__(self, sink: stores.MessageSink, progress: Progress) -> None:
        self._sink, self._progress = sink, progress

    def write(self, data: bytes, /) -> None:
        self._sink.write(data)
        self._progress(len(data))


def _so_far(context: RunContext, request: Download, error: BaseException, stored: int
            ) -> None:
    """After Ctrl-C or a failed write (a full disk): raise the error again, saying in its one
    line how many messages were already stored, and where, and that none was deleted (the
    session ends without QUIT, so the server keeps them all; in the shell, whose session goes
    on, the DELEs sent so far wait for its quit)."""
    if not isinstance(error, KeyboardInterrupt | stores.StoreError) or (
            request.kind is None and not stored):  # one message to stdout: nothing to add
        return
    where = ("written to standard output" if request.to_stdout
             else "delivered" if request.kind == "pipe"  # the error names the program
             else f"stored in {request.path}")
    done = f"{stored} message(s) already {where}" if stored else f"no message was {where}"
    if not request.delete:
        kept = ""
    elif context.in_shell and stored:
        # The shell's session goes on: the DELEs already sent are marks its quit commits.
        kept = ("; the DELEs sent for them take effect only if the shell quits normally (rset "
                "undoes them)")
    else:
        kept = "; none was deleted from the server"
    if isinstance(error, KeyboardInterrupt):
        raise Interrupted(f"Interrupted: {done}{kept}.") from None
    raise stores.StoreError(f"{error}; {done}{kept}", path=error.path, errno=error.errno,
                            hint=error.hint) from error
