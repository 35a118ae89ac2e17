"""Pytest fixtures for a private Dovecot POP3 server (see tests/support/dovecot_server.py).

Loaded through ``pytest_plugins = ["tests.support.fixtures_dovecot"]`` in tests/conftest.py
(or ``-p tests.support.fixtures_dovecot``).  Mark tests that use them ``@pytest.mark.dovecot``.

* ``dovecot`` (session): one server for the whole run, stopped at the end
  (its teardown fails if Dovecot had to be killed).  Without a dovecot binary
  the test is skipped, except under CI (``CI`` set and non-empty), where it
  fails: CI must never skip these tests.
* ``dovecot_mailbox`` (function): the same server with ``alice``'s mailbox
  emptied; the test then ``deliver``s what it needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.ci import skip_or_fail
from tests.support.dovecot_server import DovecotServer, find_dovecot, start_dovecot

MAILBOX_USER = "alice"


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A private Dovecot POP3 server on 127.0.0.1, shared by the whole test session."""
    if find_dovecot() is None:
        skip_or_fail("dovecot is not installed (apt-get install dovecot-core dovecot-pop3d)")
    server = start_dovecot(tmp_path_factory.mktemp("dovecot"))
    try:
        yield server
    finally:
        server.stop()
    if server.killed_on_stop:
        pytest.fail(
            "Dovecot did not shut down cleanly: leftover processes had to be killed\n"
            + server.log_tail(),
            pytrace=False,
        )


@pytest.fixture
def dovecot_mailbox(dovecot: DovecotServer) -> Iterator[DovecotServer]:
    """The shared server with an empty, fresh mailbox for ``alice``."""
    dovecot.reset(MAILBOX_USER)
    yield dovecot
