"""Shared command line for the Autobahn fuzzingserver echo clients."""

from __future__ import annotations

import argparse
import json

MAX_SIZE = 2**24  # 16 MiB: the 9.* cases send up to 16 MiB messages


def parse_args(default_agent: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Autobahn testsuite echo client")
    p.add_argument(
        "--uri", default="ws://127.0.0.1:9001", help="base URI of `wstest -m fuzzingserver`"
    )
    p.add_argument("--agent", default=default_agent, help="agent name in the reports")
    p.add_argument(
        "--impl",
        choices=["wscore", "websockets"],
        default="wscore",
        help="client library: ours (default) or the websockets stand-in",
    )
    p.add_argument("--max-size", type=int, default=MAX_SIZE)
    p.add_argument("--no-compression", action="store_true")
    p.add_argument(
        "--case-timeout",
        type=float,
        default=120.0,
        help="give up on one case after this many seconds",
    )
    p.add_argument(
        "--max-cases",
        type=int,
        default=2000,
        help="upper bound on the case count the server may announce",
    )
    return p.parse_args()


def parse_count(msg: str | bytes) -> int:
    count = int(json.loads(msg))
    if count < 0:
        raise ValueError(f"bad case count {count}")
    return count
