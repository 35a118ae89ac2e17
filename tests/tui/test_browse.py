"""``popctl browse`` driven headlessly (Textual's pilot, 80x24) against the sandbox server and
Dovecot: list, filter, look at a header, mark, commit; leaving with marks deletes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from popctl.app.context import Options, RunContext
from popctl.app.targets import find_secret, target_of
from popctl.cli.console import Console
from popctl.errors import AuthenticationError, NetworkTimeoutError
from popctl.sandbox import SandboxServer
from popctl.tui.bridge import Browser
from tests.support.dovecot_server import DovecotServer

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from popctl.tui.app import BrowseApp

MESSAGES = [
    b"From: Alice <alice@example.org>\r\nSubject: weekly report\r\n"
    b"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n\r\nbody\r\n",
    b"From: Bob <bob@example.com>\r\nSubject: holiday photos\r\n"
    b"Date: Tue, 03 Feb 2026 10:00:00 +0000\r\n\r\n" + b"x" * 3000 + b"\r\n",
    # Server text that would be obeyed: an escape sequence setting the window title, Rich
    # markup, a right-to-left override; and wide characters.
    b"From: =?UTF-8?B?55Sw5Lit?= <tanaka@example.jp>\r\n"
    b"Subject: \x1b]0;pwned\x07[bold red]alarm[/] \xe2\x80\xaegnp.exe\r\n"
    b"Date: Wed, 04 Feb 2026 10:00:00 +0000\r\n\r\nshort\r\n",
    b"From: Alice <alice@example.org>\r\nSubject: re: holiday photos\r\n"
    b"Date: Thu, 05 Feb 2026 10:00:00 +0000\r\n\r\nline 1\r\nline 2\r\n",
]

# Headless runs on a loaded machine: waits are bounded generously, never asserted on.
WAIT = 30.0


def browser(options: Options, resources: contextlib.ExitStack) -> Browser:
    context = RunContext(options, Console(options), resources)
    target = target_of(context)
    return Browser(context, target._replace(credentials=find_secret(target, context.ui)[0]))


def sandbox_options(server: SandboxServer, **more: Any) -> Options:
    return Options(host="localhost", port=server.address[1], tls="starttls",
                   ca_file=server.ca_file, user="sandbox", **more)


def drive(make: Callable[[], Browser], scenario: Callable[[BrowseApp, Pilot[Any]],
                                                           Awaitable[None]]) -> BrowseApp:
    """Run ``scenario`` on the app in an 80x24 headless terminal; return the app, ended."""
    from popctl.tui.app import BrowseApp

    app = BrowseApp(make())

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await scenario(app, pilot)

    asyncio.run(main())
    return app


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        await pilot.pause(0.02)


async def listed(app: BrowseApp, pilot: Pilot[Any]) -> None:
    await until(pilot, lambda: app.loaded and not app._busy, "the listing")


def table_text(app: BrowseApp) -> list[str]:
    from textual.widgets import DataTable

    table = app.query_one(DataTable)
    return [" | ".join(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]


def status(app: BrowseApp) -> str:
    from textual.widgets import Static

    return str(app.query_one("#status", Static).render())


def pane(app: BrowseApp) -> str:
    from textual.widgets import Static

    return str(app.query_one("#detail", Static).render())


def trace(app: BrowseApp) -> str:
    return "\n".join(app.dialogue)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    monkeypatch.setenv("POPCTL_PASSWORD", "sandbox")
    with SandboxServer(list(MESSAGES)) as server:
        yield server


async def list_filter_look_mark_commit(app: BrowseApp, pilot: Pilot[Any]) -> None:
    """The issue's walk: list, filter, view a header, mark two messages, commit."""
    await listed(app, pilot)
    assert len(table_text(app)) == 4
    assert "4 messages" in status(app) and "TLSv1" in status(app)
    await pilot.press("slash", *"subject:photos")
    await until(pilot, lambda: len(table_text(app)) == 2, "the filter")
    assert "shown 2" in status(app)
    await pilot.press("enter")  # back to the table
    await pilot.press("h")
    await until(pilot, lambda: "holiday photos" in pane(app), "the headers")
    assert "From: Bob <bob@example.com>" in pane(app) and "xxx" not in pane(app)
    await pilot.press("escape", "space", "space")  # marks both messages the filter shows
    assert app.marked == {2, 4}
    assert all(row.startswith("D") for row in table_text(app))
    await pilot.press("c")
    await until(pilot, lambda: "ConfirmCommit" in type(app.screen).__name__, "the question")
    await pilot.press("y")
    await until(pilot, lambda: app.loaded and not app._busy and not app.marked, "the new session")


