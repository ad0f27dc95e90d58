"""Autobahn fuzzingserver echo client on the threaded transport.

Protocol of `wstest -m fuzzingserver`: read the case count from /getCaseCount,
then for each case N connect to /runCase?case=N&agent=AGENT and echo every
message back (text as text, binary as binary) until the server closes, then
ask for /updateReports?agent=AGENT.

    python conformance/client_threaded.py --uri ws://127.0.0.1:9001 --agent A
    python conformance/client_threaded.py --impl websockets ...   # stand-in
"""

from __future__ import annotations

import sys
import time
from urllib.parse import quote

from _client_common import parse_args, parse_count


def load(impl: str):
    if impl == "websockets":
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect
    else:
        from transports.threaded import ConnectionClosed, connect
    return connect, ConnectionClosed


def main() -> int:
    a = parse_args("wscore-threaded")
    connect, ConnectionClosed = load(a.impl)
    opts = {"max_size": a.max_size, "compression": None if a.no_compression else "deflate"}
    agent = quote(a.agent)

    with connect(f"{a.uri}/getCaseCount", **opts) as ws:
        count = parse_count(ws.recv(timeout=30))
    count = min(count, a.max_cases)
    print(f"{a.agent}: {count} cases", flush=True)

    t0 = time.monotonic()
    for n in range(1, count + 1):
        try:
            with connect(f"{a.uri}/runCase?case={n}&agent={agent}", **opts) as ws:
                while True:  # ends with ConnectionClosed; each recv is bounded
                    msg = ws.recv(timeout=a.case_timeout)
                    ws.send(msg)
        except ConnectionClosed:
            pass
        except Exception as exc:  # keep going: the report shows what went wrong
            print(f"case {n}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    with connect(f"{a.uri}/updateReports?agent={agent}", **opts) as ws:
        try:
            for _ in range(100):  # the server sends nothing and closes
                ws.recv(timeout=60)
        except ConnectionClosed:
            pass
    print(f"{a.agent}: done in {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
