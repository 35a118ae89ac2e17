"""Issue 16, "Progress and messages", where a person meets them: a progress bar by octets on a
long ``retr`` (a pseudo-terminal of 80 columns), bars that never stay on screen at a wrong
figure, the statuses of a declined confirmation (8) and of Ctrl-C at a question (130), and
one line saying what was already stored after Ctrl-C or a full disk during ``retr``.

The scripted server (tests/support/scripted_server.py) pauses where the test needs time to
pass, and proves what popctl sent: no DELE and no QUIT after a no or an interrupt.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from popctl.app import download
from popctl.cache import HeaderCache, account_key
from popctl.cli import console as console_module
from popctl.sandbox import SandboxServer
from popctl.stores import DirectoryStore, MessageSink, StoreError
from tests.cli.test_shell import count as shell_count
from tests.cli.test_shell import on_terminal as shell_on_terminal
from tests.cli.test_shell import run as shell_run
from tests.support.cli import invoke, outcome
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    close,
    expect,
    expect_eof,
    send,
    stall,
)
from tests.support.terminal import close_terminal, drain

PASSWORD = "s3cret"
CAPS = b"+OK\r\nTOP\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n"
ENV = {"POPCTL_PASSWORD": PASSWORD}
# Longer than the bar's DRAW_AFTER (0.3 s): a bar is drawn at the next step after it.
PAUSE = 0.8


def login(sizes: Sequence[int]) -> list[Step]:
    """The greeting and the pipelined login with UIDL (``u1``, ``u2``, ...) and LIST."""
    numbered = list(enumerate(sizes, 1))
    uidl = b"+OK\r\n" + b"".join(b"%d u%d\r\n" % (n, n) for n, _ in numbered) + b".\r\n"
    listing = b"+OK\r\n" + b"".join(b"%d %d\r\n" % (n, s) for n, s in numbered) + b".\r\n"
    return [send(b"+OK POP3 ready\r\n"), expect(b"CAPA\r\n"), send(CAPS),
            expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
            send(b"+OK\r\n+OK\r\n" + CAPS + uidl + listing)]


def options(server: ScriptedServer) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(server.port), "--tls", "none",
            "--allow-plaintext", "--user", "alice", "--timeout", "10"]


def ok_data(data: bytes) -> bytes:
    return b"+OK\r\n" + data + b".\r\n"


def message(n: int, size: int) -> bytes:
    """A message of about ``size`` octets, in lines of 100."""
    head = b"Subject: message %d\r\nFrom: a@example.org\r\n\r\n" % n
    return head + (b"x" * 98 + b"\r\n") * ((size - len(head)) // 100)


# --- a pseudo-terminal --------------------------------------------------------------------------


def on_terminal(args: Sequence[str], *, stdout: int | None = subprocess.DEVNULL
                ) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m popctl ARGS`` with an 80x24 pseudo-terminal as its controlling terminal,
    stdin and stderr (and stdout with ``stdout=None``); returns the process and the terminal's
    master side."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

    def controlling_terminal() -> None:  # after setsid(): the pty becomes /dev/tty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen([sys.executable, "-m", "popctl", *args], stdin=slave,
                               stderr=slave, stdout=slave if stdout is None else stdout,
                               start_new_session=True,
                               preexec_fn=controlling_terminal, env={**os.environ, **ENV})
    os.close(slave)
    return process, master


def ctrl_c(master: int) -> None:
    """Type Ctrl-C, as a person does: not in the microseconds between the prompt's last
    character and the read(2) of the answer, where CPython's input() would miss the signal."""
    time.sleep(0.5)
    os.write(master, b"\x03")  # the terminal sends SIGINT to popctl


def read_until(master: int, wanted: bytes, shown: bytearray) -> None:
    deadline = time.monotonic() + 60
    while wanted not in shown:
        assert time.monotonic() < deadline, bytes(shown)
        if select.select([master], [], [], 1)[0]:
            shown += os.read(master, 4096)


def finish(process: subprocess.Popen[bytes], master: int, shown: bytearray) -> int:
    """Wait for the end, reading the terminal all along (a full pty would block popctl); a
    piped stdout must hold less than a pipe's buffer."""
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None:
            assert time.monotonic() < deadline, bytes(shown)
            if select.select([master], [], [], 0.2)[0]:
                try:
                    shown += os.read(master, 4096)
                except OSError:
                    break
        status = process.wait(timeout=60)
        shown += drain(master)
        return status
    finally:
        close_terminal(process, master)
        if process.stdout is not None:
            process.stdout.close()


