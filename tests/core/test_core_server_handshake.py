"""Server side of the opening handshake, from raw request bytes."""

from __future__ import annotations

import h11
import pytest
from core_support import Pair, closed, frame, handshake_request, parse_response, server_with

import wscore
from wscore import (
    Config,
    InvalidHeader,
    InvalidState,
    LocalProtocolError,
    RequestReceived,
    ServerConnection,
    State,
    accept_token,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def accepted(request: bytes, config: Config | None = None, **accept_kw: object):
    server = server_with(request, config)
    (event,) = server.events()
    assert isinstance(event, RequestReceived) and event.request.is_websocket
    server.accept(**accept_kw)  # type: ignore[arg-type]
    assert server.state is State.OPEN
    status, headers, body = parse_response(server.data_to_send())
    assert status == 101 and body == b""
    return server, headers


def refused(request: bytes, config: Config | None = None):
    server = server_with(request, config)
    event = closed(server.events())
    assert server.state is State.CLOSED
    assert isinstance(event.error, InvalidHeader)
    assert event.code == 1006
    status, headers, body = parse_response(server.data_to_send())
    assert status == event.error.status
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    return status, headers, body, event.error


# -- accept -------------------------------------------------------------------


def test_accept_rfc_example():
    server, headers = accepted(handshake_request(key=KEY))
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "Upgrade"
    assert headers["server"] == "wscore/0.1"
    assert "sec-websocket-protocol" not in headers
    assert "sec-websocket-extensions" not in headers
    assert server.subprotocol is None and server.extensions == []
    assert server.response is not None and server.response.status == 101
    assert accept_token(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_request_fields():
    server = server_with(
        handshake_request([("Origin", "https://a.example")], target="/chat/room?x=1&y=&z=3")
    )
    (event,) = server.events()
    request = event.request
    assert request.method == "GET"
    assert request.path == "/chat/room"
    assert request.query == "x=1&y=&z=3"
    assert request.query_params == [("x", "1"), ("y", ""), ("z", "3")]
    assert request.origin == "https://a.example"
    assert request.headers["host"] == "example.com"
    assert server.request is request
    assert "websocket=True" in repr(request)


def test_no_user_agent_and_extra_headers():
    config = Config(user_agent=None, extra_headers=[("X-Config", "1")])
    _, headers = accepted(handshake_request(), config, extra_headers=[("X-Call", "2")])
    assert "server" not in headers
    assert headers["x-config"] == "1"
    assert headers["x-call"] == "2"


@pytest.mark.parametrize(
    "server_pref, offered, chosen",
    [
        (["b", "a"], "a, b", "b"),  # server preference wins
        (["a", "b"], "b, a", "a"),
        (["c"], "a, b", None),
        ([], "a, b", None),
        (["b"], None, None),
    ],
)
def test_subprotocol_selection(server_pref, offered, chosen):
    extra = [("Sec-WebSocket-Protocol", offered)] if offered else []
    server, headers = accepted(handshake_request(extra), Config(subprotocols=server_pref))
    assert server.subprotocol == chosen
    assert headers.get("sec-websocket-protocol") == chosen


def test_subprotocol_explicit():
    request = handshake_request([("Sec-WebSocket-Protocol", "a, b")])
    server, headers = accepted(request, Config(subprotocols=["a"]), subprotocol="b")
    assert server.subprotocol == "b" and headers["sec-websocket-protocol"] == "b"
    assert server.response is not None and server.response.subprotocol == "b"


def test_subprotocol_not_offered():
    server = server_with(handshake_request([("Sec-WebSocket-Protocol", "a")]))
    server.events()
    with pytest.raises(LocalProtocolError, match="'z' was not offered"):
        server.accept(subprotocol="z")
    assert server.state is State.CONNECTING
    assert server.data_to_send() == b""
    server.accept(subprotocol="a")
    assert server.state is State.OPEN


def test_subprotocols_across_headers():
    request = handshake_request(
        [("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b, c")]
    )
    server = server_with(request)
    (event,) = server.events()
    assert event.request.subprotocols == ["a", "b", "c"]


# -- permessage-deflate ----------------------------------------------------------


def ext(value: str) -> list[tuple[str, str]]:
    return [("Sec-WebSocket-Extensions", value)]


def test_deflate_negotiated():
    server, headers = accepted(handshake_request(ext("permessage-deflate")))
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
    assert len(server.extensions) == 1


def test_deflate_off():
    server, headers = accepted(
        handshake_request(ext("permessage-deflate")), Config(compression=None)
    )
    assert "sec-websocket-extensions" not in headers
    assert server.extensions == []


def test_deflate_params_from_client():
    offer = (
        "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12; "
        "server_no_context_takeover; client_no_context_takeover"
    )
    server, headers = accepted(handshake_request(ext(offer)))
    answer = headers["sec-websocket-extensions"]
    assert "server_max_window_bits=12" in answer
    assert "client_max_window_bits=10" in answer
    assert "server_no_context_takeover" in answer
    assert "client_no_context_takeover" in answer


def test_deflate_params_from_server_config():
    config = Config(
        deflate_options={"server_max_window_bits": 11, "server_no_context_takeover": True}
    )
    server, headers = accepted(
        handshake_request(ext("permessage-deflate; client_max_window_bits")), config
    )
    answer = headers["sec-websocket-extensions"]
    # RFC 7692 7.1.2.1: no server_max_window_bits in the answer unless offered;
    # the server may still compress with a smaller window.
    assert "server_max_window_bits" not in answer
    assert "server_no_context_takeover" in answer
    assert "client_max_window_bits=15" in answer


def test_deflate_first_acceptable_offer_wins():
    offers = (
        "x-unknown, permessage-deflate; bogus=1, "
        "permessage-deflate; server_max_window_bits=9, permessage-deflate"
    )
    server, headers = accepted(handshake_request(ext(offers)))
    assert headers["sec-websocket-extensions"].count("permessage-deflate") == 1
    assert "server_max_window_bits=9" in headers["sec-websocket-extensions"]


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; bogus",
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=+10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "x-webkit-deflate-frame",
    ],
)
def test_deflate_invalid_offer_skipped(offer):
    server, headers = accepted(handshake_request(ext(offer)))
    assert "sec-websocket-extensions" not in headers
    assert server.extensions == []


