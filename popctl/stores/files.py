"""One file per message: FileStore (one message, replacing a file) and DirectoryStore
(``<uid>.eml`` names that never stand for two messages), both through a temporary or unnamed
file fsync'd and linked or renamed into place."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from typing import Final

from popctl.errors import UsageError
from popctl.stores import base
from popctl.stores.base import (
    _BUFFER,
    _DIR_MODE,
    _FILE_MODE,
    MessageSink,
    StoreError,
    _check_directory,
    _open_unnamed,
    _os_error,
    _SinkBase,
    _StoreBase,
    _temp_name,
    _write_all,
)
from popctl.stores.convert import _CRLFToLF

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

    @property
    def destination(self) -> str:
        """Where ``commit`` will put the message (a Maildir's new/NAME; a directory store may
        choose another name at commit)."""
        return self._final

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
            raise StoreError(f"cannot write {self.path}: not a regular file",
                             path=self.path, hint="output-replaces")
        _check_directory(self._directory)
        self._opened = 0

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        if self._opened:
            # The command line refuses a selection of several before any RETR: this is the
            # store's own guard.
            raise UsageError("a FileStore takes one message; a DirectoryStore takes several")
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
    """One file per message in a directory (created if missing), bytes exact (CRLF kept);
    never replaces a file. The names a message may take, in order (see ``names``)::

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
        # Created (mode 0700) when missing, as a Maildir is; its parent must exist, so that a
        # mistyped path does not grow a tree of directories somewhere unexpected.
        try:
            os.mkdir(self.directory, _DIR_MODE)
        except FileExistsError:
            pass  # _check_directory says if it is not a directory
        except OSError as exc:
            raise _os_error("create", self.directory, exc) from None
        else:
            try:
                base._fsync_dir(os.path.dirname(os.path.abspath(self.directory)))
            except OSError as exc:
                raise _os_error("sync", self.directory, exc) from None
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


