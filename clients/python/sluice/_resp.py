"""RESP2 without I/O: how a command is written and how replies are read, for both clients.

Replies are decoded as sluiced's are meant to be read: bulk and simple strings as ``str``
(UTF-8, invalid bytes replaced), integers as ``int``, arrays as ``list``, null as ``None``, and
an error reply as an :class:`ErrorReply` (its full text, code first) rather than an exception,
so a caller that pipelines can hand each reply to its own request. hiredis's C reader
(Debian's ``python3-hiredis``) is used when installed; the pure-Python reader gives the same
values.
"""

from __future__ import annotations

from typing import Any, List, Tuple, Union

__all__ = ["ErrorReply", "ProtocolError", "Reader", "encode", "NO_REPLY"]

Arg = Union[str, int, bytes]


class ErrorReply(str):
    """An error reply's text, e.g. ``"WRONGARGS COST must be a positive integer"``."""


class ProtocolError(Exception):
    """The bytes from the socket are not RESP2."""


#: What :meth:`Reader.gets` returns while no whole reply has arrived yet.
NO_REPLY = False


def encode(args: Tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"a command argument must be str, bytes or int; got {arg!r}")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Incomplete(Exception):
    pass


class _PyReader:
    """The pure-Python reader, with hiredis.Reader's feed()/gets() interface."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def gets(self) -> Any:
        try:
            value, end = self._parse(0)
        except _Incomplete:
            return NO_REPLY
        del self._buffer[:end]
        return value

    def _parse(self, pos: int) -> Tuple[Any, int]:
        buffer = self._buffer
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        kind, line, pos = buffer[pos], bytes(buffer[pos + 1:end]), end + 2
        if kind == ord("+"):
            return line.decode("utf-8", "replace"), pos
        if kind == ord("-"):
            return ErrorReply(line.decode("utf-8", "replace")), pos
        try:
            number = int(line)
        except ValueError:
            raise ProtocolError(f"not a RESP2 number: {line!r}") from None
        if kind == ord(":"):
            return number, pos
        if kind == ord("$"):
            if number < 0:
                return None, pos
            if len(buffer) < pos + number + 2:
                raise _Incomplete
            return bytes(buffer[pos:pos + number]).decode("utf-8", "replace"), pos + number + 2
        if kind == ord("*"):
            if number < 0:
                return None, pos
            items: List[Any] = []
            for _ in range(number):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise ProtocolError(f"not a RESP2 reply type: {chr(kind)!r}")


try:
    import hiredis

    def Reader() -> Any:  # noqa: N802 - a factory standing in for a class
        """A reply reader: ``feed(bytes)``, then ``gets()`` until it returns NO_REPLY."""
        return hiredis.Reader(protocolError=ProtocolError, replyError=ErrorReply,
                              encoding="utf-8", errors="replace")
except ImportError:  # pragma: no cover - python3-hiredis is optional
    def Reader() -> Any:  # noqa: N802
        """A reply reader: ``feed(bytes)``, then ``gets()`` until it returns NO_REPLY."""
        return _PyReader()
