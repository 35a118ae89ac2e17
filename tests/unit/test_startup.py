"""Start-up stays cheap: ``popctl --version`` and ``--help`` import click and little else (issue 5:
within 1.3x and 1.5x of ``python -c 'import click'``; benchmarks/run.py measures it)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from popctl import defaults
from popctl.app.context import Options
from popctl.models import TLSMode

# Imported only by the commands that need them, never by `import popctl.cli`: the application
# layer (but its context module, the types the commands are handed) and all it stands on.
APP = ["popctl.app.accounts", "popctl.app.download", "popctl.app.mailbox", "popctl.app.probe",
       "popctl.app.runner", "popctl.app.shell", "popctl.app.targets"]
LAZY = ["popctl.models", "popctl.session", "popctl.exchange", "popctl.query", "popctl.cache",
        "popctl.output", "popctl.stores", "popctl.sandbox", "dataclasses", "traceback", "ssl",
        "socket", "keyring", "tabulate", "email", "popctl.config", "popctl.credentials", "tomllib",
        # popctl browse's optional extra (issue 15): loaded by that command only.
        "popctl.tui", "textual", "rich", *APP]


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=60)
    return set(result.stdout.split())


COMMAND_MODULES = ["popctl.cli.mailbox", "popctl.cli.accounts", "popctl.cli.browse",
                   "popctl.cli.sandbox", "popctl.cli.seen", "popctl.cli.shell"]


def test_importing_the_cli_loads_nothing_heavy() -> None:
    loaded = _loaded_after("import popctl.cli")
    assert "click" in loaded
    assert sorted(set(LAZY + COMMAND_MODULES) & loaded) == []


def test_version_loads_no_command_and_a_command_only_its_own() -> None:
    run = ("import contextlib, io, popctl.cli\n"
           "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
           "    popctl.cli.cli.main(args={!r}, prog_name='popctl')")
    assert sorted(set(COMMAND_MODULES) & _loaded_after(run.format(["--version"]))) == []
    assert sorted(set(COMMAND_MODULES) & _loaded_after(run.format(["--help"]))) == []
    # (retr's --new options are popctl seen's, so mailbox brings seen)
    assert sorted(set(COMMAND_MODULES) & _loaded_after(run.format(["stat", "--help"]))) == [
        "popctl.cli.mailbox", "popctl.cli.seen"]


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["list", "--help"],
                                  ["browse", "--help"]])
def test_version_and_help_load_nothing_heavy(args: list[str]) -> None:
    loaded = _loaded_after(
        "import contextlib, io, popctl.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    popctl.cli.cli.main(args={args!r}, prog_name='popctl')")
    assert sorted(set(LAZY) & loaded) == []


def test_tls_choices_are_the_tls_modes() -> None:
    assert tuple(mode.value for mode in TLSMode) == defaults.TLS_MODES


def test_options_are_immutable_and_typed() -> None:
    options = Options(host="pop.example.org")
    assert options.host == "pop.example.org" and options.port is None and options.account == ()
    with pytest.raises(AttributeError):
        options.host = "other"  # type: ignore[misc]
    child = options._replace(quiet=True)
    assert child.host == "pop.example.org" and child.quiet and not options.quiet
    assert "pop.example.org" in repr(options)
    with pytest.raises(TypeError):
        Options(hots="typo")  # type: ignore[call-arg]


# Never needed by a plain-text listing as JSON with a header cache (issue 5: each of these cost
# a purge or a listing several milliseconds before it was avoided).
NOT_FOR_A_LISTING = ["pathlib", "encodings.idna", "email.utils", "tomllib", "hashlib",
                     "dataclasses", "fractions", "ssl", "keyring", "tabulate", "popctl.stores",
                     "popctl.sandbox"]


def test_a_listing_loads_only_what_it_needs(tmp_path: object) -> None:
    from tests.support.scripted_server import ScriptedServer, expect, send

    capa = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"
    script = [send(b"+OK ready\r\n"), expect(b"CAPA\r\n"), send(capa),
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK\r\n+OK\r\n" + capa + b"+OK\r\n1 u1\r\n.\r\n+OK\r\n1 70\r\n.\r\n"),
              expect(b"TOP 1 0\r\n"),
              send(b"+OK\r\nFrom: A <a@example.org>\r\nSubject: hi\r\n"
                   b"Date: Mon, 26 Jan 2026 16:03:00 +0000\r\n\r\n.\r\n"),
              expect(b"QUIT\r\n")]
    with ScriptedServer(script, timeout=10.0) as server:
        args = ["--host", "127.0.0.1", "--port", str(server.port), "--tls", "none",
                "--allow-plaintext", "--user", "alice", "list", "--format", "json"]
        # What the interpreter had before popctl (a development install's site hooks may load
        # pathlib or tempfile themselves) is not popctl's doing.
        code = ("import sys\nbefore = set(sys.modules)\nimport os, contextlib, io\n"
                f"os.environ.update(POPCTL_PASSWORD='s3cret', XDG_CACHE_HOME={str(tmp_path)!r},"
                f" XDG_CONFIG_HOME={str(tmp_path)!r})\n"
                "import popctl.cli\n"
                "out = io.StringIO()\n"
                "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
                f"    popctl.cli.cli.main(args={args!r}, prog_name='popctl')\n"
                "assert '\"subject\": \"hi\"' in out.getvalue(), out.getvalue()\n"
                "print(' '.join(sorted(set(sys.modules) - before)))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "popctl.headers" in loaded and "popctl.cache" in loaded
    assert sorted(set(NOT_FOR_A_LISTING) & loaded) == []


def test_every_command_is_found_by_name_without_importing_the_others() -> None:
    """`popctl --version` imports no command module (group.COMMAND_MODULES names the module of
    each command, imported when it is named); the table must name every command there is."""
    import importlib
    import pkgutil

    import popctl.cli
    from popctl.cli.group import COMMAND_MODULES, COMMAND_SUMMARIES, cli

    for module in pkgutil.iter_modules(popctl.cli.__path__):
        importlib.import_module(f"popctl.cli.{module.name}")
    assert sorted(cli.commands) == sorted(COMMAND_MODULES) == sorted(COMMAND_SUMMARIES)
    for name, module in COMMAND_MODULES.items():
        assert cli.commands[name].callback.__module__ == f"popctl.cli.{module}", name
        # what `popctl --help` lists without importing the command: its help's first paragraph
        summary = inspect.cleandoc(cli.commands[name].help or "").split("\n\n")[0]
        assert COMMAND_SUMMARIES[name] == summary, name
