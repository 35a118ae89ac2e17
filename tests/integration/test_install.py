"""Both ways README installs popctl leave a manual page (issue 16): ``pip install .`` puts it
where ``man popctl`` looks and in the package; ``pip install -e`` drops the first (an editable
install installs no data_files), and ``popctl --man`` still shows it, from the package.

Each test copies the checkout (its tracked files) and installs the copy into a fresh virtual
environment that sees this Python's packages (click, ...): ~10 s each, mostly pip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.ci import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "man" / "popctl.1").read_bytes()


def _copy_checkout(target: Path) -> Path:
    """The checkout's files as git knows them, symbolic links kept (popctl/man/popctl.1)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        skip_or_fail("not a git checkout: nothing to install from")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if not name or not os.path.lexists(source):
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target / name)
        else:
            shutil.copy2(source, target / name)
    return target


def _install(tmp_path: Path, *pip_args: str) -> Path:
    source = _copy_checkout(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--no-deps", *pip_args, str(source)],
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        skip_or_fail(f"pip could not install popctl (no package index?): {done.stderr[-2000:]}")
    return venv


def _popctl(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy
    return subprocess.run([str(venv / "bin" / "popctl"), *args], capture_output=True,
                          stdin=subprocess.DEVNULL, cwd=cwd, env=env, timeout=60, check=False)


def _imported_from(venv: Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(venv / "bin" / "python"), "-c", "import popctl; "
                           "print(popctl.__file__)"], capture_output=True, text=True, cwd=cwd,
                          env=env, check=True, timeout=60).stdout.strip()


def test_a_regular_install_has_the_page_for_man_and_for_popctl_man(tmp_path: Path) -> None:
    venv = _install(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _imported_from(venv, elsewhere).startswith(str(venv))
    installed = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
        / "site-packages" / "popctl" / "man" / "popctl.1"
    assert installed.is_file() and not installed.is_symlink()
    assert installed.read_bytes() == PAGE
    assert (venv / "share" / "man" / "man1" / "popctl.1").read_bytes() == PAGE  # man popctl
    shutil.rmtree(tmp_path / "src")  # nothing of the checkout is needed any more
    done = _popctl(venv, "--man", cwd=elsewhere)
    assert (done.returncode, done.stdout, done.stderr) == (0, PAGE, b"")


def test_an_editable_install_still_shows_the_page(tmp_path: Path) -> None:
    venv = _install(tmp_path, "--editable")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _imported_from(venv, elsewhere).startswith(str(tmp_path / "src"))
    assert not (venv / "share" / "man" / "man1" / "popctl.1").exists()  # why --man exists
    done = _popctl(venv, "--man", cwd=elsewhere)
    assert (done.returncode, done.stdout, done.stderr) == (0, PAGE, b"")
    help_text = _popctl(venv, "--help", cwd=elsewhere).stdout.decode()
    assert "See popctl(1) or popctl --man." in " ".join(help_text.split())
