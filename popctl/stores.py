"""Where retrieved messages go: standard output, one file, a directory, a Maildir or an mbox.

The session streams each message's bytes (as the server sent them: CRLF line ends, already
dot-unstuffed) into a :class:`MessageSink` in pieces of any size, then the caller calls
``commit``, or ``discard`` on any error. ``commit`` returns only once the message is durably on
disk (file fsync'd, renamed into place, directory fsync'd), so a caller may then delete it on the
server; until then nothing a reader would take for a message is left behind.

Every local I/O failure is a :class:`StoreError` (exit status 1, "a local write failed") with one
line naming the path and the operating system's reason. Locations are checked when a store is
made, before any network traffic.

Decisions:

* stdout, file and directory stores keep the bytes exactly as received (CRLF line ends).
* Maildir and mbox convert CRLF to LF (as every local delivery agent does); lone CRs are kept.
* Files are created mode 0600, directories 0700.
* A file name never stands for two messages (issue 11: a UID is not a message's identity;
  popa3d gives two messages one UID, a server without UIDL has only message numbers, which
  every run starts again at 1). DirectoryStore never replaces a file: a name is taken with
  link(), which fails if the name exists. It prefers ``<uid>.eml``, the UID escaped to
  ``[A-Za-z0-9._-]`` (``%XX`` for every other byte, and for a dot that is first, last or
  follows a dot; over 200 characters, shortened with ``~`` and a hash), one name per UID.
  If that name holds other bytes, the message goes to ``<uid>~<hash>.eml`` (``<hash>``: 16 hex
  digits of the SHA-256 of the message), and without a UID to ``msg~<hash>.eml``: names that
  do not collide across runs and that the same message finds again. A name that already holds
  the same bytes (an earlier run stored the message and did not delete it: killed, or run
  without --delete) is where the message is stored: nothing is written, and it is safe to
  delete. Within one run each message gets its own file, even identical ones (``~2``, ...).
* Every store is checked when made with an unnamed file (O_TMPFILE): a named probe, still
  the fallback, could be stranded by SIGKILL. Such ``.popctl-[probe-]<pid>-*.tmp`` files of
  processes that are gone (same user, this host) are removed when a directory is checked.
* --mbox and its dotlock are opened with O_NOFOLLOW and must belong to our user: a link or a
  file planted in a shared directory is refused, never appended to or taken over.
* Maildir names are ``<secs>.M<usecs>P<pid>Q<seq>R<random>.<host>`` (cr.yp.to/proto/maildir.html),
  the host with ``/`` and ``:`` written ``\\057`` and ``\\072``; delivered by link() into new/.
* mbox is mboxrd: ``From <sender> <asctime UTC>``, the sender from the first Return-Path header
  (else MAILER-DAEMON), ``>`` added to every ``>*From `` line, a blank line after each message.
  It is locked for the whole run with fcntl (lockf) and a ``<path>.lock`` dotlock; a lock held
  elsewhere, or a stale dotlock, is an error after ``lock_timeout`` seconds, except a dotlock
  popctl itself left on this host when it was killed (its process is gone): that one is taken
  over, after cutting off the torn record the kill may have left (see MboxStore).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import BinaryIO, Final, Protocol, Self

from popctl.errors import ExitCode, PopctlError, UsageError

__all__ = [
    "DirectoryStore",
    "FileStore",
    "MaildirStore",
    "MboxStore",
    "MessageSink",
    "StdoutStore",
    "Store",
    "StoreError",
    "envelope_sender",
    "maildir_unique_name",
    "uid_filename",
]

_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700
_BUFFER: Final = 64 * 1024  # bytes gathered before a write(2)
_HEAD_LIMIT: Final = 8 * 1024  # bytes of a message searched for Return-Path (mbox)


class StoreError(PopctlError):
    """A local write failed: exit status 1. ``path`` is the file or directory concerned."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, *, path: str = "", errno: int | None = None) -> None:
        super().__init__(message)
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


# --- line-end conversion and mboxrd quoting, streaming --------------------------------------


