"""The documentation cannot drift from the code: every command has help, and the man page names
every command, option, exit status and environment variable the command line has."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from popctl.cli import cli
from popctl.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
MAN_PAGE = ROOT / "man" / "popctl.1"
# Every module of the package: any of them may read the environment for the command line.
ENV_SOURCES = sorted((ROOT / "popctl").rglob("*.py"))
README = ROOT / "README.md"


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below ``command`` (nested groups included), e.g. ("sandbox", "serve")."""
    found = [path] if path else []
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            found += _walk(sub, (*path, name))
    return found


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, name
        command = sub
    return command


COMMANDS = _walk(cli)
COMMAND_IDS = [" ".join(path) for path in COMMANDS]


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.get_params(click.Context(command))
            if isinstance(p, click.Option)]


def _long_names(command: click.Command) -> set[str]:
    return {name for option in _options(command)
            for name in (*option.opts, *option.secondary_opts) if name.startswith("--")}


# --- reading the man page ---------------------------------------------------------------------


def _plain(roff: str) -> str:
    """Roff text without the escapes that would hide a word: ``\\-`` is ``-``, font changes,
    zero-width ``\\&`` and quotes around macro arguments disappear."""
    text = roff.replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")
    text = re.sub(r"\\f(?:\[[^\]]*\]|\(..|.)", "", text)
    return text.replace('"', "")


def _sections() -> dict[str, list[str]]:
    """Section name (``.SH``) -> its roff source lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in MAN_PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith(".SH"):
            current = sections.setdefault(_plain(line[3:]).strip(), [])
        else:
            current.append(line)
    return sections


def _tags(lines: list[str]) -> list[list[str]]:
    """The words of each ``.TP`` tag (the line after ``.TP``), its macro name dropped."""
    tags = []
    for before, line in itertools.pairwise(lines):
        if before.strip() == ".TP":
            if line.startswith("."):
                line = line.partition(" ")[2]
            tags.append(_plain(line).replace(",", " ").split())
    return tags


@pytest.fixture(scope="module")
def sections() -> dict[str, list[str]]:
    return _sections()


def test_man_page_has_the_sections(sections: dict[str, list[str]]) -> None:
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "MESSAGE SELECTION",
                 "OUTPUT FORMATS", "SECURITY", "EXIT STATUS", "ENVIRONMENT", "FILES",
                 "EXAMPLES", "SHELL COMPLETION", "SEE ALSO"):
        assert name in sections, f"man/popctl.1 has no .SH {name}"


# --- commands -------------------------------------------------------------------------------


def test_the_walk_finds_nested_commands() -> None:
    assert ("list",) in COMMANDS
    assert ("sandbox", "serve") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=COMMAND_IDS)
def test_command_has_help(path: tuple[str, ...]) -> None:
    command = _command(path)
    assert (command.help or "").strip(), f"popctl {' '.join(path)} has no help text"


@pytest.mark.parametrize("path", COMMANDS, ids=COMMAND_IDS)
def test_options_have_help(path: tuple[str, ...]) -> None:
    command = _command(path)
    missing = [option.opts[0] for option in _options(command)
               if not option.hidden and not (option.help or "").strip()]
    assert not missing, f"popctl {' '.join(path)}: options without help: {missing}"


@pytest.mark.parametrize("path", COMMANDS, ids=COMMAND_IDS)
def test_command_in_man_page(path: tuple[str, ...], sections: dict[str, list[str]]) -> None:
    """A command is documented by a ``.TP`` tag in COMMANDS starting ``popctl PATH`` (a group
    by the tags of its subcommands)."""
    wanted = ["popctl", *path]
    tags = _tags(sections["COMMANDS"])
    assert any(tag[:len(wanted)] == wanted for tag in tags), \
        f"man/popctl.1 COMMANDS has no entry for popctl {' '.join(path)}"


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=["popctl", *COMMAND_IDS])
def test_options_in_man_page(path: tuple[str, ...], sections: dict[str, list[str]]) -> None:
    text = _plain("\n".join(sections["OPTIONS"]))
    missing = sorted(name for name in _long_names(_command(path))
                     if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text))
    assert not missing, f"man/popctl.1 OPTIONS lacks {missing} (popctl {' '.join(path)})"


def test_every_option_in_the_readme() -> None:
    """README names every long option some command has (issue 16: --insecure was only in a
    list of what --sandbox refuses, --no-pipelining nowhere); popctl(1) describes them."""
    text = README.read_text(encoding="utf-8")
    names = {name for path in [(), *COMMANDS] for name in _long_names(_command(path))}
    assert {"--insecure", "--man", "--sizes-only", "--password-command"} <= names
    missing = sorted(name for name in names
                     if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text))
    assert not missing, f"README.md never names {missing}"


# --- exit status and environment --------------------------------------------------------------


def test_exit_codes_in_man_page(sections: dict[str, list[str]]) -> None:
    documented = {tag[0] for tag in _tags(sections["EXIT STATUS"]) if tag}
    missing = [f"{code.value} ({code.name})" for code in ExitCode
               if str(code.value) not in documented]
    assert not missing, f"man/popctl.1 EXIT STATUS lacks {missing}"


def _environment_variables() -> set[str]:
    """Every environment variable popctl reads: ``envvar=`` of the command line's options and
    the ``POPCTL_*`` names any module looks up itself."""
    source = "\n".join(path.read_text(encoding="utf-8") for path in ENV_SOURCES)
    names = set(re.findall(r"""envvar\s*=\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""", source))
    for listed in re.findall(r"envvar\s*=\s*[\[(]([^\])]*)[\])]", source):
        names.update(re.findall(r"""["']([A-Za-z_][A-Za-z0-9_]*)["']""", listed))
    names.update(re.findall(
        r"""os\.(?:environ\.get\(|getenv\(|environ\[)\s*["'](POPCTL_[A-Z0-9_]+)["']""", source))
    for path in [(), *COMMANDS]:  # and what Click itself knows, in case the source changes shape
        for option in _options(_command(path)):
            if isinstance(option.envvar, str):
                names.add(option.envvar)
            elif option.envvar:
                names.update(option.envvar)
    return names


def test_environment_variables_found() -> None:
    names = _environment_variables()
    # If the patterns stopped matching, the next test would pass without checking anything.
    assert {"POPCTL_HOST", "POPCTL_PASSWORD", "POPCTL_DEBUG"} <= names


def test_environment_in_man_page(sections: dict[str, list[str]]) -> None:
    documented = {tag[0] for tag in _tags(sections["ENVIRONMENT"]) if tag}
    missing = sorted(_environment_variables() - documented)
    assert not missing, f"man/popctl.1 ENVIRONMENT lacks {missing}"


# --- the man page renders, the README starts right --------------------------------------------


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_renders_without_warnings() -> None:
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(MAN_PAGE)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stderr == ""


def test_readme_first_code_block() -> None:
    match = re.search(r"^```[^\n]*\n(.*?)^```", README.read_text(encoding="utf-8"),
                      re.MULTILINE | re.DOTALL)
    assert match is not None, "README.md has no fenced code block"
    block = match.group(1)
    assert "popctl --sandbox list" in block
    # README says python3 -m pytest, as .ci/run runs it; either spelling is the test command.
    assert re.search(r"\bpython3? -m pytest\b", block)
