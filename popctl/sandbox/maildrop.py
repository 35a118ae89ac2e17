"""The sandbox's mailbox state: the messages every session shares, with their UIDs, and the
exclusive-access lock of RFC 1939 section 8."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

_CRLF = b"\r\n"


@dataclass(frozen=True)
class Message:
    data: bytes  # CRLF line endings, ends with CRLF: its length is what LIST reports
    uid: str



class Maildrop:
    """The messages every session shares, and the exclusive-access lock of RFC 1939 section 8."""

    def __init__(self, messages: Iterable[bytes]) -> None:
        self._mutex = threading.Lock()
        self._messages = _with_uids([_canonical(m) for m in messages])
        self._holder: object | None = None

    def acquire(self, holder: object) -> list[Message] | None:
        """Lock the maildrop for ``holder`` and return its messages, or None if already locked."""
        with self._mutex:
            if self._holder is not None:
                return None
            self._holder = holder
            return list(self._messages)

    def release(self, holder: object, expunge: frozenset[str] = frozenset()) -> None:
        """Unlock, first removing the messages whose UIDs are in ``expunge`` (the UPDATE state)."""
        with self._mutex:
            if self._holder is not holder:
                return
            self._messages = [m for m in self._messages if m.uid not in expunge]
            self._holder = None

    def snapshot(self) -> list[bytes]:
        with self._mutex:
            return [m.data for m in self._messages]


def _canonical(data: bytes) -> bytes:
    """The message with CRLF line endings and a final CRLF, so LIST sizes equal RETR octets."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data if not data or data.endswith(_CRLF) else data + _CRLF


def _with_uids(messages: list[bytes]) -> list[Message]:
    """Give each message a UID from its content; identical copies get a numbered suffix."""
    seen: Counter[str] = Counter()
    result = []
    for data in messages:
        digest = hashlib.sha256(data).hexdigest()[:32]
        seen[digest] += 1
        uid = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
        result.append(Message(data, uid))
    return result

