"""Help, usage errors, the man page and shell completion, as a user meets them (issue 16):
Click's usage errors are one line; a command's --help names the shared options instead of
describing them again, and shows examples; account names complete from the configuration file;
``popctl --man`` shows the manual page wherever popctl was installed from."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from popctl.cli import cli
from tests.support.cli import invoke, outcome
from tests.support.terminal import close_terminal, drain
from tests.unit.test_docs import COMMAND_IDS, COMMANDS

# --- usage errors: one line, status 2 ---------------------------------------------------------

USAGE_ERRORS = [
    (["list", "--no-such-option"], "No such option '--no-such-option' (see popctl list --help)"),
    (["stat", "--jsn"], "No such option '--jsn'. (Did you mean one of: '--json', '--tls'?) "
                        "(see popctl stat --help)"),
    (["--no-such-option", "stat"], "No such option '--no-such-option' (see popctl --help)"),
    (["account", "show"], "Missing argument 'NAME' (see popctl account show --help)"),
    (["password", "set", "work", "hunter2"],
     "Got unexpected extra argument (hunter2) (see popctl password set --help)"),
    (["list", "--larger-than"],
     "Option '--larger-than' requires an argument (see popctl list --help)"),
    (["--port"], "Option '--port' requires an argument (see popctl --help)"),
    (["stat", "--tls", "maybe"], "Invalid value for '--tls': 'maybe' is not one of 'implicit', "
                                 "'starttls', 'none' (see popctl stat --help)"),
    (["top", "1", "x"], "Invalid value for '[LINES]': 'x' is not a valid integer range "
                        "(see popctl top --help)"),
    (["frobnicate"], "No such command 'frobnicate' (see popctl --help)"),
    (["lsit"], "No such command 'lsit'. Did you mean 'list'? (see popctl --help)"),
    (["delete", "3"], "No such command 'delete'. Did you mean 'dele'? (see popctl --help)"),
    (["account", "ad"], "No such command 'ad'. Did you mean 'add'? (see popctl account --help)"),
    (["account", "frobnicate"], "No such command 'frobnicate' (see popctl account --help)"),
    (["sandbox", "serve", "--port", "-1"], "Invalid value for '--port': -1 is not in the range "
                                           "0<=x<=65535 (see popctl sandbox serve --help)"),
]


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS,
                         ids=[" ".join(args) for args, _ in USAGE_ERRORS])
def test_usage_error_is_one_line(args: list[str], message: str) -> None:
    assert outcome(invoke(*args)) == (2, "", f"Error: {message}\n")


@pytest.mark.parametrize("path", [(), ("account",), ("password",), ("sandbox",)],
                         ids=["popctl", "account", "password", "sandbox"])
def test_a_group_alone_shows_its_help(path: tuple[str, ...]) -> None:
    """Nothing typed after a group is not an error to put on one line: its help, as before."""
    result = invoke(*path)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"Usage: {' '.join(('popctl', *path))} [OPTIONS] COMMAND")
    assert "\nCommands:\n" in result.stderr and "Error" not in result.stderr


def test_usage_error_inside_the_shell_is_one_line() -> None:
    result = invoke("--sandbox", "--quiet", "shell", input="stat\nlist --no-such-option\n")
    assert result.exit_code == 2
    assert result.stderr == "Error: No such option '--no-such-option' (see popctl list --help)\n"


# --- --help: the shared options once, examples everywhere ----------------------------------------

SHARED = ["--host", "--port", "--user", "--tls", "--ca-file", "--fingerprint", "--insecure",
          "--timeout", "--session-timeout", "--auth", "--allow-plaintext", "--no-pipelining",
          "--no-cache", "--format", "--json", "--trace", "--debug", "--quiet", "--sandbox",
          "--account", "--all-accounts"]


def _help(*path: str) -> str:
    result = invoke(*path, "--help")
    assert (result.exit_code, result.stderr) == (0, "")
    return result.stdout


def _section(text: str, title: str) -> str:
    """The lines of a help section (``Options:``), up to the next blank line."""
    match = re.search(rf"^{title}:\n(.*?)(?:\n\n|\Z)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def test_popctl_help_describes_the_shared_options() -> None:
    options = _section(_help(), "Options")
    for name in SHARED:
        assert re.search(rf"^  (-\w, )?{name}\b", options, re.MULTILINE), name
    assert "Global options" not in _help()


@pytest.mark.parametrize("path", [("list",), ("stat",), ("shell",), ("account", "test")],
                         ids=["list", "stat", "shell", "account test"])
def test_command_help_names_the_shared_options_in_one_short_section(
        path: tuple[str, ...]) -> None:
    text = _help(*path)
    options = _section(text, "Options")
    for name in SHARED:
        assert not re.search(rf"(^|\s){name}\b", options), f"{name} described again"
    shared = _section(text, "Global options")
    assert len(shared.splitlines()) <= 6
    words = " ".join(shared.split())
    assert "popctl --help" in words
    assert re.findall(r"--[a-z-]+", words.partition("popctl --help")[2]) == SHARED
    assert len(text.splitlines()) < 60


def test_command_help_keeps_its_own_options_described() -> None:
    options = _section(_help("list"), "Options")
    assert re.search(r"^  --larger-than SIZE +Only messages larger than SIZE", options,
                     re.MULTILINE)
    assert re.search(r"^  --sizes-only +Only number and size", options, re.MULTILINE)
    # account add's own --host is its own option, not the shared one: described.
    assert re.search(r"^  -H, --host TEXT +POP3 server host name",
                     _section(_help("account", "add"), "Options"), re.MULTILINE)
    assert _section(_help("account", "list"), "Global options").split() == [
        "Accepted", "here", "too,", "and", "described", "under", "popctl", "--help:",
        "--format,", "--json,", "--debug,", "--quiet."]


def test_help_lines_fit_80_columns() -> None:
    for path in COMMANDS:
        for line in _help(*path).splitlines():
            assert len(line) <= 80, (path, line)


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=["popctl", *COMMAND_IDS])
def test_every_command_help_has_examples(path: tuple[str, ...]) -> None:
    text = _help(*path)
    match = re.search(r"^  Examples?:\n((?:    popctl .*\n|    .*\n)+)", text, re.MULTILINE)
    assert match, f"popctl {' '.join(path)} --help has no Example section"
    lines = [line.strip() for line in match.group(1).splitlines()]
    command = " ".join(("popctl", *path))
    assert any(command in line for line in lines), (command, lines)


def test_the_walk_sees_every_command() -> None:
    assert len(COMMANDS) >= 20 and isinstance(cli, click.Group)


# --- shell completion of account names ----------------------------------------------------------

CONFIG = """\
default = "work"
[accounts.work]
host = "pop.example.org"
user = "me"
[accounts.home]
host = "pop.example.net"
user = "me"
[accounts.wife]
host = "pop.example.net"
user = "her"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    return path


