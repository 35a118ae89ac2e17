"""The mailbox commands, each written once as work on a logged-in session: stat, list, uidl,
top, dele, rset, noop, capa (retr is in download.py). ``runner.run`` decides where it runs.

Listing goes through ``listing``, the one place where what the server lacks (TOP, UIDL) changes
or refuses a plan; headers come from the header cache where it has them.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from popctl import defaults
from popctl import query as queries
from popctl.app.context import Opened, Record, RunContext
from popctl.app.runner import Job, run
from popctl.app.targets import several_accounts, target_of
from popctl.errors import CapabilityError, Interrupted, UsageError
from popctl.query import Plan, Query, Row
from popctl.session import Session

if TYPE_CHECKING:
    from popctl.cache import HeaderCache


# --- reading the mailbox --------------------------------------------------------------------------


def listing(opened: Opened, plan: Plan) -> Iterator[Row]:
    """The selected rows, as ``plan`` says, adapted to what the server can do."""
    session, ui = opened.session, opened.context.ui
    if plan.uids and session.lacks("UIDL"):
        raise CapabilityError("the server does not support UIDL (no unique ids)",
                              command="UIDL")
    if plan.headers and session.lacks("TOP"):
        # RFC 1939 makes TOP optional (mpopd has none). Numbers, sizes and UIDs still come
        # from LIST and UIDL; header filters would need whole messages, so they are refused.
        if plan.query.header_filters:
            raise CapabilityError(
                "the server does not support TOP, so header filters cannot be applied without "
                "downloading whole messages; nothing was done", command="TOP",
                hint="no-top-filters")
        if not plan.delete:
            return _rows_trying_top(opened, plan)
        ui.note(NO_TOP_NOTE)
        plan = plan.without_headers()
    return _rows(opened, plan)


NO_TOP_NOTE = "note: the server does not support TOP, so From, Subject and Date are not shown"


def _rows_trying_top(opened: Opened, plan: Plan) -> Iterator[Row]:
    """The rows with headers although CAPA leaves TOP out: some servers that implement it do
    (GreenMail lists only UIDL and SASL). If the first TOP is refused, the rows without them.
    Not for a plan that deletes: its DELEs ride in the TOPs' window."""
    rows = _rows(opened, plan)
    try:
        first = next(rows)
    except StopIteration:
        return
    except CapabilityError as e:
        if e.command != "TOP":
            raise
        opened.context.ui.note(NO_TOP_NOTE)
        yield from _rows(opened, plan.without_headers())
        return
    yield first
    yield from rows


def _rows(opened: Opened, plan: Plan) -> Iterator[Row]:
    context = opened.context
    cache = header_cache(opened) if plan.reads_headers else None
    # No bar in a run across accounts: several threads would draw over each other. Its total,
    # the selected messages, is known once the listing came (queries.run says).
    bar = (context.ui.progress(0, "reading headers")
           if plan.reads_headers and context.label is None else contextlib.nullcontext())
    try:
        with bar as progress:
            yield from queries.run(opened.session, plan, cache=cache, progress=progress,
                                   warn=warner(context))
    finally:
        if cache is not None:
            cache.save()


def header_cache(opened: Opened) -> HeaderCache | None:
    """The account's header cache; None with --no-cache, in the sandbox, or before login."""
    options = opened.context.options
    if options.no_cache or options.sandbox or opened.cache_key is None:
        return None
    from popctl.cache import HeaderCache, account_key

    return HeaderCache(account_key(*opened.cache_key))


def warner(context: RunContext) -> Callable[[str], None]:
    """ui.note, with the account's name in a run across accounts (their lines interleave)."""
    label, note = context.label, context.ui.note
    return lambda text: note(f"{label}: {text}" if label else text)


def from_parts(context: RunContext) -> bool:
    """Whether listing records carry ``from_name``, ``from_address``, ``date_utc`` and
    ``date_epoch``: JSON and NDJSON do; CSV and the table keep the columns of 0.1
    (docs/JSON.md)."""
    return context.options.fmt in ("json", "ndjson")


# --- columns and order ----------------------------------------------------------------------------
# The fields a person may choose and order are in popctl.defaults (the help text names them).
_FROM_PARTS = frozenset(("from_name", "from_address", "date_utc", "date_epoch"))

SortKey = tuple[str, bool]  # a field, and whether descending


def _sort_value(row: Row, field: str) -> object:
    if field == "date":
        if row.date is None:
            return None
        try:
            return datetime.fromisoformat(row.date).timestamp()
        except ValueError:
            return None
    value = {"number": row.number, "size": row.size, "uid": row.uid, "from": row.sender,
             "subject": row.subject}[field]
    return value.casefold() if isinstance(value, str) else value


