"""Framing: wsproto's frame protocol, with limits and a faster masker.

wsproto parses and serializes frames; this module is the one place that knows its
internals (``wsproto.frame_protocol.FrameProtocol`` and ``FrameDecoder``, pinned to
wsproto < 2). It adds what wsproto leaves to its users:

* a message size limit, measured after decompression, checked as soon as a frame
  header announces a length (so an oversized message is refused before it is
  buffered) and while a compressed message inflates (so a deflate bomb never
  expands past the limit);
* unmasking and masking in C when the optional ``_speedups`` extension is built
  (about 20x faster per MiB than wsproto's translate tables), else in Python;
* one copy fewer when serializing an outgoing frame.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Callable, Generator, Optional, Union

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import (
    Buffer,
    CloseReason,
    Frame,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
)

__all__ = ["BoundedDeflate", "Framer", "mask", "SPEEDUPS"]

_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]


def _mask_python(data: Union[bytes, bytearray, memoryview], key: bytes) -> bytes:
    """Pure-Python masking: one ``bytes.translate`` per key byte over a strided slice."""
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR_TABLES[key[i]])
    return bytes(out)


try:
    from ._speedups import mask as _mask_c
except ImportError:  # pragma: no cover - built without a C compiler
    _mask_c = None  # type: ignore[assignment]

#: Whether the compiled masker is in use.
SPEEDUPS = _mask_c is not None


#: XOR data with the 4-byte key repeated (RFC 6455, section 5.3): ``mask(data, key)``,
#: the compiled masker when it was built, else ``_mask_python``.
mask: Callable[[Union[bytes, bytearray, memoryview], bytes], bytes] = (
    _mask_c if _mask_c is not None else _mask_python
)


_KEYS: list[bytes] = []  # masking keys drawn ahead, taken with list.pop (atomic)
if hasattr(os, "register_at_fork"):  # pragma: no branch - Windows has no fork
    os.register_at_fork(after_in_child=_KEYS.clear)  # a child must not reuse its parent's


def mask_key() -> bytes:
    """A 4-byte masking key from the OS's CSPRNG (RFC 6455: unpredictable).

    ``os.urandom`` is a system call; the keys are drawn 256 at a time.
    """
    while True:
        try:
            return _KEYS.pop()
        except IndexError:
            block = os.urandom(1024)
            _KEYS.extend([block[i : i + 4] for i in range(0, 1024, 4)])


def _unmask(data: Union[bytes, bytearray], start: int, end: int) -> bytes:
    """The payload at ``data[start:end]``, unmasked with the 4-byte key before it."""
    if type(data) is bytes and end - start <= 4096:  # small: slices cost less than a view
        return mask(data[start:end], data[start - 4 : start])
    return mask(memoryview(data)[start:end], bytes(data[start - 4 : start]))


class _Masker:
    """Drop-in for wsproto's ``XorMaskerSimple``: keeps the key's rotation across chunks."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def process(self, data: bytearray) -> bytes:
        out = mask(data, self._key)
        rot = len(data) & 3
        if rot:
            self._key = self._key[rot:] + self._key[:rot]
        return out


class BoundedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate that never inflates a message past ``max_size``."""

    def __init__(self, max_size: Optional[int] = None, **params: object) -> None:
        super().__init__(**params)  # type: ignore[arg-type]
        self.max_size = max_size
        self._inflated = 0  # bytes inflated so far in the current message
        self.error: Optional[str] = None

    def frame_inbound_header(
        self,
        proto: Union[FrameDecoder, FrameProtocol],
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> Union[CloseReason, RsvBits]:
        if opcode.iscontrol():
            # A control frame may come between the fragments of a compressed message:
            # it must leave the message's compression state alone (wsproto resets it,
            # and the next continuation frame was then taken as uncompressed).
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._inbound_is_compressible = False
            return RsvBits(True, False, False)
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_outbound(
        self,
        proto: Union[FrameDecoder, FrameProtocol],
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        rsv, data = super().frame_outbound(proto, opcode, rsv, data, fin)
        if not fin and not opcode.iscontrol():
            # Flush every fragment, so that what was sent can be inflated (and
            # streamed) at once rather than when the message ends.
            assert self._compressor is not None
            data += self._compressor.flush(zlib.Z_SYNC_FLUSH)
        return rsv, data

    def frame_inbound_payload_data(
        self, proto: Union[FrameDecoder, FrameProtocol], data: bytes
    ) -> Union[bytes, CloseReason]:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            if self.max_size is None:
                return decompressor.decompress(data)
            budget = self.max_size - self._inflated
            out = decompressor.decompress(data, budget + 1)
        except zlib.error as exc:
            self.error = f"invalid compressed data: {exc}"
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if len(out) > budget or decompressor.unconsumed_tail:
            self.error = f"message inflates past max_size ({self.max_size} bytes)"
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def inflate_message(self, payload: bytes, client: bool) -> bytes:
        """Inflate a whole message that came in one frame: what the hooks above and
        wsproto's do over a frame's pieces, in one go (the decoder's fast path)."""
        decompressor = self._decompressor
        if decompressor is None:
            bits = self.server_max_window_bits if client else self.client_max_window_bits
            decompressor = self._decompressor = zlib.decompressobj(-bits)
        limit = self.max_size
        try:
            if limit is None:
                out = decompressor.decompress(payload)
            else:
                out = decompressor.decompress(payload, limit + 1)
                if len(out) > limit or decompressor.unconsumed_tail:
                    self.error = f"message inflates past max_size ({limit} bytes)"
                    raise ParseFailed(self.error, CloseReason.MESSAGE_TOO_BIG)
            rest = decompressor.decompress(b"\x00\x00\xff\xff") + decompressor.flush()
        except zlib.error as exc:
            self.error = f"invalid compressed data: {exc}"
            raise ParseFailed(self.error, CloseReason.INVALID_FRAME_PAYLOAD_DATA) from None
        if rest:  # nothing in practice: the trailer is an empty block
            out += rest
            if limit is not None and len(out) > limit:
                self.error = f"message inflates past max_size ({limit} bytes)"
                raise ParseFailed(self.error, CloseReason.MESSAGE_TOO_BIG)
        if self.server_no_context_takeover if client else self.client_no_context_takeover:
            self._decompressor = None
        return out

    def frame_inbound_complete(
        self, proto: Union[FrameDecoder, FrameProtocol], fin: bool
    ) -> Union[bytes, CloseReason, None]:
        if not self._inbound_is_compressible:  # a control frame: see above
            return None
        result = super().frame_inbound_complete(proto, fin)
        if fin:
            self._inflated = 0
        if isinstance(result, CloseReason):
            self.error = "invalid compressed data at the end of a message"
        return result


_CONTINUATION, _TEXT, _BINARY = Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY
_CLOSE = Opcode.CLOSE


class _Decoder(FrameDecoder):
    """wsproto's frame decoder with the size limit and the fast masker.

    Everything happens once per frame, at the header (``process_buffer`` runs for
    every piece of a frame and stays wsproto's own).
    """

    def __init__(self, client: bool, extensions: list[Extension], max_size: Optional[int]):
        super().__init__(client, extensions)
        # wscore's only extension (Framer gets nothing else).
        self.deflate = next((e for e in extensions if isinstance(e, BoundedDeflate)), None)
        self.max_size = max_size
        self.message_size = 0  # payload bytes announced by the current message's headers
        self.compressed = False  # whether the current message is compressed (RSV1)
        self.in_message = False  # a fragmented message is in progress
        #: Wait for whole binary frames rather than taking them in pieces (not when
        #: streaming: pieces are delivered as they arrive).
        self.whole_frames = False
        # A whole binary frame being received (large, or begun in a chunk): its later
        # reads are kept as they came and joined once, instead of growing the buffer
        # (which reallocates and may copy it again and again): (end, payload start,
        # mask key, opcode, length), offsets in the buffer followed by the pieces.
        self._large: Optional[tuple[int, int, Optional[bytes], Opcode, int]] = None
        self._pieces: list[Union[bytes, memoryview]] = []
        self._pieces_size = 0
        # The read being parsed in place (see receive_bytes) and where its unparsed
        # rest starts. It comes after what the buffer holds; when both are set, the
        # buffer holds one whole frame. Never set with _large.
        self._chunk: Optional[bytes] = None
        self._pos = 0

    def receive_bytes(self, data: bytes) -> None:
        if self._large is not None:
            self._pieces.append(data)
            self._pieces_size += len(data)
            return
        if self._chunk is not None:  # parsing stopped mid-chunk: the new data goes after it
            self._spill()
        buffer = self.buffer.buffer
        # A read is kept as it came (not appended to the buffer, which copies it and
        # reallocates: 256 KiB reads of 64 KiB frames, 0.85x the CPU time in-process)
        # and whole frames are parsed straight from it. Only at a frame boundary, and
        # only immutable bytes (not a caller's bytearray, which may be reused).
        if self.header is None and type(data) is bytes:
            if not buffer:
                self._chunk = data
                self._pos = 0
                return
            # The buffer holds the start of a frame: complete it with just the
            # bytes it misses, and keep the rest of the read as the chunk.
            missing = _frame_end(buffer, 0) - len(buffer)
            if 0 < missing < len(data):
                buffer += memoryview(data)[:missing]
                self._chunk = data
                self._pos = missing
                return
        buffer += data

    def _spill(self) -> None:
        """Move the unparsed rest of the chunk into the buffer."""
        chunk = self._chunk
        assert chunk is not None
        self.buffer.buffer += memoryview(chunk)[self._pos :]
        self._chunk = None

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet."""
        size = len(self.buffer) + self._pieces_size
        if self._chunk is not None:
            size += len(self._chunk) - self._pos
        return size

    def parse_header(self) -> bool:
        if not super().parse_header():
            return False
        if not self.client:  # frames to a server are masked (wsproto checked)
            self.masker = _Masker(bytes(self.masker._masking_key))  # type: ignore[union-attr,assignment]
        header = self.header
        assert header is not None
        opcode = header.opcode
        if opcode is _CONTINUATION:
            size = self.message_size + header.payload_len
        elif opcode is _TEXT or opcode is _BINARY:
            if self.in_message and self.compressed:
                # A new message inside a compressed one: wsproto would inflate it
                # as part of the current message and fail with 1007, not 1002.
                raise ParseFailed(f"expected CONTINUATION, got {opcode.name}")
            # Only the first frame of a message carries RSV1; its continuation
            # frames carry compressed data too, with compressed lengths.
            self.compressed = header.rsv.rsv1
            size = header.payload_len
        else:
            return True  # a control frame: 125 bytes at most
        self.in_message = not header.fin
        limit = self.max_size
        if limit is not None and size > limit and not self.compressed:
            # Compressed messages are checked while inflating.
            raise ParseFailed(
                f"message of at least {size} bytes exceeds max_size ({limit} bytes)",
                CloseReason.MESSAGE_TOO_BIG,
            )
        self.message_size = size
        return True

    def process_buffer(self) -> Optional[Frame]:
        chunk = self._chunk
        if chunk is not None and not self.buffer.buffer:
            # Between frames (a chunk is only kept at a frame boundary, and a frame
            # moved to the buffer below is whole: wsproto parses it to its end).
            fast = self._fast_frame(chunk, self._pos)
            if fast is not None and fast is not _SLOW:
                return fast  # type: ignore[return-value]
            if self._chunk is not None:  # else its partial frame went to _large
                # Parsed from the buffer: the next frame alone if it is whole (a
                # control frame between messages copies only itself), else all the
                # rest (a partial frame: wait for more, or stream it).
                pos = self._pos
                end = _frame_end(chunk, pos)
                if end < len(chunk):
                    self.buffer.buffer += memoryview(chunk)[pos:end]
                    self._pos = end
                else:
                    self._spill()
        if self._large is not None:
            return self._join_large()
        if self.header is None:
            fast = self._fast_frame(self.buffer.buffer, 0)
            if fast is not _SLOW:
                return fast  # type: ignore[return-value]
        return super().process_buffer()

    def _fast_frame(self, data: Union[bytes, bytearray], pos: int) -> object:
        """Parse a whole, final, uncompressed text or binary frame at ``data[pos:]``
        (the buffer, at 0, or the chunk).

        The common case (one frame per message) skips wsproto's general machinery;
        anything else returns ``_SLOW`` and takes wsproto's path, which also raises
        every protocol error. The checks are wsproto's. With ``whole_frames``, such a
        frame not whole yet returns ``None`` (wait for more) instead of ``_SLOW``.
        """
        size = len(data)
        start = pos + 2  # offsets are from the start of data
        if size < start:
            return None
        first = data[pos]
        opcode = _FAST_OPCODES.get(first)  # FIN set, RSV2-3 clear, text or binary
        if opcode is None:
            control = _FAST_CONTROL.get(first)  # FIN set, RSV clear: close, ping, pong
            return _SLOW if control is None else self._fast_control(data, pos, control)
        compressed = first & 0x40  # RSV1
        deflate = self.deflate
        if deflate is None:
            if compressed:
                return _SLOW  # wsproto raises
        elif deflate._inbound_compressed is not None:
            return _SLOW  # in the middle of a compressed message
        second = data[pos + 1]
        masked = second & 0x80
        if bool(masked) == self.client:
            return _SLOW
        length = second & 0x7F
        # Until the frame is whole: wait, or take wsproto's path, which delivers it in
        # pieces (streaming) and checks the UTF-8 of text as it comes (fail fast).
        # Compressed frames are only taken whole (their size says little).
        wait = None if self.whole_frames and opcode is _BINARY and not compressed else _SLOW
        if length == 126:
            if size < start + 2:
                return wait
            length = (data[start] << 8) | data[start + 1]
            if length <= 125:
                return _SLOW
            start += 2
        elif length == 127:
            if size < start + 8:
                return wait
            length = int.from_bytes(data[start : start + 8], "big")
            if length <= 0xFFFF or length >> 63:
                return _SLOW
            start += 8
        limit = self.max_size
        if limit is not None and length > limit and not compressed:
            raise ParseFailed(
                f"message of at least {length} bytes exceeds max_size ({limit} bytes)",
                CloseReason.MESSAGE_TOO_BIG,
            )
        if masked:
            start += 4  # the payload's start; the key is before it
        end = start + length
        if size < end:
            if wait is None and size >= start:
                self._collect(data, pos, start, length, opcode, masked)
            return wait
        payload = self._take(data, start, end, masked)
        if compressed:
            assert deflate is not None
            payload = deflate.inflate_message(payload, self.client)
        self.message_size = length
        self.compressed = self.in_message = False
        return Frame(opcode, payload, True, True)

    def _fast_control(self, data: Union[bytes, bytearray], pos: int, opcode: Opcode) -> object:
        """A whole close, ping or pong frame at ``data[pos:]``, else ``_SLOW``.

        wsproto's path costs ~10 us per control frame (a close ends every
        connection, a ping comes every keepalive interval); its checks are here.
        """
        deflate = self.deflate
        if deflate is not None and deflate._inbound_compressed is not None:
            return _SLOW  # between the fragments of a compressed message
        second = data[pos + 1]
        masked = second & 0x80
        length = second & 0x7F
        if bool(masked) == self.client or length > 125:
            return _SLOW  # wsproto raises
        start = pos + (6 if masked else 2)
        end = start + length
        if len(data) < end:
            return _SLOW
        return Frame(opcode, self._take(data, start, end, masked), True, True)

    def _take(self, data: Union[bytes, bytearray], start: int, end: int, masked: int) -> bytes:
        """The payload at ``data[start:end]``, unmasked with the key before it if
        ``masked``; the frame is consumed from the chunk or the buffer."""
        if masked:
            payload = _unmask(data, start, end)
        elif type(data) is bytes:
            payload = data[start:end]
        else:
            payload = bytes(memoryview(data)[start:end])  # one copy, not two
        if data is self._chunk:
            self._pos = end
            if end == len(data):
                self._chunk = None  # all parsed: drop it
        else:
            del data[:end]  # type: ignore[union-attr]  # the buffer: a bytearray
        return payload

    def _collect(
        self,
        data: Union[bytes, bytearray],
        pos: int,
        start: int,
        length: int,
        opcode: Opcode,
        masked: int,
    ) -> None:
        """Collect the pieces of the binary frame at ``data[pos:]``, whose payload
        starts at ``start``, if it is worth it (see ``_large``)."""
        if data is self._chunk:
            # The rest of the read is the first piece: nothing is copied until the
            # frame is whole, then it is joined once.
            first = memoryview(data)[pos:]
            self._pieces = [first]
            self._pieces_size = len(first)
            self._chunk = None
            end = start + length - pos
            start -= pos
        elif start + length - len(data) >= _LARGE:
            # Buffering the whole frame (at most max_size) costs no more memory than
            # joining its pieces into the message, and copies it fewer times
            # (unmasking in one pass; 1 MiB unmasked: 0.67x wsproto's time).
            end = start + length
        else:
            return
        key = bytes(data[pos + start - 4 : pos + start]) if masked else None
        self._large = (end, start, key, opcode, length)

    def _join_large(self) -> Optional[Frame]:
        """The large frame of ``_large`` once its pieces are all here, else None."""
        assert self._large is not None
        end, start, key, opcode, length = self._large
        data = self.buffer.buffer
        if len(data) + self._pieces_size < end:
            return None
        pieces, self._pieces, self._pieces_size = self._pieces, [], 0
        self._large = None
        missing = end - len(data)
        if start > len(data):  # begun in a chunk (the buffer is empty): skip its header
            pieces[0] = memoryview(pieces[0])[start:]
            missing -= start
        view = memoryview(data)
        parts: list[Union[bytes, memoryview]] = [view[start:]]
        rest: list[Union[bytes, memoryview]] = []
        for i, piece in enumerate(pieces):
            if len(piece) <= missing:
                parts.append(piece)
                missing -= len(piece)
            else:
                parts.append(memoryview(piece)[:missing])
                rest = pieces[i:]
                break
        payload = b"".join(parts)  # the only copy of the payload (two when masked)
        del parts
        view.release()
        del data[:]
        if rest:
            # What came after the frame: parsed in place if it is one read, as
            # receive_bytes would have kept it.
            tail = rest[0]
            if len(rest) == 1 and type(tail) is bytes:
                self._chunk = tail
                self._pos = missing
            else:
                data += memoryview(tail)[missing:]
                for tail in rest[1:]:
                    data += tail
        if key is not None:
            payload = mask(payload, key)
        self.message_size = length
        self.compressed = self.in_message = False
        return Frame(opcode, payload, True, True)


def _frame_end(data: Union[bytes, bytearray], pos: int) -> int:
    """Where the frame at ``data[pos:]`` ends, past ``len(data)`` if its header is not
    whole (the header is not checked: wsproto does that)."""
    available = len(data) - pos
    if available < 2:
        return _NEVER
    second = data[pos + 1]
    length = second & 0x7F
    start = pos + 2
    if length == 126:
        if available < 4:
            return _NEVER
        length = int.from_bytes(data[start : start + 2], "big")
        start += 2
    elif length == 127:
        if available < 10:
            return _NEVER
        length = int.from_bytes(data[start : start + 8], "big")
        start += 8
    if second & 0x80:
        start += 4
    return start + length


_SLOW = object()
_NEVER = 1 << 64  # past any buffer
_LARGE = 128 * 1024  # frames this much larger than what is buffered are collected
_FAST_OPCODES = {0x81: _TEXT, 0x82: _BINARY, 0xC1: _TEXT, 0xC2: _BINARY}
_FAST_CONTROL = {0x88: Opcode.CLOSE, 0x89: Opcode.PING, 0x8A: Opcode.PONG}

_HEAD = struct.Struct("!BB")
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


class Framer(FrameProtocol):
    """wsproto's ``FrameProtocol`` wired to :class:`_Decoder` and a leaner serializer."""

    def __init__(
        self,
        client: bool,
        extensions: list[Extension],
        max_size: Optional[int],
        whole_frames: bool = False,
    ):
        super().__init__(client, extensions)
        # wsproto's parsing generator holds the framer: a reference cycle, which left
        # every connection's framer, and whatever it still buffered, to the cyclic
        # garbage collector. next_frame does its work; received_frames makes one.
        del self._parse_more
        self.decoder = _Decoder(client, self.extensions, max_size)
        self.decoder.whole_frames = whole_frames
        self._frame_decoder = self.decoder
        self._close_received = False

    def read_messages(
        self, data: bytes, room: int, emit: Callable[[Union[str, bytes]], object]
    ) -> bool:
        """Receive ``data``, passing the messages of its first whole frames to ``emit``.

        The common read: small messages, each one whole, final, uncompressed text
        or binary frame, with nothing buffered before them. Those are parsed here,
        straight from ``data`` (text decoded), ``room`` at most. Whatever follows
        (a partial frame, a fragment, a control frame, a protocol error...) is
        kept as ``receive_bytes`` keeps it, for :meth:`next_frame`. Returns
        whether anything was kept.
        """
        decoder = self.decoder
        if (
            decoder._chunk is not None
            or decoder.buffer.buffer
            or decoder._large is not None
            or type(data) is not bytes
            or decoder.header is not None  # a frame streamed in pieces
            or self._message_decoder.opcode is not None  # a message in fragments (compressed too)
            or self._close_received
        ):
            decoder.receive_bytes(data)
            return True
        return self._take_messages(data, 0, room, emit)

    def resume_messages(self, room: int, emit: Callable[[Union[str, bytes]], object]) -> bool:
        """Go on where :meth:`read_messages` stopped at ``room`` (the rest of the read
        is kept whole); whether anything is left for :meth:`next_frame`."""
        decoder = self.decoder
        chunk = decoder._chunk
        if chunk is None or decoder.buffer.buffer or self._message_decoder.opcode is not None:
            return True  # (the chunk is kept at a frame boundary, with no frame begun)
        return self._take_messages(chunk, decoder._pos, room, emit)

    def _take_messages(
        self, data: bytes, pos: int, room: int, emit: Callable[[Union[str, bytes]], object]
    ) -> bool:
        decoder = self.decoder
        client = self.client
        limit = decoder.max_size
        size = len(data)
        while room > 0 and pos + 2 <= size:
            first = data[pos]
            if first == 0x81:
                text = True
            elif first == 0x82:
                text = False
            else:
                break  # not FIN with RSV clear and a text or binary opcode
            second = data[pos + 1]
            masked = second & 0x80
            if bool(masked) == client:
                break  # wsproto raises
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
                if length <= 125:
                    break  # not the shortest encoding: wsproto raises
            elif length == 127:
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
                if length <= 0xFFFF or length >> 63:
                    break
            if limit is not None and length > limit:
                break  # fails on the decoder's path, with its message
            if masked:
                start += 4
            end = start + length
            if end > size:
                break  # not whole: the decoder waits for the rest, or collects it
            payload = _unmask(data, start, end) if masked else data[start:end]
            if text:
                try:
                    emit(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    break  # fails on the decoder's path, with its message
            else:
                emit(payload)
            room -= 1
            pos = end
        if pos == size:
            decoder._chunk = None
            return False
        decoder._chunk = data  # as receive_bytes keeps a read, parsed up to pos
        decoder._pos = pos
        return True

    def release(self) -> None:
        """Drop what a closed connection no longer needs: the bytes not parsed, and
        permessage-deflate's zlib contexts (hundreds of KiB), whoever keeps the
        connection object afterwards."""
        decoder = self.decoder
        decoder.buffer = Buffer()
        decoder._chunk = decoder._large = None
        decoder._pieces = []
        decoder._pieces_size = 0
        deflate = decoder.deflate
        if deflate is not None:
            deflate._compressor = deflate._decompressor = None

    def received_frames(self) -> Generator[Frame, None, None]:
        """wsproto's way of parsing (the transports use :meth:`next_frame`)."""
        if "_parse_more" not in self.__dict__:
            self._parse_more = self._parse_more_gen()
        return super().received_frames()

    def next_frame(self) -> Optional[Frame]:
        """The next frame, UTF-8 decoded for text, or ``None`` until more data comes.

        What ``FrameProtocol.received_frames`` does, without its two generators.
        Raises ``ParseFailed`` on a protocol error.
        """
        if self._close_received:
            return None
        frame = self._frame_decoder.process_buffer()
        if frame is None:
            return None
        opcode = frame.opcode
        if opcode is _BINARY or opcode is _TEXT:
            decoder = self._message_decoder
            if frame.message_finished and decoder.opcode is None and frame.frame_finished:
                if opcode is _BINARY:
                    return frame
                try:
                    text = frame.payload.decode("utf-8")  # type: ignore[union-attr]
                except UnicodeDecodeError as exc:
                    raise ParseFailed(str(exc), CloseReason.INVALID_FRAME_PAYLOAD_DATA) from None
                return Frame(opcode, text, True, True)
            return decoder.process_frame(frame)
        if opcode is _CLOSE:
            self._close_received = True
            return self._process_close(frame)
        if opcode is _CONTINUATION:
            return self._message_decoder.process_frame(frame)
        return frame  # ping, pong

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet."""
        return self.decoder.buffered

    def _process_close(self, frame: Frame) -> Frame:
        payload = frame.payload
        if isinstance(payload, (bytes, bytearray)) and payload[:2] == b"\x03\xf6":
            # 1014 (Bad Gateway) is registered but missing from wsproto's list, which
            # refused it with 1002 though check_close_code lets us send it.
            as_1000 = Frame(frame.opcode, b"\x03\xe8" + payload[2:], True, True)
            reason = str(super()._process_close(as_1000).payload[1])
            return Frame(frame.opcode, (1014, reason), frame.frame_finished, frame.message_finished)
        return super()._process_close(frame)

    def send_data(self, payload: Union[bytes, bytearray, str] = b"", fin: bool = True) -> bytearray:
        """wsproto's ``send_data``; a whole ``bytes`` or ``str`` message with no
        extension negotiated (the common case) is framed here, without its checks of
        what cannot happen then."""
        if fin and self._outbound_opcode is None and not self.extensions:
            kind = type(payload)
            if kind is bytes:
                return self._frame(0x82, payload)  # type: ignore[arg-type]
            if kind is str:
                return self._frame(0x81, payload.encode("utf-8"))  # type: ignore[union-attr]
        if not isinstance(payload, (bytes, bytearray, memoryview, str)):
            # wsproto 1.3 raises TypeError here, 1.2 (the last for Python 3.9) ValueError.
            raise TypeError("Must provide bytes or text")
        return super().send_data(payload, fin)

    def _serialize_frame(
        self, opcode: Opcode, payload: Union[bytes, bytearray] = b"", fin: bool = True
    ) -> bytearray:
        rsv = RsvBits(False, False, False)
        for extension in reversed(self.extensions):
            rsv, payload = extension.frame_outbound(self, opcode, rsv, payload, fin)  # type: ignore[arg-type]
        if len(payload) > 125 and opcode.iscontrol():
            raise ValueError("payload too long for control frame")
        first = (fin << 7) | (rsv.rsv1 << 6) | (rsv.rsv2 << 5) | (rsv.rsv3 << 4) | opcode
        return self._frame(first, payload)

    def _frame(self, first: int, payload: Union[bytes, bytearray]) -> bytearray:
        """A frame: its first byte, then the length, then the payload (masked by a client)."""
        length = len(payload)
        maskbit = 0x80 if self.client else 0
        if length <= 125:
            header = _HEAD.pack(first, maskbit | length)
        elif length <= 0xFFFF:
            header = _HEAD16.pack(first, maskbit | 126, length)
        else:
            header = _HEAD64.pack(first, maskbit | 127, length)
        if self.client:
            key = mask_key()
            return header + key + mask(payload, key)  # type: ignore[return-value]
        return header + payload  # type: ignore[return-value]
