"""Opening handshakes of the asyncio transport: subprotocols, rejections, HTTP answers, TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest
from asyncio_support import echo, http_request, upgrade_head, uri

import wscore
from transports._common import demo_http
from transports.asyncio import connect, serve


def test_subprotocol_and_headers(run: Any) -> None:
    seen = {}

    async def handler(ws: Any) -> None:
        seen["subprotocol"] = ws.subprotocol
        seen["path"] = ws.path
        seen["header"] = ws.request.headers.get("X-Test")
        seen["remote"] = ws.remote_address
        await ws.recv()
        await ws.send(ws.request.target)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, subprotocols=["chat", "superchat"]) as server:
            async with connect(
                uri(server, "/room?x=1"),
                subprotocols=["superchat", "other"],
                extra_headers={"X-Test": "yes"},
            ) as ws:
                assert ws.subprotocol == "superchat"
                assert ws.response.status == 101
                assert ws.response.headers["Sec-WebSocket-Protocol"] == "superchat"
                assert ws.open and ws.state is wscore.State.OPEN
                assert ws.local_address[0] == "127.0.0.1"
                await ws.send("go")
                assert await ws.recv() == "/room?x=1"
            assert ws.closed and ws.close_code == 1000
        assert seen["subprotocol"] == "superchat"
        assert seen["path"] == "/room"
        assert seen["header"] == "yes"
        assert seen["remote"][0] == "127.0.0.1"

    run(main())


def test_no_common_subprotocol(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, subprotocols=["chat"]) as server:
            async with connect(uri(server), subprotocols=["other"]) as ws:
                assert ws.subprotocol is None

    run(main())


@pytest.mark.parametrize("is_async", [False, True])
def test_process_request_rejects(run: Any, is_async: bool) -> None:
    def check(connection: Any, request: wscore.Request) -> Any:
        assert connection.request is request
        if request.headers.get("Authorization") != "Bearer good":
            return 401, "who are you?\n", {"WWW-Authenticate": "Bearer"}
        return None

    async def acheck(connection: Any, request: wscore.Request) -> Any:
        await asyncio.sleep(0)
        return check(connection, request)

    async def main() -> None:
        hook = acheck if is_async else check
        async with serve(echo, "127.0.0.1", 0, process_request=hook) as server:
            with pytest.raises(wscore.InvalidStatus) as info:
                await connect(uri(server))
            assert info.value.status == 401
            assert info.value.response.headers["WWW-Authenticate"] == "Bearer"
            assert info.value.response.body == b"who are you?\n"
            async with connect(uri(server), extra_headers=[("Authorization", "Bearer good")]) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"

    run(main())


def test_process_request_failure_answers_500(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: Any, request: Any) -> Any:
        raise RuntimeError("boom")

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=broken) as server:
            with pytest.raises(wscore.InvalidStatus) as info:
                await connect(uri(server))
            assert info.value.status == 500

    run(main())
    assert "process_request failed" in caplog.text


def test_plain_http_answers(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            status, headers, body = await http_request(
                server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert status == 426
            assert headers["upgrade"] == "websocket"
            assert b"WebSocket server" in body
        hook = lambda connection, request: demo_http(request)  # noqa: E731
        async with serve(echo, "127.0.0.1", 0, process_request=hook) as server:
            status, _, body = await http_request(
                server.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert (status, body) == (200, b"ok\n")
            home = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            status, headers, body = await http_request(server.port, home)
            assert status == 200 and headers["content-type"].startswith("text/html")
            status, _, _ = await http_request(server.port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 404
            # A WebSocket request still goes through to the handler.
            async with connect(uri(server, "/anything")) as ws:
                await ws.send(b"\x00")
                assert await ws.recv() == b"\x00"

    run(main())


def test_bad_upgrade_is_answered_by_the_core(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            head = upgrade_head().replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8")
            status, headers, _ = await http_request(server.port, head)
            assert status == 426 and headers["sec-websocket-version"] == "13"

    run(main())


def test_origins(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, origins=["https://good.example"]) as server:
            with pytest.raises(wscore.InvalidStatus) as info:
                await connect(uri(server), origin="https://evil.example")
            assert info.value.status == 403
            with pytest.raises(wscore.InvalidStatus):
                await connect(uri(server))  # no Origin at all
            async with connect(uri(server), origin="https://good.example") as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"

    run(main())


def test_max_connections(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_connections=2) as server:
            first = await connect(uri(server))
            second = await connect(uri(server))
            with pytest.raises(wscore.InvalidStatus) as info:
                await connect(uri(server))
            assert info.value.status == 503
            await first.close()
            await asyncio.sleep(0.05)  # the handler ends after the close
            async with connect(uri(server)) as third:
                await third.send("x")
                assert await third.recv() == "x"
            await second.close()

    run(main())


def test_open_timeout_client(run: Any) -> None:
    async def silent(reader: Any, writer: Any) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(wscore.OpenTimeout):
                await connect(f"ws://127.0.0.1:{port}", open_timeout=0.2)
        finally:
            server.close()
            await server.wait_closed()

    run(main())


def test_open_timeout_server(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, open_timeout=0.2) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\n")  # and never the rest
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()

    run(main())


@pytest.mark.skipif(not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="Linux only")
def test_a_client_is_accepted_once_it_sends(run: Any) -> None:
    # TCP_DEFER_ACCEPT: a client that sends nothing stays in the kernel.
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await asyncio.sleep(0.3)
            assert not server._connections
            writer.write(upgrade_head().encode())
            assert (await asyncio.wait_for(reader.readline(), 3)).startswith(b"HTTP/1.1 101 ")
            assert len(server._connections) == 1
            writer.close()
        async with serve(echo, ["127.0.0.1", "::1"], 0) as server:  # every listener
            assert len(server.sockets) == 2
            for listener in server.sockets:
                assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0

    run(main())


def test_invalid_uri_and_options() -> None:
    with pytest.raises(wscore.InvalidURI):
        connect("http://example.com/")
    with pytest.raises(wscore.InvalidConfig):
        connect("ws://example.com/", no_such_option=1)
    with pytest.raises(wscore.InvalidConfig):
        serve(echo, "127.0.0.1", 0, max_queue=0)
    with pytest.raises(ValueError):
        connect("ws://example.com/", ssl=ssl.create_default_context())


def test_tls(run: Any, tls_contexts: Any) -> None:
    server_ctx, client_ctx = tls_contexts

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_ctx) as server:
            async with connect(uri(server, scheme="wss"), ssl=client_ctx) as ws:
                assert ws.core.uri.secure
                await ws.send("secret")
                assert await ws.recv() == "secret"
                await ws.send(b"\xff" * 300_000)
                assert await ws.recv() == b"\xff" * 300_000
            # The default context checks the certificate: self-signed is refused.
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(uri(server, scheme="wss"))

    run(main())


def test_unix_socket(run: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")

    async def main() -> None:
        async with serve(echo, unix_path=path) as server:
            assert server.port is None
            async with connect("ws://localhost/", unix_path=path) as ws:
                await ws.send("over unix")
                assert await ws.recv() == "over unix"

    run(main())


def test_given_sockets(run: Any) -> None:
    import socket

    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        async with serve(echo, sock=listener) as server:
            port = server.port
            raw = socket.create_connection(("127.0.0.1", port))
            async with connect(f"ws://example.test:{port}/p", sock=raw) as ws:
                assert ws.request.headers["Host"] == f"example.test:{port}"
                await ws.send("via sock")
                assert await ws.recv() == "via sock"

    run(main())


def test_unusable_answer_becomes_500(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        hook = lambda connection, request: (101, "no")  # noqa: E731
        async with serve(echo, "127.0.0.1", 0, process_request=hook) as server:
            with pytest.raises(wscore.InvalidStatus) as info:
                await connect(uri(server))
            assert info.value.status == 500

    run(main())
    assert "unusable answer" in caplog.text