def test_sandbox_commit_deletes_exactly_the_marked(sandbox: SandboxServer) -> None:
    with contextlib.ExitStack() as resources:
        app = drive(lambda: browser(sandbox_options(sandbox), resources),
                    list_filter_look_mark_commit)
    assert sandbox.messages == [MESSAGES[0], MESSAGES[2]]
    assert sorted(app.rows) == [1, 2]  # the new session lists what is left


def test_leaving_with_marks_deletes_nothing(sandbox: SandboxServer) -> None:
    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        await pilot.press("D")  # every message
        assert app.marked == {1, 2, 3, 4}
        await pilot.press("q")  # warned first
        assert app.is_running
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the end")

    with contextlib.ExitStack() as resources:
        app = drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    assert app.return_value is not None and app.return_value.uncommitted == 4
    assert sandbox.messages == MESSAGES
    assert "C: QUIT" not in trace(app)


def test_ctrl_c_with_marks_deletes_nothing(sandbox: SandboxServer) -> None:
    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        await pilot.press("space", "ctrl+c")
        await until(pilot, lambda: not app.is_running, "the end")

    with contextlib.ExitStack() as resources:
        app = drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    assert app.return_value is not None and app.return_value.uncommitted == 1
    assert sandbox.messages == MESSAGES


def test_undo_unmarks_and_commit_then_has_nothing_to_do(sandbox: SandboxServer) -> None:
    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        await pilot.press("space", "space", "u")
        await until(pilot, lambda: not app._busy, "RSET")
        assert app.marked == set() and not any(r.startswith("D") for r in table_text(app))
        await pilot.press("c")  # nothing marked: no question
        assert type(app.screen).__name__ != "ConfirmCommit"
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the end")

    with contextlib.ExitStack() as resources:
        app = drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    assert sandbox.messages == MESSAGES
    assert "C: RSET" in trace(app) and "C: QUIT" in trace(app)  # nothing marked: a clean QUIT


def date_columns(app: BrowseApp) -> list[int]:
    """The terminal column where each row's Date starts, as drawn (wide characters count 2)."""
    from rich.cells import cell_len
    from textual.widgets import DataTable

    table = app.query_one(DataTable)
    lines = [table.render_line(y).text for y in range(1, table.row_count + 1)]
    return [cell_len(line[:line.index("2026-02-")]) for line in lines]


def test_server_text_is_shown_safe_and_not_as_markup(sandbox: SandboxServer) -> None:
    """Escapes and bidi controls neutralised, markup shown as typed, and the row with wide
    characters lines up with the others."""
    seen: list[str] = []
    columns: list[int] = []

    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        await pilot.press("3")  # sort by From, so the Japanese name is last
        await pilot.press("down", "down", "down", "enter")
        await until(pilot, lambda: "Subject:" in pane(app), "the headers")
        seen.extend([table_text(app)[-1], pane(app)])
        columns.extend(date_columns(app))

    with contextlib.ExitStack() as resources:
        drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    hostile, headers = seen
    assert "田中" in hostile and "[bold red]alarm[/]" in hostile
    assert "\x1b" not in hostile and "\u202e" not in hostile and "\x07" not in hostile
    assert "\x1b" not in headers and "\u202e" not in headers and "[bold red]" in headers
    assert len(columns) == 4 and len(set(columns)) == 1, columns