def test_deflate_invalid_offer_then_valid():
    offers = "permessage-deflate; server_max_window_bits=99, permessage-deflate"
    server, headers = accepted(handshake_request(ext(offers)))
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
    assert len(server.extensions) == 1


# -- plain HTTP -------------------------------------------------------------------


def test_plain_http_request():
    server = server_with(b"GET /health HTTP/1.1\r\nHost: example.com\r\n\r\n")
    (event,) = server.events()
    assert isinstance(event, RequestReceived)
    assert not event.request.is_websocket and event.request.path == "/health"
    with pytest.raises(InvalidState, match="use respond"):
        server.accept()
    server.respond(200, "ok\n", headers=[("X-Thing", "1")])
    data = server.data_to_send()
    assert closed(server.events()).code == 1006
    assert server.state is State.CLOSED
    # What an HTTP client reads: a correct h11 response.
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/health", headers=[("Host", "example.com")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    assert response.reason == b"OK"
    headers = {k.decode(): v.decode() for k, v in response.headers}
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == "3"
    assert headers["x-thing"] == "1"
    assert headers["server"] == "wscore/0.1"
    body = client.next_event()
    assert isinstance(body, h11.Data) and body.data == b"ok\n"
    assert isinstance(client.next_event(), h11.EndOfMessage)


def test_respond_bytes_content_type_and_unknown_status():
    server = server_with(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Config(user_agent=None))
    server.events()
    server.respond(299, b"\x00\x01", headers=[("Content-Type", "application/octet-stream")])
    status, headers, body = parse_response(server.data_to_send())
    assert status == 299 and body == b"\x00\x01"
    assert headers["content-type"] == "application/octet-stream"
    assert "server" not in headers


def test_respond_refuses_websocket_request():
    server = server_with(handshake_request())
    server.events()
    server.respond(403, "go away")
    status, _, body = parse_response(server.data_to_send())
    assert status == 403 and body == b"go away"
    assert server.response is not None and server.response.status == 403
    with pytest.raises(InvalidState):
        server.accept()


