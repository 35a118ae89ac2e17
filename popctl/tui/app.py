"""``popctl browse``: the Textual application, one POP3 session shown as a table.

The table is the model's view: ``rows`` (every message listed), ``marked`` (numbers marked
for deletion, kept here, not on the server), the filter and the sort order; ``_fill`` redraws
it from them. Server work is submitted to the ``Browser`` thread and awaited in Textual
workers, so the interface keeps answering while a server is slow; what the server sent is made
safe (``display.safe``) and shown as ``Text``, never as markup.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Input, RichLog, Static

from popctl.display import safe
from popctl.errors import PopctlError, UsageError
from popctl.query import Row
from popctl.tui import view
from popctl.tui.bridge import FIRST_LINES, Browser, BrowserUI, Server
from popctl.tui.filters import FILTER_HELP, NO_FILTER, Filter, parse_filter
from popctl.tui.view import COLUMNS, Ending
from popctl.tui.widgets import AskPath, ConfirmCommit, HelpScreen, PickAccount

T = TypeVar("T")

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# The last lines of the dialogue kept: a TOP traces about 7 to 12 lines (a few header lines, then
# a count), so a listing of 1,000 messages leaves its last few hundred and what followed it.
TRACE_LINES = 5000


class BrowseApp(App[Ending]):
    TITLE = "popctl browse"
    ENABLE_COMMAND_PALETTE = False  # every action has its key (? lists them)
    CSS = """
    #filter { border: none; height: 1; padding: 0 1; }
    #table { height: 1fr; }
    #pane { height: 10; border-top: solid $accent; display: none; }
    #trace { height: 7; border-top: solid $warning; display: none; }
    #status { height: 1; background: $panel; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "help"),
        Binding("slash", "filter", "filter"),
        Binding("h,enter", "headers", "headers", show=False),
        Binding("l", "lines", "lines", show=False),
        Binding("w", "save", "save", show=False),
        Binding("space,d", "mark", "mark"),
        Binding("D", "mark_all", "mark all", show=False),
        Binding("u", "undo", "undo", show=False),
        Binding("c", "commit", "commit"),
        Binding("r", "refresh", "refresh", show=False),
        Binding("a", "account", "account", show=False),
        Binding("t", "trace", "trace", show=False),
        Binding("escape", "close_pane", "close pane", show=False),
        Binding("q", "quit_asking", "quit"),
        Binding("ctrl+c", "leave", "leave", show=False, priority=True),
        *[Binding(str(i + 1), f"sort('{key}')", f"sort {title}", show=False)
          for i, (key, title, _w, _k) in enumerate(COLUMNS)],
    ]

    def __init__(self, browser: Browser) -> None:
        super().__init__()
        self.browser = browser
        # The session thread reaches the interface only by messages (post_message is
        # thread-safe); the UI it is handed replaces the command line's for this run.
        browser.context = browser.context._replace(ui=BrowserUI(
            browser.context.ui, lambda text, level: self.post_message(view.Notice(text, level)),
            self._traced),
            options=browser.context.options._replace(trace=True, quiet=False))
        self.rows: dict[int, Row] = {}
        self.shown: list[Row] = []
        self.marked: set[int] = set()
        self.filter: Filter = NO_FILTER
        self.sort_key, self.sort_reverse = "number", False
        self.server: Server | None = None
        self.loaded = False  # the whole listing has arrived
        self._busy: list[str] = []  # what the server is doing for us, oldest first
        self._busy_since = 0.0
        self._ever_connected = False
        self._quit_warned = False
        self._spin = 0
        self._filter_error: str | None = None
        self._fill_pending = False  # a redraw is due (rows arriving in another order)
        self._last_error: str | None = None  # why the last session ended
        self._old_uids: dict[str, tuple[int, int]] = {}  # marked before a new session
        self._old_marks = 0
        # The dialogue, also while its pane is hidden (what the pane shows when opened).
        self.dialogue: deque[str] = deque(maxlen=TRACE_LINES)
        # Trace lines from the session thread wait here (deque appends and pops are
        # thread-safe); one TraceArrived message carries them all: a message per line was
        # most of the work of listing 2,000 messages.
        self._trace_inbox: deque[str] = deque()
        self._trace_posted = False

    # --- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ filter: " + FILTER_HELP, id="filter")
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="pane"):
            yield Static(id="detail")
        yield RichLog(id="trace", max_lines=TRACE_LINES, markup=False, wrap=False)
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self._columns()
        self.query_one(DataTable).focus()
        self.set_interval(0.1, self._tick)
        self.connect()

    def on_unmount(self) -> None:
        # However the app ended (Textual's own exit, a test's pilot), a session still open is
        # closed without QUIT: leaving never deletes anything.
        self.browser.abandon()

    def on_resize(self) -> None:
        if self.query("#table"):  # once composed
            self._columns()
            self._fill()

    def _columns(self) -> None:
        table = self.query_one(DataTable)
        fixed = sum(w for _k, _t, w, _s in COLUMNS if w) + 2 * len(COLUMNS)
        flexible = max(8, self.size.width - fixed - 2)  # 2: the scroll bar
        table.clear(columns=True)
        for key, title, width, _sort in COLUMNS:
            table.add_column(title, width=width or flexible, key=key)

    # --- the table ------------------------------------------------------------------------------

    def _cells(self, row: Row) -> list[Text]:
        return view.cells(row, marked=row.number in self.marked)

    def _fill(self) -> None:
        self._fill_pending = False
        table = self.query_one(DataTable)
        current = self.current()
        now = datetime.now(UTC)
        rows = list(self.rows.values())
        if not self.filter.empty:
            rows = [r for r in rows if self.filter(r, now)]
        sort = next(k for key, _t, _w, k in COLUMNS if key == self.sort_key)
        rows.sort(key=sort, reverse=self.sort_reverse)
        self.shown = rows
        table.clear()
        for row in rows:
            table.add_row(*self._cells(row), key=str(row.number))
        if current is not None:
            for index, row in enumerate(rows):
                if row.number == current.number:
                    table.move_cursor(row=index, animate=False)
                    break
        self._status()

    def current(self) -> Row | None:
        """The message under the cursor."""
        table = self.query_one(DataTable)
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= len(self.shown):
            return None
        return self.shown[table.cursor_row]

    def _redraw(self, numbers: set[int]) -> None:
        """Restyle the rows of ``numbers`` (marked or unmarked) in place."""
        table = self.query_one(DataTable)
        for row in self.shown:
            if row.number in numbers:
                for (key, *_), cell in zip(COLUMNS, self._cells(row), strict=True):
                    table.update_cell(str(row.number), key, cell)
        self._status()

    def _status(self) -> None:
        if self._filter_error is not None:
            self.query_one("#status", Static).update(Text(self._filter_error, style="bold red",
                                                          no_wrap=True, overflow="ellipsis"))
            return
        busy = None
        if self._busy:
            waited = time.monotonic() - self._busy_since
            busy = (f"{SPINNER[self._spin % len(SPINNER)]} {self._busy[0]}"
                    + (f" {waited:.0f}s" if waited >= 2 else ""))
        marked = [self.rows[n] for n in self.marked if n in self.rows]
        shown = None if self.filter.empty else len(self.shown)
        self.query_one("#status", Static).update(view.status_text(
            list(self.rows.values()), shown, marked, self.server, busy, self._last_error))

    def _tick(self) -> None:
        if self._busy:
            self._spin += 1
            self._status()

    # --- talking to the server --------------------------------------------------------------------

    def _server(self, what: str, call: Callable[..., T], *args: Any,
                then: Callable[[T], Any] | None = None) -> None:
        """Run ``call`` on the session thread in a worker; ``then`` gets its result. An error
        is shown, never raised: the interface goes on (a failed session is closed)."""

        async def work() -> None:
            if not self._busy:
                self._busy_since = time.monotonic()
            self._busy.append(what)
            self._status()
            try:
                result = await asyncio.wrap_future(self.browser.submit(call, *args))
            except PopctlError as e:
                self._failed(e)
                return
            except Exception as e:  # a bug: said, and the interface goes on
                self._failed(PopctlError(f"internal error: {type(e).__name__}: {e}"))
                return
            finally:
                self._busy.remove(what)
                if self._busy:
                    self._busy_since = time.monotonic()
                self._status()
            if then is not None:
                outcome = then(result)
                if isinstance(outcome, Coroutine):
                    await outcome

        self.run_worker(work(), group="pop3")

    def _failed(self, error: PopctlError) -> None:
        if not self.browser.connected:
            self.server = None
        if not self._ever_connected:
            # The first login failed (wrong password, no server): the command's Error line
            # and exit status say so, as for every other command.
            self.exit(Ending(error))
            return
        said = safe(self.browser.context.ui.describe(error))
        if not self.browser.connected:
            self._last_error = said  # kept in the status line: a notification goes away
        self.notify(said, severity="error", timeout=10, markup=False)
        self._status()

    def connect(self, target: Any = None) -> None:
        """A new session (the first, a refresh, after a commit, another account)."""
        self.loaded = False
        self._server("connecting", self.browser.open, target, then=self._connected)

    def _connected(self, server: Server) -> None:
        self.server, self._ever_connected, self._last_error = server, True, None
        self.sub_title = server.account or server.host
        self._old_uids = {r.uid: (r.number, r.size) for r in self.rows.values()
                          if r.number in self.marked and r.uid}
        self._old_marks = len(self.marked)
        self.rows, self.marked = {}, set()
        self._fill()
        self._server("reading headers", self.browser.load, self._arrived,
                     then=lambda count: self.post_message(view.ListingDone(count)))

    def _arrived(self, rows: list[Row]) -> None:  # on the session thread
        self.post_message(view.RowsArrived(rows))

    def on_rows_arrived(self, message: view.RowsArrived) -> None:
        for row in message.rows:
            self.rows[row.number] = row
            # Marks survive a new session by UID (numbers may change); none without UIDL.
            if row.uid and self._old_uids.get(row.uid, (0, -1))[1] == row.size:
                self.marked.add(row.number)
        if self.sort_key == "number" and not self.sort_reverse:
            # Rows come in number order: appended, the table is not redrawn for each batch
            # (redrawing made 2,000 messages take 3 s to list; appending, a fraction of that).
            now = datetime.now(UTC)
            table = self.query_one(DataTable)
            for row in message.rows:
                if self.filter.empty or self.filter(row, now):
                    table.add_row(*self._cells(row), key=str(row.number))
                    self.shown.append(row)
            self._status()
        elif not self._fill_pending:  # another order: redrawn at most twice a second
            self._fill_pending = True
            self.set_timer(0.5, self._fill)

    def on_listing_done(self, message: view.ListingDone) -> None:
        """After the last RowsArrived: both come through the message queue, in order."""
        self.loaded = True
        if self._fill_pending:
            self._fill()
        lost = self._old_marks - len(self.marked)
        if lost > 0:
            self.notify(f"{lost} mark(s) dropped: those messages are gone or cannot be "
                        "told apart without UIDL", severity="warning", markup=False)
        self._old_marks = 0
        self._status()

    def _traced(self, line: str) -> None:  # on the session thread
        self._trace_inbox.append(line)
        if not self._trace_posted:
            self._trace_posted = True
            self.post_message(view.TraceArrived())

    def on_trace_arrived(self, message: view.TraceArrived) -> None:
        self._trace_posted = False  # before draining: a line added meanwhile posts again
        lines = []
        while self._trace_inbox:
            lines.append(self._trace_inbox.popleft())
        self.dialogue.extend(lines)
        log = self.query_one("#trace", RichLog)
        if log.display:  # a hidden pane is filled from the dialogue when it is shown
            for line in lines:
                log.write(Text(line, no_wrap=True))

    def on_notice(self, message: view.Notice) -> None:
        severity = message.severity if message.severity in ("warning", "error") else \
            "information"
        self.notify(safe(message.text), severity=severity, markup=False)  # type: ignore[arg-type]

    # --- keys -----------------------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        try:
            self.filter, self._filter_error = parse_filter(event.value), None
        except UsageError as e:  # said in the status line until the filter is right again
            self._filter_error = str(e)
            self._status()
            return
        self._fill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_headers()  # Enter on a row (the table's own key)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.action_sort(str(event.column_key.value))

    def action_sort(self, key: str) -> None:
        self.sort_reverse = not self.sort_reverse if self.sort_key == key else False
        self.sort_key = key
        self._fill()

    def action_close_pane(self) -> None:
        self.query_one("#pane").display = False
        self.query_one(DataTable).focus()

    def action_headers(self) -> None:
        self._show_top(0, "headers")

    def action_lines(self) -> None:
        self._show_top(FIRST_LINES, f"first {FIRST_LINES} lines")

    def _show_top(self, lines: int, what: str) -> None:
        row = self.current()
        if row is None or not self.browser.connected:
            return

        def show(data: bytes) -> None:
            text = data.decode("utf-8", "replace")
            title = Text(f"message {row.number}, {what}:\n", style="bold")
            body = Text("\n").join(Text(safe(line)) for line in text.splitlines())
            self.query_one("#detail", Static).update(title + body)
            pane = self.query_one("#pane", VerticalScroll)
            pane.display = True
            pane.scroll_home(animate=False)

        self._server(f"TOP {row.number} {lines}", self.browser.top, row.number, lines, then=show)

    def action_save(self) -> None:
        row = self.current()
        if row is None or not self.browser.connected:
            return
        from popctl.stores.files import uid_filename

        default = os.path.abspath(uid_filename(row.uid) if row.uid else f"{row.number}.eml")

        def chosen(path: str | None) -> None:
            if path:
                self._server(f"RETR {row.number}", self.browser.save, row.number,
                             os.path.expanduser(path),
                             then=lambda octets: self.notify(
                                 safe(f"message {row.number} saved to {path} ({octets} octets)"),
                                 markup=False))

        self.push_screen(AskPath(default), chosen)

    def action_mark(self) -> None:
        row = self.current()
        if row is None:
            return
        self.marked.symmetric_difference_update({row.number})
        self._quit_warned = False
        self._redraw({row.number})
        table = self.query_one(DataTable)
        if table.cursor_row < len(self.shown) - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)

    def action_mark_all(self) -> None:
        new = {r.number for r in self.shown} - self.marked
        self.marked |= new
        self._redraw(new)

    def action_undo(self) -> None:
        undone, self.marked = set(self.marked), set()
        self._redraw(undone)
        if self.browser.connected:
            # Nothing is marked on the server before a commit; RSET makes sure of it.
            self._server("RSET", self.browser.rset)

    def action_commit(self) -> None:
        if not self.marked or not self.browser.connected or not self.loaded:
            self.notify("nothing to commit: mark messages with space first"
                        if not self.marked else "wait until the listing is complete",
                        severity="warning", markup=False)
            return
        going = sorted(self.marked)
        lines = [view.commit_line(self.rows[n]) for n in going]
        total = view.human_size(sum(self.rows[n].size for n in going))

        def answered(yes: bool | None) -> None:
            if yes:
                self._server(f"DELE x{len(going)}, QUIT", self.browser.commit, going,
                             then=self._committed)

        self.push_screen(ConfirmCommit(lines, total), answered)

    def _committed(self, count: int) -> None:
        self.notify(f"{count} message(s) deleted", markup=False)
        self.marked = set()
        self.server = None
        self.connect()

    def action_refresh(self) -> None:
        self.connect()

    def action_account(self) -> None:
        from popctl import config

        try:
            names = list(config.load().accounts)
        except PopctlError as e:
            self.notify(str(e), severity="error", markup=False)
            return
        if not names:
            self.notify("no accounts in the configuration file (popctl account add)",
                        severity="warning", markup=False)
            return

        def picked(name: str | None) -> None:
            if name is not None:
                self._server(f"account {name}", self.browser.target_for, name,
                             then=lambda target: self._switch(target))

        self.push_screen(PickAccount(names), picked)

    def _switch(self, target: Any) -> None:
        self.rows, self.marked, self.shown = {}, set(), []
        self._fill()
        self.connect(target)

    def action_trace(self) -> None:
        log = self.query_one("#trace", RichLog)
        log.display = not log.display
        if log.display:
            log.clear()
            for line in self.dialogue:
                log.write(Text(line, no_wrap=True))

    def action_quit_asking(self) -> None:
        if self.marked and not self._quit_warned:
            self._quit_warned = True
            self.notify(f"{len(self.marked)} marked message(s) not committed: q again leaves "
                        "and deletes nothing; c commits", severity="warning", markup=False)
            return
        self.action_leave()

    def action_leave(self) -> None:
        """Leave: QUIT if nothing is marked and the server is idle; else close without QUIT
        (marks are the interface's, so the server deletes nothing either way)."""
        if self.marked or self._busy:
            self.browser.abandon()
            self.exit(Ending(None, len(self.marked)))
            return

        async def close() -> None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self.browser.submit(
                    self.browser.close)), timeout=5)
            except (TimeoutError, PopctlError):
                self.browser.abandon()
            self.exit(Ending())

        self.run_worker(close(), group="leave")
