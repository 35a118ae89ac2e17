"""Fixtures every test folder shares: user state in temp dirs (autouse), test keyrings, a tiny
file system; the servers' fixtures come from tests/support (fixtures_dovecot, fixtures_servers)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail
from keyrings.alt.file import PlaintextKeyring

pytest_plugins = ["tests.support.fixtures_dovecot", "tests.support.fixtures_servers"]


@pytest.fixture(autouse=True)
def _isolated_user_state(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the real user's config, cache or keyring. Files are made with
    umask 022 whatever the runner's: popctl refuses a configuration others could write."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    # The configuration file is the XDG one, $XDG_CONFIG_HOME/popctl/config.toml, in a
    # directory made as `account add` makes it: a POPCTL_CONFIG naming a file that does not
    # exist is an error (popctl.config.load).
    (home / ".config").mkdir(mode=0o700)
    (home / ".config" / "popctl").mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))  # keyrings.alt's files
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))  # retr --new's state
    for name in ("POPCTL_CONFIG", "POPCTL_HOST", "POPCTL_PORT", "POPCTL_USER",
                 "POPCTL_PASSWORD", "POPCTL_TLS", "POPCTL_ACCOUNT", "POPCTL_CA_FILE",
                 "POPCTL_AUTH", "POPCTL_FINGERPRINT", "POPCTL_TIMEOUT",
                 "PYTHON_KEYRING_BACKEND", "POPCTL_NOW"):
        monkeypatch.delenv(name, raising=False)
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def file_keyring() -> Iterator[PlaintextKeyring]:
    """keyrings.alt's PlaintextKeyring, its file under the test's temporary HOME (keyring keeps
    one backend per process: the previous one is put back)."""
    previous = keyring.get_keyring()
    ring = PlaintextKeyring()
    assert str(ring.file_path).startswith(os.environ["HOME"])
    keyring.set_keyring(ring)
    try:
        yield ring
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """What a server without a desktop has: keyring's fail backend."""
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def tiny_fs() -> Iterator[Path]:
    """A 64 KiB tmpfs: room for one of the 40 KB test messages, not two."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE test covers the rest)")
    point = Path(subprocess.run(["mktemp", "-d", "/tmp/popctl-full-XXXXXX"], check=True,
                                capture_output=True, text=True).stdout.strip())
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        point.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True)
        point.rmdir()