def test_a_wrong_filter_is_said_and_the_last_good_one_stays(sandbox: SandboxServer) -> None:
    seen: list[tuple[str, int]] = []

    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        from textual.widgets import Input

        await listed(app, pilot)
        await pilot.press("slash", *">1k ")
        seen.append((status(app), len(table_text(app))))
        line = app.query_one("#filter", Input)
        line.value = ">1k older:6m"
        await pilot.pause()
        seen.append((status(app), len(table_text(app))))
        line.value = ">1k older:100y"
        await pilot.pause()
        seen.append((status(app), len(table_text(app))))

    with contextlib.ExitStack() as resources:
        drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    assert seen[0][0].startswith("4 messages") and "shown 1" in seen[0][0] and seen[0][1] == 1
    assert "'m' is ambiguous" in seen[1][0] and seen[1][1] == 1
    assert "shown 0" in seen[2][0] and seen[2][1] == 0  # nothing is a century old


def test_sorting_by_size_and_again_reverses(sandbox: SandboxServer) -> None:
    orders: list[list[int]] = []

    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        await pilot.press("2")
        orders.append([r.number for r in app.shown])
        await pilot.press("2")
        orders.append([r.number for r in app.shown])

    with contextlib.ExitStack() as resources:
        drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    by_size = sorted(range(1, 5), key=lambda n: len(MESSAGES[n - 1]))
    assert orders == [by_size, by_size[::-1]]


def test_save_writes_the_message(sandbox: SandboxServer, tmp_path: Path) -> None:
    target = tmp_path / "two.eml"

    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        from textual.widgets import Input

        await listed(app, pilot)
        await pilot.press("down", "w")
        await until(pilot, lambda: type(app.screen).__name__ == "AskPath", "the question")
        app.screen.query_one(Input).value = str(target)
        await pilot.press("enter")
        await until(pilot, lambda: target.exists() and not app._busy, "the file")

    with contextlib.ExitStack() as resources:
        drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    assert target.read_bytes() == MESSAGES[1]


def test_the_trace_pane_shows_the_dialogue_without_the_password(
        sandbox: SandboxServer) -> None:
    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        from textual.widgets import RichLog

        log = app.query_one("#trace", RichLog)
        assert not log.display and not log.lines  # hidden: the dialogue is only kept
        await pilot.press("t")
        assert log.display and len(log.lines) == len(app.dialogue) > 0

    with contextlib.ExitStack() as resources:
        app = drive(lambda: browser(sandbox_options(sandbox, auth="USER"), resources), scenario)
    dialogue = trace(app)
    assert "C: USER sandbox" in dialogue and "C: PASS ***" in dialogue
    assert "PASS sandbox" not in dialogue


def test_a_failed_first_login_ends_the_browser_with_its_error(
        sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POPCTL_PASSWORD", "wrong")

    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: not app.is_running, "the end")

    with contextlib.ExitStack() as resources:
        app = drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    assert app.return_value is not None and isinstance(app.return_value.error, AuthenticationError)