class _CRLFToLF:
    """CRLF -> LF over pieces split anywhere (a CR ending a piece waits for the next one)."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
        self._cr = data.endswith(b"\r")
        if self._cr:
            data = data[:-1]
        # The same as data.replace(b"\r\n", b"\n"), which counts the CRLFs in one pass and
        # replaces them in a second: split and join make one search pass and a copy (200 MB of
        # CRLF text: 0.37 -> 0.23 s).
        return b"\n".join(data.split(b"\r\n"))

    def finish(self) -> bytes:
        tail = b"\r" if self._cr else b""
        self._cr = False
        return tail


_FROM: Final = b"From "
_GTS: Final = re.compile(rb">*")


class _MboxrdQuoter:
    """Adds one ``>`` to every line matching ``^>*From `` (LF line ends), over any split.

    The ``>`` already seen pass straight through (the added one may go after them: the bytes are
    the same), so at most the four bytes ``From`` are ever held back.
    """

    def __init__(self) -> None:
        self._line_start = True
        self._matched = 0  # bytes of "From " matched after the line's leading ">"s

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        pos, size = 0, len(data)
        while pos < size:
            if self._line_start:
                if self._matched == 0:
                    end = _GTS.match(data, pos).end()  # type: ignore[union-attr]
                    out += data[pos:end]
                    pos = end
                    if pos == size:
                        break
                need = _FROM[self._matched:]
                chunk = data[pos:pos + len(need)]
                if len(chunk) < len(need) and need.startswith(chunk):
                    self._matched += len(chunk)  # undecided: the piece ended inside "From "
                    break
                self._line_start = False
                if chunk == need:
                    out += b">" + _FROM
                    pos += len(need)
                else:
                    out += _FROM[:self._matched]
                self._matched = 0
            newline = data.find(b"\n", pos)
            if newline < 0:
                out += data[pos:]
                break
            out += data[pos:newline + 1]
            pos = newline + 1
            self._line_start = True
        return bytes(out)

    def finish(self) -> bytes:
        tail = _FROM[:self._matched]
        self._matched = 0
        self._line_start = True
        return tail


# --- standard output -------------------------------------------------------------------------


class StdoutStore(_StoreBase):
    """Messages concatenated on a binary stream, byte for byte as received (CRLF kept).

    ``commit`` flushes the stream; there is no durability and ``discard`` cannot take back what
    was written (the command line refuses ``--delete`` with standard output).
    """

    def __init__(self, stream: BinaryIO, *, name: str = "standard output") -> None:
        super().__init__()
        self.stream = stream
        self.name = name

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        return _StreamSink(self)


class _StreamSink(_SinkBase):
    def __init__(self, store: StdoutStore) -> None:
        super().__init__(store)
        self._stream_store = store

    def write(self, data: bytes, /) -> None:
        self._check_writable()
        try:
            self._stream_store.stream.write(data)
        except OSError as exc:
            self.discard()
            raise _os_error("write to", self._stream_store.name, exc) from None

    def commit(self) -> str:
        if self._state == "committed":
            return self._result
        self._check_writable()
        try:
            self._stream_store.stream.flush()
        except OSError as exc:
            self.discard()
            raise _os_error("write to", self._stream_store.name, exc) from None
        self._result = self._stream_store.name
        self._finished("committed")
        return self._result


# --- one file per message: a temporary file renamed into place ------------------------------


class _TempFileSink(_SinkBase):
    """Writes into a temporary file in ``temp_dir``; commit fsyncs it and moves it to ``final``.

    With ``to_lf`` CRLF becomes LF; with ``link`` (Maildir) the move is link() + unlink(), so an
    existing file is never replaced, else os.replace(). Subclasses choose the name in _place.
    """

    def __init__(self, store: _StoreBase, temp_dir: str, final: str, *, to_lf: bool = False,
                 link: bool = False, temp_name: str | None = None) -> None:
        self._temp = os.path.join(temp_dir, temp_name or _temp_name())
        self._final = final
        self._link = link
        self._convert = _CRLFToLF() if to_lf else None
        self._buffer = bytearray()
        self._action = "write"  # what commit is doing, for its error message
        # Unnamed until committed (O_TMPFILE) where the system allows: a process killed
        # mid-message (SIGKILL, a crash, power loss) then leaves no temporary file behind.
        # Readable too: a directory store compares it with a file already under its name.
        self._anonymous = _open_unnamed(temp_dir, os.O_RDWR)
        try:
            self._fd = self._anonymous if self._anonymous is not None else os.open(
                self._temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        except OSError as exc:
            raise _os_error("create", self._temp, exc) from None
        super().__init__(store)

    def write(self, data: bytes, /) -> None:
        self._check_writable()
        self._buffer += self._convert.feed(data) if self._convert is not None else data
        if len(self._buffer) >= _BUFFER:
            try:
                _write_all(self._fd, self._buffer)
            except OSError as exc:
                self.discard()
                raise _os_error("write", self._final, exc) from None

    def commit(self) -> str:
        if self._state == "committed":
            return self._result
        self._check_writable()
        if self._convert is not None:
            self._buffer += self._convert.finish()
        self._action = "write"
        try:
            _write_all(self._fd, self._buffer)
            result = self._place()
        except OSError as exc:
            self.discard()
            raise _os_error(self._action, self._final, exc) from None
        self._finished("committed")  # named: from now on never removed
        self._result = result
        self._store._entry_added(os.path.dirname(result) or ".")
        return self._result

    def _sync(self) -> None:
        """Make the data durable: before the file gets a name, never after."""
        self._action = "sync"
        os.fsync(self._fd)
        self._action = "move into place"

    def _place(self) -> str:
        """Sync the complete file and give it its name; return it."""
        self._sync()
        placed = self._anonymous is not None and self._name_unnamed()
        self._close()  # may report a delayed write error (NFS)
        if placed:
            pass
        elif self._link:
            self._link_into_place()
        else:
            os.replace(self._temp, self._final)
        return self._final

    def _close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _name_unnamed(self) -> bool:
        """Give the complete, synced O_TMPFILE file a name: its final one when no file has it
        (True; in link mode, which never replaces a file, an existing one is an error), else
        the temporary name that os.replace() then moves over the existing file (False). Linking
        straight to the final name leaves no moment at which a kill strands a temporary file."""
        try:
            self._link_unnamed(self._final)
        except FileExistsError:
            if self._link:
                raise
            self._link_unnamed(self._temp)
            self._anonymous = None
            return False
        self._anonymous = None
        self._temp = self._final  # discard() must not remove it
        return True

    def _link_unnamed(self, name: str) -> None:
        # linkat(AT_SYMLINK_FOLLOW) on the /proc link: os.link() makes that call only when
        # given a directory descriptor (else it calls link(), which fails with EXDEV here).
        directory = os.open(os.path.dirname(name) or ".",
                            os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(f"/proc/self/fd/{self._fd}", os.path.basename(name),
                    dst_dir_fd=directory, follow_symlinks=True)
        finally:
            os.close(directory)

    def _link_named(self, name: str) -> None:
        """Link the named temporary file to ``name`` (FileExistsError if taken), falling back
        to rename() where the file system has no hard links."""
        try:
            os.link(self._temp, name)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                raise
            if os.path.lexists(name):  # rename() would replace it
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), name) from None
            os.rename(self._temp, name)
            self._temp = name  # moved: nothing left to remove
            return

    def _link_into_place(self) -> None:
        self._link_named(self._final)
        if self._temp != self._final:
            # The message is delivered; a left-over tmp/ file is cleaned up by Maildir readers.
            with contextlib.suppress(OSError):
                os.unlink(self._temp)

    def discard(self) -> None:
        if self._state != "open":
            return
        self._buffer.clear()
        with contextlib.suppress(OSError):
            self._close()
        self._fd = -1
        # Already gone, or nothing more can be done: it has a hidden temporary name. (An
        # unnamed file has none: closing it was enough.)
        if self._anonymous is None and self._temp != self._final:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
        self._finished("discarded")


class _DirectorySink(_TempFileSink):
    """A message of a DirectoryStore: named on commit by the first of its candidate names
    (DirectoryStore.names) that no message of this run took and that is either free (the file
    is linked there: link() never replaces a file) or a regular file holding the same bytes
    (the message is stored already; our copy is dropped)."""

    def __init__(self, store: DirectoryStore, uid: str | None) -> None:
        self._directory_store = store
        self._base = uid_filename(uid).removesuffix(".eml") if uid else None
        super().__init__(store, store.directory,
                         os.path.join(store.directory, f"{self._base or 'msg'}.eml"))

    def _place(self) -> str:
        store = self._directory_store
        size = os.fstat(self._fd).st_size
        synced = False
        for name in store.names(self._base, self._content_hash):
            path = os.path.join(store.directory, name)
            if path in store.claimed:
                continue  # another message of this run: never two messages under one name
            if os.path.lexists(path):
                if _same_content(path, self._fd, size):
                    return self._found(path)
                continue
            if not synced:  # (a copy found already stored costs no fsync of ours)
                self._sync()
                synced = True
            try:
                if self._anonymous is not None:
                    self._link_unnamed(path)
                else:
                    self._link_named(path)
            except FileExistsError:  # made meanwhile, by another process
                if _same_content(path, self._fd, size):
                    return self._found(path)
                continue
            store.claimed.add(path)
            self._final = path
            try:
                self._close()  # may report a delayed write error (NFS)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                store.claimed.discard(path)
                raise
            if self._anonymous is None and self._temp != path:
                with contextlib.suppress(OSError):
                    os.unlink(self._temp)
            self._anonymous = None
            self._temp = path  # named: discard() must not remove it
            return path
        raise OSError(errno.EEXIST, f"no free name among {MAX_COPIES} copies of "
                      f"{os.path.basename(self._final)}")

    def _found(self, path: str) -> str:
        """The message is stored at ``path`` already, byte for byte: drop our copy."""
        self._directory_store.claimed.add(path)
        with contextlib.suppress(OSError):  # our copy is dropped: its errors do not matter
            self._close()
        if self._anonymous is None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
        self._anonymous = None
        self._temp = self._final = path
        return path

    def _content_hash(self) -> str:
        """16 hex digits of the SHA-256 of the bytes written (read back: only needed when the
        preferred name is taken, or there is no UID)."""
        digest = hashlib.sha256()
        offset = 0
        while chunk := os.pread(self._fd, _COMPARE_CHUNK, offset):
            digest.update(chunk)
            offset += len(chunk)
        return digest.hexdigest()[:16]


_COMPARE_CHUNK: Final = 1 << 20  # bytes read at a time when comparing or hashing a file


def _same_content(path: str, fd: int, size: int) -> bool:
    """Whether ``path`` is a regular file (not followed if a symbolic link) holding exactly the
    ``size`` bytes of ``fd``; if so it is fsync'd, as our own copy would have been."""
    try:
        other = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # a symbolic link, gone meanwhile, unreadable: not a copy to rely on
    try:
        st = os.fstat(other)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        offset = 0
        while offset < size:
            ours = os.pread(fd, min(_COMPARE_CHUNK, size - offset), offset)
            if not ours or os.pread(other, len(ours), offset) != ours:
                return False
            offset += len(ours)
        os.fsync(other)
        return True
    finally:
        os.close(other)


