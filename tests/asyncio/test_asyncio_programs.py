"""Whole programs on the asyncio transport: the tutorial, the examples, the demo server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from asyncio_support import free_port, http_request

import wscore
from transports.asyncio import connect

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "asyncio"

# The websockets tutorial's programs, with only the import changed.
TUTORIAL_SERVER = """\
#!/usr/bin/env python

# WS server example

import asyncio
import transports.asyncio as websockets

async def hello(websocket, path):
    name = await websocket.recv()
    print(f"< {name}")

    greeting = f"Hello {name}!"

    await websocket.send(greeting)
    print(f"> {greeting}")

start_server = websockets.serve(hello, "localhost", 8765)

asyncio.get_event_loop().run_until_complete(start_server)
asyncio.get_event_loop().run_forever()
"""

TUTORIAL_CLIENT = """\
#!/usr/bin/env python

# WS client example

import asyncio
import transports.asyncio as websockets

async def hello():
    uri = "ws://localhost:8765"
    async with websockets.connect(uri) as websocket:
        name = input("What's your name? ")

        await websocket.send(name)
        print(f"> {name}")

        greeting = await websocket.recv()
        print(f"< {greeting}")

asyncio.get_event_loop().run_until_complete(hello())
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _write(tmp_path: Path, name: str, source: str, port: int) -> Path:
    path = tmp_path / name
    path.write_text(source.replace("8765", str(port)), encoding="utf-8")
    return path


def _wait_port(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


@pytest.fixture
def processes() -> Iterator[List[subprocess.Popen]]:
    """Subprocesses to end after the test."""
    started: List[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)  # also closes the pipes


def _start(processes: List[subprocess.Popen], script: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=str(ROOT),
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(proc)
    return proc


def test_tutorial_programs(tmp_path: Path, processes: List[subprocess.Popen]) -> None:
    port = free_port()
    server = _start(processes, _write(tmp_path, "server.py", TUTORIAL_SERVER, port))
    _wait_port(port)
    client = subprocess.run(
        [sys.executable, str(_write(tmp_path, "client.py", TUTORIAL_CLIENT, port))],
        cwd=str(ROOT),
        env=_env(),
        input="Ada\n",
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout.splitlines() == ["What's your name? > Ada", "< Hello Ada!"]
    server.send_signal(signal.SIGINT)
    out, _ = server.communicate(timeout=10)
    assert out.splitlines() == ["< Ada", "> Hello Ada!"]


def test_hello_examples(tmp_path: Path, processes: List[subprocess.Popen]) -> None:
    port = free_port()
    source = (EXAMPLES / "hello_server.py").read_text(encoding="utf-8")
    server = _start(processes, _write(tmp_path, "hello_server.py", source, port))
    _wait_port(port)
    source = (EXAMPLES / "hello_client.py").read_text(encoding="utf-8")
    client = subprocess.run(
        [sys.executable, str(_write(tmp_path, "hello_client.py", source, port))],
        cwd=str(ROOT),
        env=_env(),
        input="Grace\n",
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert client.returncode == 0, client.stderr
    assert "< Hello Grace! Message bien reçu." in client.stdout
    server.send_signal(signal.SIGINT)
    out, _ = server.communicate(timeout=10)
    assert "< Grace" in out


def _example_server(
    tmp_path: Path, processes: List[subprocess.Popen], name: str
) -> Any:
    port = free_port()
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    proc = _start(processes, _write(tmp_path, name, source, port))
    _wait_port(port)
    return proc, f"ws://127.0.0.1:{port}/"


def test_echo_examples(tmp_path: Path, processes: List[subprocess.Popen]) -> None:
    _, address = _example_server(tmp_path, processes, "echo_server.py")
    port = address.rsplit(":", 1)[1].strip("/")
    source = (EXAMPLES / "echo_client.py").read_text(encoding="utf-8")
    client = subprocess.run(
        [sys.executable, str(_write(tmp_path, "echo_client.py", source, int(port))), "a", "b c"],
        cwd=str(ROOT),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout.splitlines() == ["a", "b c"]


def test_producer_consumer_example(tmp_path: Path, processes: List[subprocess.Popen]) -> None:
    proc, address = _example_server(tmp_path, processes, "producer_consumer.py")

    async def main() -> None:
        async with connect(address) as ws:
            await ws.send("from the client")
            tick = await ws.recv()
            assert isinstance(tick, str) and tick[:2] == "20"

    asyncio.run(asyncio.wait_for(main(), 10))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert "< from the client" in out


def test_chat_example(tmp_path: Path, processes: List[subprocess.Popen]) -> None:
    _, address = _example_server(tmp_path, processes, "chat_server.py")

    async def main() -> None:
        alice = await connect(address)
        assert await alice.recv() == "1 here"
        bob = await connect(address)
        assert await alice.recv() == "2 here"
        assert await bob.recv() == "2 here"
        await bob.send("hi all")
        assert await alice.recv() == "hi all"
        assert await bob.recv() == "hi all"
        await bob.close()
        assert await alice.recv() == "1 here"
        await alice.close()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_serve_demo(processes: List[subprocess.Popen]) -> None:
    code = textwrap.dedent(
        """
        from transports.asyncio import serve_demo
        serve_demo("127.0.0.1", 0, compression=None)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=str(ROOT),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on ws://127.0.0.1:"), line
    port = int(line.rsplit(":", 1)[1])

    async def main() -> None:
        status, _, body = await http_request(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, b"ok\n")
        status, _, body = await http_request(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and b"<html" in body.lower()
        ws = await connect(f"ws://127.0.0.1:{port}/any/path")
        await ws.send("text")
        assert await ws.recv() == "text"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(wscore.ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1001

    asyncio.run(asyncio.wait_for(main(), 10))
    assert proc.wait(timeout=10) == 0
    assert proc.stdout.read() == ""  # exactly one line
