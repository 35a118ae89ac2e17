"""The application layer without Click: each command's work through a UI of a few lines, against
the bundled sandbox server. Click only parses; what a command does is tested here directly."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

import pytest

from popctl.app import mailbox
from popctl.app.context import Opened, Options, Record, RunContext, TraceHook
from popctl.app.runner import Job, connect, run
from popctl.errors import UsageError
from popctl.models import Progress
from popctl.query import Plan, Query
from popctl.sandbox import SandboxServer

MESSAGES = [b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n",
            b"From: b@example.org\r\nSubject: two\r\n\r\n" + b"x" * 2000 + b"\r\n",
            b"From: c@example.org\r\nSubject: three\r\n\r\nshort\r\n"]


class FakeUI:
    """A UI that remembers what it was given and never asks anyone."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.records: list[Record] = []
        self.one: list[Record] = []
        self.out = io.BytesIO()

    def note(self, text: str) -> None:
        self.notes.append(text)

    warn = error = note

    def hint(self, key: str, **args: str) -> str:
        from popctl.cli.hints import words

        return words(key, args)

    def describe(self, error: BaseException) -> str:
        return str(error)

    def interactive(self) -> bool:
        return False

    def ask(self, question: str, *, hidden: bool = False, twice: bool = False) -> str:
        raise AssertionError(f"asked {question!r}")

    def confirm(self, question: str, *, default: bool = False) -> bool:
        raise AssertionError(f"asked {question!r}")

    def require(self, question: str, *, declined: str = "nothing was changed") -> None:
        raise AssertionError(f"asked {question!r}")

    @contextlib.contextmanager
    def progress(self, total: int, label: str, *, octets: bool = False
                 ) -> Iterator[Progress | None]:
        yield None

    def tracer(self, label: str | None = None) -> TraceHook:
        return lambda direction, line: None

    def emit(self, records: Iterable[Record], columns: Sequence[str] | None = None) -> int:
        before = len(self.records)
        self.records += list(records)
        return len(self.records) - before

    def emit_one(self, record: Record) -> None:
        self.one.append(record)

    def show(self, records: Sequence[Record]) -> None:
        raise AssertionError("a table for a question was shown")

    def echo(self, text: str, *, newline: bool = True) -> None:
        self.out.write(text.encode() + (b"\n" if newline else b""))

    @property
    def stdout(self) -> BinaryIO:
        return self.out


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(MESSAGES) as sandbox:
        yield sandbox


@pytest.fixture
def context(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunContext]:
    monkeypatch.setenv("POPCTL_PASSWORD", "sandbox")
    options = Options(host="localhost", port=server.address[1], tls="starttls",
                      ca_file=server.ca_file, user="sandbox", format="json")
    with contextlib.ExitStack() as resources:
        yield RunContext(options, FakeUI(), resources)


def ui(context: RunContext) -> FakeUI:
    assert isinstance(context.ui, FakeUI)
    return context.ui


def test_stat_is_one_record(context: RunContext) -> None:
    mailbox.stat(context)
    assert ui(context).one == [{"count": 3, "size": sum(len(m) for m in MESSAGES)}]


def test_list_reads_headers_and_filters(context: RunContext) -> None:
    mailbox.list_messages(context, Query(larger_than=1000), sizes_only=False)
    assert [(r["number"], r["subject"]) for r in ui(context).records] == [(2, "two")]


def test_dele_yes_deletes_in_one_session_and_commits(context: RunContext,
                                                     server: SandboxServer) -> None:
    mailbox.delete(context, Query(ranges=("1", "3")), yes=True, dry_run=False)
    assert [(r["number"], r["deleted"]) for r in ui(context).records] == [(1, True), (3, True)]
    assert server.messages == [MESSAGES[1]]


def test_dele_dry_run_deletes_nothing(context: RunContext, server: SandboxServer) -> None:
    table = context._replace(options=context.options._replace(format=None))
    mailbox.delete(table, Query(all=True), yes=False, dry_run=True)
    assert [r["deleted"] for r in ui(context).records] == [False, False, False]
    assert ui(context).notes == ["dry run: 3 message(s) would be deleted"]
    assert len(server.messages) == 3


def test_top_raw_goes_to_the_ui_stdout(context: RunContext) -> None:
    raw = context._replace(options=context.options._replace(format=None))
    mailbox.top(raw, Query(ranges=("3",)), 0)
    assert ui(context).out.getvalue() == b"From: c@example.org\r\nSubject: three\r\n\r\n"


def test_one_work_runs_in_the_shells_session(context: RunContext, server: SandboxServer) -> None:
    """A command inside the shell uses the shell's session: no second login, no QUIT between."""
    table = context._replace(options=context.options._replace(format=None))
    with connect(table) as opened:
        inside = table._replace(shell=opened)
        mailbox.delete(inside, Query(ranges=("2",)), yes=True, dry_run=False)
        assert len(server.messages) == 3  # marked, not committed: the session is still open
        assert ui(context).notes == [
            "1 message(s) marked deleted (committed when the shell quits; rset undoes)"]
        with pytest.raises(UsageError, match="inside popctl shell there is one session"):
            run(inside._replace(options=inside.options._replace(account=("a", "b"))),
                Job(lambda opened: [], accounts=True))
    assert server.messages == [MESSAGES[0], MESSAGES[2]]


def test_an_error_leaves_without_quit(context: RunContext, server: SandboxServer) -> None:
    def work(opened: Opened) -> list[Record]:
        opened.session.dele([1])
        raise UsageError("stop")  # after marking a deletion

    with pytest.raises(UsageError):
        run(context, Job(work))
    assert len(server.messages) == 3  # no QUIT, so the DELE was rolled back


# --- the listing plan -----------------------------------------------------------------------------


def test_a_plan_refuses_what_cannot_work() -> None:
    by_subject = Query(subject=re.compile("x"))
    with pytest.raises(ValueError, match="reads no headers"):
        Plan(by_subject, sizes_only=True)
    with pytest.raises(ValueError, match="does not depend on headers"):
        Plan(by_subject, headers=True, delete=True)


@pytest.mark.parametrize(("plan", "scan", "reads_headers"), [
    (Plan(Query(), headers=True), True, True),
    (Plan(Query(), sizes_only=True), False, False),
    (Plan(Query(uids=("u1",)), sizes_only=True), True, False),
    (Plan(Query(subject=re.compile("x"))), True, True),
])
def test_what_a_plan_needs(plan: Plan, scan: bool, reads_headers: bool) -> None:
    assert (plan.scan, plan.reads_headers) == (scan, reads_headers)
    assert plan.without_headers().headers is False
