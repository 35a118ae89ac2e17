"""popctl.tempfiles: the private file beside the one an atomic write replaces."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from popctl import tempfiles


def test_a_new_private_file_each_time(tmp_path: Path) -> None:
    first_fd, first = tempfiles.create_private(str(tmp_path), ".tmp-", ".json")
    second_fd, second = tempfiles.create_private(str(tmp_path), ".tmp-", ".json")
    os.close(first_fd)
    os.close(second_fd)
    assert first != second
    for path in (first, second):
        name = os.path.basename(path)
        assert name.startswith(".tmp-") and name.endswith(".json")
        assert os.path.dirname(path) == str(tmp_path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_an_existing_name_is_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name already taken (a file, or a link planted to redirect the write) is skipped."""
    names = iter([b"\0" * 6, b"\0" * 6, b"\1" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(names))
    taken = tmp_path / ".tmp-000000000000"
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    taken.symlink_to(target)
    fd, path = tempfiles.create_private(str(tmp_path), ".tmp-")
    os.close(fd)
    assert path == str(tmp_path / ".tmp-010101010101")
    assert target.read_text() == "keep me"


def test_gives_up_when_every_name_is_taken(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)
    (tmp_path / "x000000000000").touch()
    with pytest.raises(FileExistsError, match="no unused temporary name"):
        tempfiles.create_private(str(tmp_path), "x")
