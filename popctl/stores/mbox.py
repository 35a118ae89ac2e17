"""mboxrd: one locked file for the whole run (fcntl and a dotlock), each message appended
with its ``From `` line and quoting, a kill's torn record cut off when the lock is taken over."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from typing import Final, Protocol

from popctl.errors import UsageError
from popctl.stores import base
from popctl.stores.base import (
    _FILE_MODE,
    _HEAD_LIMIT,
    MessageSink,
    StoreError,
    _os_error,
    _SinkBase,
    _Spool,
    _StoreBase,
    _write_all,
)
from popctl.stores.convert import _FROM, _CRLFToLF, _MboxrdQuoter
from popctl.stores.files import _create_with

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


class MboxrdRecord:
    """One message as an mboxrd record, from pieces split anywhere: the ``From `` line (its
    sender from the first Return-Path, read once the header block is complete or 8 KiB long),
    CRLF to LF, ``>`` added to every ``>*From `` line, a final line end and the blank line
    that ends the record. ``feed`` returns what can be written so far, ``finish`` the rest."""

    def __init__(self) -> None:
        self._head: bytearray | None = bytearray()  # until the From_ line is written
        self._to_lf = _CRLFToLF()
        self._quote = _MboxrdQuoter()
        self._last = b"\n"  # last byte of the message written so far

    def feed(self, data: bytes) -> bytes:
        if self._head is not None:
            self._head += data
            if len(self._head) < _HEAD_LIMIT and not _headers_ended(self._head):
                return b""
            return self._begin()
        return self._body(self._to_lf.feed(data))

    def _begin(self) -> bytes:
        assert self._head is not None
        head, self._head = bytes(self._head), None
        line = f"From {envelope_sender(head)} {time.asctime(time.gmtime())}\n"
        return line.encode("ascii") + self._body(self._to_lf.feed(head))

    def _body(self, data: bytes) -> bytes:
        out = self._quote.feed(data)
        if out:
            self._last = out[-1:]
        return out

    def finish(self) -> bytes:
        out = self._begin() if self._head is not None else b""
        out += self._body(self._to_lf.finish())
        tail = self._quote.finish()
        if tail:
            self._last = tail[-1:]
        out += tail
        return out + (b"\n" if self._last != b"\n" else b"") + b"\n"


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
                base._fsync_dir(directory)
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
        return f"{os.getpid()}\npopctl {base._nodename()}\n"

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
        if len(lines) < 2 or lines[1] != f"popctl {base._nodename()}" or not lines[0].isdigit():
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
        # the record is staged first: the mbox is written only by commit
        self._stage = _Spool(os.path.dirname(store.path) or ".", separator)
        super().__init__(store)
        self._mbox = store
        self._start = start
        self._appending = False  # the mbox itself is being written: a failure truncates it
        self._record = MboxrdRecord()

    def write(self, data: bytes, /) -> None:
        self._check_writable()
        self._staging(self._record.feed(data))

    def _staging(self, data: bytes, *, final: bool = False) -> None:
        try:
            self._stage.write(data, final=final)
        except OSError as exc:
            self._fail("write", exc)

    def _append(self) -> None:
        """Copy the staged record to the end of the mbox, noting its extent in the dotlock
        first (a process killed during the copy leaves a torn record the next run cuts off)."""
        staged = self._stage.size
        self._mbox._write_lock_note(f"append {self._start} {self._start + staged}\n")
        self._appending = True
        chunk = bytearray()
        offset = 0
        while offset < staged:
            chunk[:] = os.pread(self._stage.fileno(), min(1 << 20, staged - offset), offset)
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
        self._staging(self._record.finish(), final=True)
        try:
            self._append()
        except OSError as exc:
            self._fail("write", exc)
        self._result = self._mbox.path
        self._done("committed")
        return self._result

    def _truncate(self) -> None:
        """Cut the file back to where this record began; marks the sink discarded."""
        self._done("discarded")
        if self._appending and self._mbox._fd >= 0:
            os.ftruncate(self._mbox._fd, self._start)
            os.fsync(self._mbox._fd)

    def _done(self, state: str) -> None:
        self._finished(state)
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


