"""Autobahn fuzzingserver echo client on the asyncio transport.

Protocol of `wstest -m fuzzingserver`: read the case count from /getCaseCount,
then for each case N connect to /runCase?case=N&agent=AGENT and echo every
message back (text as text, binary as binary) until the server closes, then
ask for /updateReports?agent=AGENT.

    python conformance/client_asyncio.py --uri ws://127.0.0.1:9001 --agent A
    python conformance/client_asyncio.py --impl websockets ...   # stand-in
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import quote

from _client_common import parse_args, parse_count


def load(impl: str):
    if impl == "websockets":
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed
    else:
        from transports.asyncio import ConnectionClosed, connect
    return connect, ConnectionClosed


async def main() -> int:
    a = parse_args("wscore-asyncio")
    connect, ConnectionClosed = load(a.impl)
    opts = {"max_size": a.max_size, "compression": None if a.no_compression else "deflate"}
    agent = quote(a.agent)

    async with connect(f"{a.uri}/getCaseCount", **opts) as ws:
        count = parse_count(await asyncio.wait_for(ws.recv(), 30))
    count = min(count, a.max_cases)
    print(f"{a.agent}: {count} cases", flush=True)

    async def run_case(n: int) -> None:
        async with connect(f"{a.uri}/runCase?case={n}&agent={agent}", **opts) as ws:
            async for msg in ws:  # ends quietly on a normal close
                await ws.send(msg)

    t0 = time.monotonic()
    for n in range(1, count + 1):
        try:
            await asyncio.wait_for(run_case(n), a.case_timeout)
        except ConnectionClosed:
            pass
        except Exception as exc:  # keep going: the report shows what went wrong
            print(f"case {n}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    async def update_reports() -> None:
        async with connect(f"{a.uri}/updateReports?agent={agent}", **opts) as ws:
            async for _ in ws:
                pass

    try:
        await asyncio.wait_for(update_reports(), 120)
    except ConnectionClosed:
        pass
    print(f"{a.agent}: done in {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