def screen(shown: bytes) -> list[str]:
    """The lines left on the terminal: CR goes back to the line's start, ESC [K erases to its
    end, other escape sequences change nothing visible here, text overwrites."""
    lines: list[str] = []
    line: list[str] = []
    column = 0
    for token in re.split(r"(\r|\n|\x1b\[[0-9;?]*[A-Za-z])", shown.decode("utf-8", "replace")):
        if token == "\n":
            lines.append("".join(line))
            line, column = [], 0
        elif token == "\r":
            column = 0
        elif token == "\x1b[K":
            del line[column:]
        elif not token.startswith("\x1b"):
            for char in token:
                if column < len(line):
                    line[column] = char
                else:
                    line.append(char)
                column += 1
    lines.append("".join(line))
    return [text for text in lines if text]


def figures(shown: bytes, label: str) -> list[tuple[int, str]]:
    """Every state of the bar drawn: its percentage and its count (``1.4M/2.9M``, ``7/11``)."""
    return [(int(percent), count) for percent, count in re.findall(
        label + r" \[[#-]+\] +(\d+)% ([\d.KMGT]+/[\d.KMGT]+)",
        shown.decode("utf-8", "replace"))]


# --- progress by octets on retr -----------------------------------------------------------------


def test_a_long_retr_shows_octets_arriving_within_the_message(tmp_path: Path) -> None:
    """One 3 MB message that pauses a third of the way: the bar moves inside the message (0.1
    showed no bar for one message), and is gone from the screen at the end."""
    big = message(1, 3_000_000)
    third = len(big) // 3
    script = [*login([len(big)]), expect(b"RETR 1\r\n"), send(b"+OK\r\n" + big[:third]),
              stall(PAUSE), send(big[third:] + b".\r\n"), expect(b"QUIT\r\n"), close()]
    with ScriptedServer(script, timeout=30) as server:
        process, master = on_terminal([*options(server), "retr", "1-1", "--output-dir",
                                       str(tmp_path)])
        shown = bytearray()
        status = finish(process, master, shown)
    server.assert_done()
    assert status == 0, bytes(shown)
    drawn = figures(bytes(shown), "retrieving")
    assert any(0 < percent < 100 and count.endswith("/2.9M") for percent, count in drawn), \
        bytes(shown)
    assert screen(bytes(shown)) == [f"1 message(s) stored in {tmp_path}"]
    assert [p.read_bytes() for p in tmp_path.iterdir()] == [big]


def test_with_several_messages_the_bar_advances_within_the_first(tmp_path: Path) -> None:
    """Three 1 MB messages, the first pausing half-way: the bar shows the octets of the first
    (0.1 counted whole messages: 0% all through the first)."""
    messages = [message(n, 1_000_000) for n in (1, 2, 3)]
    half = len(messages[0]) // 2
    script = [*login([len(m) for m in messages]), expect(b"RETR 1\r\nRETR 2\r\nRETR 3\r\n"),
              send(b"+OK\r\n" + messages[0][:half]), stall(PAUSE),
              send(messages[0][half:] + b".\r\n" + ok_data(messages[1]) + ok_data(messages[2])),
              expect(b"QUIT\r\n"), close()]
    with ScriptedServer(script, timeout=30) as server:
        process, master = on_terminal([*options(server), "retr", "--all", "--output-dir",
                                       str(tmp_path)])
        shown = bytearray()
        status = finish(process, master, shown)
    server.assert_done()
    assert status == 0, bytes(shown)
    within_first = [percent for percent, _ in figures(bytes(shown), "retrieving")
                    if 0 < percent < 33]
    assert within_first, bytes(shown)
    assert screen(bytes(shown)) == [f"3 message(s) stored in {tmp_path}"]


def test_no_bar_over_a_message_written_to_the_terminal() -> None:
    body = message(1, 20_000)
    script = [*login([len(body)]), expect(b"RETR 1\r\n"), send(b"+OK\r\n" + body[:5000]),
              stall(PAUSE), send(body[5000:] + b".\r\n"), expect(b"QUIT\r\n"), close()]
    with ScriptedServer(script, timeout=30) as server:
        process, master = on_terminal([*options(server), "retr", "1-1"], stdout=None)
        shown = bytearray()
        status = finish(process, master, shown)
    server.assert_done()
    assert status == 0, bytes(shown)
    assert b"retrieving" not in shown
    assert bytes(shown).replace(b"\r\r\n", b"\r\n") == body  # the terminal turns LF into CR LF


# --- the header bar of list: a selection, and headers from the cache ----------------------------