def complete(line: str, config: Path) -> list[str]:
    """What bash completes at the end of ``line``, through Click's completion protocol (the
    script `eval "$(_POPCTL_COMPLETE=bash_source popctl)"` installs asks exactly this)."""
    words = line.split()
    result = CliRunner().invoke(cli, [], prog_name="popctl", env={
        "_POPCTL_COMPLETE": "bash_complete", "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - (0 if line.endswith(" ") else 1)),
        "POPCTL_CONFIG": str(config)})
    assert (result.exit_code, result.stderr) == (0, "")
    return [item.partition(",")[2] for item in result.stdout.splitlines() if item]


@pytest.mark.parametrize(("line", "expected"), [
    ("popctl --account ", ["work", "home", "wife"]),
    ("popctl -a w", ["work", "wife"]),
    ("popctl list --account h", ["home"]),
    ("popctl stat -a work -a ", ["work", "home", "wife"]),
    ("popctl account show ", ["work", "home", "wife"]),
    ("popctl account remove wi", ["wife"]),
    ("popctl account test h", ["home"]),
    ("popctl password set w", ["work", "wife"]),
    ("popctl password delete ", ["work", "home", "wife"]),
    ("popctl account show x", []),
])
def test_account_names_complete(line: str, expected: list[str], config: Path) -> None:
    assert complete(line, config) == expected


def test_a_new_account_name_is_not_completed(config: Path) -> None:
    assert complete("popctl account add ", config) == []


def test_a_broken_configuration_completes_nothing_and_says_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "config.toml"
    broken.write_text("[accounts.work\n")
    broken.chmod(0o600)
    assert complete("popctl --account ", broken) == []
    assert complete("popctl account show ", tmp_path / "missing.toml") == []


def test_the_readme_completion_line_gives_a_script(tmp_path: Path) -> None:
    """`eval "$(_POPCTL_COMPLETE=bash_source popctl)"`, as README and popctl(1) say."""
    done = subprocess.run([sys.executable, "-m", "popctl"], capture_output=True, timeout=60,
                          env={**os.environ, "_POPCTL_COMPLETE": "bash_source"}, cwd=tmp_path,
                          check=False)
    assert (done.returncode, done.stderr) == (0, b"")
    assert b"_POPCTL_COMPLETE=bash_complete" in done.stdout
    assert b"complete -o nosort -F _popctl_completion popctl" in done.stdout


# --- popctl --man ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "man" / "popctl.1").read_text(encoding="utf-8")


def test_the_package_holds_the_one_manual_page() -> None:
    """What a wheel ships as package data is man/popctl.1 itself (a link, not a copy to keep
    in step)."""
    inside = ROOT / "popctl" / "man" / "popctl.1"
    assert inside.is_symlink() and inside.resolve() == (ROOT / "man" / "popctl.1").resolve()


def test_man_prints_the_page_when_not_on_a_terminal(tmp_path: Path) -> None:
    assert outcome(invoke("--man")) == (0, PAGE, "")
    done = subprocess.run([sys.executable, "-m", "popctl", "--man"], capture_output=True,
                          stdin=subprocess.DEVNULL, cwd=tmp_path, timeout=60, check=False)
    assert (done.returncode, done.stdout.decode(), done.stderr) == (0, PAGE, b"")


def test_help_points_to_the_man_page_both_ways() -> None:
    text = " ".join(_help().split())
    assert "See popctl(1) or popctl --man." in text
    assert "--man Show the manual page, popctl(1), and exit" in text


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_on_a_terminal_shows_it_through_man() -> None:
    master, slave = pty.openpty()
    env = {**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"}
    process = subprocess.Popen([sys.executable, "-m", "popctl", "--man"], stdin=slave,
                               stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    shown = b""
    try:
        while process.poll() is None or select.select([master], [], [], 0.2)[0]:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                shown += chunk
        process.wait(timeout=60)
        shown += drain(master)
    finally:
        close_terminal(process, master)
    # Formatted by man (bold by overstrike or escapes taken off): no roff left.
    text = re.sub(r".\x08|\x1b\[[0-9;]*m", "", shown.decode("utf-8", "replace"))
    assert process.returncode == 0, text[-2000:]
    assert "popctl - manage a POP3 mailbox remotely without downloading it" in text
    assert "SHELL COMPLETION" in text and ".SH" not in text and ".TH" not in text
