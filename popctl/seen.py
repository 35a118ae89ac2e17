"""What `retr --new` has delivered: the UIDs one account stored into one store, and when.

One journal file per account and store (key: ``user@host:port``, the store's kind and its
resolved absolute path) in ``$XDG_STATE_HOME/popctl`` (default ``~/.local/state/popctl``).

Decisions:

* An append-only journal, not a file rewritten atomically: a message's record is one short
  ``write(2)`` (O(1)), where rewriting the whole state after each message would cost O(n) each
  (100,000 UIDs are 3 MB: a run fetching a few hundred messages would write a gigabyte). A
  ``P`` record is written before the store's commit, so a SIGKILL loses none; the ``S``
  records of a batch are written once the store has synced its directories, then the journal
  is fsync'd, before QUIT commits any DELE: no ``S`` record reaches the disk before the
  message it records (power loss), and a kill before them leaves ``P`` records, which the next
  run resolves by looking in the store.
* Lines: ``S <epoch> <uid>`` (stored; the first time counts), ``P <uid> <where>`` (about to be
  committed at ``where``: the next run checks the store for it, so a kill between the store's
  commit and the ``S`` record leads to no second copy), ``D <uid>`` (a DELE was sent for it),
  ``F <uid>`` (forgotten). UIDs and places are %-escaped to printable ASCII without spaces.
  A torn last line (a kill during its write) is cut off when the journal is next opened.
* Compaction: when more than half of the lines are dead (forgotten, superseded), the journal
  is rewritten (temporary file, fsync, rename, directory fsync).
* One run at a time per journal: ``flock`` on ``<journal>.lock`` (a separate file: a rename
  by compaction must not move the lock away); a busy journal is :class:`StateBusyError`
  (exit 75, try again later).

Standard library only; loading 100,000 records takes about 60 ms.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import zlib
from collections.abc import Iterable
from typing import Final

from popctl.errors import ExitCode, PopctlError
from popctl.tempfiles import create_private

_MAGIC: Final = "popctl-seen 1"
_SAFE: Final = re.compile(r"[!-$&-~]*")  # printable ASCII but space and "%"
_COMPACT_SLACK: Final = 1000  # dead lines tolerated before compaction whatever the size


class StateError(PopctlError):
    """The seen-state cannot be read or written: exit 1, like any failed local write."""

    exit_code = ExitCode.FAILURE


class StateBusyError(PopctlError):
    """Another popctl run holds this account's state for this store."""

    exit_code = ExitCode.TEMPFAIL


def state_dir() -> str:
    """``$XDG_STATE_HOME/popctl``, or ``~/.local/state/popctl`` (the XDG default)."""
    base = os.environ.get("XDG_STATE_HOME")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "popctl")


def store_key(account: str, kind: str, path: str) -> str:
    """What a journal belongs to: the account (``user@host:port``), the store's kind and its
    resolved absolute path (two spellings of one Maildir share their state)."""
    return f"{account} {kind} {os.path.realpath(path)}"


def journal_path(key: str, directory: str | None = None) -> str:
    digest = f"{zlib.crc32(key.encode('utf-8', 'surrogateescape')):08x}"
    readable = re.sub(r"[^A-Za-z0-9@._-]+", "_", key)[:80]
    return os.path.join(directory if directory is not None else state_dir(),
                        f"seen-{readable}-{digest}.log")


def escape(text: str) -> str:
    if _SAFE.fullmatch(text):
        return text
    return "".join(c if _SAFE.fullmatch(c) and c.isascii() else
                   "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
                   for c in text)


def unescape(text: str) -> str:
    if "%" not in text:
        return text
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            raw.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            raw += text[i].encode("ascii")
            i += 1
    return raw.decode("utf-8", "surrogateescape")


