"""Shared fixtures: a private Dovecot (tests/fixtures_dovecot.py) and user state in temp dirs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.fixtures_dovecot", "tests.fixtures_servers"]


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
    for name in ("POPCTL_CONFIG", "POPCTL_HOST", "POPCTL_PORT", "POPCTL_USER",
                 "POPCTL_PASSWORD", "POPCTL_TLS", "POPCTL_ACCOUNT", "POPCTL_CA_FILE",
                 "POPCTL_AUTH", "POPCTL_FINGERPRINT", "POPCTL_TIMEOUT",
                 "PYTHON_KEYRING_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)
