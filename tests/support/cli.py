"""Running popctl's command line in the test process, and what the tests compare of it."""

from __future__ import annotations

import socket

from click.testing import CliRunner, Result

from popctl.cli import cli


def invoke(*args: str, env: dict[str, str | None] | None = None,
           input: str | None = None) -> Result:
    """``popctl ARGS`` through CliRunner (stdout and stderr kept apart)."""
    result = CliRunner().invoke(cli, list(args), env=env, input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug escaped the group's error handling: show its traceback
    return result


def outcome(result: Result) -> tuple[int, str, str]:
    return result.exit_code, result.stdout, result.stderr


def closed_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
