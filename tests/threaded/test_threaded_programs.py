"""The command line (``python -m transports serve``) and the threaded examples, as processes."""

from __future__ import annotations

import http.client
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from transports.threaded import connect

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "threaded"


class Program:
    """A Python process whose stdout lines are collected by a thread."""

    def __init__(self, args: List[str], env: Optional[Dict[str, str]] = None) -> None:
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} in {timeout} s; output: {''.join(self.output)}"
                ) from None
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


@pytest.fixture
def programs() -> Iterator[List[Program]]:
    started: List[Program] = []
    yield started
    for program in started:
        if program.proc.poll() is None:
            program.proc.kill()
            program.proc.wait(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serve(programs: List[Program]) -> None:
    server = Program(["-m", "transports", "serve", "--port", "0"])
    programs.append(server)
    port = int(server.wait_line(r"listening on ws://127\.0\.0\.1:(\d+)").group(1))
    assert port != 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/healthz")
    response: Any = conn.getresponse()
    assert (response.status, response.read()) == (200, b"ok\n")
    conn.close()
    with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
        ws.send("echo me")
        assert ws.recv(timeout=5) == "echo me"
        ws.send(b"\x01\x02")
        assert ws.recv(timeout=5) == b"\x01\x02"
        start = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=5) == 0
        assert time.monotonic() - start < 5
        # The open connection was closed by the shutdown with 1001.
        with pytest.raises(Exception) as info:
            ws.recv(timeout=5)
        assert getattr(info.value, "code", None) == 1001
    assert "server stopped" in "".join(server.output)


def test_hello_examples(programs: List[Program]) -> None:
    port = free_port()
    env = {"PORT": str(port)}
    server = Program([str(EXAMPLES / "hello_server.py")], env)
    programs.append(server)
    server.wait_line(rf"listening on ws://localhost:{port}")
    client = subprocess.run(
        [sys.executable, str(EXAMPLES / "hello_client.py")],
        cwd=ROOT,
        env=dict(os.environ, **env),
        input="Ada\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=15,
    )
    assert client.returncode == 0, client.stderr
    assert "> Ada" in client.stdout
    assert "< Message bien reçu" in client.stdout
    server.wait_line(r"^< Ada$")
    server.wait_line(r"^> Message bien reçu$")
    assert server.stop(signal.SIGINT, timeout=5) == 0


@pytest.mark.parametrize("name", ["echo_server.py", "producer_consumer.py"])
def test_example_servers(programs: List[Program], name: str) -> None:
    port = free_port()
    server = Program([str(EXAMPLES / name)], {"PORT": str(port)})
    programs.append(server)
    server.wait_line(rf"listening on ws://localhost:{port}")
    with connect(f"ws://localhost:{port}/", open_timeout=5) as ws:
        ws.send("ping?")
        answers = [ws.recv(timeout=5)]
        if name == "producer_consumer.py":
            answers.append(ws.recv(timeout=5))  # the producer's time, within a second
            assert any(a.startswith("the time is") for a in answers), answers
            assert "got 'ping?'" in answers
        else:
            assert answers == ["ping?"]
    assert server.stop(signal.SIGINT, timeout=5) == 0
