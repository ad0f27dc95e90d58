"""Scenario definitions: which workloads, which libraries, how long.

Server scenarios use one fixed load generator (picows + uvloop; the lean handshake
client for handshakes; a raw-TCP asyncio client for the raw-TCP ceilings). Client
scenarios run each client library against one fixed fast server (picows + uvloop).
"""

from __future__ import annotations

# name -> workload (the loadgen adds "duration")
ECHO = {
    "echo-16": {"kind": "echo", "size": 16},
    "echo-1k": {"kind": "echo", "size": 1024},
}
STREAM = {
    "stream-16": {"kind": "stream", "size": 16, "window": 64},
    "stream-64k": {"kind": "stream", "size": 65536, "window": 16},
    "stream-1m": {"kind": "stream", "size": 1 << 20, "window": 4},
}
MANY = {
    "many-100": {"kind": "many", "size": 16, "conns": 100},
    "many-1000": {"kind": "many", "size": 16, "conns": 1000},
}
HANDSHAKE = {
    "handshake-seq": {"kind": "handshake", "concurrency": 1},
    "handshake-c50": {"kind": "handshake", "concurrency": 50},
}
CLIENT = {
    "client-echo-16": {"kind": "echo", "size": 16},
    "client-echo-1k": {"kind": "echo", "size": 1024},
    "client-stream-16": {"kind": "stream", "size": 16, "window": 64},
    "client-stream-64k": {"kind": "stream", "size": 65536, "window": 16},
    "client-stream-1m": {"kind": "stream", "size": 1 << 20, "window": 4},
    "client-handshake-seq": {"kind": "handshake", "concurrency": 1},
}
# Sent once on one connection before a process's measured workloads, and not counted.
# asyncio reads up to 256 KiB at a time; on glibc, a buffer that large is mmapped (and
# unmapped again) on every read until the process first frees one large block, which
# raises malloc's threshold. A fresh websockets asyncio server pays about 18 us more per
# 16 B echo than it does once it has seen one large message (34.9 vs 16.9 us in one A/B
# run). Our transports settle this at start-up (transports._common.settle_malloc); the
# warm-up puts every server and client in that same state, as a long-running process
# that has received one large message is, so that a table compares protocol work.
WARM = {"name": "warm", "kind": "warm", "size": 1 << 20, "duration": 0.0}

GROUPS = {"echo": ECHO, "stream": STREAM, "many": MANY, "handshake": HANDSHAKE}
ALL_SCENARIOS = ["frames", "echo", "stream", "many", "handshake", "memory", "ceiling", "clients"]

WS_SERVERS = [
    "websockets",
    "websockets-uvloop",
    "websockets-sync",
    "aiohttp",
    "aiohttp-uvloop",
    "picows",
    "picows-uvloop",
    "simple-websocket",
    "ours-threaded",
    "ours-asyncio",
    "ours-asyncio-uvloop",
]
RAW_SERVERS = ["raw-asyncio", "raw-asyncio-uvloop", "raw-threaded"]
CLIENTS = [
    "websockets",
    "websockets-uvloop",
    "websockets-sync",
    "aiohttp",
    "picows",
    "picows-uvloop",
    "simple-websocket",
    "ours-threaded",
    "ours-asyncio",
    "ours-asyncio-uvloop",
]
BASELINE = "websockets"
FIXED_SERVER = "picows-uvloop"
LOADGEN = "picows-uvloop"
HANDSHAKE_LOADGEN = "handshake-uvloop"
RAW_LOADGEN = "raw-uvloop"
SYNC_CLIENTS = {"websockets-sync", "simple-websocket", "ours-threaded"}
THREAD_HEAVY = {"simple-websocket"}  # two threads per connection

UNITS = {
    "echo": "msgs/s",
    "stream": "msgs/s",
    "many": "msgs/s (total)",
    "handshake": "handshakes/s",
    "client": "msgs/s",
}


def settings(quick: bool) -> dict:
    if quick:
        return {"rounds": 3, "duration": 0.2, "memory_conns": [1000], "calib_rounds": 2}
    return {"rounds": 3, "duration": 0.5, "memory_conns": [1000, 10000], "calib_rounds": 4}


# A memory holder stops opening connections after this many seconds (thread-per-connection
# servers open ~300-500 connections/s at 5,000+ connections) and reports what it holds.
OPEN_BUDGET = 40.0
