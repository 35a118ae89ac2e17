"""Header summaries cached by UIDL, one small file per account, so that a second ``list`` of an
unchanged mailbox sends no TOP at all and only new messages' headers are fetched.

The cache is an optimisation, never a source of errors: a missing, partial or corrupt file reads
as empty (and is replaced at the next save), and a file that cannot be written is left alone.
What a server sends cannot make it unwritable or unbounded: every text an entry holds is valid
Unicode (a lone surrogate becomes U+FFFD) and at most MAX_ENTRY_TEXT characters.
Writers write a temporary file in the same directory and ``os.replace`` it, so a reader sees the
old file or the new one, never half of one; two concurrent runs lose at most each other's
additions, which are fetched again next time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zlib
from collections.abc import Iterable
from typing import Final

from popctl.tempfiles import create_private

# Bumped when the entry layout changes; a file of another version is discarded. 2 (issue 11):
# entries gained the From name and address, and From shows quoted names ("Garcia, Trent" <t@x>),
# which entries written by 0.1.0 do not.
CACHE_FORMAT: Final = 2

# What an entry holds: the LIST size it was read at (a UID seen again with another size is not
# trusted: a server that reuses UIDs, or rewrote the message), then From, Subject, Date, the
# From name and the From address as popctl's header summary gives them. Raw header blocks are
# not kept (a few kB per message, where an entry is about 100 octets): ``--header`` filters,
# which need them, fetch the headers again.
Entry = tuple[int, str | None, str | None, str | None, str | None, str | None]

# The longest text an entry keeps, in characters: headers.MAX_TEXT, the bound of the summaries
# it is given (a test keeps the two equal). A longer one is cut here too, so that an entry is a
# few KB at most whoever calls put() (0.1.0 wrote 200 MB for 1,000 Subjects of 200 KB).
MAX_ENTRY_TEXT: Final = 1000

# What save() writes first: _read() checks it before reading the rest, so that a file of another
# version (such as a 200 MB one of 0.1.0) is not parsed only to be discarded.
_MAGIC: Final = b'{"popctl-header-cache":%d,' % CACHE_FORMAT

_UNSAFE = re.compile(r"[^A-Za-z0-9@._-]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str | None) -> str | None:
    """``value`` as an entry keeps it: lone surrogates replaced, cut to MAX_ENTRY_TEXT."""
    if value is None:
        return None
    if not value.isascii():
        value = _SURROGATE.sub("\ufffd", value)
    return value if len(value) <= MAX_ENTRY_TEXT else value[:MAX_ENTRY_TEXT - 1] + "\u2026"


def _is_entry_text(value: object) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= MAX_ENTRY_TEXT
                             and (value.isascii() or not _SURROGATE.search(value)))


def cache_dir() -> str:
    """``$XDG_CACHE_HOME/popctl``, or ``~/.cache/popctl`` (the XDG default). Paths are strings:
    pathlib costs ~10 ms to import, and every listing reads the cache."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "popctl")


def account_key(user: str, host: str, port: int) -> str:
    """The account a cache belongs to: the login on that server and port."""
    return f"{user}@{host.lower().rstrip('.')}:{port}"


def cache_path(account: str, directory: str | os.PathLike[str] | None = None) -> str:
    """The file of ``account``: a readable name plus a checksum, so that accounts whose names
    read the same still get files of their own. (CRC-32, not SHA-256: hashlib loads OpenSSL,
    ~4 ms of every listing. The file names its account, and another account's is ignored.)"""
    digest = f"{zlib.crc32(account.encode('utf-8', 'surrogatepass')):08x}"
    readable = _UNSAFE.sub("_", account)[:80]
    return os.path.join(directory if directory is not None else cache_dir(),
                        f"headers-{readable}-{digest}.json")