@pytest.mark.parametrize("status", [101, 199, 600])
def test_respond_bad_status(status):
    server = server_with(handshake_request())
    server.events()
    with pytest.raises(LocalProtocolError, match="200-599"):
        server.respond(status)
    assert server.state is State.CONNECTING


def test_accept_or_respond_before_request():
    server = ServerConnection()
    with pytest.raises(InvalidState, match="no request"):
        server.accept()
    with pytest.raises(InvalidState):
        server.respond(200)
    server.receive_data(b"GET / HTTP/1.1\r\n")
    assert server.events() == []
    with pytest.raises(InvalidState):
        server.accept()


# -- bad requests -------------------------------------------------------------


def test_wrong_method():
    status, _, body, error = refused(handshake_request(method="POST"))
    assert status == 400 and b"must use GET, not POST" in body
    assert "POST" in str(error)


def test_http_10():
    status, _, body, _ = refused(handshake_request(version="HTTP/1.0"))
    assert status == 400 and b"HTTP/1.1" in body


def test_missing_connection_upgrade():
    request = handshake_request(
        [("Host", "x"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", KEY),
         ("Sec-WebSocket-Version", "13")],
        defaults=False,
    )
    status, _, body, _ = refused(request)
    assert status == 400 and b"Connection: Upgrade" in body


def test_missing_upgrade_is_plain_http():
    request = handshake_request(
        [("Host", "x"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", KEY),
         ("Sec-WebSocket-Version", "13")],
        defaults=False,
    )
    server = server_with(request)
    (event,) = server.events()
    assert isinstance(event, RequestReceived) and not event.request.is_websocket


def test_upgrade_to_something_else_is_plain_http():
    server = server_with(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    )
    (event,) = server.events()
    assert not event.request.is_websocket


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not base64!",
        "AAAA",  # 3 bytes
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # 21 bytes
        "dGhlIHNhbXBsZSBub25jZQ",  # missing padding
    ],
)
def test_bad_key(key):
    headers = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Version", "13")]
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    status, _, body, _ = refused(handshake_request(headers, defaults=False))
    assert status == 400 and b"Sec-WebSocket-Key" in body


