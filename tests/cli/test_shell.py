"""`popctl shell`: one session for many commands, so dele then rset really undoes."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from popctl.cli import cli
from popctl.sandbox import SandboxServer
from tests.support.terminal import close_terminal, drain


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as sandbox:
        yield sandbox


def run(server: SandboxServer, script: str, *args: str) -> tuple[int, str, str]:
    port = server.address[1]
    result = CliRunner().invoke(
        cli, ["--host", "localhost", "--port", str(port), "--tls", "starttls",
              "--ca-file", str(server.ca_file), "--user", "sandbox", *args, "shell"],
        input=script, env={"POPCTL_PASSWORD": "sandbox"})
    return result.exit_code, result.stdout, result.stderr


def count(server: SandboxServer) -> int:
    code, out, _ = run(server, "stat --json\n")
    assert code == 0
    value = json.loads(out)["count"]
    assert isinstance(value, int)
    return value


def test_dele_then_rset_undoes(server: SandboxServer) -> None:
    code, out, err = run(server, "dele 1-3 --yes -f ndjson\nstat -f ndjson\nrset\n"
                                 "stat -f ndjson\nquit\n")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["number"] for r in records[:3]] == [1, 2, 3]
    assert all(r["deleted"] for r in records[:3])
    assert [r["count"] for r in records[3:]] == [47, 50]
    assert "deletion marks removed" in err
    assert count(server) == 50


def test_deletions_commit_on_quit(server: SandboxServer) -> None:
    code, _, err = run(server, "dele 1 2 --yes\nquit\n")
    assert code == 0, err
    assert count(server) == 48


def test_deletions_commit_at_end_of_script(server: SandboxServer) -> None:
    code, _, err = run(server, "dele last:1 --yes\n")
    assert code == 0, err
    assert count(server) == 49


def test_failing_script_stops_without_quit(server: SandboxServer) -> None:
    code, _, err = run(server, "dele 1 --yes\nretr 999\ndele 2 --yes\nquit\n")
    assert code == 5
    assert "Error: message 999 does not exist" in err
    assert "closed without QUIT" in err
    assert count(server) == 50  # the first DELE was rolled back


def test_unknown_command_in_a_script_stops_it(server: SandboxServer) -> None:
    code, _, err = run(server, "dele 1 --yes\nfrobnicate\n")
    assert code == 2
    assert "unknown command 'frobnicate'" in err
    assert count(server) == 50


def test_raw_commands_and_help(server: SandboxServer) -> None:
    code, out, err = run(server, "help\nLAST\nraw NOOP\nUIDL 1\nquit\n")
    assert code == 0, err
    assert "Deletions take effect only when you quit" in err
    lines = out.splitlines()
    assert lines[0] == "+OK 0"
    assert lines[1].startswith("+OK")
    assert lines[2].startswith("+OK 1 ")


def test_trace_on_redacts_nothing_secret_and_shows_commands(server: SandboxServer) -> None:
    code, _, err = run(server, "trace on\nstat\ntrace off\nnoop\n")
    assert code == 0, err
    assert "C: STAT" in err and "C: NOOP" not in err
    assert "sandbox" not in "".join(line for line in err.splitlines() if "C: " in line)


# --- issue 11: a line shlex cannot split ---------------------------------------------------------


def test_an_unbalanced_quote_in_a_script_stops_it_cleanly(server: SandboxServer) -> None:
    code, out, err = run(server, "dele 1 --yes -f ndjson\nlist --subject 'oops\nquit\n")
    assert code == 2
    assert [json.loads(line)["deleted"] for line in out.splitlines()] == [True]
    assert err.endswith(
        "Error: cannot split that line: no closing quotation: script stopped, the session was "
        "closed without QUIT, so nothing was deleted\n")
    assert "internal error" not in err
    assert count(server) == 50  # the DELE before it was rolled back


def test_quotes_in_a_raw_command_are_sent_as_typed(server: SandboxServer) -> None:
    code, out, err = run(server, 'raw NOOP "x\nNOOP \'\nstat -f csv\nquit\n')
    assert (code, err) == (0, "")
    assert out.splitlines() == ["-ERR usage: NOOP", "-ERR usage: NOOP", "count,size",
                                "50,8374557"]


def on_terminal(args: list[str], lines: list[bytes]) -> tuple[int, bytes]:
    """Run popctl on a pseudo-terminal (stdin, stdout, stderr), typing each line at its
    prompt; return the status and everything the terminal showed."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "popctl", *args], stdin=slave,
                               stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 60

    def read_until(wanted: bytes, start: int) -> int:
        nonlocal shown
        while shown.find(wanted, start) < 0:
            assert time.monotonic() < deadline and process.poll() is None, shown
            if select.select([master], [], [], 0.5)[0]:
                with contextlib.suppress(OSError):
                    shown += os.read(master, 4096)
        return shown.find(wanted, start) + len(wanted)

    try:
        at = 0
        for line in lines:
            at = read_until(b"popctl> ", at)
            os.write(master, line + b"\n")
        process.wait(timeout=60)
        shown += drain(master)
    finally:
        close_terminal(process, master)
    return process.returncode, shown


def test_an_unbalanced_quote_on_a_terminal_keeps_the_shell_running() -> None:
    code, shown = on_terminal(["--sandbox", "shell"],
                              [b"list --subject 'oops", b"stat -f csv", b"quit"])
    text = shown.decode("utf-8", "replace").replace("\r\n", "\n")
    assert code == 0, text
    assert "Error: cannot split that line: no closing quotation; nothing was done\n" in text
    assert "count,size\n50,8374557\n" in text  # the next line still ran, in the same session
    assert "internal error" not in text


# --- a mistyped option or value is that line's error, not the end of the shell -------------------


def test_a_mistyped_option_on_a_terminal_keeps_the_shell_and_its_marks() -> None:
    code, shown = on_terminal(["--sandbox", "shell"],
                              [b"dele 1 --yes -f csv", b"list --larger 1M",
                               b"list --format yaml", b"lsit", b"stat -f csv", b"quit"])
    text = shown.decode("utf-8", "replace").replace("\r\n", "\n")
    assert code == 0, text
    assert ("Error: No such option '--larger'. (Did you mean one of: '--header', "
            "'--larger-than'?) (see popctl list --help)\n") in text
    assert ("Error: Invalid value for '--format' / '-f': 'yaml' is not one of 'table', 'json', "
            "'ndjson', 'csv' (see popctl list --help)\n") in text
    assert "Error: unknown command 'lsit' (did you mean 'list'?); type help\n" in text
    assert "count,size\n49," in text  # the same session, message 1 still marked deleted
    assert "internal error" not in text


def test_a_mistyped_option_in_a_script_stops_it_without_quit(server: SandboxServer) -> None:
    code, out, err = run(server, "dele 1 --yes -f ndjson\nlist --larger 1M\nquit\n")
    assert code == 2
    assert [json.loads(line)["deleted"] for line in out.splitlines()] == [True]
    assert err.splitlines()[-1] == ("Error: No such option '--larger'. (Did you mean one of: "
                                    "'--header', '--larger-than'?) (see popctl list --help)")
    assert count(server) == 50  # the DELE before it was rolled back
