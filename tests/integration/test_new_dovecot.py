"""Issue 14 against a real Dovecot: `retr --new` runs with mail arriving between them deliver
each message exactly once; `--keep-days 0` after a step of the (fake) clock deletes what was
fetched before and not what is new."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result

from tests.support.cli import invoke
from tests.support.dovecot_server import DovecotServer
from tests.support.stored import stored_messages

pytestmark = pytest.mark.dovecot

USER = "alice"
T0 = 1_800_000_000


def message(n: int) -> bytes:
    return (b"From: Sender %d <s%d@example.org>\r\nTo: alice@example.org\r\nSubject: new %d\r\n"
            b"Message-ID: <new-%d@test>\r\n\r\nbody of message %d\r\n" % (n, n, n, n, n))


def fetch(server: DovecotServer, store: Path, *extra: str, now: int | None = None) -> Result:
    return invoke("--host", "localhost", "--port", str(server.port), "--tls", "starttls",
                  "--ca-file", server.ca_file, "--user", USER, "retr", "--new", "--maildir",
                  str(store), *extra,
                  env={"POPCTL_PASSWORD": server.users[USER],
                       "POPCTL_NOW": str(now) if now is not None else None})


def on_server(server: DovecotServer) -> list[bytes]:
    server._wait_for_mail_processes(10.0)  # the session may still be ending
    maildir = server.maildir(USER)
    files = [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]
    return sorted(p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for p in files)


def test_three_runs_deliver_each_message_exactly_once(dovecot_mailbox: DovecotServer,
                                                       tmp_path: Path) -> None:
    store = tmp_path / "Maildir"
    delivered: list[bytes] = []
    for batch, count in enumerate([3, 2, 0, 1]):
        for _ in range(count):
            delivered.append(message(len(delivered) + 1))
            dovecot_mailbox.deliver(USER, delivered[-1])
        result = fetch(dovecot_mailbox, store)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == (f"{count} new message(s) stored in {store}\n" if count else
                                 "no new messages\n"), f"run {batch + 1}"
        assert stored_messages("maildir", store) == sorted(delivered)
    assert on_server(dovecot_mailbox) == sorted(delivered)  # left on the server


def test_keep_days_zero_after_a_clock_step_deletes_only_what_was_fetched_before(
        dovecot_mailbox: DovecotServer, tmp_path: Path) -> None:
    store = tmp_path / "Maildir"
    old = [message(n) for n in (1, 2, 3)]
    for data in old:
        dovecot_mailbox.deliver(USER, data)
    first = fetch(dovecot_mailbox, store, "--keep-days", "0", now=T0)
    assert (first.exit_code, first.stderr) == (0, f"3 new message(s) stored in {store}\n")
    assert on_server(dovecot_mailbox) == sorted(old)  # nothing was stored before this run
    new = [message(n) for n in (4, 5)]
    for data in new:
        dovecot_mailbox.deliver(USER, data)
    dry = fetch(dovecot_mailbox, store, "--keep-days", "0", "--dry-run", now=T0 + 60)
    assert (dry.exit_code, dry.stderr) == (
        0, "dry run: 2 new message(s) would be fetched, 3 deleted from the server\n")
    assert on_server(dovecot_mailbox) == sorted(old + new)
    second = fetch(dovecot_mailbox, store, "--keep-days", "0", now=T0 + 60)
    assert (second.exit_code, second.stderr) == (
        0, f"2 new message(s) stored in {store}; 3 deleted from the server\n")
    assert on_server(dovecot_mailbox) == sorted(new)
    assert stored_messages("maildir", store) == sorted(old + new)
    # The deleted messages' UIDs were forgotten; the new ones are recorded.
    listed = invoke("--host", "localhost", "--port", str(dovecot_mailbox.port), "--tls",
                    "starttls", "--user", USER, "seen", "list", "--maildir", str(store),
                    "--format", "csv")
    assert len(listed.stdout.splitlines()) == 1 + len(new)
