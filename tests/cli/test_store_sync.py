"""Stores fsync a message's data at commit, and the directories that got new entries once, in
``sync()``, which ``retr`` calls before QUIT commits any deletion (half the fsyncs of syncing
the directory after every message; issue 5's download target)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner

from popctl.cli import cli
from popctl.stores import DirectoryStore, FileStore, MaildirStore, StoreError
from popctl.stores import base as store_base
from tests.support.dovecot_server import DovecotServer


def _recording() -> tuple[list[str], mock._patch[object]]:
    synced: list[str] = []
    real = store_base._fsync_dir

    def fsync_dir(path: str) -> None:
        synced.append(os.path.abspath(path))
        real(path)

    return synced, mock.patch("popctl.stores.base._fsync_dir", fsync_dir)


@pytest.mark.parametrize("kind", ["maildir", "directory"])
def test_directory_synced_once_per_batch(tmp_path: Path, kind: str) -> None:
    store = MaildirStore(tmp_path / "md") if kind == "maildir" else DirectoryStore(tmp_path)
    folder = str(tmp_path / "md" / "new") if kind == "maildir" else str(tmp_path)
    synced, patch = _recording()
    with patch:
        for n in range(1, 6):
            sink = store.open(n, f"u{n}")
            sink.write(b"Subject: x\r\n\r\nbody\r\n")
            sink.commit()
        assert synced == []  # not after each message
        store.sync()
        assert synced == [folder]
        store.sync()
        assert synced == [folder]  # nothing new: nothing to do
        store.close()
    assert synced == [folder]


def test_close_syncs_what_is_left(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "one.eml")
    synced, patch = _recording()
    with patch:
        sink = store.open(1, None)
        sink.write(b"m\r\n")
        sink.commit()
        store.close()
    assert synced == [str(tmp_path)]


def test_failed_sync_is_a_store_error(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    sink = store.open(1, "u")
    sink.write(b"m\r\n")
    sink.commit()

    def broken(path: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with mock.patch("popctl.stores.base._fsync_dir", broken):
        with pytest.raises(StoreError, match=r"cannot sync directory .*Input/output error"):
            store.sync()
        store.close()  # best effort, never raises


@pytest.mark.dovecot
def test_retr_delete_syncs_before_quit(dovecot_mailbox: DovecotServer, tmp_path: Path) -> None:
    for n in range(3):
        dovecot_mailbox.deliver("alice", b"Subject: m%d\r\n\r\nbody\r\n" % n)

    def fsync_dir(path: str) -> None:
        sys.stderr.write(f"SYNCED {os.path.basename(path)}\n")

    with mock.patch("popctl.stores.base._fsync_dir", fsync_dir):
        result = CliRunner().invoke(cli, [
            "--host", "localhost", "--port", str(dovecot_mailbox.port), "--tls", "starttls",
            "--ca-file", dovecot_mailbox.ca_file, "--user", "alice", "--trace",
            "retr", "--all", "--maildir", str(tmp_path / "md"), "--delete"],
            env={"POPCTL_PASSWORD": dovecot_mailbox.users["alice"]})
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    synced = [i for i, line in enumerate(lines) if line == "SYNCED new"]
    quit_at = next(i for i, line in enumerate(lines) if line.endswith("C: QUIT"))
    assert len(synced) == 1 and synced[0] < quit_at
    assert len(os.listdir(tmp_path / "md" / "new")) == 3
