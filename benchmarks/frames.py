"""Frame throughput of the core, side by side with raw wsproto and websockets' sans-I/O.

What is measured, for each payload size (16 B, 1 KiB, 64 KiB, 1 MiB), with
permessage-deflate off and on:

* parse, masked (client to server: a server-side parser) and unmasked (server to
  client: a client-side parser): bytes in 64 KiB reads -> whole binary messages;
* serialize, masked (a client) and unmasked (a server): one binary message -> bytes
  to write (what a transport does per ``send``).

Implementations, in the same run:

* ``wscore``: ``ServerConnection`` / ``ClientConnection`` after an in-memory handshake
  (``receive_data`` + ``events()``; ``send`` + ``data_to_send()``);
* ``wsproto``: ``wsproto.frame_protocol.FrameProtocol`` directly (the floor wscore
  is built on), with the same joining of partial frames into messages;
* ``websockets``: ``websockets.protocol.Protocol`` in state OPEN (``receive_data``
  + ``events_received()``; ``send_binary`` + ``data_to_send()``).

Each figure is the median of at least 3 rounds; in a round every implementation
runs once per case, round-robin, starting with a different one each round. Only the
work is timed (parsers and streams are built outside the timed region; the GC is
off while timing). Every loop is bounded by a time budget and a count.

``python benchmarks/frames.py [--quick]`` prints a markdown table; ``run(quick)``
returns one dict per case for the benchmark suite.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import wsproto
import wsproto.extensions
import wsproto.frame_protocol

import wscore

try:
    import websockets
    from websockets.extensions.permessage_deflate import PerMessageDeflate as WsDeflate
    from websockets.protocol import Protocol as WsProtocol
    from websockets.protocol import Side as WsSide
    from websockets.protocol import State as WsState
except ImportError:  # pragma: no cover - websockets is optional
    websockets = None  # type: ignore[assignment]

IMPLS = ["wscore", "wsproto", "websockets"]
SIZES = [16, 1024, 65536, 2**20]
READ_SIZE = 65536
MiB = 2**20

Case = Tuple[str, bool, int, bool]  # (op, masked, size, deflate)


# -- inputs -----------------------------------------------------------------------------


def make_payload(size: int) -> bytes:
    """Deterministic, moderately compressible bytes (JSON-ish words and numbers)."""
    rng = random.Random(size)
    words = [b"alpha", b"beta", b"gamma", b"delta", b'"id":', b'"value":', b"{", b"}", b","]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
        out += str(rng.randrange(100000)).encode()
    return bytes(out[:size])


def count_for(size: int) -> int:
    """Messages per parsed stream: about 4 MiB of payload, 8 to 5000 messages."""
    return max(8, min(5000, 4 * MiB // size))


def wsproto_deflate(client: bool) -> wsproto.extensions.PerMessageDeflate:
    ext = wsproto.extensions.PerMessageDeflate()
    if client:
        ext.finalize("permessage-deflate; client_max_window_bits=15")
    else:
        ext.accept("permessage-deflate; client_max_window_bits")
    return ext


def make_stream(size: int, masked: bool, deflate: bool) -> Tuple[List[bytes], int]:
    """The wire bytes of ``count_for(size)`` messages, cut into 64 KiB reads."""
    sender = wsproto.frame_protocol.FrameProtocol(
        client=masked, extensions=[wsproto_deflate(masked)] if deflate else []
    )
    payload = make_payload(size)
    count = count_for(size)
    data = b"".join(bytes(sender.send_data(payload)) for _ in range(count))
    chunks = [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]
    return chunks, count


# -- wscore --------------------------------------------------------------------------------

CONFIG = dict(
    max_size=4 * MiB,
    ping_interval=None,
    ping_timeout=None,
    open_timeout=None,
    close_timeout=None,
    user_agent=None,
)


def wscore_pair(deflate: bool) -> Tuple[wscore.ClientConnection, wscore.ServerConnection]:
    config = wscore.Config(compression="deflate" if deflate else None, **CONFIG)  # type: ignore[arg-type]
    client = wscore.ClientConnection("ws://localhost/", config)
    server = wscore.ServerConnection(config)
    server.receive_data(client.data_to_send())
    server.events()
    server.accept()
    client.receive_data(server.data_to_send())
    events = client.events()
    assert isinstance(events[0], wscore.Opened), events
    assert bool(client.extensions) == deflate == bool(server.extensions)
    return client, server


def wscore_parser(masked: bool, deflate: bool) -> Callable[[List[bytes]], int]:
    client, server = wscore_pair(deflate)
    conn = server if masked else client

    def parse(chunks: List[bytes]) -> int:
        receive, events = conn.receive_data, conn.events
        n = 0
        for chunk in chunks:
            receive(chunk)
            n += len(events())
        return n

    return parse


def wscore_sender(masked: bool, deflate: bool) -> Callable[[bytes, int], int]:
    client, server = wscore_pair(deflate)
    conn = client if masked else server

    def serialize(payload: bytes, count: int) -> int:
        send, data_to_send = conn.send, conn.data_to_send
        total = 0
        for _ in range(count):
            send(payload)
            total += len(data_to_send())
        return total

    return serialize


# -- wsproto ------------------------------------------------------------------------------


def wsproto_parser(masked: bool, deflate: bool) -> Callable[[List[bytes]], int]:
    proto = wsproto.frame_protocol.FrameProtocol(
        client=not masked, extensions=[wsproto_deflate(not masked)] if deflate else []
    )
    parts: List[Any] = []

    def parse(chunks: List[bytes]) -> int:
        receive, frames = proto.receive_bytes, proto.received_frames
        n = 0
        for chunk in chunks:
            receive(chunk)
            for frame in frames():
                if frame.message_finished:
                    if parts:
                        parts.append(frame.payload)
                        b"".join(parts)
                        parts.clear()
                    n += 1
                else:
                    parts.append(frame.payload)
        return n

    return parse


def wsproto_sender(masked: bool, deflate: bool) -> Callable[[bytes, int], int]:
    proto = wsproto.frame_protocol.FrameProtocol(
        client=masked, extensions=[wsproto_deflate(masked)] if deflate else []
    )

    def serialize(payload: bytes, count: int) -> int:
        send = proto.send_data
        total = 0
        for _ in range(count):
            total += len(bytes(send(payload)))  # a transport writes bytes
        return total

    return serialize


# -- websockets ------------------------------------------------------------------------------


def ws_protocol(client: bool, deflate: bool) -> Any:
    side = WsSide.CLIENT if client else WsSide.SERVER
    proto = WsProtocol(side, state=WsState.OPEN, max_size=None)
    if deflate:
        proto.extensions = [WsDeflate(False, False, 15, 15)]
    return proto


def websockets_parser(masked: bool, deflate: bool) -> Callable[[List[bytes]], int]:
    proto = ws_protocol(not masked, deflate)

    def parse(chunks: List[bytes]) -> int:
        receive, events = proto.receive_data, proto.events_received
        n = 0
        for chunk in chunks:
            receive(chunk)
            n += len(events())
        return n

    return parse


def websockets_sender(masked: bool, deflate: bool) -> Callable[[bytes, int], int]:
    proto = ws_protocol(masked, deflate)

    def serialize(payload: bytes, count: int) -> int:
        send, data_to_send = proto.send_binary, proto.data_to_send
        total = 0
        for _ in range(count):
            send(payload)
            total += sum(map(len, data_to_send()))
        return total

    return serialize


PARSERS = {"wscore": wscore_parser, "wsproto": wsproto_parser, "websockets": websockets_parser}
SENDERS = {"wscore": wscore_sender, "wsproto": wsproto_sender, "websockets": websockets_sender}


# -- measuring -------------------------------------------------------------------------------


def measure_parse(impl: str, case: Case, stream: Tuple[List[bytes], int], budget: float) -> float:
    """Messages per second parsing ``stream`` with fresh parsers until ``budget`` is spent."""
    _, masked, _, deflate = case
    chunks, count = stream
    elapsed, messages = 0.0, 0
    for _ in range(1000):  # bounded; the budget ends it first
        # Fresh parsers (a parser's state follows its stream), built outside the
        # timed region and in a batch, so that building one does not evict the
        # caches right before the next is timed.
        parsers = [PARSERS[impl](masked, deflate) for _ in range(8)]
        gc.collect()
        gc.disable()
        for parse in parsers:
            start = time.perf_counter()
            got = parse(chunks)
            elapsed += time.perf_counter() - start
            if got != count:
                raise AssertionError(f"{impl} parsed {got} messages of {count}")
            messages += got
            if elapsed >= budget:
                break
        gc.enable()
        if elapsed >= budget:
            break
    return messages / elapsed


def measure_serialize(impl: str, case: Case, payload: bytes, budget: float) -> float:
    _, masked, size, deflate = case
    serialize = SENDERS[impl](masked, deflate)
    batch = max(1, min(1000, MiB // (size * 4) or 1))
    elapsed, messages = 0.0, 0
    for _ in range(10000):
        gc.disable()
        start = time.perf_counter()
        total = serialize(payload, batch)
        elapsed += time.perf_counter() - start
        gc.enable()
        if total < (batch * size if not deflate else batch):
            raise AssertionError(f"{impl} wrote {total} bytes for {batch} messages")
        messages += batch
        if elapsed >= budget:
            break
    return messages / elapsed


def cases() -> List[Case]:
    return [
        (op, masked, size, deflate)
        for op in ("parse", "serialize")
        for masked in (True, False)
        for deflate in (False, True)
        for size in SIZES
    ]


def run(quick: bool = False) -> List[Dict[str, Any]]:
    """Run every case; one dict per case with each implementation's figures and ratios."""
    rounds = 3 if quick else 5
    budget = 0.06 if quick else 0.25
    impls = [i for i in IMPLS if i != "websockets" or websockets is not None]
    all_cases = cases()
    streams = {
        (masked, size, deflate): make_stream(size, masked, deflate)
        for _, masked, size, deflate in all_cases
    }
    payloads = {size: make_payload(size) for size in SIZES}
    rates: Dict[Tuple[Case, str], List[float]] = {}
    for r in range(rounds):
        print(f"frames: round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        for case in all_cases:
            op, masked, size, deflate = case
            order = impls[r % len(impls) :] + impls[: r % len(impls)]
            for impl in order:
                if op == "parse":
                    rate = measure_parse(impl, case, streams[(masked, size, deflate)], budget)
                else:
                    rate = measure_serialize(impl, case, payloads[size], budget)
                rates.setdefault((case, impl), []).append(rate)
    rows = []
    for case in all_cases:
        op, masked, size, deflate = case
        row: Dict[str, Any] = {
            "op": op,
            "mask": "masked (c→s)" if masked else "unmasked (s→c)",
            "size": _size(size),
            "deflate": "on" if deflate else "off",
        }
        medians = {}
        for impl in impls:
            values = rates[(case, impl)]
            median = statistics.median(values)
            medians[impl] = median
            spread = (max(values) - min(values)) / median * 100
            row[f"{impl} msg/s"] = round(median)
            row[f"{impl} MB/s"] = round(median * size / 1e6, 1)
            row[f"{impl} ±%"] = round(spread / 2, 1)
        row["cost vs wsproto"] = round(medians["wsproto"] / medians["wscore"], 2)
        if "websockets" in medians:
            row["cost vs websockets"] = round(medians["websockets"] / medians["wscore"], 2)
        rows.append(row)
    return rows


def _size(size: int) -> str:
    if size >= MiB:
        return f"{size // MiB} MiB"
    if size >= 1024:
        return f"{size // 1024} KiB"
    return f"{size} B"


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def markdown(rows: List[Dict[str, Any]]) -> str:
    impls = [i for i in IMPLS if f"{i} msg/s" in rows[0]]
    head = ["op", "direction", "size", "deflate"]
    for impl in impls:
        head += [f"{impl} msg/s (±%)", f"{impl} MB/s"]
    head += ["wscore/wsproto cost"]
    if "websockets" in impls:
        head += ["wscore/websockets cost"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["op"], row["mask"], row["size"], row["deflate"]]
        for impl in impls:
            cells.append(f"{_rate(row[f'{impl} msg/s'])} (±{row[f'{impl} ±%']:.0f})")
            cells.append(f"{row[f'{impl} MB/s']:.1f}")
        cells.append(f"{row['cost vs wsproto']:.2f}×")
        if "websockets" in impls:
            cells.append(f"{row['cost vs websockets']:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    quick = "--quick" in argv
    started = time.perf_counter()
    rows = run(quick)
    elapsed = time.perf_counter() - started
    versions = f"wsproto {wsproto.__version__}"
    if websockets is not None:
        versions += f", websockets {websockets.__version__}"
    speedups = "C masker" if wscore._framing.SPEEDUPS else "pure-Python masker"
    print(
        f"Frame throughput ({'quick' if quick else 'full'} run, {elapsed:.0f} s; Python "
        f"{sys.version.split()[0]}; wscore {wscore.__version__} with {speedups}; {versions}).\n"
        "Median of interleaved rounds; ±% is half the min-max spread. Cost ratio = "
        "wscore's time per message / the other's (< 1 is cheaper).\n"
    )
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