def _create_with(path: str, content: bytes) -> int:
    """Create ``path`` holding ``content`` (FileExistsError if it exists) and return a
    descriptor open on it for writing. Where O_TMPFILE allows, the file appears with its
    content at once, so no process killed half-way leaves an empty one."""
    directory = os.path.dirname(path) or "."
    fd = _open_unnamed(directory, os.O_RDWR, 0o644)
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        os.write(fd, content)
        return fd
    try:
        os.write(fd, content)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(f"/proc/self/fd/{fd}", os.path.basename(path), dst_dir_fd=dir_fd,
                    follow_symlinks=True)
        finally:
            os.close(dir_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


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


class FileStore(_StoreBase):
    """Exactly one message, byte for byte (CRLF kept), atomically replacing ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self._directory = os.path.dirname(self.path) or "."
        if os.path.isdir(self.path):
            raise StoreError(f"cannot write {self.path}: {os.strerror(errno.EISDIR)}",
                             path=self.path, errno=errno.EISDIR)
        if os.path.exists(self.path) and not os.path.isfile(self.path):
            # The message replaces the file by rename: /dev/null, a FIFO or a socket would be
            # replaced by a regular file (as root, /dev/null for the whole system).
            raise StoreError(f"cannot write {self.path}: not a regular file, and --output "
                             "replaces the file; redirect standard output instead",
                             path=self.path)
        _check_directory(self._directory)
        self._opened = 0

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        if self._opened:
            raise UsageError("--output FILE takes one message; use --output-dir")
        self._opened += 1
        return _TempFileSink(self, self._directory, self.path)


_SAFE_UID_BYTES: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_MAX_NAME: Final = 200  # an escaped UID longer than this is shortened (NAME_MAX is 255 bytes)
# Further names tried for one message when its preferred name holds another: ``~N`` is needed
# only for byte-identical copies within one run (or a 64-bit hash collision).
MAX_COPIES: Final = 10_000


def uid_filename(uid: str) -> str:
    """``<uid>.eml``, the UID made safe as a file name, one name per UID (injective).

    Bytes outside ``[A-Za-z0-9._-]`` become ``%XX`` (of the UTF-8 encoding), and so does a dot
    that is first, last or follows a dot, so a name never starts with a dot or contains ``..``
    or ``/``. An escaped UID over 200 characters is cut to its first 150, followed by ``~`` and
    32 hex digits of the SHA-256 of the UID: escaping never writes ``~``, so a shortened name is
    never another UID's.
    """
    if not uid:
        raise ValueError("an empty UID has no file name")
    raw = uid.encode("utf-8", "surrogateescape")
    parts: list[str] = []
    for i, byte in enumerate(raw):
        dot = byte == 0x2E
        if byte in _SAFE_UID_BYTES and not (
                dot and (i == 0 or i == len(raw) - 1 or raw[i - 1] == 0x2E)):
            parts.append(chr(byte))
        else:
            parts.append(f"%{byte:02X}")
    name = "".join(parts)
    if len(name) > _MAX_NAME:
        name = f"{name[:150]}~{hashlib.sha256(raw).hexdigest()[:32]}"
    return f"{name}.eml"


class DirectoryStore(_StoreBase):
    """One file per message in an existing directory, bytes exact (CRLF kept); never replaces
    a file. The names a message may take, in order (see ``names``)::

        <uid>.eml  <uid>~<hash>.eml  <uid>~<hash>~2.eml ...   (with a UID: uid_filename)
                   msg~<hash>.eml    msg~<hash>~2.eml ...     (without UIDL)

    ``<hash>`` is 16 hex digits of the SHA-256 of the message. It takes the first name that no
    message of this run took and that is free, or that holds the same bytes already (stored by
    an earlier run, then not deleted: killed, or run without --delete), which is then reported
    as where it is stored. ``~`` never appears in an escaped UID, so these names never collide
    with another UID's preferred name.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        self.directory = os.fspath(directory)
        _check_directory(self.directory)
        self.claimed: set[str] = set()  # paths a message of this run is stored under

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        return _DirectorySink(self, uid)

    @staticmethod
    def names(base: str | None, content_hash: Callable[[], str]) -> Iterator[str]:
        """The candidate names of a message whose escaped UID is ``base`` (None: no UID)."""
        if base is not None:
            yield f"{base}.eml"
        stem = f"{base or 'msg'}~{content_hash()}"
        yield f"{stem}.eml"
        for copy in range(2, MAX_COPIES + 1):
            yield f"{stem}~{copy}.eml"


# --- Maildir ---------------------------------------------------------------------------------


def _maildir_host() -> str:
    return _nodename().replace("/", "\\057").replace(":", "\\072")


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
                _fsync_dir(self.directory)
                _fsync_dir(os.path.dirname(os.path.abspath(self.directory)))
            except OSError as exc:
                raise _os_error("sync", self.directory, exc) from None

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        name = maildir_unique_name()
        return _TempFileSink(self, self._tmp, os.path.join(self._new, name), to_lf=True,
                             link=True, temp_name=name)


# --- mbox (mboxrd) ---------------------------------------------------------------------------


_SENDER: Final = re.compile(rb"[\x21-\x7e]{1,255}")
_ANGLE: Final = re.compile(rb"<([^<>]*)>")


def _headers_ended(head: bytes | bytearray) -> bool:
    return head.startswith((b"\r\n", b"\n")) or b"\n\r\n" in head or b"\n\n" in head


def envelope_sender(head: bytes) -> str:
    """The address of the first Return-Path header in ``head`` (a message's first bytes).

    MAILER-DAEMON when there is none, it is ``<>``, or it would not fit a From_ line.
    """
    if head.startswith((b"\r\n", b"\n")):
        return "MAILER-DAEMON"
    ends = [i for i in (head.find(b"\n\r\n"), head.find(b"\n\n")) if i >= 0]
    text = head[:min(ends)] if ends else head[:max(head.rfind(b"\n"), 0)]  # whole lines only
    fields: list[bytes] = []
    for line in text.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b" " + line.strip()
        else:
            fields.append(line)
    for field in fields:
        name, colon, value = field.partition(b":")
        if colon and name.strip().lower() == b"return-path":
            address = value.strip()
            match = _ANGLE.search(address)
            if match:
                address = match.group(1).strip()
            if _SENDER.fullmatch(address):
                return address.decode("ascii")
            return "MAILER-DAEMON"
    return "MAILER-DAEMON"


_held_mboxes: set[tuple[int, int]] = set()  # (device, inode) of the mboxes this process locked


class MboxStore(_StoreBase):
    """Appends to an mboxrd file, locked (lockf + ``<path>.lock``) from creation to ``close``.

    The file is created (mode 0600) if missing; a non-empty file must begin with ``From ``.
    Each message is staged in an unnamed temporary file beside the mbox and appended whole on
    commit, then fsync'd; on a failed append the file is truncated back to its length before
    the record. One message at a time.

    A process killed while appending (the only moment the mbox is written) leaves a torn last
    record and its dotlock. The dotlock says ``<pid>``, ``popctl <host>`` and, during an
    append, ``append <start> <end>``; the next MboxStore on the same host whose owner is gone
    takes the lock over and truncates the file back to ``start`` if it stopped between the two
    (and holds nothing but that one partial record). Foreign dotlocks are never broken.
    """

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.lock_path = self.path + ".lock"
        self.lock_timeout = lock_timeout
        self._fd = -1
        self._key: tuple[int, int] | None = None
        self._dotlocked = False
        self._lock_fd = -1
        self._active: _MboxSink | None = None
        try:
            self._acquire()
        except BaseException:
            self._release()
            raise

    def _acquire(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _os_error("open", self.path, exc) from None
        else:
            if (st.st_dev, st.st_ino) in _held_mboxes:
                # Opening it again and closing would drop this process's fcntl lock.
                raise StoreError(f"cannot lock {self.path}: already in use by this program",
                                 path=self.path)
        directory = os.path.dirname(self.path) or "."
        created = not os.path.lexists(self.path)
        try:
            # Never through a symbolic link: one planted in a shared directory would have us
            # append (or create) wherever its owner chose (fs.protected_symlinks=0).
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                               | os.O_NOFOLLOW, _FILE_MODE)
            st = os.fstat(self._fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP and os.path.islink(self.path):
                raise StoreError(f"cannot use {self.path} as an mbox: it is a symbolic link; "
                                 "give the path of the file itself", path=self.path) from None
            raise _os_error("open", self.path, exc) from None
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"cannot use {self.path} as an mbox: not a regular file",
                             path=self.path)
        if st.st_uid != os.geteuid():
            # Planted by another user where we may write, or theirs: not ours to append to.
            raise StoreError(f"cannot use {self.path} as an mbox: it belongs to another user "
                             f"(uid {st.st_uid})", path=self.path)
        self._key = (st.st_dev, st.st_ino)
        _held_mboxes.add(self._key)
        deadline = time.monotonic() + self.lock_timeout
        self._wait(deadline, self._try_lockf,
                   f"cannot lock {self.path}: another program holds a lock on it")
        self._wait(deadline, self._try_dotlock, "")
        try:
            if os.pread(self._fd, 5, 0) not in (b"", _FROM):
                raise UsageError(f"{self.path} is not an mbox file (it does not begin with "
                                 f"'From '); refusing to append to it")
            if created:
                _fsync_dir(directory)
        except OSError as exc:
            raise _os_error("read", self.path, exc) from None

    def _wait(self, deadline: float, attempt: _Attempt, busy: str) -> None:
        while True:
            if attempt():
                return
            if time.monotonic() >= deadline:
                raise StoreError(busy or self._dotlock_busy(), path=self.path)
            time.sleep(0.05)

    def _try_lockf(self) -> bool:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise _os_error("lock", self.path, exc) from None
        return True

    def _try_dotlock(self) -> bool:
        try:
            fd = _create_with(self.lock_path, self._lock_owner().encode())
        except FileExistsError:
            return self._take_over_stale_dotlock()
        except OSError as exc:
            raise _os_error("create lock file", self.lock_path, exc) from None
        self._dotlocked = True
        self._lock_fd = fd
        return True

    def _lock_owner(self) -> str:
        return f"{os.getpid()}\npopctl {_nodename()}\n"

    def _write_lock_note(self, journal: str = "") -> None:
        """The dotlock's content: pid, ``popctl <host>``, and the offsets of an append."""
        try:
            # Overwrite, then cut: the first two lines never change, so a process killed in
            # between leaves a lock that still says whose it is.
            data = (self._lock_owner() + journal).encode()
            os.pwrite(self._lock_fd, data, 0)
            os.ftruncate(self._lock_fd, len(data))
        except OSError:
            pass  # the lock is its existence; the rest helps recover after a crash

    def _take_over_stale_dotlock(self) -> bool:
        """True if the dotlock was left by a popctl on this host that is gone (killed): its
        torn record is cut off and the lock is ours. False for any other lock, and for a
        symbolic link or a file of another user (whose note could aim the cut at any offset):
        the file read is the file written, through one descriptor."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        lines = self._stale_own_lock(fd)
        if lines is None:
            os.close(fd)
            return False
        # "append START END", whole: a process killed between the overwrite and the cut of
        # _write_lock_note can leave the tail of a longer note after its own, and no tail of
        # such a line can start with the word "append".
        words = lines[2].split(" ") if len(lines) > 2 else []
        if len(words) == 3 and words[0] == "append" and all(w.isdigit() for w in words[1:]):
            try:
                self._cut_torn_record(int(words[1]), int(words[2]))
            except BaseException:
                os.close(fd)
                raise
        # We hold the fcntl lock, so no other popctl is doing this; the lock file stays in
        # place (never unlinked and re-created), so no other program sees it go.
        self._dotlocked = True
        self._lock_fd = fd
        self._write_lock_note()
        return True

    @staticmethod
    def _stale_own_lock(fd: int) -> list[str] | None:
        """The lines of the dotlock open on ``fd`` if it is a regular file of our user saying
        ``<pid>``, ``popctl <host>`` for this host and a process that is gone; else None."""
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                return None
            lines = os.pread(fd, 4096, 0).decode("ascii").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        if len(lines) < 2 or lines[1] != f"popctl {_nodename()}" or not lines[0].isdigit():
            return None
        try:
            os.kill(int(lines[0]), 0)
            return None  # alive (or not ours to signal): not stale
        except ProcessLookupError:
            return lines
        except OSError:
            return None

    def _cut_torn_record(self, start: int, end: int) -> None:
        """Truncate back to ``start`` if an append of ``start``..``end`` stopped half-way and
        the file holds nothing after ``start`` but that partial record."""
        try:
            size = os.fstat(self._fd).st_size
            if not start < size < end:
                return  # the append finished (or never began): nothing is torn
            tail = os.pread(self._fd, size - start, start)
            if not tail.startswith(_FROM) or b"\nFrom " in tail:
                return  # not only our record: leave it to a human
            os.ftruncate(self._fd, start)
            os.fsync(self._fd)
        except OSError as exc:
            raise _os_error("repair", self.path, exc) from None

    def _dotlock_busy(self) -> str:
        try:
            age = f", created {max(0, int(time.time() - os.stat(self.lock_path).st_mtime))} s ago"
        except OSError:
            age = ""
        return (f"cannot lock {self.path}: the lock file {self.lock_path} exists{age}; "
                f"another program is using the mailbox, or the lock is stale: "
                f"remove it if nothing else is")

    def _release(self) -> None:
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._dotlocked:
            self._dotlocked = False
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # releases the fcntl lock
        if self._key is not None:
            _held_mboxes.discard(self._key)
            self._key = None

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        if self._active is not None:
            raise RuntimeError("the previous message was neither committed nor discarded")
        try:
            start = os.fstat(self._fd).st_size
            tail = os.pread(self._fd, 2, max(0, start - 2)) if start else b""
        except OSError as exc:
            raise _os_error("read", self.path, exc) from None
        # A record must follow a blank line: complete the previous one's if it is missing.
        separator = b"\n" * (2 - (len(tail) - len(tail.rstrip(b"\n")))) if start else b""
        self._active = _MboxSink(self, start, separator)
        return self._active

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._active = None
            self._release()


class _Attempt(Protocol):
    def __call__(self) -> bool: ...


class _MboxSink(_SinkBase):
    def __init__(self, store: MboxStore, start: int, separator: bytes) -> None:
        directory = os.path.dirname(store.path) or "."
        try:  # unnamed where the system allows (O_TMPFILE): nothing is left if we are killed
            self._stage = tempfile.TemporaryFile(dir=directory, buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise _os_error("create a file in", directory, exc) from None
        super().__init__(store)
        self._mbox = store
        self._start = start
        self._staged = 0  # bytes of the record in the staging file
        self._appending = False  # the mbox itself is being written: a failure truncates it
        self._buffer = bytearray(separator)
        self._head: bytearray | None = bytearray()  # until the From_ line is written
        self._to_lf = _CRLFToLF()
        self._quote = _MboxrdQuoter()
        self._last = b"\n"  # last byte of the message body written so far

    def write(self, data: bytes, /) -> None:
        self._check_writable()
        if self._head is not None:
            self._head += data
            if len(self._head) < _HEAD_LIMIT and not _headers_ended(self._head):
                return
            data = self._begin()
        self._add(self._quote.feed(self._to_lf.feed(data)))
        if len(self._buffer) >= _BUFFER:
            self._flush()

    def _begin(self) -> bytes:
        assert self._head is not None
        head, self._head = bytes(self._head), None
        sender = envelope_sender(head)
        self._buffer += f"From {sender} {time.asctime(time.gmtime())}\n".encode("ascii")
        return head

    def _add(self, data: bytes) -> None:
        if data:
            self._buffer += data
            self._last = data[-1:]

    def _flush(self) -> None:
        """Move the buffer to the staging file (the mbox is written only by commit)."""
        try:
            self._staged += len(self._buffer)
            _write_all(self._stage.fileno(), self._buffer)
        except OSError as exc:
            self._fail("write", exc)

    def _append(self) -> None:
        """Copy the staged record to the end of the mbox, noting its extent in the dotlock
        first (a process killed during the copy leaves a torn record the next run cuts off)."""
        self._mbox._write_lock_note(f"append {self._start} {self._start + self._staged}\n")
        self._appending = True
        chunk = bytearray()
        offset = 0
        while offset < self._staged:
            chunk[:] = os.pread(self._stage.fileno(), min(1 << 20, self._staged - offset),
                                offset)
            if not chunk:
                raise OSError(errno.EIO, "the staged message is shorter than written")
            offset += len(chunk)
            _write_all(self._mbox._fd, chunk)
        os.fsync(self._mbox._fd)

    def _fail(self, action: str, exc: OSError) -> None:
        error = _os_error(action, self._mbox.path, exc)
        try:
            self._truncate()
        except OSError as again:
            error = StoreError(f"{error}; and could not remove the partial message: "
                               f"{again.strerror or again}", path=self._mbox.path,
                               errno=exc.errno)
        raise error from None

    def commit(self) -> str:
        if self._state == "committed":
            return self._result
        self._check_writable()
        if self._head is not None:
            self._add(self._quote.feed(self._to_lf.feed(self._begin())))
        self._add(self._quote.feed(self._to_lf.finish()))
        self._add(self._quote.finish())
        if self._last != b"\n":
            self._buffer += b"\n"
        self._buffer += b"\n"  # the blank line ending the record
        self._flush()
        try:
            self._append()
        except OSError as exc:
            self._fail("write", exc)
        self._result = self._mbox.path
        self._done("committed")
        return self._result

    def _truncate(self) -> None:
        """Cut the file back to where this record began; marks the sink discarded."""
        self._buffer.clear()
        self._done("discarded")
        if self._appending and self._mbox._fd >= 0:
            os.ftruncate(self._mbox._fd, self._start)
            os.fsync(self._mbox._fd)

    def _done(self, state: str) -> None:
        self._finished(state)
        with contextlib.suppress(OSError):
            self._stage.close()
        if self._mbox._active is self:
            self._mbox._active = None

    def discard(self) -> None:
        if self._state != "open":
            return
        try:
            self._truncate()
        except OSError as exc:
            raise StoreError(f"cannot remove a partial message from {self._mbox.path}: "
                             f"{exc.strerror or exc}", path=self._mbox.path,
                             errno=exc.errno) from None


def _nodename() -> str:
    return os.uname().nodename
