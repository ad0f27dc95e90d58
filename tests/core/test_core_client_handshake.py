"""Client side of the opening handshake: the request it writes, the responses it takes."""

from __future__ import annotations

import base64

import pytest
from core_support import Pair, closed, frame

import wscore
from wscore import (
    ClientConnection,
    Config,
    InvalidHandshake,
    InvalidHeader,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    Opened,
    State,
    accept_token,
    parse_uri,
)


def request_of(client: ClientConnection) -> tuple[str, dict[str, str]]:
    head = client.data_to_send().decode("latin-1")
    assert head.endswith("\r\n\r\n")
    lines = head[:-4].split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        assert name.lower() not in headers, f"repeated {name}"
        headers[name.lower()] = value
    return lines[0], headers


def key_of(client: ClientConnection) -> str:
    assert client.request is not None
    return client.request.headers["Sec-WebSocket-Key"]


def response_101(client: ClientConnection, *extra: str, accept: str | None = None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept if accept is not None else accept_token(key_of(client))}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- the request ----------------------------------------------------------------


def test_default_request():
    client = ClientConnection("ws://example.com")
    line, headers = request_of(client)
    assert line == "GET / HTTP/1.1"
    assert headers["host"] == "example.com"
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "Upgrade"
    assert headers["sec-websocket-version"] == "13"
    assert len(base64.b64decode(headers["sec-websocket-key"], validate=True)) == 16
    assert headers["sec-websocket-extensions"] == "permessage-deflate; client_max_window_bits"
    assert headers["user-agent"] == "wscore/0.1"
    assert "origin" not in headers and "sec-websocket-protocol" not in headers
    assert "authorization" not in headers
    assert client.state is State.CONNECTING
    assert client.data_to_send() == b""


def test_keys_are_random():
    assert key_of(ClientConnection("ws://x/")) != key_of(ClientConnection("ws://x/"))


@pytest.mark.parametrize(
    "uri, host, target",
    [
        ("ws://example.com:8080/chat?room=1&x=", "example.com:8080", "/chat?room=1&x="),
        ("wss://example.com:443/", "example.com", "/"),
        ("wss://example.com:8443", "example.com:8443", "/"),
        ("ws://example.com:80/a/b", "example.com", "/a/b"),
        ("ws://[::1]:9000/", "[::1]:9000", "/"),
        ("ws://[2001:db8::1]/x", "[2001:db8::1]", "/x"),
        ("ws://127.0.0.1:8765?q", "127.0.0.1:8765", "/?q"),
    ],
)
def test_host_and_target(uri, host, target):
    line, headers = request_of(ClientConnection(uri))
    assert line == f"GET {target} HTTP/1.1"
    assert headers["host"] == host


def test_all_options_in_request():
    config = Config(
        subprotocols=["chat.v2", "chat.v1"],
        extra_headers=[("X-Config", "c")],
        user_agent=None,
        deflate_options={
            "client_max_window_bits": 12,
            "server_max_window_bits": 10,
            "client_no_context_takeover": True,
            "server_no_context_takeover": True,
        },
    )
    client = ClientConnection(
        "wss://alice:s3cret@example.com/",
        config,
        origin="https://app.example",
        extra_headers=[("X-Call", "k")],
    )
    _, headers = request_of(client)
    assert headers["sec-websocket-protocol"] == "chat.v2, chat.v1"
    assert headers["origin"] == "https://app.example"
    assert headers["x-config"] == "c" and headers["x-call"] == "k"
    assert "user-agent" not in headers
    assert headers["authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert headers["host"] == "example.com"
    offer = headers["sec-websocket-extensions"]
    assert offer == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=12"
    )


def test_user_without_password():
    _, headers = request_of(ClientConnection("ws://bob@example.com/"))
    assert headers["authorization"] == "Basic " + base64.b64encode(b"bob:").decode()


def test_no_compression_no_offer():
    _, headers = request_of(ClientConnection("ws://x/", Config(compression=None)))
    assert "sec-websocket-extensions" not in headers


def test_parsed_uri_accepted():
    uri = parse_uri("ws://example.com:81/p")
    client = ClientConnection(uri)
    assert client.uri is uri
    assert request_of(client)[1]["host"] == "example.com:81"


# -- parse_uri ----------------------------------------------------------------------


def test_parse_uri_fields():
    uri = parse_uri("wss://u:p@Example.COM:9999/a%20b?c=d")
    assert uri.secure and uri.host == "example.com" and uri.port == 9999
    assert uri.resource == "/a%20b?c=d" and uri.user_info == "u:p"
    assert repr(uri) == "WebSocketURI('wss://example.com:9999/a%20b?c=d')"
    assert parse_uri("ws://h").port == 80 and parse_uri("wss://h").port == 443
    assert parse_uri("ws://h").user_info is None
    assert repr(parse_uri("ws://[::1]/")) == "WebSocketURI('ws://[::1]/')"


