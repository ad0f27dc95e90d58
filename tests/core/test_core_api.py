"""Config validation, Headers, Request/Response, events, errors, import purity."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref

import pytest
from core_support import Pair
from wsproto.frame_protocol import FrameProtocol

import wscore
from wscore import (
    Closed,
    Config,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Fragment,
    Headers,
    InvalidConfig,
    InvalidStatus,
    Message,
    Opened,
    Ping,
    Pong,
    Request,
    RequestReceived,
    Response,
)
from wscore._framing import _KEYS, Framer, _mask_python, mask, mask_key

# -- Config --------------------------------------------------------------------


def test_config_defaults():
    config = Config()
    assert config.max_size == 2**20 and config.compression == "deflate"
    assert config.ping_interval == 20 and config.ping_timeout == 20
    assert config.close_timeout == 10 and config.open_timeout == 10
    assert config.max_request_size == 8192 and config.max_headers == 128
    assert config.subprotocols == () and config.origins is None


def test_config_normalises_sequences():
    config = Config(subprotocols=["a"], origins=["o", None], extra_headers=[("X", "1")])
    assert config.subprotocols == ("a",)
    assert config.origins == ("o", None)
    assert config.extra_headers == (("X", "1"),)
    hash(config.subprotocols)


def test_config_replace_validates():
    config = Config().replace(max_size=10)
    assert config.max_size == 10
    with pytest.raises(InvalidConfig, match="max_size"):
        config.replace(max_size=-1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_size": -1}, "max_size must be None or an int >= 0, got -1"),
        ({"max_size": 1.5}, "max_size must be None or an int >= 0, got 1.5"),
        ({"compression": "gzip"}, "compression must be 'deflate' or None, got 'gzip'"),
        ({"deflate_options": {"level": 9}}, "unknown deflate_options ['level']"),
        (
            {"deflate_options": {"client_max_window_bits": 8}},
            "deflate_options['client_max_window_bits'] must be 9 to 15, got 8",
        ),
        (
            {"deflate_options": {"server_max_window_bits": 16}},
            "deflate_options['server_max_window_bits'] must be 9 to 15, got 16",
        ),
        (
            {"deflate_options": {"server_max_window_bits": "12"}},
            "must be 9 to 15, got '12'",
        ),
        ({"ping_interval": 0}, "ping_interval must be None or a number > 0, got 0"),
        ({"ping_timeout": -1}, "ping_timeout must be None or a number > 0"),
        ({"close_timeout": "1"}, "close_timeout must be None or a number > 0, got '1'"),
        ({"open_timeout": 0.0}, "open_timeout must be None or a number > 0"),
        ({"max_request_size": 0}, "max_request_size must be an int > 0, got 0"),
        ({"max_headers": None}, "max_headers must be an int > 0, got None"),
        ({"max_body_size": 1.0}, "max_body_size must be an int > 0, got 1.0"),
        ({"subprotocols": "chat"}, "subprotocols must be a list of strings, not a string"),
        ({"origins": "https://x"}, "origins must be a list of strings, not a string"),
    ],
)
def test_config_invalid(kwargs, message):
    with pytest.raises(InvalidConfig) as info:
        Config(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_limits_that_are_fine():
    assert Config(max_size=0).max_size == 0
    assert Config(max_size=None, ping_interval=None, ping_timeout=None, close_timeout=None,
                  open_timeout=None, compression=None).open_timeout is None
    assert Config(deflate_options={"client_max_window_bits": 9}).deflate_options


# -- Headers -------------------------------------------------------------------------


def test_headers():
    headers = Headers([(b"Content-Type", b"text/plain"), ("X-A", "1"), ("x-a", "2")])
    assert headers["content-type"] == "text/plain"
    assert headers.get("X-A") == "1" and headers.get_all("X-a") == ["1", "2"]
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    assert "CONTENT-TYPE" in headers and "nope" not in headers and 42 not in headers
    with pytest.raises(KeyError):
        headers["nope"]
    assert len(headers) == 3
    assert list(headers) == [("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2")]
    headers.add("X-B", "3")
    assert headers.raw()[-1] == (b"X-B", b"3")
    assert headers == Headers([("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2"),
                               ("X-B", "3")])
    assert headers != Headers() and headers != [("X-B", "3")]
    assert repr(Headers({"A": "b"})) == "Headers([('A', 'b')])"
    assert Headers(None) == Headers()


def test_headers_from_bytearray_and_dict():
    assert list(Headers([(bytearray(b"X-C"), bytearray(b"v"))])) == [("X-C", "v")]
    assert Headers({"X-D": "w"})["x-d"] == "w"


def test_headers_tokens():
    headers = Headers([("Connection", "keep-alive, Upgrade"), ("Connection", " ,x ,")])
    assert headers.tokens("connection") == ["keep-alive", "Upgrade", "x"]
    assert headers.tokens("missing") == []


def test_wire_headers_share_common_strings(monkeypatch):
    from wscore import _http

    pairs = [(b"Host", b"example.com"), (b"Upgrade", b"websocket"),
             (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"X-Odd", b"v")]
    first, second = _http.wire_headers(pairs), _http.wire_headers(list(pairs))
    assert first == second == Headers(pairs)
    assert first["x-odd"] == "v" and first.get("HOST") == "example.com"
    items = list(zip(first, second))
    assert items[0][0] is items[0][1] and items[1][0] is items[1][1]  # shared pairs
    assert items[2][0][0] is items[2][1][0]  # a shared name, its own value
    assert items[2][0][1] is not items[2][1][1]
    # Both caches stop growing when full: what is not cached is still decoded.
    monkeypatch.setattr(_http, "_NAMES", {})
    monkeypatch.setattr(_http, "_PAIRS", {})
    monkeypatch.setattr(_http, "_CACHE_SIZE", 2)
    many = [(b"X-%d" % i, b"%d" % i) for i in range(5)] + [(b"Host", b"h%d" % i) for i in range(5)]
    headers = _http.wire_headers(many)
    assert headers == Headers(many)
    assert list(_http._NAMES) == [b"X-0", b"X-1"]  # Host came when full
    assert list(_http._PAIRS) == [(b"Host", b"h0"), (b"Host", b"h1")]
    assert headers.get_all("host") == ["h0", "h1", "h2", "h3", "h4"]
    monkeypatch.setattr(_http, "_PAIRS", {})
    assert _http.wire_headers([(b"Origin", b"o" * 300)])["Origin"] == "o" * 300
    assert not _http._PAIRS  # long values are not kept


def test_request():
    request = Request("GET", "/a/b?x=1&y=%20&z", Headers([("Origin", "o"),
                      ("Sec-WebSocket-Protocol", "p1, p2")]))
    assert request.path == "/a/b" and request.query == "x=1&y=%20&z"
    assert request.query_params == [("x", "1"), ("y", " "), ("z", "")]
    assert request.subprotocols == ["p1", "p2"] and request.origin == "o"
    assert request.http_version == "1.1" and not request.is_websocket
    assert repr(request) == "<Request GET /a/b?x=1&y=%20&z websocket=False>"
    bare = Request("GET", "/", Headers())
    assert bare.query == "" and bare.query_params == [] and bare.origin is None


def test_response():
    response = Response(404, Headers([("Sec-WebSocket-Protocol", "p")]), b"nope", "Not Found")
    assert response.subprotocol == "p" and response.body == b"nope"
    assert repr(response) == "<Response 404 Not Found>"
    assert Response(200, Headers()).subprotocol is None


# -- events ------------------------------------------------------------------------------


def test_events_equality_and_repr():
    assert Message("a") == Message("a") and Message("a") != Message(b"a")
    assert Message("a") != Fragment("a", True)
    assert Fragment(b"x", False) != Fragment(b"x", True)
    assert Ping(b"p") == Ping(b"p") and Ping(b"p") != Pong(b"p")
    assert Pong(b"p", (b"p",), 0.5) != Pong(b"p")
    assert Closed(1000) == Closed(1000, "", None)
    assert hash(Message("a")) == hash(Message("a"))
    assert len({Message("a"), Message("a"), Message("b")}) == 2
    assert repr(Message("hi")) == "Message(data='hi')"
    assert repr(Fragment(b"x", True)) == "Fragment(data=b'x', final=True)"
    assert repr(Ping(b"")) == "Ping(payload=b'')"
    assert repr(Pong(b"a")) == "Pong(payload=b'a', acknowledged=(), latency=None)"
    assert repr(Closed(1001, "bye")) == "Closed(code=1001, reason='bye', error=None)"
    request = Request("GET", "/", Headers())
    assert RequestReceived(request) == RequestReceived(request)
    assert "RequestReceived(request=<Request GET / websocket=False>)" == repr(
        RequestReceived(request)
    )
    response = Response(101, Headers())
    assert repr(Opened(response)) == "Opened(response=<Response 101 >)"
    assert Message("x") != "x"


@pytest.mark.parametrize(
    "event, ok",
    [
        (Closed(1000), True),
        (Closed(1001), True),
        (Closed(1005), True),
        (Closed(1000, "", RuntimeError()), False),
        (Closed(1006), False),
        (Closed(1011), False),
        (Closed(4000), False),
    ],
)
def test_closed_ok(event, ok):
    assert event.ok is ok


@pytest.mark.parametrize(
    "event, clean",
    [
        (Closed(1000), True),
        (Closed(4000), True),  # any code, as long as both close frames went through
        (Closed(1002, "", RuntimeError()), False),  # we failed the connection
        (Closed(1006), False),  # it dropped without a close frame
    ],
)
def test_closed_clean(event, clean):
    assert event.clean is clean


# -- errors ---------------------------------------------------------------------------------


def test_error_tree():
    for name in wscore.errors.__all__:
        cls = getattr(wscore, name)
        assert issubclass(cls, wscore.WebSocketError)
    assert issubclass(wscore.InvalidState, wscore.LocalProtocolError)
    assert issubclass(wscore.PayloadTooBig, wscore.RemoteProtocolError)
    assert issubclass(wscore.InvalidStatus, wscore.InvalidHandshake)
    assert issubclass(wscore.InvalidHeader, wscore.InvalidHandshake)
    for cls in (wscore.OpenTimeout, wscore.CloseTimeout, wscore.KeepaliveTimeout):
        assert issubclass(cls, wscore.WebSocketTimeout) and issubclass(cls, TimeoutError)
    assert issubclass(wscore.ConcurrencyError, RuntimeError)
    assert issubclass(ConnectionClosedOK, ConnectionClosed)
    assert issubclass(ConnectionClosedError, ConnectionClosed)


def test_error_messages():
    assert wscore.RemoteProtocolError("bad").close_code == 1002
    assert wscore.RemoteProtocolError("bad", 1007).close_code == 1007
    too_big = wscore.PayloadTooBig("big")
    assert too_big.close_code == 1009 and str(too_big) == "big"
    assert wscore.InvalidHeader("h").status == 400
    assert wscore.InvalidHeader("h", 426).status == 426
    uri = wscore.InvalidURI("http://x", "the scheme must be ws or wss")
    assert str(uri) == "'http://x' is not a valid WebSocket URI: the scheme must be ws or wss"
    body = "é" * 300
    status = InvalidStatus(Response(500, Headers(), body.encode()))
    assert status.status == 500
    assert str(status).startswith("server rejected WebSocket connection: HTTP 500: é")
    assert len(str(status)) < 200


def test_connection_closed_messages():
    assert str(ConnectionClosedOK(1000)) == "connection closed: code 1000"
    error = ValueError("x")
    closed = ConnectionClosedError(1011, "oops", error)
    assert str(closed) == "connection closed: code 1011 (oops); x"
    assert closed.__cause__ is error and closed.code == 1011 and closed.reason == "oops"
    assert ConnectionClosed(1006).__cause__ is None


def test_version_and_all():
    assert wscore.__version__ == "0.1.0"
    for name in wscore.__all__:
        assert hasattr(wscore, name), name


# -- masking -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1000, 65537])
def test_mask_matches_python(size):
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    key = b"\x12\x34\x56\x78"
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert mask(data, key) == expected
    assert _mask_python(data, key) == expected
    assert mask(bytearray(data), key) == expected
    assert mask(memoryview(data), key) == expected


def test_mask_keys_are_fresh_and_refilled():
    _KEYS.clear()
    keys = [mask_key() for _ in range(600)]  # more than one block of 256
    assert all(type(k) is bytes and len(k) == 4 for k in keys)
    assert len(set(keys)) > 590  # 2**32 values: a repeat among 600 is rare, many is a bug


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_its_own_mask_keys():
    _KEYS.clear()
    mask_key()  # the pool now holds 255 keys the parent will use
    expected = _KEYS[-1]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, mask_key())
        os._exit(0)
    os.close(write_end)
    child_key = os.read(read_end, 4)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert mask_key() == expected  # the parent's next key is the one it drew
    assert child_key != expected


@pytest.mark.parametrize("client", [False, True])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("kind", [bytes, str, bytearray])
def test_fast_send_frames_as_wsproto_does(client, size, kind):
    """The fast path of Framer.send_data gives wsproto's frame, byte for byte."""
    payload = kind(b"a" * size) if kind is not str else "\u00e9" * (size // 2)
    ours = bytes(Framer(client, [], None).send_data(payload))
    theirs = bytes(FrameProtocol(client, []).send_data(payload))
    if client:  # the masking keys differ: compare headers, and payloads unmasked
        head = len(theirs) - len(payload.encode() if kind is str else payload) - 4
        assert ours[:head] == theirs[:head]
        assert mask(ours[head + 4 :], ours[head : head + 4]) == mask(
            theirs[head + 4 :], theirs[head : head + 4]
        )
    else:
        assert ours == theirs


def test_fragments_and_mixed_types_take_wsproto_path():
    framer = Framer(False, [], None)
    assert bytes(framer.send_data(b"ab", fin=False)) == b"\x02\x02ab"
    assert bytes(framer.send_data(b"cd")) == b"\x80\x02cd"  # a continuation
    framer.send_data("x", fin=False)
    with pytest.raises(TypeError):
        framer.send_data(b"y")  # bytes inside a text message
    with pytest.raises(TypeError):
        Framer(False, [], None).send_data(42)  # type: ignore[arg-type]


# -- purity -----------------------------------------------------------------------------------


def test_import_is_pure():
    code = (
        "import sys\n"
        "import wscore\n"
        "bad = [m for m in ('socket', 'selectors', 'threading', 'asyncio', 'ssl') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-X", "frozen_modules=on", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_closed_exception():
    from wscore import Closed, ConnectionClosedError, ConnectionClosedOK

    ok = Closed(1000, "bye").exception()
    assert isinstance(ok, ConnectionClosedOK) and ok.code == 1000 and ok.reason == "bye"
    error = ValueError("bad")
    failed = Closed(1002, "protocol", error).exception()
    assert isinstance(failed, ConnectionClosedError) and failed.code == 1002
    assert isinstance(Closed(1000, "", error).exception(), ConnectionClosedError)


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_connections_are_freed_without_the_cyclic_gc(compression):
    # A reference cycle kept every connection's framer, and with permessage-deflate
    # its zlib contexts (hundreds of KiB), until the cyclic garbage collector ran.
    config = Config(compression=compression)
    gc.collect()
    gc.disable()
    try:
        pair = Pair(client_config=config, server_config=config)
        pair.client.send("hello")
        pair.deliver()
        pair.server.close()
        pair.deliver()
        assert pair.server.state is wscore.State.CLOSED is pair.client.state
        parts = [pair.server._framer, pair.client._framer, pair.server._deflate]
        refs = [weakref.ref(part) for part in parts if part is not None]
        del pair, parts
        assert [ref() for ref in refs] == [None] * len(refs)
    finally:
        gc.enable()


def test_framer_keeps_wsproto_received_frames():
    framer = Framer(False, [], None)
    key = b"\x00\x00\x00\x00"
    for payload in (b"ab", b"cd"):  # the generator is made once, then reused
        framer.receive_bytes(b"\x82\x82" + key + payload)
        assert [frame.payload for frame in framer.received_frames()] == [payload]


@pytest.mark.parametrize("how", ["clean", "fail", "error", "eof"])
def test_closed_connection_releases_buffers_and_compression(how):
    # Whoever keeps a closed connection object, its zlib contexts and unparsed
    # bytes go at once.
    pair = Pair(client_config=Config(), server_config=Config())
    server = pair.server
    pair.client.send("hello " * 100)
    server.send("answer " * 100)
    pair.deliver()
    deflate = server._deflate
    assert deflate is not None and deflate._compressor is not None
    assert deflate._decompressor is not None
    if how == "clean":
        server.close()
        pair.deliver()
    else:
        server.receive_data(b"\x82\xfe\x10\x00")  # a frame of 4 KiB begins
        assert server._framer.buffered > 0
        if how == "fail":
            server.fail(1001)
        elif how == "error":
            server.receive_data(b"\x00" * 4 + b"\x8f\x80" + b"\x00" * 4096)  # then a bad opcode
        else:
            server.receive_data(b"")
    assert server.state is wscore.State.CLOSED
    assert server._framer.buffered == 0
    assert deflate._compressor is None and deflate._decompressor is None
    assert server.extensions == [deflate]  # what was negotiated stays visible
