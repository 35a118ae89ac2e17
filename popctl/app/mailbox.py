"""The mailbox commands, each written once as work on a logged-in session: stat, list, uidl,
top, dele, rset, noop, capa (retr is in download.py). ``runner.run`` decides where it runs.

Listing goes through ``listing``, the one place where what the server lacks (TOP, UIDL) changes
or refuses a plan; headers come from the header cache where it has them.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from popctl import query as queries
from popctl.app.context import Opened, Record, RunContext
from popctl.app.runner import Job, run
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
                "the server does not support TOP, so --from, --subject, --header, --older-than "
                "and --newer-than cannot be applied without downloading whole messages; "
                "nothing was done", command="TOP")
        ui.note("note: the server does not support TOP, so From, Subject and Date are not "
                "shown")
        plan = plan.without_headers()
    return _rows(opened, plan)


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
    """Whether listing records carry ``from_name`` and ``from_address``: JSON and NDJSON do; CSV
    and the table keep the columns of 0.1 (docs/JSON.md)."""
    return context.options.fmt in ("json", "ndjson")


def one_message(opened: Opened, query: Query) -> int:
    rows = list(queries.run(opened.session, Plan(query), warn=warner(opened.context)))
    if len(rows) != 1:
        raise UsageError(f"this command takes exactly one message; the selection has {len(rows)}")
    return rows[0].number


# --- the commands ---------------------------------------------------------------------------------


def stat(context: RunContext) -> None:
    def work(opened: Opened) -> list[Record]:
        result = opened.session.stat()
        return [{"count": result.count, "size": result.size}]

    run(context, Job(work, one=True, accounts=True))


def list_messages(context: RunContext, query: Query, *, sizes_only: bool) -> None:
    plan = Plan(query, headers=not sizes_only, sizes_only=sizes_only)

    def work(opened: Opened) -> Iterator[Record]:
        parts = from_parts(opened.context)
        return (r.to_record(not sizes_only, parts) for r in listing(opened, plan))

    outcome = run(context, Job(work, scan=plan.scan, stream=True, accounts=True,
                               columns=["number", "size"] if sizes_only else None))
    if outcome.emitted == 0 and context.options.fmt == "table":
        context.ui.note("no messages")


def uidl(context: RunContext, query: Query) -> None:
    plan = Plan(query, uids=True)

    def work(opened: Opened) -> Iterator[Record]:
        return ({"number": r.number, "uid": r.uid} for r in listing(opened, plan))

    run(context, Job(work, scan=plan.scan, stream=True, accounts=True))


def top(context: RunContext, query: Query, lines: int) -> None:
    """Raw headers and body lines on stdout, or parsed into a record with a --format."""
    machine, out = context.options.machine, context.ui.stdout

    def work(opened: Opened) -> list[Record]:
        number = one_message(opened, query)
        if not machine:
            opened.session.top(number, lines, out)
            out.flush()
            return []
        buffer = io.BytesIO()
        opened.session.top(number, lines, buffer)
        return [parsed_top(number, buffer.getvalue())]

    run(context, Job(work, scan=True, one=True, emit=machine))


def parsed_top(number: int, data: bytes) -> dict[str, object]:
    """TOP's output as JSON: every header (decoded, in order) and the body lines as text."""
    from popctl.headers import every_header

    head, _, body = data.partition(b"\r\n\r\n") if b"\r\n\r\n" in data else \
        data.partition(b"\n\n")
    headers = [{"name": name, "value": value} for name, value in every_header(head)]
    return {"number": number, "size": len(data), "headers": headers,
            "body": body.decode("utf-8", "replace")}


def delete(context: RunContext, query: Query, *, yes: bool, dry_run: bool) -> None:
    """Mark the selected messages deleted (committed by QUIT); ask first unless ``yes``."""
    ui = context.ui
    # Nothing to ask and a selection known before the headers arrive: the DELEs go in the same
    # pipelined window as the TOPs that read what is deleted (one round trip fewer).
    at_once = yes and not dry_run and not query.header_filters
    plan = Plan(query, headers=True, delete=at_once)

    def work(opened: Opened) -> list[Record]:
        rows = list(listing(opened, plan))
        records = [{**r.to_record(True, from_parts(opened.context)), "deleted": at_once}
                   for r in rows]
        if rows and not (dry_run or at_once):
            if not yes:
                ui.show([{**r.to_record(True), "deleted": False} for r in rows])
                _confirm(opened.context, f"Delete {len(rows)} message(s)?")
            opened.session.dele([r.number for r in rows])
        return [{**record, "deleted": not dry_run} for record in records]

    # One question per account from several threads would be a mess: decide up front.
    refusal = None if yes or dry_run else ("deleting across accounts needs --yes (see first "
                                           "what would be deleted with --dry-run)")
    count = run(context, Job(work, scan=plan.scan, accounts=True, across_refusal=refusal)).emitted
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
