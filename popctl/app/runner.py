"""One way to run a command's work: in the shell's open session, in a session of each of several
accounts at once, or in a session of the one account; then hand its records to the UI.

A command is written once, as ``work(opened) -> records``; where it runs is decided here only.
Leaving a session normally sends QUIT (deletions committed); leaving it by an error closes the
connection without QUIT, so the server keeps every message.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from popctl import auth
from popctl.app.context import Opened, Record, RunContext
from popctl.app.targets import (
    Target,
    find_secret,
    refuse_shared_password,
    refused,
    resolve_target,
    several_accounts,
    target_of,
)
from popctl.errors import (
    AuthenticationError,
    ExitCode,
    PopctlError,
    TransportError,
    UsageError,
)
from popctl.models import Endpoint, Lookup, TLSMode
from popctl.session import Session

Work = Callable[[Opened], Iterable[Record]]

# A thread per account, at most this many at once: each holds one TLS connection, a run lasts as
# long as its slowest server whatever the number, and providers limit connections per address.
MAX_ACCOUNT_WORKERS = 8


class Job(NamedTuple):
    """A command's work and how its records are shown."""

    work: Work
    scan: bool = False  # the work lists the mailbox: UIDL and LIST may ride with the login
    lookup: Lookup | None = None  # or looks up only the messages named (Plan.lookup)
    uids: bool = False  # the work starts with UIDL alone (retr --new): it may ride with the login
    columns: Sequence[str] | None = None  # the columns of a listing (None: the records' keys)
    stream: bool = False  # emit each record as it comes, while the session is open
    one: bool = False  # a single result (stat), not a listing
    emit: bool = True  # False: the caller reports the records itself
    accounts: bool = False  # may run across several accounts (stat, list, uidl, dele)
    across_refusal: PopctlError | None = None  # why not across accounts after all (it would ask)


class Outcome(NamedTuple):
    emitted: int  # how many records there were
    records: list[Record]  # the records, unless streamed


def run(context: RunContext, job: Job) -> Outcome:
    """Run ``job`` where the context says, emit its records, return them."""
    names = several_accounts(context.options) if job.accounts else None
    if names is not None:
        rows = across_accounts(context, names, job)
        return Outcome(len(rows), rows)
    records: list[Record] = []
    with connect(context, scan=job.scan, lookup=job.lookup, uids=job.uids) as opened:
        produced = job.work(opened)
        if job.stream and job.emit:
            return Outcome(context.ui.emit(produced, job.columns), [])
        records = list(produced)
    if job.emit and job.one:
        context.ui.emit_one(records[0])
    elif job.emit:
        context.ui.emit(records, job.columns)
    return Outcome(len(records), records)


@contextlib.contextmanager
def connect(context: RunContext, *, scan: bool = False, lookup: Lookup | None = None,
            uids: bool = False, target: Target | None = None) -> Iterator[Opened]:
    """Connect and log in; QUIT on success, close without QUIT on any error.

    ``scan``: the command will list the mailbox (Session.scan), so UIDL and LIST may ride
    with the login; ``lookup``: it will look up only the messages named (Session.lookup), so
    STAT, LIST n and UIDL n ride instead; ``uids``: UIDL alone may (Session.uidl). Inside
    ``popctl shell`` the shell's one session is used and stays open.
    """
    if context.shell is not None:
        yield context.shell._replace(context=context)
        return
    target = target or target_of(context)
    endpoint, ui = target.endpoint, context.ui
    if endpoint.insecure and endpoint.tls is not TLSMode.NONE:
        # A security warning: said even with --quiet, which silences chatter, not risks.
        ui.warn(f"warning: the server certificate is NOT verified{ui.hint('insecure')}")
    trace = ui.tracer(context.label) if context.options.trace else None
    if endpoint.tls is TLSMode.NONE:
        # Refuse before connecting: nothing would be gained by connecting first.
        auth.refuse_plaintext(target.credentials, encrypted=False)
    preload(context.options.fmt, scan=scan)
    try:
        session = Session.connect(endpoint, trace=trace,
                                  pipelining=False if context.options.no_pipelining else None,
                                  ahead=context.ahead)
    except TransportError as e:
        if isinstance(e.__cause__, ConnectionRefusedError):
            raise refused_connection(e, endpoint) from e.__cause__
        raise
    with session:
        credentials, source = find_secret(target, ui)
        try:
            session.login(credentials, prefetch=lookup if lookup is not None
                          else "scan" if scan else "uids" if uids else None)
        except AuthenticationError as e:
            raise refused(e, target, source) from e
        yield Opened(session, context, (credentials.user, endpoint.host, endpoint.effective_port),
                     source, target.account.name if target.account is not None else None)