def test_the_header_bar_counts_the_selection_and_leaves_no_figure_on_screen() -> None:
    """``list 5-15`` of 30 messages, 5-10 in the header cache: the bar counts the 11 selected
    (0.1 counted all 30 and stayed on screen at a third), and is erased at the end."""
    sizes = [1000 + n for n in range(1, 31)]
    tops = {n: b"+OK\r\nSubject: number %d\r\n\r\n.\r\n" % n for n in range(11, 16)}
    script = [*login(sizes),
              expect(b"".join(b"TOP %d 0\r\n" % n for n in range(11, 16))),
              send(tops[11] + tops[12]), stall(PAUSE), send(tops[13] + tops[14] + tops[15]),
              expect(b"QUIT\r\n"), close()]
    with ScriptedServer(script, timeout=30) as server:
        cache = HeaderCache(account_key("alice", "127.0.0.1", server.port))
        for n in range(1, 11):
            cache.put(f"u{n}", sizes[n - 1], "a@example.org", f"cached {n}", None)
        assert cache.save()
        out = Path(os.environ["HOME"], "list.out")
        with out.open("wb") as file:
            process, master = on_terminal([*options(server), "list", "5-15"],
                                          stdout=file.fileno())
            shown = bytearray()
            status = finish(process, master, shown)
        table = out.read_text()
    server.assert_done()
    assert status == 0, bytes(shown)
    counts = [count for _, count in figures(bytes(shown), "reading headers")]
    # 9/11 is drawn after the pause (more only on a slow machine), never a count of all 30
    assert "9/11" in counts and all(c.endswith("/11") for c in counts), bytes(shown)
    assert screen(bytes(shown)) == []
    assert "cached 5" in table and "number 15" in table and "cached 4" not in table


def test_no_header_bar_is_left_on_screen_after_listing_a_selection() -> None:
    """The report of issue 16: ``list 1-3`` of the sandbox's 50 messages left ``reading headers
    [#---...]  6%`` on the terminal."""
    process, master = on_terminal(["--sandbox", "list", "1-3"])
    shown = bytearray()
    assert finish(process, master, shown) == 0, bytes(shown)
    left = screen(bytes(shown))
    assert len(left) == 1 and left[0].startswith("sandbox: sample POP3 server"), left


# --- a no, and Ctrl-C, at a question -----------------------------------------------------------

DELE_ONE = [*login([100, 200]), expect(b"TOP 1 0\r\n"),
            send(b"+OK\r\nSubject: first\r\n\r\n.\r\n")]


@pytest.mark.parametrize("answer", ["n\n", ""], ids=["no", "end-of-input"])
def test_declining_dele_exits_8_and_deletes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                     answer: str) -> None:
    monkeypatch.setattr(console_module, "interactive", lambda: True)
    with ScriptedServer([*DELE_ONE, expect_eof()], timeout=10) as server:
        result = invoke(*options(server), "dele", "1-1", env=ENV, input=answer)
    server.assert_done()  # no DELE, no QUIT
    status, stdout, stderr = outcome(result)
    assert (status, stdout) == (8, "")
    assert stderr.splitlines()[-1] == "Declined: nothing was deleted."
    assert "Delete 1 message(s)? [y/N]: " in stderr


def test_ctrl_c_at_the_dele_question_exits_130_and_deletes_nothing() -> None:
    with ScriptedServer([*DELE_ONE, expect_eof()], timeout=30) as server:
        process, master = on_terminal([*options(server), "dele", "1-1"])
        shown = bytearray()
        read_until(master, b"Delete 1 message(s)? [y/N]: ", shown)
        ctrl_c(master)
        status = finish(process, master, shown)
    server.assert_done()  # no DELE, no QUIT
    assert status == 130, bytes(shown)
    assert screen(bytes(shown))[-1] == "Interrupted: nothing was deleted.", bytes(shown)


def test_ctrl_c_at_the_account_remove_question_exits_130() -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"], "popctl", "config.toml")
    config.write_text('[accounts.home]\nhost = "pop.home.example"\nuser = "me"\n')
    process, master = on_terminal(["account", "remove", "home"])
    shown = bytearray()
    read_until(master, b"and its keyring entry? [y/N]: ", shown)
    ctrl_c(master)
    assert finish(process, master, shown) == 130, bytes(shown)
    assert screen(bytes(shown))[-1] == "Interrupted.", bytes(shown)
    assert "[accounts.home]" in config.read_text()


# --- what was stored, after Ctrl-C or a full disk during retr ----------------------------------


