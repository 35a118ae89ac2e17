"""Maildir delivery: a unique name, the message written in tmp/ and linked into new/."""

from __future__ import annotations

import errno
import os
import secrets
import time

from popctl.stores import base
from popctl.stores.base import (
    _DIR_MODE,
    MessageSink,
    StoreError,
    _check_directory,
    _os_error,
    _StoreBase,
)
from popctl.stores.files import _TempFileSink

# --- Maildir ---------------------------------------------------------------------------------


def _maildir_host() -> str:
    return base._nodename().replace("/", "\\057").replace(":", "\\072")


_maildir_sequence = 0


def maildir_unique_name() -> str:
    """``<secs>.M<usecs>P<pid>Q<seq>R<random>.<host>``, unique per the Maildir specification."""
    global _maildir_sequence
    _maildir_sequence += 1
    now = time.time_ns()
    seconds, nanoseconds = divmod(now, 1_000_000_000)
    return (f"{seconds}.M{nanoseconds // 1000}P{os.getpid()}Q{_maildir_sequence}"
            f"R{secrets.token_hex(4)}.{_maildir_host()}")


class MaildirStore(_StoreBase):
    """A Maildir: written in tmp/ with LF line ends, fsync'd, linked into new/, new/ fsync'd.

    The Maildir and its tmp/, new/ and cur/ are created (mode 0700) when missing; its parent
    directory must exist.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        self.directory = os.fspath(directory)
        created = False
        for path in (self.directory, *(os.path.join(self.directory, sub)
                                       for sub in ("tmp", "new", "cur"))):
            try:
                os.mkdir(path, _DIR_MODE)
                created = True
            except FileExistsError:
                if not os.path.isdir(path):
                    raise StoreError(f"cannot use {path} as a Maildir: "
                                     f"{os.strerror(errno.ENOTDIR)}",
                                     path=path, errno=errno.ENOTDIR) from None
            except OSError as exc:
                raise _os_error("create", path, exc) from None
        self._tmp = os.path.join(self.directory, "tmp")
        self._new = os.path.join(self.directory, "new")
        _check_directory(self._tmp)
        if created:
            try:
                base._fsync_dir(self.directory)
                base._fsync_dir(os.path.dirname(os.path.abspath(self.directory)))
            except OSError as exc:
                raise _os_error("sync", self.directory, exc) from None

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        name = maildir_unique_name()
        return _TempFileSink(self, self._tmp, os.path.join(self._new, name), to_lf=True,
                             link=True, temp_name=name)


