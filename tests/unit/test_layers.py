"""Dependencies point one way (docs/ARCHITECTURE.md): each popctl module's imports, read with
``ast`` (including those inside functions and ``if TYPE_CHECKING:``), must respect the layers."""

from __future__ import annotations

import ast
import re
import sys

import pytest

from tests.support.layers import MODULES, PACKAGE, imports, parse_module, top_level_imports


def offending(module: str, forbidden: set[str]) -> set[str]:
    return imports(module) & forbidden


def test_every_module_is_parsed() -> None:
    assert {"cli", "cli.group", "cli.mailbox", "app.runner", "protocol", "transport", "session",
            "output", "output.table", "sandbox", "sandbox.server", "stores", "stores.mbox",
            "defaults"} <= set(MODULES)
    assert "click" in imports("cli.group")
    assert "popctl.output" in imports("cli.console")  # also inside functions
    assert "popctl.output" not in top_level_imports("cli.console")


# The CLI layer is the popctl.cli package and the ``python -m popctl`` entry point, __main__.py.
CLI_LAYER = {m for m in MODULES if m == "cli" or m.startswith("cli.")} | {"__main__"}
APP_LAYER = {m for m in MODULES if m == "app" or m.startswith("app.")}


@pytest.mark.parametrize("module", sorted(set(MODULES) - CLI_LAYER))
def test_nothing_imports_the_cli(module: str) -> None:
    assert not offending(module, {"popctl.cli"})


@pytest.mark.parametrize("module", sorted(set(MODULES) - CLI_LAYER))
def test_nothing_below_the_cli_imports_click(module: str) -> None:
    assert not offending(module, {"click"})


@pytest.mark.parametrize("module", sorted(APP_LAYER))
def test_the_application_leaves_output_to_the_cli(module: str) -> None:
    """Records go out through the UI the command line hands down, in the format it chose."""
    assert not offending(module, {"popctl.output", "tabulate", "keyring"})


def test_defaults_stand_on_the_standard_library() -> None:
    ours = {name for name in imports("defaults") if name.startswith("popctl")}
    assert ours == set()


# What the CLI's modules may import when they are imported (``popctl --help`` imports them all):
# click, the standard library, and these; the rest of popctl only inside a command's body.
CLI_START_UP = {"popctl", "popctl.__version__", "popctl.defaults", "popctl.errors",
                "popctl.display", "popctl.app", "popctl.app.context", "popctl.cli"}


@pytest.mark.parametrize("module", sorted(CLI_LAYER - {"__main__"}))
def test_the_cli_imports_the_application_only_in_command_bodies(module: str) -> None:
    ours = {name for name in top_level_imports(module) if name.split(".")[0] == "popctl"}
    assert {name for name in ours if name not in CLI_START_UP
            and not name.startswith(("popctl.cli.", "popctl.defaults.", "popctl.errors.",
                                     "popctl.display.", "popctl.app.context."))} == set()
    third_party = {name.split(".")[0] for name in top_level_imports(module)} - {
        "popctl", "click", "__future__"} - set(sys.stdlib_module_names)
    assert third_party == set()


def test_protocol_is_sans_io() -> None:
    assert not offending("protocol", {"socket", "ssl", "click", "keyring", "tabulate",
                                      "popctl.transport", "popctl.session", "popctl.cli"})


def test_transport_knows_no_session_or_cli() -> None:
    assert not offending("transport", {"click", "keyring", "tabulate", "popctl.session",
                                       "popctl.cli"})


@pytest.mark.parametrize("module", ["session", "exchange"])
def test_session_knows_no_cli_libraries(module: str) -> None:
    assert not offending(module, {"click", "keyring", "tabulate"})


def test_the_exchange_knows_no_command_meaning() -> None:
    """The I/O pump under Session: commands and replies, not the login or the listings."""
    assert not offending("exchange", {"popctl.session", "popctl.auth", "popctl.listing",
                                      "popctl.query", "popctl.app", "popctl.cli"})


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"output.table"}))
def test_only_the_table_imports_tabulate(module: str) -> None:
    assert not offending(module, {"tabulate"})


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"credentials"}))
def test_only_credentials_imports_keyring(module: str) -> None:
    assert not offending(module, {"keyring", "keyrings"})


def test_config_and_credentials_stand_on_errors_only() -> None:
    for module in ("config", "credentials"):
        ours = {name for name in imports(module) if name.startswith("popctl.")
                and not name.startswith(("popctl.errors.", "popctl.defaults."))}  # their names
        assert ours <= {"popctl.errors", "popctl.defaults"}, module


def test_keyring_is_imported_only_inside_functions() -> None:
    """`popctl --help` and commands that need no secret must not load keyring."""
    body = parse_module("credentials").body
    top = {alias.name.split(".")[0] for node in body
           if isinstance(node, ast.Import | ast.ImportFrom)
           for alias in node.names} | {
        (node.module or "").split(".")[0] for node in body
        if isinstance(node, ast.ImportFrom)}
    assert "keyring" not in top


# The network belongs to the transport, and to the bundled sandbox server's sockets and TLS.
NETWORK_MODULES = {"transport", "sandbox.server", "sandbox.tls"}
# Known breaches, each to be fixed in its module, not allowed here: a strict xfail turns into a
# failure as soon as the module is fixed, so this list cannot outlive them.
KNOWN_NETWORK_BREACHES: dict[str, str] = {}


