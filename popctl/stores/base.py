"""What every store shares: StoreError, the MessageSink and Store protocols, the bookkeeping
of unfinished sinks, and the file-system helpers (writes, directory fsync, unnamed files,
checking a directory and clearing what killed runs left in it).

Tests patch ``_fsync_dir``, ``_try_unnamed`` and ``_nodename`` here: the other store modules
call them through this module for that reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from types import TracebackType
from typing import Final, Protocol, Self

from popctl.errors import ExitCode, PopctlError

_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700
_BUFFER: Final = 64 * 1024  # bytes gathered before a write(2)
_HEAD_LIMIT: Final = 8 * 1024  # bytes of a message searched for Return-Path (mbox)


class StoreError(PopctlError):
    """A local write failed: exit status 1. ``path`` is the file or directory concerned."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, *, path: str = "", errno: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.errno = errno


class MessageSink(Protocol):
    def write(self, data: bytes, /) -> None: ...

    def commit(self) -> str:
        """Store the message, its data synced to disk; return where it went. Until this returns
        it is not stored. The directory entry is made durable by the store's ``sync()``."""
        ...

    def discard(self) -> None:
        """Remove whatever was written of the message. Idempotent; a no-op after commit."""
        ...


class Store(Protocol):
    def open(self, number: int, uid: str | None) -> MessageSink:
        """Begin message ``number`` (``uid`` from UIDL, if known)."""
        ...

    def sync(self) -> None:
        """Make the directory entries of the committed messages durable (fsync the directories
        they were put in, once each). Call it before QUIT commits the deletions."""
        ...

    def close(self) -> None:
        """Discard unfinished messages, sync, release locks. Idempotent."""
        ...


def _os_error(action: str, path: str, exc: OSError) -> StoreError:
    reason = exc.strerror or str(exc)
    return StoreError(f"cannot {action} {path}: {reason}", path=path, errno=exc.errno)


class _Spool:
    """A whole message staged in an unnamed temporary file (O_TMPFILE where the system allows:
    nothing is left if popctl is killed), written through a buffer, before it goes where it
    belongs (the mbox, a program's standard input). ``where``: its directory, for messages."""

    def __init__(self, directory: str | None = None, start: bytes = b"") -> None:
        import tempfile  # only the mbox and pipe stores spool

        self.where = directory or tempfile.gettempdir()
        try:
            self.file = tempfile.TemporaryFile(dir=directory, buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise _os_error("create a file in", self.where, exc) from None
        self.size = 0  # bytes in the file
        self._buffer = bytearray(start)

    def write(self, data: bytes, *, final: bool = False) -> None:
        """Add ``data``; a full buffer, or with ``final`` all of it, goes to the file (OSError
        if that fails)."""
        self._buffer += data
        if final or len(self._buffer) >= _BUFFER:
            self.size += len(self._buffer)
            _write_all(self.file.fileno(), self._buffer)

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        """Drop what is buffered and the file."""
        self._buffer.clear()
        with contextlib.suppress(OSError):
            self.file.close()


def _write_all(fd: int, buffer: bytearray) -> None:
    """Write and empty ``buffer`` (write(2) may take only part of it)."""
    while buffer:
        written = os.write(fd, buffer)
        del buffer[:written]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # the file system cannot sync directories: nothing to do
            raise
    finally:
        os.close(fd)


def _temp_name(prefix: str = ".popctl-") -> str:
    return f"{prefix}{os.getpid()}-{secrets.token_hex(6)}.tmp"


# The names _temp_name() gives: a probe, or a message being written where O_TMPFILE is missing.
_OWN_TEMPORARY: Final = re.compile(r"\.popctl-(?:probe-)?([0-9]{1,10})-[0-9a-f]{12}\.tmp")


def _check_directory(path: str) -> None:
    """Fail unless ``path`` is a directory we can create files in (tried for real, with an
    unnamed file where the system allows: a process killed during the test leaves nothing).
    Then remove what killed popctl runs left there (see _remove_stale_temporaries)."""
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        fd = _try_unnamed(path)
        if fd is None:
            probe = os.path.join(path, _temp_name(".popctl-probe-"))
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
            with contextlib.suppress(FileNotFoundError):  # removed by another host's cleanup
                os.unlink(probe)
        os.close(fd)
    except OSError as exc:
        raise _os_error("write to", path, exc) from None
    _remove_stale_temporaries(path)


def _remove_stale_temporaries(directory: str) -> None:
    """Remove the ``.popctl-[probe-]<pid>-<hex>.tmp`` files of popctl processes that are gone.

    A probe is empty; a message's temporary file (where O_TMPFILE is missing) is either linked
    under its final name already or still on the server, since nothing is deleted before it is
    named: neither is worth keeping. Only regular files of our own user whose process does not
    exist on this host are touched (best effort: any failure leaves the file).
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    uid = os.geteuid()
    for entry in entries:
        match = _OWN_TEMPORARY.fullmatch(entry.name) if entry.name[:8] == ".popctl-" else None
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
                continue
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        except OSError:
            continue  # alive but another user's, or unreadable: not ours to judge


class _StoreBase:
    """Bookkeeping shared by the stores: the unfinished sinks, closing, ``with``."""

    def __init__(self) -> None:
        self._sinks: set[_SinkBase] = set()
        self._closed = False
        # Directories that got a committed message since the last sync(). Syncing each once per
        # batch rather than after every message halves the fsyncs of a download (a directory
        # fsync costs as much as a file's); deletions wait for QUIT, which comes after sync().
        self._unsynced: dict[str, None] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the store is closed")

    def _entry_added(self, directory: str) -> None:
        self._unsynced[directory] = None

    def sync(self) -> None:
        while self._unsynced:
            directory = next(iter(self._unsynced))
            try:
                _fsync_dir(directory)
            except OSError as exc:
                raise _os_error("sync directory", directory, exc) from None
            del self._unsynced[directory]

    def close(self) -> None:
        for sink in list(self._sinks):
            sink.discard()
        self._sinks.clear()
        self._closed = True
        with contextlib.suppress(StoreError):  # best effort here; callers sync() first
            self.sync()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class _SinkBase:
    def __init__(self, store: _StoreBase) -> None:
        self._store = store
        self._state = "open"  # open, committed, discarded
        self._result = ""
        store._sinks.add(self)

    def _check_writable(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"message sink already {self._state}")

    def _finished(self, state: str) -> None:
        self._state = state
        self._store._sinks.discard(self)

    def discard(self) -> None:  # overridden
        self._finished("discarded")



def _open_unnamed(directory: str, access: int = os.O_WRONLY,
                  mode: int = _FILE_MODE) -> int | None:
    """An unnamed file in ``directory`` (Linux O_TMPFILE, named later through /proc/self/fd),
    or None where the kernel, the file system or a missing /proc does not allow it."""
    try:
        return _try_unnamed(directory, access, mode)
    except OSError as exc:
        raise _os_error("create a file in", directory, exc) from None


def _try_unnamed(directory: str, access: int = os.O_WRONLY,
                 mode: int = _FILE_MODE) -> int | None:
    """As _open_unnamed, raising OSError."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, flag | access | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None  # not supported here: a named temporary file it is
        raise



def _nodename() -> str:
    return os.uname().nodename