def test_a_dead_server_shows_a_spinner_then_a_timeout(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts and never greets: the interface keeps answering keys while the
    spinner turns, and the timeout ends the first connection with its error."""
    import socket

    monkeypatch.setenv("POPCTL_PASSWORD", "x")
    seen: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as silent:
        options = Options(host="127.0.0.1", port=silent.getsockname()[1], tls="none",
                          allow_plaintext=True, user="u", timeout=1.0)

        async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
            await until(pilot, lambda: "connecting" in status(app), "the spinner")
            seen.append(status(app))
            await pilot.press("question_mark")  # the interface answers while waiting
            seen.append(type(app.screen).__name__)
            await until(pilot, lambda: not app.is_running, "the timeout")

        with contextlib.ExitStack() as resources:
            app = drive(lambda: browser(options, resources), scenario)
    assert any(frame in seen[0] for frame in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
    assert seen[1] == "HelpScreen"
    assert app.return_value is not None
    assert isinstance(app.return_value.error, NetworkTimeoutError)


# --- Dovecot ------------------------------------------------------------------------------------

DOVECOT_USER = "alice"


@pytest.mark.dovecot
def test_dovecot_commit_deletes_exactly_the_marked(dovecot_mailbox: DovecotServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for message in MESSAGES:
        dovecot_mailbox.deliver(DOVECOT_USER, message)
    monkeypatch.setenv("POPCTL_PASSWORD", dovecot_mailbox.users[DOVECOT_USER])
    options = Options(host="localhost", port=dovecot_mailbox.port, tls="starttls",
                      ca_file=dovecot_mailbox.ca_file, user=DOVECOT_USER)
    with contextlib.ExitStack() as resources:
        app = drive(lambda: browser(options, resources), list_filter_look_mark_commit)
    left = sorted(p.read_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
                  for p in (dovecot_mailbox.maildir(DOVECOT_USER)).glob("*/*")
                  if p.parent.name in ("new", "cur"))
    assert left == sorted([MESSAGES[0], MESSAGES[2]])
    assert sorted(app.rows) == [1, 2]


@pytest.mark.dovecot
def test_dovecot_leaving_with_marks_deletes_nothing(dovecot_mailbox: DovecotServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for message in MESSAGES:
        dovecot_mailbox.deliver(DOVECOT_USER, message)
    monkeypatch.setenv("POPCTL_PASSWORD", dovecot_mailbox.users[DOVECOT_USER])
    options = Options(host="localhost", port=dovecot_mailbox.port, tls="starttls",
                      ca_file=dovecot_mailbox.ca_file, user=DOVECOT_USER)

    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        await pilot.press("space", "space", "q", "q")
        await until(pilot, lambda: not app.is_running, "the end")

    with contextlib.ExitStack() as resources:
        drive(lambda: browser(options, resources), scenario)
    with contextlib.ExitStack() as resources:
        app = drive(lambda: browser(options, resources), listed_then_leave)
    assert len(app.rows) == 4


async def listed_then_leave(app: BrowseApp, pilot: Pilot[Any]) -> None:
    await listed(app, pilot)
    await pilot.press("q")
    await until(pilot, lambda: not app.is_running, "the end")


# --- the command line -----------------------------------------------------------------------------


def run_popctl(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = (f"import sys\n{code}\nimport popctl.cli\n"
              f"sys.argv = ['popctl', *{list(args)!r}]\npopctl.cli.main()")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)


def test_without_textual_browse_says_how_to_install_it() -> None:
    result = run_popctl("sys.modules['textual'] = None", "--sandbox", "browse")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("Error: popctl browse needs the Textual extra: "
                             "pip install 'popctl[tui]'\n")


def test_without_a_terminal_browse_refuses() -> None:
    result = run_popctl("", "--sandbox", "browse")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("Error: popctl browse needs a terminal; in scripts use list, top "
                             "and dele\n")


def test_switching_account_lists_the_other_mailbox(sandbox: SandboxServer,
                                                   no_keyring: None) -> None:
    """Accounts come from the configuration file; the secret from POPCTL_PASSWORD."""
    from popctl import config

    def account(name: str, server: SandboxServer) -> str:
        return (f'[accounts.{name}]\nhost = "localhost"\nport = {server.address[1]}\n'
                f'user = "sandbox"\ntls = "starttls"\nca_file = "{server.ca_file}"\n\n')

    seen: list[tuple[str, int]] = []
    with SandboxServer([MESSAGES[0]]) as other:
        Path(config.config_path()).write_text(account("big", sandbox) + account("small", other))

        async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
            await listed(app, pilot)
            seen.append((str(app.sub_title), len(app.rows)))
            await pilot.press("space", "a")  # a mark does not follow to another account
            await until(pilot, lambda: type(app.screen).__name__ == "PickAccount", "the list")
            await pilot.press("down", "enter")
            await until(pilot, lambda: app.sub_title == "small" and app.loaded
                        and not app._busy, "the other account")
            seen.append((str(app.sub_title), len(app.rows)))
            assert app.marked == set()
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, "the end")

        with contextlib.ExitStack() as resources:
            drive(lambda: browser(Options(account=("big",)), resources), scenario)
        assert other.messages == [MESSAGES[0]]
    assert seen == [("big", 4), ("small", 1)]
    assert sandbox.messages == MESSAGES


@pytest.mark.dovecot
def test_refresh_is_a_new_session_and_marks_follow_their_uid(
        dovecot_mailbox: DovecotServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another client deletes message 1 and new mail arrives: after r, the numbers have
    moved, the mark is still on its message (by UID), and the new message is listed."""
    from popctl.models import Credentials, Endpoint, TLSMode
    from popctl.session import Session

    for message in MESSAGES:
        dovecot_mailbox.deliver(DOVECOT_USER, message)
    password = dovecot_mailbox.users[DOVECOT_USER]
    monkeypatch.setenv("POPCTL_PASSWORD", password)
    options = Options(host="localhost", port=dovecot_mailbox.port, tls="starttls",
                      ca_file=dovecot_mailbox.ca_file, user=DOVECOT_USER)

    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        await pilot.press("down", "down", "space")
        marked_uid = app.rows[3].uid
        endpoint = Endpoint(host="localhost", port=dovecot_mailbox.port, tls=TLSMode.STARTTLS,
                            ca_file=dovecot_mailbox.ca_file)
        with Session.connect(endpoint) as other:
            other.login(Credentials(DOVECOT_USER, password))
            other.dele(1)
        dovecot_mailbox.deliver(DOVECOT_USER,
                                b"From: new@example.org\r\nSubject: fresh\r\n\r\nhi\r\n")
        await pilot.press("r")
        await until(pilot, lambda: app.loaded and not app._busy and len(app.rows) == 4,
                    "the new session")
        assert app.marked == {2} and app.rows[2].uid == marked_uid
        assert app.rows[4].subject == "fresh"
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not app.is_running, "the end")

    with contextlib.ExitStack() as resources:
        drive(lambda: browser(options, resources), scenario)