def sorted_rows(rows: Iterable[Row], keys: Sequence[SortKey]) -> list[Row]:
    """``rows`` ordered by ``keys``, the first deciding; rows without a field (no Date, no
    UIDL) after those with one, in either direction. Stable: ties keep the server's order."""
    ordered = list(rows)
    for field, descending in reversed(keys):
        values = [(_sort_value(row, field), row) for row in ordered]
        present = [pair for pair in values if pair[0] is not None]
        present.sort(key=lambda pair: pair[0], reverse=descending)  # type: ignore[arg-type,return-value]
        ordered = [row for _, row in present] + [row for value, row in values if value is None]
    return ordered


def _projected(records: Iterable[Record], columns: Sequence[str] | None) -> list[Record]:
    return list(records) if columns is None else \
        [{key: record.get(key) for key in columns} for record in records]


def acted(opened: Opened) -> dict[str, object]:
    """``account`` and ``time`` for a record of what popctl did (dele, retr), in JSON and NDJSON:
    a log that cron appends to needs to say which account and when. CSV and the table keep the
    columns of 0.1, as for ``from_parts``."""
    if not from_parts(opened.context):
        return {}
    return {"account": account_label(opened), "time": utc_now()}


def account_label(opened: Opened) -> str:
    """The account's name (in a run across accounts, the one being run); without one,
    ``user@host:port``."""
    if opened.context.label:
        return opened.context.label
    if opened.account:
        return opened.account
    user, host, port = opened.cache_key or ("", "", 0)
    return f"{user}@{host.lower()}:{port}"


def utc_now() -> str:
    """Now in UTC, ISO 8601 to the second with ``Z`` (what jq's ``fromdateiso8601`` reads)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def known_numbers(context: RunContext, query: Query) -> dict[str, int] | None:
    """The message numbers the header cache last saw for the UIDs ``query`` selects, if it
    has them all (query.Plan.known: checked with UIDL n, the listings read if any moved).
    Read before connecting, so that their lookup can go with the login."""
    options = context.options
    if not query.uids or options.no_cache or options.sandbox or context.in_shell \
            or several_accounts(options) is not None:
        return None
    from popctl.cache import HeaderCache, account_key

    target = target_of(context)
    endpoint = target.endpoint
    cache = HeaderCache(account_key(target.credentials.user, endpoint.host,
                                    endpoint.effective_port))
    known = {uid: cache.number_of(uid) for uid in query.uids}
    return {uid: n for uid, n in known.items() if n is not None} \
        if None not in known.values() else None


def one_message(opened: Opened, query: Query, known: dict[str, int] | None = None) -> int:
    rows = list(queries.run(opened.session, Plan(query, known=known),
                            warn=warner(opened.context)))
    if len(rows) != 1:
        raise UsageError(f"this command takes exactly one message; the selection has {len(rows)}")
    return rows[0].number


# --- the commands ---------------------------------------------------------------------------------


def stat(context: RunContext) -> None:
    def work(opened: Opened) -> list[Record]:
        result = opened.session.stat()
        return [{"count": result.count, "size": result.size}]

    run(context, Job(work, one=True, accounts=True))


def list_messages(context: RunContext, query: Query, *, sizes_only: bool,
                  columns: Sequence[str] | None = None, sort: Sequence[SortKey] = ()) -> None:
    """``columns`` chooses and orders the fields of every format; ``sort`` orders the rows
    (within each account), which are then written once all have been read."""
    plan = Plan(query, headers=not sizes_only, sizes_only=sizes_only,
                known=known_numbers(context, query))

    def work(opened: Opened) -> Iterable[Record]:
        parts = from_parts(opened.context) or bool(_FROM_PARTS.intersection(columns or ()))
        rows: Iterable[Row] = listing(opened, plan)
        if sort:
            rows = sorted_rows(rows, sort)
        return (r.to_record(not sizes_only, parts) for r in rows)

    # The columns are given even where they are the records' keys: a CSV header row is then
    # written when nothing matches, so a spreadsheet import still works.
    if columns is None:
        columns = defaults.SIZES_ONLY_COLUMNS if sizes_only \
            else Row.fields(True, from_parts(context))
    outcome = run(context, Job(work, scan=plan.scan, lookup=plan.lookup, stream=True,
                               accounts=True, columns=columns))
    if outcome.emitted == 0 and context.options.fmt == "table":
        context.ui.note("no messages")


def uidl(context: RunContext, query: Query, columns: Sequence[str] | None = None) -> None:
    plan = Plan(query, uids=True, known=known_numbers(context, query))

    def work(opened: Opened) -> Iterator[Record]:
        return ({"number": r.number, "uid": r.uid} for r in listing(opened, plan))

    run(context, Job(work, scan=plan.scan, lookup=plan.lookup, stream=True, accounts=True,
                     columns=columns or ["number", "uid"]))


def top(context: RunContext, query: Query, lines: int) -> None:
    """Raw headers and body lines on stdout, or parsed into a record with a --format."""
    machine, out = context.options.machine, context.ui.stdout
    known = known_numbers(context, query)

    def work(opened: Opened) -> list[Record]:
        number = one_message(opened, query, known)
        if not machine:
            opened.session.top(number, lines, out)
            out.flush()
            return []
        buffer = io.BytesIO()
        opened.session.top(number, lines, buffer)
        return [parsed_top(number, buffer.getvalue())]

    run(context, Job(work, scan=True, lookup=Plan(query, known=known).lookup, one=True,
                     emit=machine))


def parsed_top(number: int, data: bytes) -> dict[str, object]:
    """TOP's output as JSON: every header (decoded, in order) and the body lines as text."""
    from popctl.headers import every_header

    head, _, body = data.partition(b"\r\n\r\n") if b"\r\n\r\n" in data else \
        data.partition(b"\n\n")
    headers = [{"name": name, "value": value} for name, value in every_header(head)]
    return {"number": number, "size": len(data), "headers": headers,
            "body": body.decode("utf-8", "replace")}


