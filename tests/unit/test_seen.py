"""popctl.seen: the journal `retr --new` keeps per account and store (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popctl.errors import ExitCode
from popctl.seen import (
    SeenState,
    StateBusyError,
    StateError,
    escape,
    journal_path,
    state_dir,
    store_key,
    unescape,
)

KEY = "alice@pop.example:995 maildir /home/alice/Maildir"


@settings(max_examples=200)
@given(st.text())
def test_escape_round_trips_and_is_one_printable_word(text: str) -> None:
    escaped = escape(text)
    assert unescape(escaped) == text
    assert all("!" <= c <= "~" for c in escaped)


def test_odd_uids_survive_a_reload(tmp_path: Path) -> None:
    uids = ["plain", "with space", "100%", "uid-\udcff", "Grüße", "a\tb"]
    path = str(tmp_path / "seen.log")
    with SeenState(KEY, path) as seen:
        for n, uid in enumerate(uids):
            seen.stored_now(uid, 1000 + n)
    with SeenState(KEY, path) as seen:
        assert seen.stored == {uid: 1000 + n for n, uid in enumerate(uids)}


def test_the_first_store_counts_and_forget_removes(tmp_path: Path) -> None:
    path = str(tmp_path / "seen.log")
    with SeenState(KEY, path) as seen:
        seen.stored_now("u1", 100)
        seen.stored_now("u1", 200)  # recognised again later: still first stored at 100
        seen.will_store("u2", "1.M1P1.host")
        seen.stored_now("u3", 300)
        assert seen.forget(["u3", "nope"]) == ["u3"]
        seen.deleting(["u1"])
    with SeenState(KEY, path) as seen:
        assert (seen.stored, seen.pending, seen.being_deleted) == (
            {"u1": 100}, {"u2": "1.M1P1.host"}, {"u1"})


def test_a_torn_last_line_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "seen.log"
    with SeenState(KEY, str(path)) as seen:
        seen.stored_now("u1", 100)
    path.write_bytes(path.read_bytes() + b"S 200 u")  # killed while writing a record
    with SeenState(KEY, str(path)) as seen:
        assert seen.stored == {"u1": 100}
        seen.stored_now("u2", 200)
    with SeenState(KEY, str(path)) as seen:
        assert seen.stored == {"u1": 100, "u2": 200}


def test_dead_lines_are_compacted_away(tmp_path: Path) -> None:
    path = tmp_path / "seen.log"
    with SeenState(KEY, str(path)) as seen:
        for n in range(3000):
            seen.stored_now(f"u{n}", n)
        seen.forget([f"u{n}" for n in range(2990)])
    assert path.read_bytes().count(b"\n") > 5000
    with SeenState(KEY, str(path)) as seen:  # compacted when read
        assert len(seen.stored) == 10
    assert path.read_bytes().count(b"\n") == 11
    with SeenState(KEY, str(path)) as seen:
        assert seen.stored == {f"u{n}": n for n in range(2990, 3000)}


def test_another_journal_or_garbage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "seen.log"
    with SeenState(KEY, str(path)):
        pass
    with pytest.raises(StateError, match="is not popctl's state of other"):
        SeenState("other", str(path))
    good = path.read_bytes()
    for bad in (b"X what", b"S soon u1", b"P u%zz where", b"F caf\xc3\xa9"):
        path.write_bytes(good + bad + b"\n")
        with pytest.raises(StateError, match="unreadable line") as caught:
            SeenState(KEY, str(path))
        assert caught.value.exit_code == ExitCode.FAILURE


def test_one_run_at_a_time(tmp_path: Path) -> None:
    path = str(tmp_path / "seen.log")
    with SeenState(KEY, path):
        with pytest.raises(StateBusyError) as caught:
            SeenState(KEY, path)
        assert caught.value.exit_code == ExitCode.TEMPFAIL == 75
    with SeenState(KEY, path):  # released
        pass


def test_where_it_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert state_dir() == str(tmp_path / "state" / "popctl")
    monkeypatch.setenv("XDG_STATE_HOME", "relative")  # not absolute: the XDG default
    assert state_dir() == os.path.join(os.path.expanduser("~"), ".local", "state", "popctl")
    os.symlink(tmp_path, tmp_path / "link")
    # Two spellings of one store share their state; accounts and kinds do not.
    assert store_key("a@h:1", "maildir", str(tmp_path / "link" / "M")) == \
        store_key("a@h:1", "maildir", str(tmp_path / "M"))
    assert journal_path(store_key("a@h:1", "maildir", "/m")) != \
        journal_path(store_key("a@h:2", "maildir", "/m"))
    assert journal_path(store_key("a@h:1", "maildir", "/m")) != \
        journal_path(store_key("a@h:1", "mbox", "/m"))