def browse_on_terminal(keys: list[tuple[bytes, bytes]]) -> tuple[int, str]:
    """``popctl --sandbox browse`` on an 80x24 pseudo-terminal: for each (wait for, type),
    wait until the screen has shown the first, then type the second. The status and all the
    terminal showed, decoded."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    from tests.support.terminal import close_terminal, drain

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    process = subprocess.Popen([sys.executable, "-m", "popctl", "--sandbox", "browse"],
                               stdin=slave, stdout=slave, stderr=slave, env=env,
                               start_new_session=True)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        at = 0
        for wanted, typed in keys:
            while shown.find(wanted, at) < 0:
                assert time.monotonic() < deadline and process.poll() is None, shown[-2000:]
                if select.select([master], [], [], 0.2)[0]:
                    with contextlib.suppress(OSError):
                        shown += os.read(master, 65536)
            at = shown.find(wanted, at) + len(wanted)
            os.write(master, typed)
        while process.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):
                    shown += os.read(master, 65536)
        process.wait(timeout=10)
        shown += drain(master)
    finally:
        close_terminal(process, master)
    return process.returncode, shown.decode("utf-8", "replace")


def test_browse_on_a_terminal_lists_and_leaves_cleanly() -> None:
    code, shown = browse_on_terminal([(b"50 messages", b"q")])
    assert code == 0, shown[-2000:]
    assert "Traceback" not in shown and "Error" not in shown


def test_browse_on_a_terminal_says_what_was_not_deleted() -> None:
    code, shown = browse_on_terminal([(b"50 messages", b" "), (b"marked 1", b"\x03")])  # Ctrl-C
    assert code == 0, shown[-2000:]
    assert "nothing deleted: 1 marked message(s) were not committed" in shown


def test_a_server_that_stops_answering_mid_session_is_said_and_nothing_hangs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing came; then the server stalls on a TOP: the spinner turns, the timeout is
    said in a notification, the session is closed without QUIT, and the interface goes on."""
    from tests.support.scripted_server import ScriptedServer, expect, expect_eof, send, stall

    monkeypatch.setenv("POPCTL_PASSWORD", "s3cret")
    capa = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"
    header = (b"+OK\r\nFrom: A <a@example.org>\r\nSubject: hi\r\n"
              b"Date: Mon, 26 Jan 2026 16:03:00 +0000\r\n\r\n.\r\n")
    script = [send(b"+OK ready\r\n"), expect(b"CAPA\r\n"), send(capa),
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK\r\n+OK\r\n" + capa + b"+OK\r\n1 u1\r\n.\r\n+OK\r\n1 70\r\n.\r\n"),
              expect(b"TOP 1 0\r\n"), send(header),
              expect(b"TOP 1 0\r\n"), stall(2.0), expect_eof()]
    seen: list[str] = []
    with ScriptedServer(script, timeout=10.0) as server:
        options = Options(host="127.0.0.1", port=server.port, tls="none", allow_plaintext=True,
                          user="alice", timeout=1.0)

        async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
            await listed(app, pilot)
            await pilot.press("h")
            await until(pilot, lambda: "TOP 1 0" in status(app), "the spinner")
            seen.append(status(app))
            await until(pilot, lambda: not app.browser.connected and not app._busy,
                        "the timeout")
            seen.append(status(app))
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, "the end")

        with contextlib.ExitStack() as resources:
            drive(lambda: browser(options, resources), scenario)
        server.wait()
        server.assert_done()  # no QUIT after the timeout
    assert "1 message 70" in seen[0]
    assert "not connected (r: connect): no answer" in seen[1], seen
    assert "(read timeout)" in seen[1], seen


