"""Pytest fixtures for the real POP3 servers of the interop suite (see
tests/support/pop3_servers.py).

Loaded through ``pytest_plugins`` in tests/conftest.py. Mark tests ``@pytest.mark.interop``.

* ``mailutils_server``, ``mpopd_server``, ``popa3d_server`` (session): one private server each
  for the whole run, stopped at the end. When a server cannot be run here the test is
  skipped, except under CI (``CI`` set and non-empty), where it fails.
* ``pop3_server`` (function, parametrized indirectly by server name: ``dovecot``,
  ``mailutils``, ``mpopd``, ``popa3d``): that server with its test mailbox emptied, as a
  ``Pop3Server``. Dovecot is the one of tests/support/fixtures_dovecot.py, seen through an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.ci import skip_or_fail
from tests.support.dovecot_server import DovecotServer
from tests.support.pop3_servers import (
    Pop3Server,
    ServerNotFound,
    start_mailutils,
    start_mpopd,
    start_popa3d,
)

SERVERS = ("dovecot", "mailutils", "mpopd", "popa3d")
DOVECOT_USER = "bob"  # ASCII password: USER/PASS may carry it (no UTF8 USER in Dovecot's CAPA)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: the same scenarios against every real POP3 server we can run")


def _serve(start: Callable[[Path], Pop3Server],
           tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Pop3Server]:
    try:
        server = start(tmp_path_factory.mktemp(name))
    except ServerNotFound as e:
        skip_or_fail(str(e))
        raise  # not reached
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mailutils_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pop3Server]:
    yield from _serve(start_mailutils, tmp_path_factory, "mailutils")


@pytest.fixture(scope="session")
def mpopd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pop3Server]:
    yield from _serve(start_mpopd, tmp_path_factory, "mpopd")


@pytest.fixture(scope="session")
def popa3d_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pop3Server]:
    yield from _serve(start_popa3d, tmp_path_factory, "popa3d")


@dataclass
class DovecotAdapter(Pop3Server):
    """The shared private Dovecot, as a Pop3Server (user bob; certificate for localhost)."""

    dovecot: DovecotServer | None = field(default=None, repr=False)

    def deliver(self, message: bytes) -> None:
        assert self.dovecot is not None
        self.dovecot.deliver(DOVECOT_USER, message.replace(b"\r\n", b"\n"))

    def reset(self) -> None:
        assert self.dovecot is not None
        self.dovecot.reset(DOVECOT_USER)

    def stop(self) -> None:
        """The dovecot fixture owns the server."""


def _dovecot(server: DovecotServer) -> DovecotAdapter:
    return DovecotAdapter(
        name="dovecot", host="localhost", port=server.port, tls_port=server.tls_port,
        ca_file=server.ca_file, login=DOVECOT_USER, password=server.users[DOVECOT_USER],
        root=server.root, log_file=server.log_file, dovecot=server)


@pytest.fixture
def pop3_server(request: pytest.FixtureRequest) -> Iterator[Pop3Server]:
    """The server named by the test's parameter, with an empty test mailbox."""
    name = request.param
    if name == "dovecot":
        server: Pop3Server = _dovecot(request.getfixturevalue("dovecot"))
    else:
        server = request.getfixturevalue(f"{name}_server")
    server.reset()
    yield server