def test_non_ascii_key():
    request = handshake_request(defaults=False, headers=[
        ("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "\xe9" * 24)])
    status, _, _, _ = refused(request)
    assert status == 400


def test_repeated_key():
    status, _, body, _ = refused(handshake_request([("Sec-WebSocket-Key", KEY)]))
    assert status == 400 and b"repeated" in body


@pytest.mark.parametrize("extra", [[("Sec-WebSocket-Version", "8")], []])
def test_wrong_version(extra):
    headers = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", KEY), *extra]
    status, headers, body, _ = refused(handshake_request(headers, defaults=False))
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    assert (b"version 8" if extra else b"version none") in body


def test_request_too_large():
    config = Config(max_request_size=1024)
    request = handshake_request([("X-Big", "a" * 2000)])
    status, _, body, error = refused(request, config)
    assert status == 431 and b"max_request_size (1024 bytes)" in body
    assert error.status == 431


def test_request_too_large_in_pieces():
    server = ServerConnection(Config(max_request_size=1024))
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(100):
        server.receive_data(b"X-Header: " + b"a" * 50 + b"\r\n")
        if server.state is State.CLOSED:
            break
    assert closed(server.events()).error.status == 431
    assert parse_response(server.data_to_send())[0] == 431


def test_too_many_headers():
    extra = [(f"X-H{i}", "v") for i in range(10)]
    status, _, body, _ = refused(handshake_request(extra), Config(max_headers=12))
    assert status == 431 and b"more than 12 headers" in body


def test_too_many_headers_plain_http():
    extra = "".join(f"X-H{i}: v\r\n" for i in range(10)).encode()
    request = b"GET / HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"
    status, _, _, _ = refused(request, Config(max_headers=5))
    assert status == 431


@pytest.mark.parametrize(
    "request_line",
    [b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
     b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n"],
)
def test_malformed_request(request_line):
    status, _, body, _ = refused(request_line)
    assert status == 400 and b"malformed HTTP request" in body


def test_origin_allowed():
    config = Config(origins=["https://good.example", None])
    accepted(handshake_request([("Origin", "https://good.example")]), config)
    accepted(handshake_request(), config)  # None in the list: no Origin is fine


@pytest.mark.parametrize("origin", ["https://evil.example", None])
def test_origin_refused(origin):
    config = Config(origins=["https://good.example"])
    extra = [("Origin", origin)] if origin else []
    status, _, body, _ = refused(handshake_request(extra), config)
    assert status == 403 and b"is not allowed" in body


# -- bytes around the request ----------------------------------------------------------


def test_request_in_pieces():
    request = handshake_request(key=KEY)
    server = ServerConnection()
    for i in range(len(request)):
        assert server.events() == []
        server.receive_data(request[i : i + 1])
    (event,) = server.events()
    assert isinstance(event, RequestReceived)


def test_pipelined_frames_after_accept():
    data = handshake_request() + frame(0x1, b"early") + frame(0x9, b"p")
    server = server_with(data)
    (event,) = server.events()
    assert isinstance(event, RequestReceived)
    server.receive_data(frame(0x2, b"later"))
    assert server.events() == []
    server.accept()
    assert server.events() == [wscore.Message("early"), wscore.Ping(b"p"), wscore.Message(b"later")]
    out = server.data_to_send()
    assert out.endswith(b"\x8a\x01p")  # the pong follows the 101


def test_too_much_data_before_accept():
    server = server_with(handshake_request(), Config(max_size=1000))
    server.events()
    server.receive_data(b"\x00" * 60000)
    assert server.state is State.CONNECTING
    server.receive_data(b"\x00" * 10000)
    event = closed(server.events())
    assert isinstance(event.error, wscore.RemoteProtocolError)
    assert "before the handshake ended" in str(event.error)


def test_eof_before_request():
    server = ServerConnection()
    server.receive_data(b"GET / HT")
    server.receive_data(b"")
    event = closed(server.events())
    assert event.code == 1006 and isinstance(event.error, wscore.InvalidHandshake)
    assert "before a complete request" in str(event.error)


def test_eof_after_request_before_accept():
    server = server_with(handshake_request())
    server.events()
    server.receive_data(b"")
    event = closed(server.events())
    assert isinstance(event.error, wscore.InvalidHandshake)
    assert server.state is State.CLOSED


def test_close_while_connecting():
    server = server_with(handshake_request())
    server.events()
    server.close()
    assert closed(server.events()).code == 1006
    assert server.state is State.CLOSED
    server.close()  # idempotent
    assert server.events() == []


def test_data_after_closed_ignored():
    pair = Pair()
    pair.client.close()
    pair.deliver()
    pair.server.events()
    pair.server.receive_data(frame(0x1, b"x"))
    pair.server.receive_data(b"")
    assert pair.server.events() == []


def test_deflate_client_window_not_offered_inflates_with_15_bits():
    # Regression: a server configured with client_max_window_bits=10 inflated with a
    # 10-bit window a client that never agreed to shrink its own (it compresses with
    # 15 bits): the second message, referring back past 1 KiB, failed with 1007.
    import zlib

    config = Config(deflate_options={"client_max_window_bits": 10})
    server, headers = accepted(handshake_request(ext("permessage-deflate")), config)
    assert headers["sec-websocket-extensions"] == "permessage-deflate"
    compressor = zlib.compressobj(wbits=-15)
    block = bytes(range(256)) * 4 + bytes(range(255, -1, -1)) * 16  # 5 KiB
    for _ in range(2):
        payload = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
        server.receive_data(frame(0x2, payload[:-4], rsv=4))
        assert server.events() == [wscore.Message(block)]


def test_deflate_client_window_offered_uses_config():
    config = Config(deflate_options={"client_max_window_bits": 10})
    _, headers = accepted(
        handshake_request(ext("permessage-deflate; client_max_window_bits")), config
    )
    assert "client_max_window_bits=10" in headers["sec-websocket-extensions"]


@pytest.mark.parametrize("status", [204, 404])
def test_respond_without_body(status):
    server = server_with(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    server.events()
    server.respond(status)
    data = server.data_to_send()
    code, headers, body = parse_response(data)
    assert code == status and body == b""
    if status != 204:
        assert headers["content-length"] == "0"
