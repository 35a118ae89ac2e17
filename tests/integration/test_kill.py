"""No loss under SIGKILL: `retr --all --delete` into a Maildir, an output directory and an mbox,
killed at random moments (seeded) against a real Dovecot (see tests/support/kill_harness.py);
and `retr --new --keep-days 0` (issue 14), where nothing may be stored twice either.

CI runs POPCTL_KILL_RUNS (default 10) kills per store; scripts/kill_test.py runs many more and
prints the figures docs/RELIABILITY.md reports. Also here: the mbox recovery that makes a kill
during an append harmless (a torn last record cut off, popctl's own stale dotlock taken over).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from popctl.stores import MboxStore, StoreError
from tests.support.dovecot_server import DovecotServer
from tests.support.kill_harness import Campaign
from tests.support.quirky_server import Quirk, QuirkyServer
from tests.support.stored import stored_messages

RUNS = int(os.environ.get("POPCTL_KILL_RUNS", "10"))
QUIRK_RUNS = max(2, RUNS // 2)  # kills per quirky server: the suite stays fast
SEED = int(os.environ.get("POPCTL_KILL_SEED", "20261126"))


@pytest.mark.dovecot
@pytest.mark.parametrize("kind", ["maildir", "output-dir", "mbox"])
def test_no_loss_under_sigkill(dovecot_mailbox: DovecotServer, kind: str,
                               tmp_path: Path) -> None:
    figures = Campaign(dovecot_mailbox, kind, tmp_path, seed=SEED + len(kind),
                       large_size=1 << 20).run(RUNS)
    print(figures.line())
    assert figures.lost == 0
    assert figures.runs == RUNS and figures.kills + figures.finished == RUNS
    assert figures.kills >= RUNS // 2  # the delays fall inside a run, so most runs are killed


# Issue 14: kills per store for `retr --new --keep-days 0`, at least 100 over the three.
NEW_KILLS = int(os.environ.get("POPCTL_NEW_KILLS", "34"))


@pytest.mark.dovecot
@pytest.mark.parametrize("kind", ["maildir", "output-dir", "mbox"])
def test_new_stores_every_message_exactly_once_under_sigkill(dovecot_mailbox: DovecotServer,
                                                             kind: str, tmp_path: Path) -> None:
    """`retr --new --keep-days 0` killed at random moments, mail arriving between the runs:
    nothing lost, nothing partial, and no message stored twice (a message stored by a run
    killed before it was recorded is recognised in the store by the next run)."""
    campaign = Campaign(dovecot_mailbox, kind, tmp_path, seed=SEED + 14 + len(kind),
                        messages=30, large=1, large_size=256 << 10, new=True)
    figures = campaign.run(NEW_KILLS, epoch=NEW_KILLS, kills=NEW_KILLS)
    print(figures.line())
    assert figures.lost == 0 and figures.duplicates == 0
    assert figures.kills >= NEW_KILLS


@pytest.mark.parametrize("quirk", ["no-uidl", "shared-uids"])
def test_no_loss_under_sigkill_when_file_names_collide(quirk: Quirk, tmp_path: Path) -> None:
    """Issue 11: --output-dir against a server without UIDL (every run's messages are numbered
    from 1 again) or with UIDs shared by several messages, killed at random moments."""
    with QuirkyServer(quirk) as server:
        campaign = Campaign(server, "output-dir", tmp_path, seed=SEED + len(quirk),
                            large_size=1 << 20, keep=True)
        figures = campaign.run(QUIRK_RUNS, epoch=2)  # runs to the end between the kills
    print(figures.line())
    assert figures.lost == 0
    assert figures.duplicates == 0  # the same bytes are found where an earlier run put them
    assert figures.kills + figures.finished == QUIRK_RUNS
    assert figures.kills >= QUIRK_RUNS // 2


# --- the mbox after a kill -------------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


RECORD = b"From a@example.org Thu Nov 26 10:00:00 2026\nSubject: one\n\nbody\n\n"


def _left_by_a_kill(tmp_path: Path, tail: bytes, start: int, end: int,
                    host: str | None = None, pid: int | None = None) -> Path:
    path = tmp_path / "mbox"
    path.write_bytes(RECORD + tail)
    owner = f"{pid or _dead_pid()}\npopctl {host or os.uname().nodename}\n"
    (tmp_path / "mbox.lock").write_text(f"{owner}append {start} {end}\n")
    return path


def test_torn_record_is_cut_off_and_the_stale_lock_taken_over(tmp_path: Path) -> None:
    torn = b"From b@example.org Thu Nov 26 10:00:01 2026\nSubject: two\n\nhalf a bo"
    path = _left_by_a_kill(tmp_path, torn, len(RECORD), len(RECORD) + 500)
    with MboxStore(path, lock_timeout=0.2) as store:
        assert path.read_bytes() == RECORD
        sink = store.open(2, None)
        sink.write(b"Subject: three\r\n\r\nbody\r\n")
        sink.commit()
    assert not (tmp_path / "mbox.lock").exists()
    assert stored_messages("mbox", path) == [b"Subject: one\r\n\r\nbody\r\n",
                                             b"Subject: three\r\n\r\nbody\r\n"]


def test_the_tail_of_an_older_note_is_not_taken_for_offsets(tmp_path: Path) -> None:
    # A takeover killed between overwriting the note and cutting it: the new owner lines are
    # followed by what is left of the old note's offsets, which must not cut anything.
    torn = b"From b@example.org Thu Nov 26 10:00:01 2026\nSubject: two\n\nhalf a bo"
    path = tmp_path / "mbox"
    path.write_bytes(torn)
    owner = f"{_dead_pid()}\npopctl {os.uname().nodename}\n"
    for leftover in ("0 500\n", "pend 0 500\n", "append 0 500 0 500\n"):
        (tmp_path / "mbox.lock").write_text(owner + leftover)
        MboxStore(path, lock_timeout=0.2).close()
        assert path.read_bytes() == torn
        assert not (tmp_path / "mbox.lock").exists()


def test_a_finished_append_is_kept(tmp_path: Path) -> None:
    second = b"From b@example.org Thu Nov 26 10:00:01 2026\nSubject: two\n\nbody\n\n"
    path = _left_by_a_kill(tmp_path, second, len(RECORD), len(RECORD) + len(second))
    MboxStore(path, lock_timeout=0.2).close()
    assert path.read_bytes() == RECORD + second


def test_a_record_someone_else_appended_is_never_cut(tmp_path: Path) -> None:
    tail = b"From b@example.org Thu\nSubject: torn\n\nhal\nFrom other@example.org Thu\n\nx\n\n"
    path = _left_by_a_kill(tmp_path, tail, len(RECORD), len(RECORD) + 5000)
    MboxStore(path, lock_timeout=0.2).close()
    assert path.read_bytes() == RECORD + tail


def test_a_live_owner_or_another_host_keeps_its_lock(tmp_path: Path) -> None:
    torn = b"From b@example.org Thu Nov 26 10:00:01 2026\nSubject: two\n\nhalf"
    for kwargs in ({"pid": os.getpid()}, {"host": "elsewhere.example"}):
        path = _left_by_a_kill(tmp_path, torn, len(RECORD), len(RECORD) + 500,
                               **kwargs)  # type: ignore[arg-type]
        with pytest.raises(StoreError, match=r"lock file .* exists"):
            MboxStore(path, lock_timeout=0.2)
        assert path.read_bytes() == RECORD + torn
        assert (tmp_path / "mbox.lock").exists()

