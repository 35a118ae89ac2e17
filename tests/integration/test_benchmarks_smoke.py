"""benchmarks/run.py keeps working: its --quick mode (small N, one run, no timing asserted) runs
every job against a private Dovecot and prints the figures and the targets table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ci import skip_or_fail
from tests.support.dovecot_server import find_dovecot

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.dovecot
def test_quick_benchmark_run(tmp_path: Path) -> None:
    if find_dovecot() is None:
        skip_or_fail("dovecot is not installed")
    output = tmp_path / "PERFORMANCE.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--output", str(output)],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("### Figures", "### Scale", "### Start-up", "### Targets (issue 5)"):
        assert heading in result.stdout
    for job in ("| headers | popctl list |", "| purge | popctl dele", "| download | popctl retr",
                "| huge | popctl retr 1", "| warm cache | popctl list (warm cache) (TOP=0) |",
                "| purge | popctl dele --larger-than 1M (default --auth auto) |",
                "### On the wire", "| top 3 |", "| purge, --auth auto |"):
        assert job in result.stdout, job
    text = output.read_text(encoding="utf-8")
    assert text.startswith("# popctl performance") and "### Targets (issue 5)" in text