class HeaderCache:
    """The summaries of one account's messages by UID; ``save`` writes them back if changed."""

    def __init__(self, account: str, path: str | os.PathLike[str] | None = None) -> None:
        self.account = account
        self.path = os.fspath(path) if path is not None else cache_path(account)
        # The entries by UID, and the message number each UID last had (see number_of).
        self._entries, self._numbers = self._read()
        self._dirty = False
        self._live: set[str] | None = None  # the server's UIDs, once prune() was told them
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, uid: str, size: int) -> Entry | None:
        entry = self._entries.get(uid)
        if entry is None or entry[0] != size:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, uid: str, size: int, sender: str | None, subject: str | None,
            date: str | None, sender_name: str | None = None,
            sender_address: str | None = None) -> None:
        entry = (size, _text(sender), _text(subject), _text(date), _text(sender_name),
                 _text(sender_address))
        if self._entries.get(uid) != entry:
            self._entries[uid] = entry
            self._dirty = True

    def number_of(self, uid: str) -> int | None:
        """The message number ``uid`` had when a listing last saw it: a guess to check (UIDL n)
        before acting on it, as any deletion since renumbers the messages after it."""
        return self._numbers.get(uid)

    def note_number(self, uid: str, number: int) -> None:
        if self._numbers.get(uid) != number:
            self._numbers[uid] = number
            self._dirty = True

    def prune(self, live: Iterable[str]) -> None:
        """Forget the messages no longer on the server."""
        keep = set(live)
        gone = [uid for uid in self._entries if uid not in keep]
        for uid in gone:
            del self._entries[uid]
        for uid in [uid for uid in self._numbers if uid not in keep]:
            del self._numbers[uid]
        if gone:
            self._dirty = True
        self._live = keep

    def save(self) -> bool:
        """Write the cache if it changed; False (and nothing raised) if it could not be."""
        if not self._dirty:
            return True
        # Keep what a concurrent run added meanwhile, for messages that are still there.
        entries, numbers = self._read()
        for uid, entry in entries.items():
            if uid not in self._entries and (self._live is None or uid in self._live):
                self._entries[uid] = entry
                if uid in numbers and uid not in self._numbers:
                    self._numbers[uid] = numbers[uid]
        document = {"popctl-header-cache": CACHE_FORMAT, "account": self.account,
                    "entries": {uid: list(e) for uid, e in self._entries.items()},
                    # Read by 0.2 on; older versions ignore the key (no format change).
                    "numbers": {uid: n for uid, n in self._numbers.items()
                                if uid in self._entries}}
        try:
            data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except ValueError:  # cannot happen (entries are valid text), and must not be fatal
            return False
        tmp = None
        try:
            directory = os.path.dirname(self.path) or "."
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, tmp = create_private(directory, ".tmp-", ".json")
            with os.fdopen(fd, "wb") as fh:  # mkstemp: mode 0600, subjects are private
                fh.write(data)
            os.replace(tmp, self.path)
            tmp = None
        except OSError:
            return False
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._dirty = False
        return True

    def _read(self) -> tuple[dict[str, Entry], dict[str, int]]:
        """The entries and numbers on disk; none for a missing, unreadable, corrupt or foreign
        file."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_MAGIC))
                if head != _MAGIC:
                    return {}, {}
                document = json.loads(head + f.read())
        except (OSError, ValueError):  # ValueError: bad JSON or bad UTF-8
            return {}, {}
        if not isinstance(document, dict) or document.get("popctl-header-cache") != CACHE_FORMAT \
                or document.get("account") != self.account:
            return {}, {}
        raw = document.get("entries")
        if not isinstance(raw, dict):
            return {}, {}
        entries: dict[str, Entry] = {}
        for uid, value in raw.items():
            if not (isinstance(value, list) and len(value) == 6 and type(value[0]) is int
                    and all(_is_entry_text(v) for v in value[1:])):
                return {}, {}  # one bad entry: the file is not ours to trust
            entries[uid] = (value[0], value[1], value[2], value[3], value[4], value[5])
        numbers = document.get("numbers")
        if not isinstance(numbers, dict):  # optional: a bad one is ignored, the entries kept
            return entries, {}
        return entries, {uid: n for uid, n in numbers.items()
                         if uid in entries and type(n) is int and 0 < n < 2**31}
