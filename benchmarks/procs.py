"""Starting and stopping benchmark processes (always by PID)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import ROOT

PY = sys.executable


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def readline(proc: subprocess.Popen, timeout: float) -> str | None:
    """One line from proc.stdout within timeout (None on timeout/EOF)."""
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not r:
            break
        ch = os.read(fd, 1)
        if not ch:
            return buf.decode() or None
        if ch == b"\n":
            return buf.decode()
        buf += ch
    return None


class Server:
    def __init__(self, name: str, cpu: str | None, log_dir: Path):
        self.name = name
        self.err_path = log_dir / f"server-{name}.err"
        self.err = open(self.err_path, "ab")
        args = [PY, "-m", "benchmarks.servers", name]
        if cpu:
            args += ["--cpu", cpu]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.err, env=_env(), cwd=str(ROOT)
        )
        self.pid = self.proc.pid
        self.port = None
        line = readline(self.proc, 30)
        while line is not None and not line.startswith("PORT "):
            line = readline(self.proc, 30)
        if line is None:
            self.stop()
            tail = self.err_path.read_text(errors="replace")[-400:]
            raise RuntimeError(f"server {name} did not start: {tail.strip()}")
        self.port = int(line.split()[1])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            print(f"warning: server {self.pid} still exiting", file=sys.stderr)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.err.close()


def run_client(
    client: str,
    port: int,
    server_pid: int,
    cpu: str | None,
    workloads: list,
    timeout: float,
    log_dir: Path,
) -> list[dict]:
    """Run one load-generator process; return one dict per workload (not for the
    unmeasured warm-up, ``WARM``)."""
    args = _client_args(client, port, workloads, cpu) + ["--server-pid", str(server_pid)]
    with open(log_dir / f"client-{client}.err", "ab") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=_env(), cwd=str(ROOT))
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    results = []
    for line in out.decode(errors="replace").splitlines():
        try:
            results.append(json.loads(line))
        except ValueError:
            pass
    done = {r.get("name") for r in results}
    for w in workloads:
        if w["name"] not in done:
            results.append({**w, "error": f"no result (client exit {proc.returncode})"})
    return [r for r in results if r.get("name") != "warm"]


def _client_args(client: str, port: int, workloads: list, cpu: str | None) -> list[str]:
    """The command line of a ``benchmarks.clients`` process."""
    args = [PY, "-m", "benchmarks.clients", "--client", client, "--port", str(port)]
    args += ["--workloads", json.dumps(workloads)]
    return args + (["--cpu", cpu] if cpu else [])


class Holder:
    """A client process holding many idle connections (memory scenario)."""

    def __init__(
        self,
        client: str,
        port: int,
        conns: int,
        cpu: str | None,
        log_dir: Path,
        open_budget: float = 60.0,
    ):
        w = [{"name": "hold", "kind": "hold", "conns": conns, "open_budget": open_budget}]
        args = _client_args(client, port, w, cpu)
        self.err = open(log_dir / f"holder-{client}.err", "ab")
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=self.err,
            env=_env(),
            cwd=str(ROOT),
        )

    def expect(self, word: str, timeout: float) -> str | None:
        """The line starting with ``word``; None on timeout; a JSON line (with "error")
        if the holder failed."""
        line = readline(self.proc, timeout)
        while line is not None and not line.startswith(word) and not line.startswith("{"):
            line = readline(self.proc, timeout)
        return line

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            # closing 10,000 sockets on exit can take a while on a loaded machine
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            print(f"warning: holder {self.proc.pid} still exiting", file=sys.stderr)
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        self.err.close()
