"""`popctl shell`: one session for many commands, so dele then rset really undoes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from popctl.cli import cli
from popctl.sandbox import SandboxServer


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
