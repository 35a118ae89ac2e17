"""Start-up stays cheap: ``popctl --version`` and ``--help`` import click and little else (issue 5:
within 1.3x and 1.5x of ``python -c 'import click'``; benchmarks/run.py measures it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from popctl.cli import TLS_MODES, Settings
from popctl.models import TLSMode

# Imported only by the commands that need them, never by `import popctl.cli`.
LAZY = ["popctl.models", "popctl.session", "popctl.query", "popctl.cache", "popctl.formatters",
        "popctl.stores", "popctl.sandbox", "dataclasses", "traceback", "ssl", "socket",
        "keyring", "tabulate", "email", "popctl.config", "popctl.credentials", "tomllib"]


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=60)
    return set(result.stdout.split())


def test_importing_the_cli_loads_nothing_heavy() -> None:
    loaded = _loaded_after("import popctl.cli")
    assert "click" in loaded
    assert sorted(set(LAZY) & loaded) == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["list", "--help"]])
def test_version_and_help_load_nothing_heavy(args: list[str]) -> None:
    loaded = _loaded_after(
        "import contextlib, io, popctl.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    popctl.cli.cli.main(args={args!r}, prog_name='popctl')")
    assert sorted(set(LAZY) & loaded) == []


def test_tls_choices_are_the_tls_modes() -> None:
    assert tuple(mode.value for mode in TLSMode) == TLS_MODES


def test_settings_defaults_copy_and_unknown_names() -> None:
    settings = Settings(host="pop.example.org")
    assert settings.host == "pop.example.org" and settings.port is None and settings.extra == {}
    assert Settings().extra is not Settings().extra
    settings.extra["x"] = 1
    child = settings.copy(extra=settings.extra, quiet=True)
    assert child.host == "pop.example.org" and child.quiet and child.extra is settings.extra
    assert settings.quiet is None
    assert "pop.example.org" in repr(settings)
    with pytest.raises(TypeError):
        Settings(hots="typo")