def delete(context: RunContext, query: Query, *, yes: bool, dry_run: bool,
           columns: Sequence[str] | None = None) -> None:
    """Mark the selected messages deleted (committed by QUIT); ask first unless ``yes``.
    ``columns`` chooses the fields shown, in the question's table too."""
    ui = context.ui
    # Nothing to ask and a selection known before the headers arrive: the DELEs go in the same
    # pipelined window as the TOPs that read what is deleted (one round trip fewer).
    at_once = yes and not dry_run and not query.header_filters
    plan = Plan(query, headers=True, delete=at_once)

    def work(opened: Opened) -> list[Record]:
        rows = list(listing(opened, plan))
        parts = from_parts(opened.context) or bool(_FROM_PARTS.intersection(columns or ()))
        records = [{**r.to_record(True, parts), "deleted": at_once} for r in rows]
        if rows and not (dry_run or at_once):
            if not yes:
                # the question's table: what would be deleted, without a "deleted" column
                shown = [r.to_record(True, parts and columns is not None) for r in rows]
                ui.show(_projected(shown, columns and [c for c in columns if c != "deleted"]))
                _confirm(opened.context, f"Delete {len(rows)} message(s)?")
            opened.session.dele([r.number for r in rows])
        stamp = acted(opened)  # after the DELEs were answered
        return [{**record, "deleted": not dry_run, **stamp} for record in records]

    # One question per account from several threads would be a mess: decide up front.
    refusal = None if yes or dry_run else UsageError(
        "deleting across accounts needs a confirmation given in advance", hint="across-yes")
    if columns is None:  # given, so that an empty CSV still has its header row
        columns = [*Row.fields(True, from_parts(context)), "deleted",
                   *(("account", "time") if from_parts(context) else ())]
    count = run(context, Job(work, scan=plan.scan, lookup=plan.lookup, accounts=True,
                             across_refusal=refusal, columns=columns)).emitted
    if context.options.fmt != "table":
        return
    if dry_run:
        ui.note(f"dry run: {count} message(s) would be deleted")
    elif not count:
        ui.note("no messages matched; nothing deleted")
    elif context.in_shell:
        ui.note(f"{count} message(s) marked deleted (committed when the shell quits; rset "
                "undoes)")
    else:
        ui.note(f"{count} message(s) deleted")


def _confirm(context: RunContext, question: str) -> None:
    """Ask before deleting: a no is DeclinedError (status 8), Ctrl-C Interrupted (130); either
    way no DELE was sent, and outside the shell the session ends without QUIT."""
    nothing = ("no message was marked deleted" if context.in_shell else "nothing was deleted")
    try:
        context.ui.require(question, declined=nothing)
    except KeyboardInterrupt:
        raise Interrupted(f"Interrupted: {nothing}.") from None


def _session_command(context: RunContext, call: Callable[[Session], object], done: str
                     ) -> None:
    def work(opened: Opened) -> Iterable[Record]:
        call(opened.session)
        return []

    run(context, Job(work, emit=False))
    context.ui.note(done)


def rset(context: RunContext) -> None:
    _session_command(context, Session.rset, "deletion marks removed" if context.in_shell
                     else "RSET done (no deletions were pending in this session)")


def noop(context: RunContext) -> None:
    _session_command(context, Session.noop, "server answered NOOP")


def capa(context: RunContext) -> None:
    def work(opened: Opened) -> list[Record]:
        session = opened.session
        caps, tls = session.capabilities, session.tls
        return [{
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
        }]

    run(context, Job(work, one=True))
