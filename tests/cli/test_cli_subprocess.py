"""popctl run the way a user runs it: ``python -m popctl`` in a child process, stdin not a terminal.

These check what CliRunner cannot: the real entry point, the program name in messages, the
process exit status, tracebacks (or their absence) on the real stderr, and a closed stdout.
"""

from __future__ import annotations

import json
import os
import poplib
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import popctl
from popctl.sandbox import sample_mailbox
from tests.support.cli import closed_port

COMMANDS = ["account", "browse", "capa", "dele", "list", "noop", "password", "retr", "rset",
            "sandbox", "seen", "shell", "stat", "top", "uidl"]
SANDBOX_NOTE = re.compile(rb"sandbox: sample POP3 server on 127\.0\.0\.1 port [0-9]+ "
                          rb"\(user sandbox, password sandbox\)\n")


def popctl_run(*args: str, cwd: Path, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "popctl", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, cwd=cwd, timeout=120,
                          env={**os.environ, **(env or {})})



def test_version(tmp_path: Path) -> None:
    for flag in ("--version", "-V"):
        done = popctl_run(flag, cwd=tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (
            0, f"popctl, version {popctl.__version__}\n".encode(), b"")


def test_help_mentions_every_command(tmp_path: Path) -> None:
    done = popctl_run("--help", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == b""
    text = done.stdout.decode()
    assert text.startswith("Usage: popctl [OPTIONS] COMMAND [ARGS]...\n")
    section = text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split()[0] for line in section.splitlines()] == COMMANDS
    for option in ("--host", "--port", "--user", "--tls", "--format", "--json", "--trace",
                   "--debug", "--sandbox"):
        assert option in text


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    done = popctl_run("list", "--no-such-option", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr == b"Error: No such option '--no-such-option' (see popctl list --help)\n"
    done = popctl_run("--sandbox", "--quiet", "list", "7-3", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, b"", b"Error: invalid message selection '7-3': the range is backwards (write 3-7)\n")


@pytest.mark.parametrize(("args", "line"), [
    (["lsit"], b"No such command 'lsit'. Did you mean 'list'? (see popctl --help)"),
    (["sta", "--json"], b"No such command 'sta'. Did you mean 'stat'? (see popctl --help)"),
    (["seen", "lst"], b"No such command 'lst'. Did you mean 'list'? (see popctl seen --help)"),
    (["frobnicate"], b"No such command 'frobnicate' (see popctl --help)"),
])
def test_a_mistyped_command_names_the_one_meant(tmp_path: Path, args: list[str],
                                                line: bytes) -> None:
    """In a process of its own, where no command module is imported before it is named."""
    done = popctl_run(*args, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, b"", b"Error: " + line + b"\n")


def test_sandbox_stat_json(tmp_path: Path) -> None:
    done = popctl_run("--sandbox", "stat", "--json", cwd=tmp_path)
    assert done.returncode == 0 and SANDBOX_NOTE.fullmatch(done.stderr)
    size = sum(len(m) for m in sample_mailbox())  # CRLF messages, as the sandbox serves them
    assert done.stdout == b'{\n  "count": 50,\n  "size": %d\n}\n' % size
    assert json.loads(done.stdout) == {"count": 50, "size": size}


def test_traceback_only_with_debug(tmp_path: Path) -> None:
    port = closed_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--user", "bob", "stat"]
    env = {"POPCTL_PASSWORD": "bob-secret"}
    line = (f"Error: cannot connect to 127.0.0.1:{port}: Connection refused; check the host and "
            "the port (--host, --port)\n").encode()
    plain = popctl_run(*args, cwd=tmp_path, env=env)
    assert (plain.returncode, plain.stdout, plain.stderr) == (4, b"", line)
    debug = popctl_run("--debug", *args, cwd=tmp_path, env=env)
    assert (debug.returncode, debug.stdout) == (4, b"")
    assert debug.stderr.startswith(b"Traceback (most recent call last):\n")
    assert debug.stderr.endswith(b"\n" + line)
    assert b"bob-secret" not in plain.stderr + debug.stderr


@pytest.mark.parametrize("args", [
    ["list", "--format", "ndjson"],
    ["list"],
    ["stat", "--json"],
    ["top", "1"],
    ["retr", "1"],
], ids=" ".join)
def test_closed_stdout_is_not_an_error(tmp_path: Path, args: list[str]) -> None:
    """`popctl ... | head -1`: once the reader is gone, popctl stops quietly with status 0."""
    child = subprocess.Popen([sys.executable, "-m", "popctl", "--sandbox", "--quiet", *args],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=tmp_path)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the interpreter has even started: every write gets EPIPE
    stderr = child.stderr.read()
    child.stderr.close()
    assert (child.wait(timeout=120), stderr) == (0, b"")


@pytest.mark.parametrize("args", [["stat"], ["list", "--format", "ndjson"], ["retr", "1"]],
                         ids=" ".join)
def test_full_disk_on_stdout_is_one_clear_line(tmp_path: Path, args: list[str]) -> None:
    """`popctl ... > /dev/full`: the write fails (at once, or when popctl flushes on its way
    out); either way one line says so, status 1, no traceback."""
    with open("/dev/full", "wb") as full:
        result = subprocess.run([sys.executable, "-m", "popctl", "--sandbox", "--quiet", *args],
                                stdin=subprocess.DEVNULL, stdout=full, stderr=subprocess.PIPE,
                                cwd=tmp_path, timeout=120)
    assert (result.returncode, result.stderr) == (
        1, b"Error: cannot write to standard output: No space left on device\n")


@pytest.mark.parametrize("thread", [False, True], ids=["alone", "with-a-thread"])
def test_the_quick_exit_still_runs_atexit_handlers_and_waits_for_threads(
        tmp_path: Path, thread: bool) -> None:
    """main() leaves with os._exit after flushing: atexit handlers (the sandbox's clean-up is
    one) must still run, and a non-daemon thread must still be waited for."""
    marker = tmp_path / "thread-finished"
    code = (
        "import atexit, sys, threading, time\n"
        "import popctl.cli\n"
        "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
        + (f"threading.Thread(target=lambda: (time.sleep(0.3), open({str(marker)!r}, 'w')))"
           ".start()\n" if thread else "")
        + "popctl.cli.main(['--version'])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"popctl, version ")
    assert result.stderr == b"atexit ran\n"
    assert marker.exists() == thread


@pytest.mark.parametrize("target", ["process", "connection-thread"])
def test_sandbox_serve_stops_at_ctrl_c(target: str, tmp_path: Path) -> None:
    """Ctrl-C ends ``popctl sandbox serve`` with "Interrupted." and 130, also when the kernel
    runs the handler on the thread of a connection (a signal sent to that thread's id goes there
    on Linux): the main thread must not sleep on through it."""
    if target != "process" and not os.path.isdir(f"/proc/{os.getpid()}/task"):
        pytest.skip("needs /proc/PID/task (Linux) to name a thread of the server")
    process = subprocess.Popen([sys.executable, "-m", "popctl", "sandbox", "serve"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        match = re.fullmatch(r"sandbox POP3 server on 127\.0\.0\.1 port (\d+): user sandbox, "
                             r"password sandbox\n", first)
        assert match, first
        pop = poplib.POP3("127.0.0.1", int(match.group(1)), timeout=30)
        try:
            pop.user("sandbox")
            assert pop.pass_("sandbox").startswith(b"+OK")  # its thread lives while logged in
            threads = set(map(int, os.listdir(f"/proc/{process.pid}/task"))) - {process.pid}
            os.kill(process.pid if target == "process" else min(threads), signal.SIGINT)
            # Generous, for a loaded machine: a stuck server never exits by itself.
            assert process.wait(timeout=30) == 130
        finally:
            pop.close()
        stdout, stderr = process.communicate()
        assert (stdout, stderr.splitlines()[-1]) == ("", "Interrupted.")
        assert "Traceback" not in stderr
    finally:
        process.kill()
        process.communicate()