class SeenState:
    """The journal of one account and store, locked while open.

    ``stored``: UID -> when popctl first stored it (seconds since the epoch);
    ``pending``: UID -> where a commit was about to put it (see the module's docstring).
    """

    def __init__(self, key: str, path: str | None = None, *, read_only: bool = False) -> None:
        """``read_only`` (a dry run): nothing is created, repaired or written; a journal that
        does not exist reads as empty."""
        self.key = key
        self.path = path if path is not None else journal_path(key)
        self.read_only = read_only
        self.stored: dict[str, int] = {}
        self.pending: dict[str, str] = {}
        self.being_deleted: set[str] = set()  # DELE sent (committed at QUIT, if it came)
        self._lines = 0
        self._fd = -1
        self._lock = -1
        self._dirty = False
        if read_only and not os.path.exists(self.path):
            return
        try:
            if not read_only:
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self._lock = os.open(f"{self.path}.lock", os.O_RDONLY | os.O_CLOEXEC
                                 if read_only else os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # read-only, a journal without its lock file (copied by hand) is read unlocked
            if not (read_only and isinstance(exc, FileNotFoundError)):
                raise _error("open", self.path, exc) from None
        if self._lock >= 0:
            self._take_lock()
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _take_lock(self) -> None:
        import fcntl

        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock)
            self._lock = -1
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateBusyError(f"another popctl run is using {self.path} (the same "
                                     "account and store); try again when it has finished"
                                     ) from None
            raise _error("lock", self.path, exc) from None

    # --- reading --------------------------------------------------------------------------

    def _load(self) -> None:
        flags = (os.O_RDONLY if self.read_only else os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            self._fd = os.open(self.path, flags | os.O_CLOEXEC, 0o600)
            size = os.fstat(self._fd).st_size
            data = os.pread(self._fd, size, 0) if size else b""
        except OSError as exc:
            raise _error("read", self.path, exc) from None
        complete = data.rfind(b"\n") + 1
        if complete < len(data) and not self.read_only:  # a torn last line: cut it off
            try:
                os.ftruncate(self._fd, complete)
            except OSError as exc:
                raise _error("repair", self.path, exc) from None
        lines = data[:complete].decode("ascii", "replace").split("\n")[:-1]
        if not lines:
            if not self.read_only:
                self._append(f"{_MAGIC} {escape(self.key)}\n")
            return
        if lines[0] != f"{_MAGIC} {escape(self.key)}":
            raise StateError(f"{self.path} is not popctl's state of {self.key}; move it away")
        stored, pending = self.stored, self.pending
        for line in lines[1:]:
            try:
                self._replay(line)
            except (ValueError, UnicodeDecodeError):
                raise StateError(f"{self.path}: unreadable line {line[:60]!r}; move it away"
                                 ) from None
        self._lines = len(lines) - 1
        if self._lines > 2 * (len(stored) + len(pending)) + _COMPACT_SLACK \
                and not self.read_only:
            self.compact()

    def _replay(self, line: str) -> None:
        """One record of the journal (ValueError if it is none)."""
        if not line.isascii():  # every record is written in ASCII: this is damage
            raise ValueError(line)
        stored, pending = self.stored, self.pending
        kind, _, rest = line.partition(" ")
        if kind == "S":
            when, _, uid = rest.partition(" ")
            uid = unescape(uid)
            if uid not in stored:
                stored[uid] = int(when)
            pending.pop(uid, None)
        elif kind == "P":
            uid, _, where = rest.partition(" ")
            pending[unescape(uid)] = unescape(where)
        elif kind == "F":
            uid = unescape(rest)
            stored.pop(uid, None)
            pending.pop(uid, None)
            self.being_deleted.discard(uid)
        elif kind == "D":
            self.being_deleted.add(unescape(rest))
        else:
            raise ValueError(kind)

    # --- writing --------------------------------------------------------------------------

    def _append(self, text: str) -> None:
        assert not self.read_only, "a read-only journal is written"
        try:
            data = text.encode("ascii")
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            raise _error("write", self.path, exc) from None
        self._dirty = True

    def will_store(self, uid: str, where: str) -> None:
        """About to commit ``uid`` at ``where`` (a Maildir's file name, an mbox offset)."""
        self.pending[uid] = where
        self._append(f"P {escape(uid)} {escape(where)}\n")
        self._lines += 1

    def stored_now(self, uid: str, when: int) -> None:
        """``uid`` is committed to the store (its first record's time is kept)."""
        self.stored.setdefault(uid, when)
        self.pending.pop(uid, None)
        self._append(f"S {self.stored[uid]} {escape(uid)}\n")
        self._lines += 1

    def deleting(self, uids: Iterable[str]) -> None:
        """A DELE is about to be sent for ``uids``: if they are gone next time, that is why
        (they do not count as vanished when looking for a renumbered mailbox)."""
        marked = [u for u in uids if u not in self.being_deleted]
        if marked:
            self._append("".join(f"D {escape(u)}\n" for u in marked))
            self.being_deleted.update(marked)
            self._lines += len(marked)

    def forget(self, uids: Iterable[str]) -> list[str]:
        """Forget ``uids`` (stored or pending); return those that were known."""
        known = [u for u in dict.fromkeys(uids) if u in self.stored or u in self.pending]
        if known:
            self._append("".join(f"F {escape(u)}\n" for u in known))
            for uid in known:
                self.stored.pop(uid, None)
                self.pending.pop(uid, None)
                self.being_deleted.discard(uid)
            self._lines += len(known)
        return known

    def sync(self) -> None:
        """Make every record written so far durable."""
        if self._dirty and self._fd >= 0:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise _error("sync", self.path, exc) from None
            self._dirty = False

    def compact(self) -> None:
        """Rewrite the journal with only the live records (atomically)."""
        directory = os.path.dirname(self.path) or "."
        body = "".join([f"{_MAGIC} {escape(self.key)}\n",
                        *(f"S {when} {escape(uid)}\n" for uid, when in self.stored.items()),
                        *(f"P {escape(uid)} {escape(where)}\n"
                          for uid, where in self.pending.items()),
                        *(f"D {escape(uid)}\n" for uid in self.being_deleted
                          if uid in self.stored)])
        tmp = None
        try:
            fd, tmp = create_private(directory, ".tmp-seen-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(body.encode("ascii"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            tmp = None
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            new = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise _error("rewrite", self.path, exc) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = new
        self._lines = len(self.stored) + len(self.pending)
        self._dirty = False

    def close(self) -> None:
        """Sync (best effort: an error was reported already) and release the lock."""
        if self._fd >= 0:
            with contextlib.suppress(PopctlError):
                self.sync()
            os.close(self._fd)
            self._fd = -1
        if self._lock >= 0:
            os.close(self._lock)  # releases the flock
            self._lock = -1

    def __enter__(self) -> SeenState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error(action: str, path: str, exc: OSError) -> StateError:
    return StateError(f"cannot {action} popctl's state {path}: {exc.strerror or exc}")
