"""Helpers shared by the benchmark processes (no third-party imports here)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

ROOT = Path(__file__).resolve().parent.parent  # the project: cwd of the server processes
HOST = "127.0.0.1"
MAX_SIZE = 2**30  # the same message-size limit for every library
#: The fixed upgrade request of the lean clients (``.format(port=...)``).
UPGRADE_REQUEST = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pin(cpu: str | None) -> None:
    """Pin this process to the CPUs given as "0" or "0,1" (None / "" / "none": no pinning)."""
    if not cpu or cpu == "none":
        return
    cpus = {int(c) for c in cpu.split(",")}
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:  # pragma: no cover - platform dependent
        print(f"warning: cannot pin to {cpus}: {exc}", file=sys.stderr)


def raise_nofile(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE to ``want`` if allowed (root), else to the hard limit; return the
    new soft limit. (websockets' sync server uses 2 descriptors per connection.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def proc_cpu(pid: int) -> float:
    """utime+stime of a whole process (all threads, live and dead), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return float("nan")
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss(pid: int) -> int:
    """Resident set size of a process in bytes (VmRSS)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def proc_threads(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def now() -> float:
    return time.perf_counter()


def payload(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def start_server_process(
    cmd: List[str], cwd: Path, ready: str, port_of: Callable[[str], int]
) -> Tuple[subprocess.Popen[bytes], int]:
    """Start a server process; its first stdout line starts with ``ready`` and gives
    the port (``port_of``). Raises RuntimeError if it does not."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith(ready):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, port_of(line)


def stop_server_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop), then kill after 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
