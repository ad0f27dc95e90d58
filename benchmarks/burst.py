"""A burst of new connections on one server: does it keep serving while they settle?

    python -m benchmarks.burst [--conns 10000] [--concurrency 100] [--hold 15]
                               [--server ours-threaded] [--tls]

Starts a benchmark echo server (``benchmarks.servers``: keepalive and compression
off, the leanest setup, so handshakes come fastest) in its own process, on one CPU
as in the benchmark runs (``--cpu``; a one-CPU container is the same), and opens
``--conns`` connections to it, ``--concurrency`` at a time, from a lean client
(an asyncio ``Protocol`` with a fixed upgrade request: it costs the client little, so
the server is saturated). Each connection does the handshake and one echo, then stays
open and idle. Then, for ``--hold`` seconds, while the threaded server's readers park
(see ``transports.threaded.connection._PARK_AFTER``), a probe connection is opened
and echoed every 0.2 s. Prints the time to open them, the longest gap with no
connection completing, failures, and the slowest probe. Exit status 1 when a
connection failed, or a gap or probe exceeded ``--limit`` seconds (5 by default).

Why: with a fixed 1 s park time, 10,000 connections opened this way left thousands
of threads waiting for the GIL at once, and the threaded server froze for 30 s to
minutes; with 5-10 s, 18,000 did; the compiled gate (``transports/_gate.c``) ended
it (benchmarks/README.md). ``--tls`` runs the same over TLS (a fresh RSA-2048
certificate made with ``openssl``; TLS readers wait in ``poll()``, not ``recv()``).
Every step is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from .common import (
    ROOT,
    UPGRADE_REQUEST,
    proc_rss,
    raise_nofile,
    start_server_process,
    stop_server_process,
)

_FRAME = bytes([0x81, 0x84, 0, 0, 0, 0]) + b"ping"  # masked (key 0) text "ping"


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.buffer = b""
        self.echoed = asyncio.get_running_loop().create_future()
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded and b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 101"):
                self._done(ConnectionError(head[:40].decode(errors="replace")))
                return
            self.upgraded = True
            self.transport.write(_FRAME)  # type: ignore[attr-defined]
        if self.upgraded and len(self.buffer) >= 6:  # the echo: 2-byte header + "ping"
            self._done(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._done(ConnectionError("closed"))

    def _done(self, error: Exception | None) -> None:
        if not self.echoed.done():
            if error is None:
                self.echoed.set_result(None)
            else:
                self.echoed.set_exception(error)


async def run(
    port: int,
    pid: int,
    conns: int,
    concurrency: int,
    hold: float,
    tls: Optional[ssl.SSLContext] = None,
) -> dict:
    loop = asyncio.get_running_loop()
    request = UPGRADE_REQUEST.format(port=port).encode()

    async def open_one() -> asyncio.BaseTransport:
        transport, client = await loop.create_connection(
            lambda: _Client(request), "127.0.0.1", port, ssl=tls
        )
        try:
            await client.echoed
        except BaseException:
            transport.close()
            raise
        return transport

    gate = asyncio.Semaphore(concurrency)
    held: list[asyncio.BaseTransport] = []
    errors: dict[str, int] = {}
    t0 = last = time.monotonic()
    longest_gap = 0.0

    async def one() -> None:
        nonlocal last, longest_gap
        async with gate:
            try:
                held.append(await asyncio.wait_for(open_one(), 30))
            except Exception as exc:  # counted and reported
                key = f"{type(exc).__name__}: {exc}"[:80]
                errors[key] = errors.get(key, 0) + 1
            now = time.monotonic()
            longest_gap = max(longest_gap, now - last)
            last = now

    await asyncio.gather(*(one() for _ in range(conns)))
    open_s = time.monotonic() - t0
    rss_open = proc_rss(pid)
    probes, slowest, probe_errors = 0, 0.0, 0
    end = time.monotonic() + hold
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            (await asyncio.wait_for(open_one(), 30)).close()
        except Exception:  # counted and reported
            probe_errors += 1
        slowest = max(slowest, time.monotonic() - start)
        probes += 1
        await asyncio.sleep(0.2)
    result = {
        "conns": conns,
        "opened": len(held),
        "open_s": round(open_s, 2),
        "longest_gap_s": round(longest_gap, 2),
        "errors": errors,
        "probes": probes,
        "probe_errors": probe_errors,
        "slowest_probe_s": round(slowest, 3),
        "rss_mib_open": round(rss_open / 2**20, 1),
        "rss_mib_end": round(proc_rss(pid) / 2**20, 1),
    }
    for transport in held:
        transport.close()
    return result


def start_server(
    name: str, cpu: str, tls: Optional[tuple[Path, Path]] = None
) -> tuple[subprocess.Popen[bytes], int]:
    cmd = [sys.executable, "-m", "benchmarks.servers", name]
    if cpu != "none":
        cmd += ["--cpu", cpu]
    if tls is not None:
        cmd += ["--tls", f"{tls[0]},{tls[1]}"]
    return start_server_process(cmd, ROOT, "PORT ", lambda line: int(line.split()[1]))


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate for 127.0.0.1 (``openssl``): (cert, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("--tls needs the openssl command")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
            "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--hold", type=float, default=15.0, help="seconds of probes after opening")
    ap.add_argument("--server", default="ours-threaded", help="a benchmarks.servers name")
    ap.add_argument("--cpu", default="0", help="the server's CPU, or none (not pinned)")
    ap.add_argument("--limit", type=float, default=5.0, help="longest gap or probe, seconds")
    ap.add_argument("--tls", action="store_true", help="connect over TLS (ours-threaded)")
    args = ap.parse_args(argv)
    raise_nofile()
    with tempfile.TemporaryDirectory() as directory:
        files = make_certificate(Path(directory)) if args.tls else None
        client_tls = None
        if files is not None:
            client_tls = ssl.create_default_context(cafile=str(files[0]))
        proc, port = start_server(args.server, args.cpu, files)
        try:
            timeout = 60 + args.hold + args.conns / 50  # bounded even when the server stalls
            result = asyncio.run(
                asyncio.wait_for(
                    run(port, proc.pid, args.conns, args.concurrency, args.hold, client_tls),
                    timeout,
                )
            )
        finally:
            stop_server_process(proc)
    failed = args.conns - result["opened"]
    print(
        f"{args.server}{' (TLS)' if args.tls else ''}: {result['opened']}/{args.conns} "
        f"connections opened in "
        f"{result['open_s']} s, {args.concurrency} at a time; longest gap with none "
        f"completing {result['longest_gap_s']} s; server RSS {result['rss_mib_open']} MiB"
    )
    if result["errors"]:
        print("  failures:", "; ".join(f"{n} x {e}" for e, n in result["errors"].items()))
    print(
        f"then {args.hold:.0f} s idle: {result['probes']} probe connections, "
        f"{result['probe_errors']} failed, slowest {result['slowest_probe_s']} s; "
        f"server RSS {result['rss_mib_end']} MiB"
    )
    good = (
        failed == 0
        and result["probe_errors"] == 0
        and max(result["longest_gap_s"], result["slowest_probe_s"]) <= args.limit
    )
    print(f"served throughout, no gap or probe over {args.limit} s: {'yes' if good else 'NO'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