def test_ctrl_c_during_retr_says_what_was_stored_and_that_nothing_was_deleted(
        tmp_path: Path) -> None:
    """Messages 1 and 2 stored (their DELEs sent), message 3 half-way when Ctrl-C comes: the
    session ends without QUIT, so the server keeps all three, and one line says so."""
    messages = [message(n, 5_000) for n in (1, 2, 3)]
    waiting = [*login([len(m) for m in messages]),
               expect(b"RETR 1\r\nRETR 2\r\nRETR 3\r\n"),
               send(ok_data(messages[0]) + ok_data(messages[1]) + b"+OK\r\n"
                    + messages[2][:2000]),
               expect(b"DELE 1\r\nDELE 2\r\n")]  # each only once its message was stored
    with ScriptedServer([*waiting, expect_eof(timeout=30)], timeout=30) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "popctl", *options(server), "retr", "--all", "--output-dir",
             str(tmp_path), "--delete"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={**os.environ, **ENV})
        try:
            deadline = time.monotonic() + 60
            while server.steps_done < len(waiting):
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
            process.send_signal(2)  # SIGINT, as Ctrl-C sends it
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    server.assert_done()  # no DELE 3, no QUIT: DELE 1 and 2 are rolled back
    assert (process.returncode, stdout) == (130, b"")
    assert stderr.decode() == (f"Interrupted: 2 message(s) already stored in {tmp_path}; "
                               "none was deleted from the server.\n")
    assert sorted(p.read_bytes() for p in tmp_path.iterdir()) == sorted(messages[:2])


class _FullAfterOne(DirectoryStore):
    """A directory on a disk that fills up with the second message."""

    def open(self, number: int, uid: str | None) -> MessageSink:
        sink = super().open(number, uid)
        if number == 1:
            return sink

        class Full:
            def write(self, data: bytes, /) -> None:
                raise StoreError(f"cannot write {uid}.eml: {os.strerror(errno.ENOSPC)}",
                                 errno=errno.ENOSPC)

            commit, discard = sink.commit, sink.discard

        return Full()


def test_a_full_disk_during_retr_says_what_was_stored(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(download.STORES, "output_dir", _FullAfterOne)
    messages = [message(n, 5_000) for n in (1, 2)]
    script = [*login([len(m) for m in messages]), expect(b"RETR 1\r\nRETR 2\r\n"),
              send(ok_data(messages[0]) + ok_data(messages[1])), expect(b"DELE 1\r\n"),
              expect_eof()]
    with ScriptedServer(script, timeout=10) as server:
        result = invoke(*options(server), "retr", "--all", "--output-dir", str(tmp_path),
                        "--delete", env=ENV)
    server.assert_done()  # no QUIT: DELE 1 is rolled back
    assert outcome(result) == (
        1, "", "Error: cannot write u2.eml: No space left on device; 1 message(s) already "
               f"stored in {tmp_path}; none was deleted from the server\n")
    assert [p.read_bytes() for p in tmp_path.iterdir()] == [messages[0]]


def test_a_no_inside_the_shell_keeps_the_shell_and_its_session() -> None:
    """0.1 ended the whole shell (``Aborted!``, status 1) when a dele question got a no."""
    code, shown = shell_on_terminal(["--sandbox", "shell"],
                                    [b"dele 1\nn", b"stat -f csv", b"quit"])
    text = shown.decode("utf-8", "replace").replace("\r\n", "\n")
    assert code == 0, text
    # (typed ahead, the answer was echoed before the question)
    assert "Delete 1 message(s)? [y/N]: Declined: no message was marked deleted.\n" in text
    assert "count,size\n50,8374557\n" in text  # the same session goes on, nothing marked


def test_ctrl_c_at_the_password_prompt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """0.1: ``Aborted!``, status 1, which the man page calls a failed local write."""
    monkeypatch.delitem(ENV, "POPCTL_PASSWORD")
    script = [send(b"+OK POP3 ready\r\n"), expect(b"CAPA\r\n"), send(CAPS), expect_eof()]
    with ScriptedServer(script, timeout=30) as server:
        process, master = on_terminal([*options(server), "stat"])
        shown = bytearray()
        read_until(master, b"Password for alice@127.0.0.1: ", shown)
        ctrl_c(master)
        status = finish(process, master, shown)
    server.assert_done()  # nothing sent after CAPA
    assert (status, screen(bytes(shown))) == (
        130, ["Password for alice@127.0.0.1: ", "Interrupted."]), bytes(shown)


def test_a_full_disk_in_a_shell_script_says_what_was_stored_and_deletes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the shell the session outlives a command: the line says the DELEs already sent wait
    for its quit, and the script then stops without QUIT, so the server keeps everything."""
    monkeypatch.setitem(download.STORES, "output_dir", _FullAfterOne)
    with SandboxServer() as sandbox:
        status, _, stderr = shell_run(sandbox, f"retr 1-3 --output-dir {tmp_path} --delete\n"
                                      "quit\n")
        assert shell_count(sandbox) == 50
    assert status == 1
    lines = stderr.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(
        r"Error: cannot write \S+\.eml: No space left on device; 1 message\(s\) already stored "
        + re.escape(f"in {tmp_path}; the DELEs sent for them take effect only if the shell quits "
                    "normally (rset undoes them)"), lines[0]), lines
    assert lines[1] == ("Error: shell stopped; the session was closed without QUIT, so nothing "
                        "was deleted")
    assert len(list(tmp_path.iterdir())) == 1