@pytest.mark.parametrize(
    "uri, why",
    [
        ("http://example.com/", "scheme must be ws or wss"),
        ("example.com", "scheme must be ws or wss"),
        ("ws:///path", "no host"),
        ("ws://example.com/#frag", "fragment"),
        ("ws://example.com:99999/", "Port out of range"),
        ("ws://example.com:abc/", "Port could not be cast"),
        ("ws://[::1/", "Invalid IPv6 URL"),
    ],
)
def test_parse_uri_errors(uri, why):
    with pytest.raises(InvalidURI, match=why) as info:
        parse_uri(uri)
    assert info.value.uri == uri
    assert isinstance(info.value, ValueError)
    assert repr(uri) in str(info.value)
    with pytest.raises(InvalidURI):
        ClientConnection(uri)


# -- the response ----------------------------------------------------------------


def test_opened():
    client = ClientConnection("ws://x/", Config(subprotocols=["a", "b"]))
    client.data_to_send()
    client.receive_data(response_101(client, "Sec-WebSocket-Protocol: b", "X-Server: 1"))
    (event,) = client.events()
    assert isinstance(event, Opened)
    assert event.response.status == 101 and event.response.reason == "Switching Protocols"
    assert event.response.headers["x-server"] == "1"
    assert event.response.subprotocol == "b"
    assert client.subprotocol == "b" and client.response is event.response
    assert client.state is State.OPEN and client.extensions == []


def test_opened_byte_by_byte_with_frames_after():
    client = ClientConnection("ws://x/")
    data = response_101(client) + frame(0x1, b"hello", mask=None) + frame(0x9, b"", mask=None)
    client.data_to_send()
    events = []
    for i in range(len(data)):
        client.receive_data(data[i : i + 1])
        events += client.events()
    assert [type(e) for e in events] == [Opened, wscore.Message, wscore.Ping]
    assert events[1] == wscore.Message("hello")
    assert client.data_to_send()[:2] == b"\x8a\x80"  # masked pong


def test_informational_responses_ignored():
    client = ClientConnection("ws://x/")
    client.receive_data(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    )
    assert client.events() == [] and client.state is State.CONNECTING
    client.receive_data(response_101(client))
    assert isinstance(client.events()[0], Opened)


def test_deflate_negotiated_client():
    config = Config(deflate_options={"client_no_context_takeover": True})
    pair = Pair(client_config=config)
    assert len(pair.client.extensions) == 1 and len(pair.server.extensions) == 1
    assert pair.client.extensions[0].client_no_context_takeover
    assert pair.server.extensions[0].client_no_context_takeover
    assert pair.send_to_server("x" * 1000) == [wscore.Message("x" * 1000)]


@pytest.mark.parametrize(
    "extra, accept, problem",
    [
        ((), "d3JvbmcgYWNjZXB0IGtleSE=", "wrong or missing Sec-WebSocket-Accept"),
        (("Sec-WebSocket-Accept: x",), None, "wrong or missing Sec-WebSocket-Accept"),
        (("Sec-WebSocket-Protocol: z",), None, "'z', which was not offered"),
        (("Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: a"), None, "not offered"),
        (("Sec-WebSocket-Extensions: x-foo",), None, "extensions we did not offer"),
        (
            ("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate",),
            None,
            "extensions we did not offer",
        ),
        (
            ("Sec-WebSocket-Extensions: permessage-deflate; foo=1",),
            None,
            "invalid extension",
        ),
        (
            ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8",),
            None,
            "invalid deflate parameters",
        ),
        (
            ("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16",),
            None,
            "invalid extension",
        ),
        (
            ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=+10",),
            None,
            "invalid extension",
        ),
    ],
)
def test_bad_101(extra, accept, problem):
    client = ClientConnection("ws://x/", Config(subprotocols=["a"]))
    client.data_to_send()
    client.receive_data(response_101(client, *extra, accept=accept))
    event = closed(client.events())
    assert event.code == 1006 and not event.ok
    assert isinstance(event.error, InvalidHeader) and problem in str(event.error)
    assert event.error.status == 101
    assert client.state is State.CLOSED
    with pytest.raises(InvalidState, match="closed"):
        client.send("x")


def test_deflate_answer_when_not_offered():
    client = ClientConnection("ws://x/", Config(compression=None))
    client.receive_data(response_101(client, "Sec-WebSocket-Extensions: permessage-deflate"))
    assert "invalid extension" in str(closed(client.events()).error)