def test_mark_all_marks_what_the_filter_shows_and_l_shows_first_lines(
        sandbox: SandboxServer) -> None:
    seen: list[object] = []

    async def scenario(app: BrowseApp, pilot: Pilot[Any]) -> None:
        await listed(app, pilot)
        await pilot.press("slash", *"from:alice", "enter", "D")
        seen.append(set(app.marked))
        await pilot.press("down", "l")  # message 4, the second Alice shows
        await until(pilot, lambda: "first 20 lines" in pane(app), "the first lines")
        seen.append(pane(app))
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not app.is_running, "the end")

    with contextlib.ExitStack() as resources:
        drive(lambda: browser(sandbox_options(sandbox), resources), scenario)
    assert seen[0] == {1, 4}
    assert isinstance(seen[1], str) and seen[1].startswith("message 4, first 20 lines:")
    assert seen[1].endswith("\nline 1\nline 2")
    assert sandbox.messages == MESSAGES


def test_the_commit_question_lines_up_wide_senders() -> None:
    """Each line of the confirmation: the Subject starts in the same column, whatever the
    width of the From's characters (padding by characters put it 2 columns late per CJK)."""
    from rich.cells import cell_len

    from popctl.query import Row
    from popctl.tui.view import commit_line

    def line(sender: str) -> str:
        row = Row(7, 2048, "u7")
        row.sender, row.subject = sender, "SUBJECT"
        return commit_line(row).plain

    starts = {cell_len(text[:text.index("SUBJECT")])
              for text in (line("Alice <a@example.org>"), line("田中 由紀 <yuki@example.jp>"),
                           line("x" * 40))}
    assert len(starts) == 1, starts
