"""The browser's one POP3 session, driven from one thread of its own; no Textual here.

``Browser`` owns the session: every call that talks to the server is submitted to its single
daemon thread and answered by a ``Future``, so the calls are serialised (one session, one
conversation) and the user interface never waits on the network. The thread is a daemon: a
server that stopped answering cannot keep the process alive once the user has left, and the
connection then closes without QUIT, so nothing is deleted.

Marks for deletion are kept by the user interface, not on the server: ``commit`` sends the
DELEs and QUIT together, after the user confirmed; leaving in any other way deletes nothing.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, BinaryIO, NamedTuple, NoReturn, TypeVar

from popctl.app.context import UI, Opened, Record, RunContext, TraceHook
from popctl.app.runner import connect
from popctl.app.targets import Target, find_secret, target_of
from popctl.errors import PopctlError, UsageError
from popctl.models import Progress
from popctl.query import Plan, Query, Row

T = TypeVar("T")

# Rows reach the table in batches: one message to the user interface per row would cost more
# than the row; a batch is sent when it has this many rows or is this old (the first rows of a
# slow server show at once).
BATCH_ROWS = 100
BATCH_SECONDS = 0.1
# The lines of a message shown by the "first lines" key (TOP n LINES).
FIRST_LINES = 20


class Server(NamedTuple):
    """What the status line says about the connection."""

    user: str
    host: str
    port: int
    tls: str  # "TLSv1.3 (starttls)", or "no TLS"
    account: str | None = None


class BrowserUI:
    """The application's UI while Textual owns the terminal: messages go to ``notify``, the
    dialogue to ``trace``; nobody can be asked anything (a secret must be found without a
    prompt), and records are never written to stdout."""

    def __init__(self, base: UI, notify: Callable[[str, str], object],
                 trace: Callable[[str], object]) -> None:
        self._base, self._notify, self._trace = base, notify, trace

    def note(self, text: str) -> None:
        self._notify(text, "information")

    def warn(self, text: str) -> None:
        self._notify(text, "warning")

    def error(self, text: str) -> None:
        self._notify(text, "error")

    def describe(self, error: BaseException) -> str:
        return self._base.describe(error)

    def hint(self, key: str, **args: str) -> str:
        return self._base.hint(key, **args)

    def interactive(self) -> bool:
        return False

    def ask(self, question: str, *, hidden: bool = False, twice: bool = False) -> str:
        raise UsageError(f"cannot ask inside the browser: {question}")

    def confirm(self, question: str, *, default: bool = False) -> bool:
        return default

    def require(self, question: str, *, declined: str = "nothing was changed") -> None:
        raise UsageError(f"cannot ask inside the browser: {question}")

    def progress(self, total: int, label: str, *, octets: bool = False
                 ) -> contextlib.AbstractContextManager[Progress | None]:
        return contextlib.nullcontext(None)

    def tracer(self, label: str | None = None) -> TraceHook:
        start = time.monotonic()

        def trace(direction: str, line: str) -> None:
            # The session made the line safe and redacted the secret before calling this.
            self._trace(f"{time.monotonic() - start:8.3f} {direction}: {line}")
        return trace

    def emit(self, records: Any, columns: Sequence[str] | None = None) -> int:
        self._refuse()

    def emit_one(self, record: Record) -> None:
        self._refuse()

    def show(self, records: Sequence[Record]) -> None:
        self._refuse()

    def echo(self, text: str, *, newline: bool = True) -> None:
        self._refuse()

    @property
    def stdout(self) -> BinaryIO:
        self._refuse()

    @staticmethod
    def _refuse() -> NoReturn:
        raise AssertionError("the browser writes nothing to stdout")


class Browser:
    """One POP3 session at a time, its calls run one after the other on a daemon thread.

    The methods but ``submit`` and ``target_for`` are meant to run on that thread: call them
    through ``submit``.
    """

    def __init__(self, context: RunContext, target: Target) -> None:
        self.context, self.target = context, target
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="popctl-browse", daemon=True)
        self._thread.start()
        self._stack: contextlib.ExitStack | None = None
        self._opened: Opened | None = None

    # --- the thread -------------------------------------------------------------------------

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((lambda: fn(*args), future))
        return future

    def _serve(self) -> None:
        while True:
            work, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except BaseException as e:  # handed to whoever waits for it
                future.set_exception(e)

    # --- the session (on the thread) -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._opened is not None

    def _session(self) -> Opened:
        if self._opened is None:
            raise PopctlError("not connected: press r to connect again")
        return self._opened

    def open(self, target: Target | None = None) -> Server:
        """Connect and log in (ending the session open before, without deleting anything)."""
        self.close()
        if target is not None:
            self.target = target
        stack = contextlib.ExitStack()
        try:
            self._opened = stack.enter_context(connect(self.context, scan=True,
                                                       target=self.target))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        endpoint = self.target.endpoint
        tls = self._opened.session.tls
        mode = endpoint.tls.value
        return Server(self.target.credentials.user, endpoint.host, endpoint.effective_port,
                      f"{tls.version} ({mode})" if tls is not None else "no TLS",
                      self.target.account.name if self.target.account else None)

    def target_for(self, account: str) -> Target:
        """The target and secret of another account of the configuration file."""
        options = self.context.options._replace(account=(account,), sandbox=False)
        target = target_of(self.context._replace(options=options))
        return target._replace(credentials=find_secret(target, self.context.ui)[0])

    def load(self, on_rows: Callable[[list[Row]], None]) -> int:
        """Every message with its From, Subject and Date, handed to ``on_rows`` in batches as
        the pipelined header listing arrives; returns how many there were."""
        from popctl.app.mailbox import listing

        opened = self._session()
        batch: list[Row] = []
        count, sent = 0, time.monotonic()
        with self._failing():
            for row in listing(opened, Plan(Query(), headers=True)):
                batch.append(row)
                count += 1
                if len(batch) >= BATCH_ROWS or time.monotonic() - sent >= BATCH_SECONDS:
                    on_rows(batch)
                    batch, sent = [], time.monotonic()
        on_rows(batch)
        return count

    def top(self, number: int, lines: int) -> bytes:
        """The headers and the first ``lines`` lines of a message (TOP)."""
        chunks = _Chunks()
        with self._failing():
            self._session().session.top(number, lines, chunks)
        return chunks.value()

    def save(self, number: int, path: str) -> int:
        """The whole message (RETR) into ``path``, written, fsync'd and renamed into place."""
        from popctl.stores import FileStore

        store = FileStore(path)
        try:
            sink = store.open(number, None)
            try:
                with self._failing():
                    octets = self._session().session.retr(number, sink)
                sink.commit()
            except BaseException:
                sink.discard()
                raise
        finally:
            store.close()
        return octets

    def rset(self) -> None:
        with self._failing():
            self._session().session.rset()

    def commit(self, numbers: Sequence[int]) -> int:
        """DELE each message, then QUIT: the server deletes them. All or nothing: if a DELE
        or the QUIT fails the session is closed without QUIT. Returns how many went."""
        opened = self._session()
        stack, self._opened, self._stack = self._stack, None, None
        assert stack is not None
        try:
            opened.session.dele(list(numbers))
        except BaseException:
            opened.session.abort()
            stack.close()
            raise
        stack.close()  # QUIT; a -ERR to it is an error (its deletions "may not have been made")
        return len(numbers)

    def close(self) -> None:
        """End the session with QUIT, which deletes nothing: the browser marks nothing on the
        server but in ``commit``, which ends the session itself."""
        stack, opened = self._stack, self._opened
        self._stack = self._opened = None
        if stack is None or opened is None:
            return
        with contextlib.suppress(PopctlError, OSError):
            stack.close()

    def abandon(self) -> None:
        """Close the connection without QUIT, from any thread (the user left): nothing the
        session marked is deleted, and a call waiting on a dead server ends with an error."""
        opened = self._opened
        if opened is not None:
            opened.session.abort()

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """A session that failed is over: close it without QUIT, then let the error go on."""
        try:
            yield
        except BaseException:
            opened, stack = self._opened, self._stack
            self._opened = self._stack = None
            if opened is not None:
                opened.session.abort()
            if stack is not None:
                with contextlib.suppress(BaseException):
                    stack.close()
            raise


# What the pane keeps of a TOP reply: a header block and a few lines are far smaller, and a
# server that ignores TOP's line count and sends a whole message must not fill the memory.
MAX_SHOWN_BYTES = 256 * 1024


class _Chunks:
    """A sink keeping the first MAX_SHOWN_BYTES of what TOP sent (the rest is read, dropped)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes, /) -> None:
        room = MAX_SHOWN_BYTES - self._size
        if room > 0:
            self._parts.append(data[:room])
            self._size += min(room, len(data))

    def value(self) -> bytes:
        return b"".join(self._parts)