@pytest.mark.parametrize("module", [
    pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=KNOWN_NETWORK_BREACHES[m]))
    if m in KNOWN_NETWORK_BREACHES else m
    for m in sorted(set(MODULES) - NETWORK_MODULES)
])
def test_only_transport_and_sandbox_touch_the_network(module: str) -> None:
    assert not offending(module, {"socket", "ssl"})


# --- option names belong to the command line ------------------------------------------------------

OPTION_NAME = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def _strings(module: str) -> list[str]:
    """The string constants of a module, but its docstrings."""
    tree = parse_module(module)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]


# The bundled server has its own argparse command line (python -m popctl.sandbox).
BELOW_THE_CLI = sorted(set(MODULES) - CLI_LAYER - {"sandbox.command"})
# Known breaches, each to be fixed in its module (an error with a hint key, or the option's name
# handed in by the caller): a strict xfail fails as soon as the module is fixed.
KNOWN_OPTION_NAMES: dict[str, str] = {}


@pytest.mark.parametrize("module", [
    pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=KNOWN_OPTION_NAMES[m]))
    if m in KNOWN_OPTION_NAMES else m for m in BELOW_THE_CLI])
def test_no_option_names_below_the_cli(module: str) -> None:
    assert [text for text in _strings(module) if OPTION_NAME.search(text)] == []


def test_every_hint_is_in_the_table() -> None:
    from popctl.cli.hints import HINTS

    named = {leaf.value for module in MODULES for node in ast.walk(parse_module(module))
             if isinstance(node, ast.keyword) and node.arg == "hint"
             for leaf in ast.walk(node.value) if isinstance(leaf, ast.Constant)
             and isinstance(leaf.value, str)}
    assert named <= set(HINTS)
    # and none is left over (some keys are chosen in a helper before they reach hint=)
    below = {text for module in BELOW_THE_CLI for text in _strings(module)}
    assert set(HINTS) - below == set()


def test_the_sandbox_protocol_is_sans_io() -> None:
    """The sandbox's POP3 conversation is a line in, a reply out, like the client's protocol."""
    for module in ("sandbox.pop3", "sandbox.maildrop", "sandbox.mailbox"):
        assert not offending(module, {"socket", "ssl", "socketserver", "selectors"}), module


def test_every_third_party_import_is_declared() -> None:
    """`pip install popctl` brings all popctl imports: `popctl --sandbox list`, the README's
    first command, once failed in a fresh environment for want of cryptography."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(PACKAGE.parent / "setup.cfg")

    def declared(lines: str) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", line.strip())[0].lower()
                for line in lines.splitlines() if line.strip()}

    def third_party(modules: set[str]) -> set[str]:
        imported = {name.split(".")[0] for module in modules for name in imports(module)}
        return imported - set(sys.stdlib_module_names) - {"popctl", "__future__"}

    required = declared(parser["options"]["install_requires"])
    assert third_party(set(MODULES) - TUI_LAYER) <= required
    # popctl browse's modules may also use the tui extra (Textual, and Rich, which it brings).
    tui = declared(parser["options.extras_require"]["tui"])
    assert tui == {"textual"}
    assert third_party(TUI_LAYER) <= required | tui | {"rich"}
    assert tui <= declared(parser["options.extras_require"]["test"])  # the tests drive it


# --- popctl browse: the optional full-screen view ------------------------------------------------

TUI_LAYER = {m for m in MODULES if m == "tui" or m.startswith("tui.")}
# The browser's session thread and its filter line need no Textual (tested without it).
TUI_WITHOUT_TEXTUAL = {"tui", "tui.bridge", "tui.filters"}


@pytest.mark.parametrize("module", sorted(set(MODULES) - TUI_LAYER))
def test_only_the_tui_imports_textual(module: str) -> None:
    assert not offending(module, {"textual", "rich"})


@pytest.mark.parametrize("module", sorted(TUI_WITHOUT_TEXTUAL))
def test_the_browsers_session_and_filters_need_no_textual(module: str) -> None:
    assert not offending(module, {"textual", "rich"})


@pytest.mark.parametrize("module", sorted(set(MODULES) - TUI_LAYER - {"cli.browse"}))
def test_only_the_browse_command_imports_the_tui(module: str) -> None:
    assert not offending(module, {"popctl.tui"})


def test_the_browse_command_imports_the_tui_only_when_it_runs() -> None:
    assert "popctl.tui" in imports("cli.browse")
    assert "popctl.tui" not in top_level_imports("cli.browse")


@pytest.mark.parametrize("module", sorted(TUI_LAYER))
def test_the_tui_stands_on_the_application(module: str) -> None:
    """The browser is a user interface beside the command line: it runs the application's
    work (runner, targets, mailbox listing) and formats nothing through the output package."""
    assert not offending(module, {"click", "popctl.cli", "popctl.output", "tabulate",
                                  "keyring", "socket", "ssl"})


# --- the tests' own layout ------------------------------------------------------------------------

TESTS = PACKAGE.parent / "tests"


def test_tests_live_in_their_folders() -> None:
    """unit/, cli/ and integration/ hold the tests, support/ what they share; the root only
    conftest.py (shared fixtures)."""
    assert sorted(path.name for path in TESTS.glob("*.py")) == ["__init__.py", "conftest.py"]
    assert not list((TESTS / "support").glob("test_*.py"))


def test_unit_tests_assert_no_wall_clock_time() -> None:
    """Timing belongs in benchmarks/; a unit test that must not hang uses support.bounded."""
    clock = re.compile("perf_counter[(]|monotonic[(][)] -|elapsed [<]")
    offenders = [f"{path.name}:{n}" for path in sorted((TESTS / "unit").glob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if clock.search(line)]
    assert offenders == []
