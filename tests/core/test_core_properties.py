"""Property tests (hypothesis): chunking, round trips, garbage."""

from __future__ import annotations

from typing import List

import pytest
from core_support import Pair, normalise
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wscore
from wscore import Closed, Config, Message, State

SETTINGS = settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def big_binary(max_size: int) -> st.SearchStrategy[bytes]:
    """Bytes up to ``max_size``: small random ones, or large ones built from a seed."""
    small = st.binary(max_size=300)
    sizes = st.one_of(st.integers(0, max_size), st.sampled_from([125, 126, 65536, max_size]))
    large = st.tuples(st.binary(min_size=1, max_size=64), sizes).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )
    return st.one_of(small, large)


def big_text(max_size: int) -> st.SearchStrategy[str]:
    small = st.text(max_size=100)
    sizes = st.one_of(st.integers(0, max_size // 4), st.just(max_size // 4))
    large = st.tuples(st.text(min_size=1, max_size=16), sizes).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )
    return st.one_of(small, large)


def cut(data: bytes, points: List[int]) -> List[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(edges, edges[1:])]


message = st.one_of(big_binary(70000), big_text(70000))


def build_client_stream(compression: object, items: List[object]) -> tuple[Pair, bytes]:
    config = Config(compression=compression, max_size=None)  # type: ignore[arg-type]
    pair = Pair(config)
    for item in items:
        kind, value = item  # type: ignore[misc]
        if kind == "msg":
            pair.client.send(value)
        elif kind == "frag":
            pair.client.send_fragments(value)
        elif kind == "ping":
            pair.client.ping(value)
        elif kind == "close":
            pair.client.close(1000, value)
            break
    return pair, pair.client.data_to_send()


item = st.one_of(
    st.tuples(st.just("msg"), message),
    st.tuples(st.just("frag"), st.lists(st.binary(max_size=2000), min_size=1, max_size=5)),
    st.tuples(st.just("frag"), st.lists(st.text(max_size=500), min_size=1, max_size=5)),
    st.tuples(st.just("ping"), st.binary(max_size=125)),
    st.tuples(st.just("close"), st.text(max_size=20)),
)


@SETTINGS
@given(
    compression=st.sampled_from(["deflate", None]),
    streaming=st.booleans(),
    items=st.lists(item, max_size=6, unique_by=lambda i: i[1] if i[0] == "ping" else id(i)),
    points=st.lists(st.integers(min_value=0), max_size=20),
)
def test_cutting_does_not_change_events(compression, streaming, items, points):
    pair, data = build_client_stream(compression, items)
    server_config = Config(compression=compression, max_size=None, streaming=streaming)
    # Replay the client's frames into fresh servers, whole and in pieces.
    whole = replay(pair, server_config, [data])
    assert replay(pair, server_config, cut(data, points)) == whole
    stop = next((n for n, i in enumerate(items) if i[0] == "close"), len(items))
    sent = [i for i in items[:stop] if i[0] in ("msg", "frag")]
    received = [e for e in whole if isinstance(e, tuple) and e[0] == "message"]
    expected = [("message", i[1] if i[0] == "msg" else i[1][0][:0].join(i[1])) for i in sent]
    assert received == expected
    if stop < len(items):
        assert whole[-1] == ("closed", 1000, type(None))


def replay(pair: Pair, server_config: Config, pieces: List[bytes]) -> List[object]:
    """Feed a fresh server the handshake of ``pair`` and then ``pieces``."""
    request = pair.handshake
    server = wscore.ServerConnection(server_config)
    server.receive_data(request)
    server.events()
    server.accept()
    events: List[wscore.Event] = []
    for piece in pieces:
        if piece:  # b"" would mean EOF
            server.receive_data(piece)
            events += server.events()
    return normalise(events)


@SETTINGS
@given(
    compression=st.sampled_from(["deflate", None]),
    no_context=st.booleans(),
    messages=st.lists(
        st.tuples(
            st.one_of(big_binary(3 * 2**20), big_text(2**20)),
            st.lists(st.integers(min_value=1, max_value=2**20), max_size=4),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_round_trip(compression, no_context, messages):
    options = (
        {"client_no_context_takeover": True, "server_no_context_takeover": True}
        if no_context
        else {}
    )
    config = Config(compression=compression, max_size=None, deflate_options=options)
    pair = Pair(config, config)
    for data, sizes in messages:
        # Split into fragments at the given sizes (the rest goes in the last one).
        fragments, rest = [], data
        for size in sizes:
            if not rest:
                break
            fragments.append(rest[:size])
            rest = rest[size:]
        fragments.append(rest)
        pair.client.send_fragments(fragments)
        pair.to_server()
        assert pair.server.events() == [Message(data)]
        pair.server.send_fragments(fragments)
        pair.to_client()
        assert pair.client.events() == [Message(data)]


@st.composite
def plausible_frame(draw: st.DrawFn, masked: bool) -> bytes:
    """A frame with a random but often valid header, and a random payload."""
    first = draw(st.sampled_from([0x81, 0x82, 0x01, 0x02, 0x80, 0x00, 0x89, 0x8A, 0x88,
                                  0xC1, 0xC2, 0x41, 0x40, 0x91, 0x83]))
    payload = draw(st.one_of(st.binary(max_size=200),
                             st.sampled_from([b"\x03\xe8", b"\xff" * 10, b"a" * 5000])))
    length = draw(st.one_of(st.just(len(payload)), st.integers(0, 2**63 - 1)))
    mask_bit = 0x80 if draw(st.booleans()) == masked or draw(st.booleans()) else 0
    if length <= 125:
        header = bytes([first, mask_bit | length])
    elif length <= 0xFFFF:
        header = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if mask_bit:
        header += draw(st.binary(min_size=4, max_size=4))
    return header + payload


ALLOWED = tuple(getattr(wscore.errors, name) for name in wscore.errors.__all__)


@SETTINGS
@given(
    compression=st.sampled_from(["deflate", None]),
    streaming=st.booleans(),
    side=st.sampled_from(["client", "server"]),
    data=st.data(),
)
def test_garbage_after_handshake(compression, streaming, side, data):
    chunk = st.one_of(st.binary(min_size=1, max_size=3000),
                      plausible_frame(masked=side == "server"))
    garbage = data.draw(st.lists(chunk, min_size=1, max_size=8))
    max_size = 4096
    config = Config(compression=compression, max_size=max_size, streaming=streaming)
    pair = Pair(config, config)
    conn = getattr(pair, side)
    limit = 5000 + 3000 + 14  # at most a chunk, a control frame and a header wait
    for chunk in garbage:
        try:
            conn.receive_data(chunk)
            conn.events()
            conn.data_to_send()
        except ALLOWED:
            pass
        if conn.state is State.CLOSED:
            break
        framer = conn._framer
        assert len(framer._frame_decoder.buffer) <= limit
        assert sum(len(p) for p in conn._parts) <= max_size
    conn.receive_data(b"")
    events = conn.events()
    if conn.state is State.CLOSED and events:
        assert isinstance(events[-1], Closed)
    assert conn.state is State.CLOSED


@SETTINGS
@given(data=st.binary(max_size=2000), points=st.lists(st.integers(min_value=0), max_size=10))
def test_garbage_handshake_server(data, points):
    server = wscore.ServerConnection(Config(max_request_size=1024))
    for piece in cut(data, points):
        try:
            server.receive_data(piece)
        except ALLOWED:
            pass
    events = server.events()
    server.receive_data(b"")
    events += server.events()
    assert server.state in (State.CLOSED, State.CONNECTING)
    assert all(isinstance(e, (wscore.RequestReceived, Closed)) for e in events)


@SETTINGS
@given(data=st.binary(max_size=2000), points=st.lists(st.integers(min_value=0), max_size=10))
def test_garbage_handshake_client(data, points):
    client = wscore.ClientConnection("ws://x/")
    for piece in cut(data, points):
        client.receive_data(piece)
    client.receive_data(b"")
    events = client.events()
    assert client.state is State.CLOSED
    assert isinstance(events[-1], Closed)


def _frames_of(framer: object, data: bytes, use_next: bool) -> List[object]:
    from wsproto.frame_protocol import ParseFailed

    framer.receive_bytes(data)  # type: ignore[attr-defined]
    out: List[object] = []
    try:
        if use_next:
            for _ in range(10000):
                frame = framer.next_frame()  # type: ignore[attr-defined]
                if frame is None:
                    break
                out.append(tuple(frame))
        else:
            for frame in framer.received_frames():  # type: ignore[attr-defined]
                out.append(tuple(frame))
    except ParseFailed as exc:
        out.append(("failed", int(exc.code)))
    return out


@SETTINGS
@given(data=st.data(), server=st.booleans())
def test_next_frame_matches_received_frames(data, server):
    from wscore._framing import Framer

    chunks = data.draw(st.lists(plausible_frame(masked=server), min_size=1, max_size=6))
    stream = b"".join(chunks)
    one = Framer(not server, [], 4096)
    two = Framer(not server, [], 4096)
    assert _frames_of(one, stream, True) == _frames_of(two, stream, False)


def _f(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    from core_support import frame

    return frame(opcode, payload, fin=fin)


@pytest.mark.parametrize(
    "stream",
    [
        _f(1, "héllo".encode()) + _f(2, b"\x00\x01") + _f(9, b"p") + _f(10, b"q"),
        _f(1, b"ab", fin=False) + _f(9) + _f(0, "é".encode()),
        _f(2, b"a" * 200, fin=False) + _f(0, b"b" * 70000),
        _f(1, b"\xff"),
        _f(1, b"\xc3", fin=False) + _f(0, b"\xa9"),
        _f(8, b"\x03\xe8bye") + _f(1, b"after close"),
        _f(8, b"\x03\xf6") + _f(1, b"x"),
        _f(2, b"x" * 5000),  # over max_size (4096)
        _f(0, b"x"),
    ],
)
def test_next_frame_matches_received_frames_examples(stream):
    from wscore._framing import Framer

    assert _frames_of(Framer(False, [], 4096), stream, True) == _frames_of(
        Framer(False, [], 4096), stream, False
    )


@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from([b"Host", b"host", b"Upgrade", b"X-A", b"x-a", b"Origin"])
            | st.binary(min_size=1, max_size=8),
            st.sampled_from([b"", b"websocket", b"a, b"]) | st.binary(max_size=300),
        ),
        max_size=12,
    )
)
def test_wire_headers_equal_headers(pairs: List[tuple]) -> None:
    from wscore._http import wire_headers

    headers = wire_headers(pairs)
    assert headers == wscore.Headers(pairs)
    for name, _ in pairs:
        text = name.upper().decode("latin-1")  # ASCII letters only change case
        assert headers.get_all(text) == wscore.Headers(pairs).get_all(text)


def _frame_bytes(first: int, payload: bytes, masked: bool, wide: int) -> bytes:
    """A frame with any first byte; ``wide`` picks the length encoding (0: shortest,
    1: 16 bits, 2: 64 bits), not always the shortest, which the peer must refuse."""
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if wide == 0 and length <= 125:
        head = bytes([first, mask_bit | length])
    elif wide <= 1 and length <= 0xFFFF:
        head = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = bytes([1, 2, 3, 4])
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


payloads = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\xff\xfe", "é".encode(), b"\x03\xe8", b"x" * 126, b"y" * 300]),
)
frame_spec = st.one_of(
    # Mostly well-formed text and binary frames, masked as the peer must...
    st.tuples(st.sampled_from([0x81, 0x82]), payloads, st.just(True), st.just(0)),
    st.tuples(st.sampled_from([0x81, 0x82]), payloads, st.just(True), st.just(0)),
    # ...and everything else: fragments, control frames, reserved bits and opcodes,
    # the wrong masking, lengths not in their shortest encoding.
    st.tuples(
        st.sampled_from([0x81, 0x82, 0x01, 0x00, 0x80, 0x89, 0x8A, 0x88, 0xC1, 0x92, 0x83]),
        payloads,
        st.booleans(),
        st.sampled_from([0, 1, 2]),
    ),
)


@SETTINGS
@given(
    specs=st.lists(frame_spec, max_size=8),
    server=st.booleans(),
    streaming=st.booleans(),
    max_size=st.sampled_from([None, 100]),
    limit=st.sampled_from([None, 1, 3]),
)
def test_fast_read_matches_the_general_path(specs, server, streaming, max_size, limit):
    # The core parses a bytes read's leading whole messages on a fast path; a
    # bytearray read takes the general path. Events and outcome must not differ.
    frames = [
        _frame_bytes(first, payload, right == server, wide)  # a client masks
        for first, payload, right, wide in specs
    ]
    data = b"".join(frames)
    outcomes = []
    for read in (data, bytearray(data)):
        pair = Pair(server_config=Config(max_size=max_size, streaming=streaming),
                    client_config=Config(max_size=max_size, streaming=streaming))
        conn = pair.server if server else pair.client
        conn.max_pending_messages = limit
        events: List[wscore.Event] = []
        last = _frame_bytes(0x82, b"last", server, 0)
        for piece in (read, last if type(read) is bytes else bytearray(last)):
            conn.receive_data(piece)
            for _ in range(20):  # what max_pending_messages held back comes on each call
                batch = conn.events()
                if not batch and not conn.more_buffered:
                    break
                messages = [e for e in batch if isinstance(e, (Message, wscore.Fragment))]
                assert limit is None or len(messages) <= limit
                events += batch
        outcomes.append((normalise(events), conn.state, conn.data_to_send()))
    assert outcomes[0][:2] == outcomes[1][:2]
    assert len(outcomes[0][2]) == len(outcomes[1][2])  # the same answers (masks differ)