@pytest.mark.parametrize(
    "lines, problem",
    [
        (["Connection: Upgrade"], "without 'Upgrade: websocket'"),
        (["Upgrade: h2c", "Connection: Upgrade"], "without 'Upgrade: websocket'"),
        (["Upgrade: websocket"], "without 'Connection: Upgrade'"),
    ],
)
def test_missing_upgrade_headers(lines, problem):
    client = ClientConnection("ws://x/")
    token = accept_token(key_of(client))
    status = "HTTP/1.1 101 Switching Protocols"
    head = "\r\n".join([status, *lines, f"Sec-WebSocket-Accept: {token}"])
    client.receive_data((head + "\r\n\r\n").encode())
    event = closed(client.events())
    assert isinstance(event.error, InvalidHeader) and problem in str(event.error)


def test_rejected_with_body():
    client = ClientConnection("ws://x/")
    client.receive_data(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nX-Why: origin\r\n\r\ngo away\r\n"
    )
    event = closed(client.events())
    assert event.code == 1006
    error = event.error
    assert isinstance(error, InvalidStatus)
    assert error.status == 403 and error.response.reason == "Forbidden"
    assert error.response.headers["x-why"] == "origin"
    assert error.response.body == b"go away\r\n"
    assert str(error) == "server rejected WebSocket connection: HTTP 403: go away"
    assert client.response is error.response


def test_rejected_body_until_eof():
    client = ClientConnection("ws://x/")
    client.receive_data(b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\noops")
    assert client.events() == []
    client.receive_data(b" more")
    assert client.events() == []
    client.receive_data(b"")
    error = closed(client.events()).error
    assert isinstance(error, InvalidStatus) and error.status == 500
    assert error.response.body == b"oops more"


def test_rejected_chunked_body():
    client = ClientConnection("ws://x/")
    client.receive_data(
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    error = closed(client.events()).error
    assert isinstance(error, InvalidStatus) and error.response.body == b"abcde"


def test_rejected_body_truncated_to_max_body_size():
    client = ClientConnection("ws://x/", Config(max_body_size=10))
    client.receive_data(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\n")
    for _ in range(10):
        client.receive_data(b"0123456789")
    error = closed(client.events()).error
    assert error.response.body == b"0123456789"


def test_rejected_without_body():
    client = ClientConnection("ws://x/")
    client.receive_data(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    error = closed(client.events()).error
    assert str(error) == "server rejected WebSocket connection: HTTP 503"


def test_invalid_http_response():
    client = ClientConnection("ws://x/")
    client.receive_data(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
    error = closed(client.events()).error
    assert type(error) is InvalidHandshake and "invalid HTTP response" in str(error)


def test_eof_during_handshake():
    client = ClientConnection("ws://x/")
    client.receive_data(b"HTTP/1.1 101 Swi")
    client.receive_data(b"")
    event = closed(client.events())
    assert type(event.error) is InvalidHandshake and event.code == 1006


def test_response_head_too_large():
    client = ClientConnection("ws://x/", Config(max_request_size=1024))
    client.receive_data(response_101(client, "X-Big: " + "a" * 2000))
    error = closed(client.events()).error
    assert type(error) is InvalidHandshake and "larger than 1024 bytes" in str(error)


def test_response_head_too_large_in_pieces():
    client = ClientConnection("ws://x/", Config(max_request_size=1024))
    client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n")
    for _ in range(30):
        client.receive_data(b"X-Pad: " + b"a" * 60 + b"\r\n")
    error = closed(client.events()).error
    assert isinstance(error, InvalidHandshake)


def test_response_too_many_headers():
    client = ClientConnection("ws://x/", Config(max_headers=5))
    client.receive_data(response_101(client, *[f"X-{i}: v" for i in range(5)]))
    error = closed(client.events()).error
    assert type(error) is InvalidHandshake and "more than 5 headers" in str(error)


def test_client_send_before_open():
    client = ClientConnection("ws://x/")
    with pytest.raises(InvalidState, match="opening handshake is not complete"):
        client.send("x")
    with pytest.raises(InvalidState):
        client.ping()
    with pytest.raises(InvalidState):
        client.pong()


def test_client_close_while_connecting():
    client = ClientConnection("ws://x/")
    client.close()
    event = closed(client.events())
    assert event.code == 1006 and event.error is None
    client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    assert client.events() == []


def test_frames_in_the_same_chunk_as_101():
    client = ClientConnection("ws://x/")
    client.receive_data(
        response_101(client) + frame(0x1, b"first", mask=None) + frame(0x8, b"\x03\xe8", mask=None)
    )
    events = client.events()
    assert [type(e).__name__ for e in events] == ["Opened", "Message", "Closed"]
    assert events[1] == wscore.Message("first") and events[2].code == 1000
