"""Frames parsed straight from the received chunks: however the bytes are cut, fed
and drained (``max_pending_messages`` stopping mid-chunk, more data arriving while
stalled), the events are those of feeding everything at once."""

from __future__ import annotations

import os
import random
import struct
from typing import List, Optional, Sequence, Tuple

import pytest
from core_support import Pair
from core_support import normalise as normalise_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wscore
from wscore import Closed, Config, Message, State
from wscore._framing import Framer

SETTINGS = settings(
    deadline=None,
    max_examples=80,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KiB = 1024
Item = Tuple[str, object]


def payload(size: int, seed: int, text: bool = False) -> object:
    """``size`` bytes (or ASCII characters), partly compressible."""
    rng = random.Random(seed)
    unit = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 40)))
    data = (unit * (size // len(unit) + 1))[:size]
    if size > 64:  # a random stretch, so that deflate leaves something
        at = rng.randrange(size - 32)
        data = data[:at] + bytes(rng.randrange(32, 127) for _ in range(32)) + data[at + 32 :]
    return data.decode("ascii") if text else data


def raw_frame(opcode: int, data: bytes, masked: bool, fin: bool = True, rsv: int = 0) -> bytes:
    """A frame as a peer may send it (no checks)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    bit = 0x80 if masked else 0
    if len(data) <= 125:
        head = struct.pack("!BB", first, bit | len(data))
    elif len(data) <= 0xFFFF:
        head = struct.pack("!BBH", first, bit | 126, len(data))
    else:
        head = struct.pack("!BBQ", first, bit | 127, len(data))
    if not masked:
        return head + data
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(data))


def bad_frame(kind: str, masked: bool) -> bytes:
    """A frame the receiver refuses: its close code comes at its place in the events."""
    if kind == "opcode":  # reserved opcode: 1002
        return raw_frame(0x3, b"x", masked)
    if kind == "utf8":  # invalid UTF-8 in a whole text frame: 1007
        return raw_frame(0x1, b"ok \xff\xfe", masked)
    if kind == "mask":  # the wrong mask bit for this side: 1002
        return raw_frame(0x2, b"x" * 300, not masked)
    assert kind == "control"  # a fragmented ping: 1002
    return raw_frame(0x9, b"p", masked, fin=False)


def build(
    items: Sequence[Item],
    masked: bool,
    compression: Optional[str],
    bad: Optional[str],
    receiver_config: Optional[Config] = None,
) -> Tuple[wscore.ClientConnection | wscore.ServerConnection, bytes]:
    """A fresh receiver, and the bytes its peer writes for ``items`` (the receiver is
    the server when ``masked``). Masking keys differ between calls, lengths do not."""
    config = Config(compression=compression, max_size=None)  # type: ignore[arg-type]
    if receiver_config is None:
        receiver_config = config
    pair = Pair(*((config, receiver_config) if masked else (receiver_config, config)))
    sender, receiver = (pair.client, pair.server) if masked else (pair.server, pair.client)
    for n, (kind, value) in enumerate(items):
        if kind == "msg":
            sender.send(value)  # type: ignore[arg-type]
        elif kind == "frag":  # a fragmented message, a ping between its fragments
            pieces: List[object] = value  # type: ignore[assignment]
            for i, piece in enumerate(pieces):
                sender.send(piece, final=i == len(pieces) - 1)  # type: ignore[arg-type]
                if i == 0:
                    sender.ping(b"f%d" % n)
        elif kind == "ping":
            sender.ping(b"%d" % n + value)  # type: ignore[operator]
        elif kind == "pong":
            sender.pong(value)  # type: ignore[arg-type]
        else:
            assert kind == "close"
            sender.close(1000, "bye")
            break
    data = sender.data_to_send()
    if bad is not None:
        data += bad_frame(bad, masked)
    return receiver, data


def normalise(events: List[wscore.Event]) -> List[object]:
    """core_support.normalise; the reason of a failure may differ with the cuts
    (where invalid UTF-8 is, in the piece that has it), so it is left out."""
    return normalise_events(events, drop_partial_on_close=True)


def drain(receiver: object, events: List[wscore.Event]) -> None:
    """Take events until nothing is left to parse (what a transport does)."""
    for _ in range(10_000):
        got = receiver.events()  # type: ignore[attr-defined]
        events += got
        if not got and not receiver.more_buffered:  # type: ignore[attr-defined]
            return
    raise AssertionError("events() never ran dry")


def replay(
    items: Sequence[Item],
    masked: bool,
    compression: Optional[str],
    bad: Optional[str],
    receiver_config: Config,
    cuts: Optional[Sequence[int]],
    limit: Optional[int] = None,
    takes: Sequence[int] = (1,),
    as_bytearray: Sequence[bool] = (False,),
) -> List[object]:
    """Feed the receiver the stream cut at ``cuts`` (None: all at once), calling
    ``events()`` ``takes[i]`` times after chunk i (0: more data comes while stalled)."""
    receiver, data = build(items, masked, compression, bad, receiver_config)
    receiver.max_pending_messages = limit
    size = len(data)
    edges = [0, size] if cuts is None else sorted({0, size, *(c % (size + 1) for c in cuts)})
    events: List[wscore.Event] = []
    for i, (a, b) in enumerate(zip(edges, edges[1:])):
        if a == b:
            continue
        chunk = data[a:b]
        receiver.receive_data(bytearray(chunk) if as_bytearray[i % len(as_bytearray)] else chunk)
        for _ in range(takes[i % len(takes)]):
            events += receiver.events()
        if not receiver.more_buffered and receiver.state is not State.CLOSED:
            # All that could be parsed was: at most a frame (300 KiB here) is left.
            assert receiver._framer.buffered <= 301 * KiB  # type: ignore[union-attr]
    drain(receiver, events)
    return normalise(events)


def receiver_config(streaming: bool, max_size: Optional[int]) -> Config:
    return Config(compression="deflate", max_size=max_size, streaming=streaming)


# -- hypothesis: random streams, random cuts, random draining ------------------------------

SIZES = st.one_of(
    st.integers(0, 200),
    st.sampled_from([125, 126, 127, 0xFFFF, 0x10000, 0x10001, 128 * KiB, 300 * KiB]),
    st.integers(200, 70_000),
    st.integers(70_000, 300 * KiB),
)


@st.composite
def items(draw: st.DrawFn) -> List[Item]:
    out: List[Item] = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["msg", "msg", "msg", "text", "frag", "ping", "pong"]))
        if kind in ("msg", "text"):
            out.append(("msg", payload(draw(SIZES), draw(st.integers(0, 99)), kind == "text")))
        elif kind == "frag":
            text = draw(st.booleans())
            sizes = draw(st.lists(st.one_of(st.integers(0, 3000), SIZES), min_size=2, max_size=4))
            out.append(("frag", [payload(s, i, text) for i, s in enumerate(sizes)]))
        else:
            out.append((kind, draw(st.binary(max_size=100))))
    if draw(st.booleans()):
        out.append(("close", None))
    return out


@SETTINGS
@given(
    stream=items(),
    masked=st.booleans(),
    compression=st.sampled_from([None, "deflate"]),
    streaming=st.booleans(),
    max_size=st.sampled_from([None, 200 * KiB]),
    bad=st.sampled_from([None, None, "opcode", "utf8", "mask", "control"]),
    cuts=st.lists(st.integers(0, 2 * 300 * KiB), max_size=30),
    small_cuts=st.lists(st.integers(0, 300), max_size=5),
    limit=st.sampled_from([None, 1, 2, 3]),
    takes=st.lists(st.integers(0, 2), min_size=1, max_size=8),
    as_bytearray=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_cuts_and_stalls_do_not_change_events(
    stream, masked, compression, streaming, max_size, bad, cuts, small_cuts, limit, takes,
    as_bytearray,
):
    config = receiver_config(streaming, max_size)
    whole = replay(stream, masked, compression, bad, config, None)
    pieces = replay(
        stream, masked, compression, bad, config, cuts + small_cuts, limit, takes, as_bytearray
    )
    assert pieces == whole
    if bad is not None and ("close", None) not in stream:
        assert whole[-1][0] == "closed" and whole[-1][1] in (1002, 1007, 1009)


# -- one rich stream, fed in every way ------------------------------------------------------

RICH: List[Item] = [
    ("msg", payload(64 * KiB, 1)),
    ("msg", payload(64 * KiB, 2)),
    ("ping", b"a"),
    ("msg", payload(0, 3)),
    ("msg", payload(300 * KiB, 4)),
    ("msg", payload(10, 5, text=True)),
    ("frag", [payload(70_000, 6), payload(5, 7), payload(140 * KiB, 8)]),
    ("pong", b"b"),
    ("msg", payload(130 * KiB, 9, text=True)),
    ("msg", payload(64 * KiB, 10)),
    ("msg", payload(126, 11)),
    ("frag", [payload(1000, 12, text=True), payload(3, 13, text=True)]),
    ("msg", payload(200 * KiB, 14)),
    ("msg", payload(64 * KiB, 15)),
    ("msg", payload(16, 16)),
]


def frame_aligned_cuts(masked: bool, compression: Optional[str], per_read: int) -> List[int]:
    """Cut after every ``per_read`` frames (reads of whole frames)."""
    _, data = build(RICH, masked, compression, None)
    ends, at = [], 0
    while at < len(data):
        length = data[at + 1] & 0x7F
        start = at + 2
        if length == 126:
            length, start = struct.unpack_from("!H", data, start)[0], start + 2
        elif length == 127:
            length, start = struct.unpack_from("!Q", data, start)[0], start + 8
        at = start + (4 if data[at + 1] & 0x80 else 0) + length
        ends.append(at)
    return ends[per_read - 1 :: per_read]


def rich_cases() -> List[Tuple[bool, Optional[str], bool, str, Optional[int]]]:
    """Every way of feeding, but byte by byte (slow) only in a few combinations."""
    feeds = ["1", "7", "1000", "64k", "256k", "aligned1", "aligned4", "aligned4+3", "random"]
    return [
        (masked, compression, streaming, feed, limit)
        for masked in (True, False)
        for compression in (None, "deflate")
        for streaming in (False, True)
        for feed in feeds
        for limit in (None, 1)
        if feed not in ("1", "7")
        or not (limit is not None or compression or (streaming and feed == "1"))
    ]


@pytest.mark.parametrize("masked, compression, streaming, feed, limit", rich_cases())
def test_rich_stream(masked, compression, streaming, feed, limit):
    config = receiver_config(streaming, None)
    whole = replay(RICH, masked, compression, None, config, None)
    messages = [e for e in whole if isinstance(e, tuple) and e[0] == "message"]
    assert len(messages) == 13 and messages[-1] == ("message", payload(16, 16))
    _, data = build(RICH, masked, compression, None)
    size = len(data)
    if feed.startswith("aligned"):
        per_read, _, shift = feed[len("aligned") :].partition("+")
        cuts = frame_aligned_cuts(masked, compression, int(per_read))
        cuts = [c + int(shift or 0) for c in cuts]
    elif feed == "random":
        rng = random.Random(7)
        cuts = sorted(rng.randrange(size) for _ in range(60))
    else:
        step = {"64k": 64 * KiB, "256k": 256 * KiB}.get(feed) or int(feed)
        # Byte by byte: the first messages (two 64 KiB frames, a ping, an empty frame,
        # the start of a large one), then the rest at once.
        cuts = list(range(step, size if step > 1 else 140 * KiB, step))
    takes = (0, 1, 2, 1) if limit else (1,)
    assert replay(RICH, masked, compression, None, config, cuts, limit, takes) == whole


def test_more_data_while_stalled_goes_after_the_chunk():
    # Parsing stops at max_pending_messages mid-chunk; the next chunk must come
    # after what is left of the first, whole frames and a partial one alike.
    config = Config(compression=None, max_size=None)
    pair = Pair(config, config)
    pair.server.max_pending_messages = 1
    for n in range(6):
        pair.client.send(bytes([n]) * (40_000 if n % 2 else 10))
    data = pair.client.data_to_send()
    first, second = data[: len(data) - 20_000], data[len(data) - 20_000 :]
    pair.server.receive_data(first)
    assert pair.server.more_buffered
    assert pair.server._framer.buffered == len(first) - 16  # type: ignore[union-attr]
    pair.server.receive_data(second)  # stalled: kept after the first's rest
    assert pair.server._framer.buffered == len(data) - 16  # type: ignore[union-attr]
    got: List[wscore.Event] = []
    drain(pair.server, got)
    assert got == [Message(bytes([n]) * (40_000 if n % 2 else 10)) for n in range(6)]
    assert pair.server._framer.buffered == 0  # type: ignore[union-attr]


# -- the decoder alone: what stays buffered, pieces, bytearrays ----------------------------


def framer_stream(sizes: Sequence[int], masked: bool) -> Tuple[bytes, List[int]]:
    """Binary frames of ``sizes`` and where each ends."""
    data, ends = b"", []
    for n, size in enumerate(sizes):
        data += raw_frame(0x2, bytes([n & 0xFF]) * size, masked)
        ends.append(len(data))
    return data, ends


@SETTINGS
@given(
    sizes=st.lists(SIZES, min_size=1, max_size=6),
    masked=st.booleans(),
    cuts=st.lists(st.integers(0, 2 * 300 * KiB), max_size=20),
    takes=st.lists(st.sampled_from([0, 1, 100]), min_size=1, max_size=6),
)
def test_buffered_is_what_was_not_parsed(sizes, masked, cuts, takes):
    # Whole binary frames only: each is taken whole, so what is buffered is exactly
    # what was fed past the end of the last frame taken.
    data, ends = framer_stream(sizes, masked)
    framer = Framer(client=not masked, extensions=[], max_size=None, whole_frames=True)
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    fed = parsed = 0
    frames: List[bytes] = []
    for i, (a, b) in enumerate(zip(edges, edges[1:])):
        framer.receive_bytes(data[a:b])
        fed = b
        for _ in range(takes[i % len(takes)]):
            frame = framer.next_frame()
            if frame is None:
                break
            frames.append(frame.payload)  # type: ignore[arg-type]
            parsed = ends[len(frames) - 1]
        assert framer.buffered == fed - parsed
    while (frame := framer.next_frame()) is not None:
        frames.append(frame.payload)  # type: ignore[arg-type]
    assert frames == [bytes([n & 0xFF]) * size for n, size in enumerate(sizes)]
    assert framer.buffered == 0


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("tail_type", [bytes, bytearray])
def test_several_reads_after_a_collected_frame(masked, tail_type):
    # Reads fed without parsing between them: a collected frame ends in one and more
    # follow; they are all parsed after it, in order.
    data, _ = framer_stream([200 * KiB, 10, 70_000, 3], masked)
    framer = Framer(client=not masked, extensions=[], max_size=None, whole_frames=True)
    framer.receive_bytes(data[:1000])
    assert framer.next_frame() is None  # collecting from here on
    cuts = [1000, 200 * KiB + 100, 200 * KiB + 50_000, 200 * KiB + 90_000, len(data)]
    for a, b in zip(cuts, cuts[1:]):
        framer.receive_bytes(tail_type(data[a:b]))
    assert framer.buffered == len(data)  # nothing parsed yet
    got = []
    while (frame := framer.next_frame()) is not None:
        got.append(frame.payload)
    assert got == [bytes([n]) * size for n, size in enumerate([200 * KiB, 10, 70_000, 3])]
    assert framer.buffered == 0


def test_bytearray_reused_by_the_caller():
    # A bytearray is copied, not kept: the caller may reuse it for the next read.
    data, _ = framer_stream([10, 100, 50_000], masked=True)
    framer = Framer(client=False, extensions=[], max_size=None, whole_frames=True)
    read = bytearray(data[:30_000])
    framer.receive_bytes(read)  # type: ignore[arg-type]
    read[:] = b"\x00" * len(read)
    assert framer.next_frame().payload == bytes([0]) * 10  # type: ignore[union-attr]
    assert framer.next_frame().payload == bytes([1]) * 100  # type: ignore[union-attr]
    assert framer.next_frame() is None
    framer.receive_bytes(bytearray(data[30_000:]))  # type: ignore[arg-type]
    assert framer.next_frame().payload == bytes([2]) * 50_000  # type: ignore[union-attr]


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 9, 13])
@pytest.mark.parametrize("size", [10, 1000, 70_000])
def test_header_cut_then_rest_in_one_read(cut, size):
    # A read ending inside a frame header, the next one holding the rest and more
    # frames: nothing is lost, frames come in order.
    data, _ = framer_stream([size, 7, size, 0], masked=True)
    data = b"\x82\x81" + os.urandom(4) + b"z" + data  # a first 1-byte frame
    framer = Framer(client=False, extensions=[], max_size=None, whole_frames=True)
    framer.receive_bytes(data[: 7 + cut])
    got = [framer.next_frame()]
    assert framer.next_frame() is None
    framer.receive_bytes(data[7 + cut :])
    while (frame := framer.next_frame()) is not None:
        got.append(frame)
    assert [len(f.payload) for f in got] == [1, size, 7, size, 0]  # type: ignore[union-attr]


def test_max_size_mid_chunk():
    # A frame over max_size after whole frames in the same read: they come first.
    config = Config(compression=None, max_size=1000)
    pair = Pair(Config(compression=None, max_size=None), config)
    data = b"".join(raw_frame(0x2, bytes([n]) * 999, True) for n in range(3))
    data += raw_frame(0x2, b"x" * 1001, True) + raw_frame(0x2, b"y", True)
    pair.server.receive_data(data)
    events = pair.server.events()
    assert events[:3] == [Message(bytes([n]) * 999) for n in range(3)]
    assert isinstance(events[3], Closed) and events[3].code == 1009


# -- the fast read: what it must leave to the general path ---------------------------

KEY0 = b"\x00\x00\x00\x00"  # masking with it leaves the payload as it is: easy to craft


def test_fast_read_leaves_a_frame_streamed_in_pieces() -> None:
    # The rest of a frame whose header came in an earlier read can look like a frame.
    inner = b"\x82\x86" + KEY0 + b"abcdef"
    server = Pair(server_config=Config(streaming=True)).server
    server.receive_data(bytes([0x82, 0x80 | len(inner)]) + KEY0)  # a header alone
    server.receive_data(inner + inner)  # the frame's payload, then a real frame
    events = server.events()
    assert normalise_events(events) == [("message", inner), ("message", b"abcdef")]


def test_fast_read_leaves_a_message_in_fragments() -> None:
    pair = Pair()
    pair.server.receive_data(b"\x02\x82" + KEY0 + b"ab")  # first fragment, not final
    pair.server.receive_data(b"\x82\x82" + KEY0 + b"cd")  # a new message: a protocol error
    events = pair.server.events()
    assert isinstance(events[-1], Closed) and events[-1].code == 1002
    assert not any(isinstance(e, Message) for e in events)


def test_fast_read_resumes_inside_a_message_in_fragments() -> None:
    server = Pair(server_config=Config(streaming=True)).server
    server.max_pending_messages = 1  # stops after the first fragment
    server.receive_data(b"\x01\x82" + KEY0 + b"ab" + b"\x81\x82" + KEY0 + b"cd")
    assert server.events() == [wscore.Fragment("ab", False)]
    events = server.events()  # a new message inside the first: a protocol error
    assert len(events) == 1 and isinstance(events[0], Closed) and events[0].code == 1002


def test_fast_read_takes_nothing_after_a_close_frame() -> None:
    framer = Framer(False, [], None)
    framer.receive_bytes(b"\x88\x82" + KEY0 + b"\x03\xe8")
    assert framer.next_frame() is not None  # the close frame
    got: List[object] = []
    assert framer.read_messages(b"\x82\x82" + KEY0 + b"ab", 10, got.append)
    assert got == [] and framer.next_frame() is None
