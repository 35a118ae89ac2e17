"""Messages written to standard output (or any binary stream), byte for byte."""

from __future__ import annotations

from typing import BinaryIO

from popctl.stores.base import MessageSink, _os_error, _SinkBase, _StoreBase


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