def refused_connection(error: TransportError, endpoint: Endpoint) -> TransportError:
    """Nothing listens there: the host or the port is wrong. On the default port of its TLS
    mode the likely mistake is the mode (a server on port 110 alone, asked for implicit TLS on
    995), so the other mode and its port are named."""
    if endpoint.port is not None:
        return TransportError(str(error), hint="refused")
    other = TLSMode.STARTTLS if endpoint.tls is TLSMode.IMPLICIT else TLSMode.IMPLICIT
    return TransportError(str(error), hint="refused-default-port",
                          hint_args={"port": str(other.default_port), "tls": other.value})


def preload(fmt: str, *, scan: bool) -> None:
    """Import on a daemon thread what the command needs once the server has answered: the
    secret's sources (find_secret), the output format's modules (tabulate for a single-record
    table, ~30 ms: a listing's table is written without it), and header parsing and the header
    cache for a listing. Called before connecting, the imports overlap the waits for the server
    instead of following them; a module still loading is waited for (the import lock), and one
    that failed is imported again, and its error reported, where it is used."""
    table = ["popctl.output.textwidth", *([] if scan else ["tabulate"])] if fmt == "table" else []
    names = ["popctl.credentials", "popctl.output", *table,
             *(["popctl.headers", "popctl.cache"] if scan else [])]
    missing = [name for name in names if name not in sys.modules]
    if missing:
        def work() -> None:
            for name in missing:
                with contextlib.suppress(BaseException):
                    importlib.import_module(name)

        threading.Thread(target=work, name="popctl-preload", daemon=True).start()


# --- many accounts at once ------------------------------------------------------------------------


class AccountsFailed(PopctlError):
    """Some accounts of a run across accounts failed; each one was reported already."""

    def __init__(self, failures: dict[str, PopctlError], total: int) -> None:
        super().__init__(f"{len(failures)} of {total} account(s) failed")
        codes = {e.exit_code for e in failures.values()}
        self.exit_code = codes.pop() if len(codes) == 1 else ExitCode.FAILURE


def across_accounts(context: RunContext, names: list[str], job: Job) -> list[Record]:
    """Run ``job`` in a session of each account, concurrently; emit every row with its
    ``account`` first, in the order of ``names``; report each failure as ``Error: NAME: ...``.

    Secrets are looked up first, one account after the other in this thread (a prompt, a
    keyring unlock or a gpg pinentry cannot be shared by threads); then each account's session
    runs in its own thread, independent of the others: its own QUIT, or none if it failed.
    """
    if job.across_refusal is not None:
        raise job.across_refusal
    if context.in_shell:
        raise UsageError("inside popctl shell there is one session", hint="shell-accounts")
    if context.options.sandbox:
        raise UsageError("the sandbox has no accounts", hint="sandbox-accounts")
    refuse_shared_password()
    import queue  # several accounts only

    failures: dict[str, PopctlError] = {}
    jobs: queue.SimpleQueue[tuple[str, RunContext, Target]] = queue.SimpleQueue()
    for name in names:
        child = context._replace(options=context.options._replace(account=(name,),
                                                                  all_accounts=False),
                                 label=name)
        try:
            target = resolve_target(child.options)
            credentials, source = find_secret(target, child.ui)
            target = target._replace(credentials=credentials, source=source)
        except PopctlError as e:
            failures[name] = e
            continue
        jobs.put((name, child, target))
    results: dict[str, list[Record]] = {}
    finished: queue.SimpleQueue[str] = queue.SimpleQueue()
    cancelled = threading.Event()

    def worker() -> None:
        while True:
            try:
                name, child, target = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                with connect(child, scan=job.scan, lookup=job.lookup, uids=job.uids,
                             target=target) as opened:
                    rows = list(job.work(opened))
                    if cancelled.is_set():  # Ctrl-C: leave without QUIT, commit nothing
                        raise KeyboardInterrupt
                results[name] = rows
            except PopctlError as e:
                failures[name] = e
            except Exception as e:
                failures[name] = PopctlError(f"internal error: {type(e).__name__}: {e}")
            except BaseException:
                failures[name] = PopctlError("interrupted")
            finally:
                finished.put(name)

    count = jobs.qsize()
    for i in range(min(MAX_ACCOUNT_WORKERS, count)):
        # Daemon threads: after Ctrl-C the process exits at once, closing their connections
        # without QUIT, so an interrupted dele commits nothing.
        threading.Thread(target=worker, name=f"popctl-account-{i}", daemon=True).start()
    try:
        for _ in range(count):
            finished.get()
    except BaseException:
        cancelled.set()
        raise
    records: list[Record] = []
    for name in names:
        if name in failures:
            context.ui.error(f"{name}: {context.ui.describe(failures[name])}")
        else:
            records += [{"account": name, **row} for row in results[name]]
    if job.emit:
        context.ui.emit(records, ["account", *(c for c in job.columns if c != "account")]
                        if job.columns else None)
    if failures:
        raise AccountsFailed(failures, len(names))
    return records
