"""Many idle connections on one threaded server: memory, threads, and ping answers.

    python -m benchmarks.idle [--conns 10000] [--rounds 3] [--transport threaded]

Starts the demo echo server (``transports.cli``, default options: keepalive on, every
handler blocked in ``recv()``) in its own process, opens ``--conns`` connections to it
from one asyncio client process (our asyncio client, compression off, its keepalive
off), echoes one message on each, then pings every connection ``--rounds`` times:
once all at the same moment (a burst, the worst case) and once spread over a second.
It prints the time to open them, the server's memory per connection (RSS growth over
the connection count), its thread count, and the ping round trips (median, p99, max).
Exit status 1 when a connection failed to open or a ping was not answered within
``--limit`` seconds (2 by default). Every step is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import (
    ROOT,
    proc_rss,
    proc_threads,
    raise_nofile,
    start_server_process,
    stop_server_process,
)

SERVER_CODE = (
    "import sys; from benchmarks.common import raise_nofile; raise_nofile();"
    "from transports.cli import main; sys.exit(main(sys.argv[1:]))"
)


def start_server(transport: str) -> tuple[subprocess.Popen[bytes], int]:
    cmd = [sys.executable, "-c", SERVER_CODE, "serve", "--transport", transport]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--no-compression"]
    return start_server_process(cmd, ROOT, "listening on", lambda line: int(line.rsplit(":", 1)[1]))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(port: int, pid: int, conns: int, rounds: int, budget: float) -> dict:
    from transports.asyncio import connect

    uri = f"ws://127.0.0.1:{port}/"
    opts = {"compression": None, "ping_interval": None, "open_timeout": 30}
    warm = await connect(uri, **opts)  # the server's first connection allocates its pools
    await warm.send("warm")
    await warm.recv()
    await warm.close()
    await asyncio.sleep(0.5)
    rss0, threads0 = proc_rss(pid), proc_threads(pid)
    t0 = time.monotonic()
    gate = asyncio.Semaphore(200)  # handshakes in flight

    async def open_one() -> object:
        async with gate:
            if time.monotonic() - t0 > budget:
                raise TimeoutError(f"open budget of {budget:.0f} s used up")
            ws = await connect(uri, **opts)
            await ws.send("x")
            await ws.recv()
            return ws

    results = await asyncio.gather(*(open_one() for _ in range(conns)), return_exceptions=True)
    opened = [ws for ws in results if not isinstance(ws, BaseException)]
    errors = sorted({repr(e)[:100] for e in results if isinstance(e, BaseException)})
    open_s = time.monotonic() - t0
    # Let the server settle: a threaded reader idle for its park time (_PARK_AFTER to
    # twice that) hands its socket to the I/O thread, which then answers the pings.
    from transports.threaded.connection import _PARK_AFTER

    await asyncio.sleep(2 * _PARK_AFTER + 1.0)
    rss1, threads1 = proc_rss(pid), proc_threads(pid)
    out: dict = {
        "conns": conns,
        "opened": len(opened),
        "open_s": round(open_s, 2),
        "open_errors": errors[:5],
        "server_threads": threads1,
        "threads_added": threads1 - threads0,
        "kib_per_conn": round((rss1 - rss0) / 1024 / max(1, len(opened)), 1),
        "rss_mib": round(rss1 / 2**20, 1),
        "pings": [],
    }

    async def ping_one(ws: object, delay: float) -> float:
        await asyncio.sleep(delay)
        start = time.monotonic()
        waiter = await ws.ping()  # type: ignore[attr-defined]
        await asyncio.wait_for(waiter, 30)
        return time.monotonic() - start

    for rnd in range(rounds):
        for mode in ("burst", "spread"):
            n = len(opened)
            delays = [0.0] * n if mode == "burst" else [i / n for i in range(n)]
            t1 = time.monotonic()
            lat = await asyncio.gather(
                *(ping_one(ws, d) for ws, d in zip(opened, delays)), return_exceptions=True
            )
            ok = [x for x in lat if isinstance(x, float)]
            out["pings"].append(
                {
                    "round": rnd,
                    "mode": mode,
                    "answered": len(ok),
                    "median_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
                    "p99_ms": round(pct(ok, 0.99) * 1000, 1) if ok else None,
                    "max_ms": round(max(ok) * 1000, 1) if ok else None,
                    "wall_s": round(time.monotonic() - t1, 2),
                }
            )
    t2 = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True),
        120,  # type: ignore[attr-defined]
    )
    out["close_s"] = round(time.monotonic() - t2, 2)
    return out


FLOOR_CODE = """
import sys, threading, time
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmRSS:'))
threading.stack_size(256 * 1024)
n = int(sys.argv[1])
gate = threading.Lock(); gate.acquire()
before = rss()
for _ in range(n):
    threading.Thread(target=gate.acquire, daemon=True).start()
time.sleep(0.5)
print(round((rss() - before) / n, 1))
"""


def thread_floor(n: int = 5000) -> float:
    """RSS in KiB of one bare Python thread blocked on a lock (256 KiB stack), measured
    in a fresh interpreter: the floor of any thread-per-connection server."""
    out = subprocess.run(
        [sys.executable, "-c", FLOOR_CODE, str(n)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--transport", default="threaded", choices=["threaded", "asyncio"])
    ap.add_argument("--limit", type=float, default=2.0, help="ping answer limit in seconds")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds allowed for opening")
    ap.add_argument("--json", help="also write the result to this file")
    ap.add_argument(
        "--floor",
        action="store_true",
        help="only measure a bare Python thread's memory (the per-thread floor)",
    )
    args = ap.parse_args(argv)
    if args.floor:
        print(
            f"a bare Python thread blocked on a lock: {thread_floor()} KiB of RSS "
            f"(Python {sys.version.split()[0]})"
        )
        return 0
    raise_nofile()
    proc, port = start_server(args.transport)
    try:
        result = asyncio.run(
            asyncio.wait_for(run(port, proc.pid, args.conns, args.rounds, args.budget), 900)
        )
    finally:
        stop_server_process(proc)
    result["transport"] = args.transport
    result["machine"] = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    result["thread_floor_kib"] = thread_floor()
    print(
        f"{args.transport} server: {result['opened']}/{result['conns']} connections opened in "
        f"{result['open_s']} s; {result['kib_per_conn']} KiB of server RSS per connection "
        f"(RSS {result['rss_mib']} MiB, {result['server_threads']} threads)"
    )
    print(f"  (a bare Python thread costs {result['thread_floor_kib']} KiB here)")
    if result["open_errors"]:
        print("  open errors:", "; ".join(result["open_errors"]))
    print("| round | mode | answered | median ms | p99 ms | max ms | wall s |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for p in result["pings"]:
        print(
            f"| {p['round']} | {p['mode']} | {p['answered']} | {p['median_ms']} | "
            f"{p['p99_ms']} | {p['max_ms']} | {p['wall_s']} |"
        )
        worst = max(worst, (p["max_ms"] or 1e9) / 1000)
    all_answered = all(p["answered"] == result["opened"] for p in result["pings"])
    good = result["opened"] == args.conns and all_answered and worst <= args.limit
    print(f"every connection answered every ping within {args.limit} s: {'yes' if good else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
