"""Messages written to standard output (or any binary stream): byte for byte (one message),
or as mboxrd records (several, told apart by their ``From `` lines)."""

from __future__ import annotations

from typing import BinaryIO

from popctl.stores.base import MessageSink, _os_error, _SinkBase, _StoreBase
from popctl.stores.mbox import MboxrdRecord


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


class MboxStreamStore(StdoutStore):
    """Messages as mboxrd records on a binary stream (``retr --mbox -``): each with its
    ``From `` line, LF line ends and ``>From`` quoting, as MboxStore writes them, so that a
    reader (``formail -s``, ``mail -f -``) can tell them apart. Nothing is locked or synced."""

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        return _StreamSink(self, MboxrdRecord())


class _StreamSink(_SinkBase):
    def __init__(self, store: StdoutStore, record: MboxrdRecord | None = None) -> None:
        super().__init__(store)
        self._stream_store = store
        self._record = record

    def write(self, data: bytes, /) -> None:
        self._check_writable()
        self._put(self._record.feed(data) if self._record is not None else data)

    def _put(self, data: bytes) -> None:
        try:
            self._stream_store.stream.write(data)
        except OSError as exc:
            self.discard()
            raise _os_error("write to", self._stream_store.name, exc) from None

    def commit(self) -> str:
        if self._state == "committed":
            return self._result
        self._check_writable()
        if self._record is not None:
            self._put(self._record.finish())
        try:
            self._stream_store.stream.flush()
        except OSError as exc:
            self.discard()
            raise _os_error("write to", self._stream_store.name, exc) from None
        self._result = self._stream_store.name
        self._finished("committed")
        return self._result


