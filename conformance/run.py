"""Run the Autobahn testsuite against our four endpoints and gate on the result.

    scripts/conformance                 # default (CI) set, see conformance/README.md
    scripts/conformance --full          # all of 1-10, 12, 13 everywhere
    .venv/bin/python conformance/run.py --endpoints server-threaded --cases '1.*'

Endpoints (--endpoints, comma separated; default: all that the mode runs):
  server-threaded, server-asyncio                 wstest fuzzingclient -> our demo server
  server-threaded-nocomp, server-asyncio-nocomp   same with --no-compression (1-10 only)
  client-threaded, client-asyncio                 our clients -> wstest fuzzingserver

Reports land in conformance/reports/<endpoint>/ (index.json + HTML) and the summary
table in conformance/reports/summary.md. Exit status: 0 when every case of every
endpoint passed, 1 otherwise (bad behavior, bad close, missing case, harness error).

A case passes when its behavior is OK, NON-STRICT or INFORMATIONAL and its
behaviorClose is OK or INFORMATIONAL (anything else, e.g. FAILED, UNIMPLEMENTED,
WRONG CODE, UNCLEAN, FAILED BY CLIENT, fails).

--stand-in (for validating the harness itself) runs a `websockets` echo server and
`websockets` clients in place of ours.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conformance"
REPORTS = CONF / "reports"
WSTEST_PY = Path(os.environ.get("AUTOBAHN_VENV", ROOT / ".venv-autobahn")) / "bin" / "python"
WSTEST = [str(WSTEST_PY), str(CONF / "wstest_local.py")]
HOST = "127.0.0.1"
MAX_SIZE = 2**24

CORE = [f"{i}.*" for i in range(1, 11)]  # 1-10: framing ... limits (no 11.* exists)
# Compression sample for the default run: one case group per permessage-deflate
# parameter set; the 12.x.* groups differ only in payload kind (see README).
SAMPLE_DEFLATE = ["12.1.*", "12.5.*", "13.1.*", "13.3.*", "13.7.*"]
FULL_DEFLATE = ["12.*", "13.*"]

GOOD_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
GOOD_CLOSE = {"OK", "INFORMATIONAL"}
COLUMNS = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED"]

ALL_ENDPOINTS = [
    "server-threaded",
    "server-asyncio",
    "server-threaded-nocomp",
    "server-asyncio-nocomp",
    "client-threaded",
    "client-asyncio",
]

_print_lock = threading.Lock()


def log(msg: str) -> None:
    with _print_lock:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Endpoint:
    name: str
    kind: str  # "server" (wstest fuzzingclient tests it) or "client"
    transport: str  # "threaded" | "asyncio"
    compression: bool
    cases: list[str]
    agent: str = ""
    outdir: Path = field(default_factory=Path)


@dataclass
class Result:
    endpoint: Endpoint
    expected: list[str] = field(default_factory=list)
    cases: dict = field(default_factory=dict)  # case id -> index.json entry (+details)
    error: str = ""
    duration: float = 0.0

    @property
    def bad(self) -> list[tuple[str, str]]:
        out = []
        for cid in self.expected:
            c = self.cases.get(cid)
            if c is None:
                out.append((cid, "MISSING"))
            elif c["behavior"] not in GOOD_BEHAVIOR or c["behaviorClose"] not in GOOD_CLOSE:
                out.append((cid, f"{c['behavior']} / close {c['behaviorClose']}"))
        return out

    @property
    def passed(self) -> bool:
        return not self.error and not self.bad and bool(self.expected)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout:.0f}s")


def start(cmd: list[str], logfile: Path, env: dict | None = None) -> subprocess.Popen:
    f = open(logfile, "wb")  # noqa: SIM115 - closed in stop()
    proc = subprocess.Popen(
        cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env
    )
    proc._logfile = f  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop one process we started, by its PID only: SIGTERM, then SIGKILL."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    finally:
        f = getattr(proc, "_logfile", None)
        if f:
            f.close()


def run_bounded(cmd: list[str], logfile: Path, timeout: float) -> int | None:
    """Run to completion within timeout; return its exit code, or None if killed."""
    proc = start(cmd, logfile)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        stop(proc)


def py_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------- one endpoint


def expected_cases(spec_path: Path) -> list[str]:
    out = subprocess.run(
        [*WSTEST, "--list-cases", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def server_cmd(ep: Endpoint, port: int, stand_in: bool) -> list[str]:
    args = [
        "--transport",
        ep.transport,
        "--host",
        HOST,
        "--port",
        str(port),
        "--max-size",
        str(MAX_SIZE),
    ]
    if not ep.compression:
        args.append("--no-compression")
    if stand_in:
        return [sys.executable, str(CONF / "standin_server.py"), *args]
    return [sys.executable, "-m", "transports", "serve", *args]


def client_cmd(ep: Endpoint, port: int, stand_in: bool) -> list[str]:
    cmd = [
        sys.executable,
        str(CONF / f"client_{ep.transport}.py"),
        "--uri",
        f"ws://{HOST}:{port}",
        "--agent",
        ep.agent,
        "--max-size",
        str(MAX_SIZE),
    ]
    if not ep.compression:
        cmd.append("--no-compression")
    if stand_in:
        cmd += ["--impl", "websockets"]
    return cmd


def update_reports_fallback(port: int, agent: str) -> None:
    """Ask the fuzzingserver for its reports ourselves (when our client died)."""
    from websockets.sync.client import connect

    try:
        with connect(
            f"ws://{HOST}:{port}/updateReports?agent={agent}", open_timeout=10, close_timeout=10
        ) as ws:
            for _ in ws:
                pass
    except Exception as exc:  # reported as missing cases anyway
        log(f"updateReports fallback failed: {exc!r}")


def run_endpoint(ep: Endpoint, stand_in: bool, timeout: float) -> Result:
    res = Result(ep)
    t0 = time.monotonic()
    if ep.outdir.exists():
        shutil.rmtree(ep.outdir)
    ep.outdir.mkdir(parents=True)
    spec_path = ep.outdir / "spec.json"
    port = free_port()
    spec = {
        "outdir": str(ep.outdir),
        "cases": ep.cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    procs: list[subprocess.Popen] = []
    try:
        if ep.kind == "server":
            spec["servers"] = [
                {"agent": ep.agent, "url": f"ws://{HOST}:{port}", "options": {"version": 18}}
            ]
            spec_path.write_text(json.dumps(spec, indent=2))
            res.expected = expected_cases(spec_path)
            log(f"{ep.name}: {len(res.expected)} cases, starting server on port {port}")
            srv = start(server_cmd(ep, port, stand_in), ep.outdir / "server.log", py_env())
            procs.append(srv)
            wait_port(port, srv, 60)
            rc = run_bounded(
                [*WSTEST, "-m", "fuzzingclient", "-s", str(spec_path)],
                ep.outdir / "wstest.log",
                timeout,
            )
            if rc is None:
                res.error = f"wstest timed out after {timeout:.0f}s"
            elif srv.poll() is not None:
                res.error = f"server exited with {srv.returncode} during the run"
        else:
            spec["url"] = f"ws://{HOST}:{port}"
            spec_path.write_text(json.dumps(spec, indent=2))
            res.expected = expected_cases(spec_path)
            log(f"{ep.name}: {len(res.expected)} cases, starting fuzzingserver on port {port}")
            ws = start(
                [*WSTEST, "-m", "fuzzingserver", "-s", str(spec_path), "-u", "0"],
                ep.outdir / "wstest.log",
            )
            procs.append(ws)
            wait_port(port, ws, 60)
            rc = run_bounded(client_cmd(ep, port, stand_in), ep.outdir / "client.log", timeout)
            if rc is None:
                res.error = f"client timed out after {timeout:.0f}s"
            elif rc != 0:
                res.error = f"client exited with {rc}"
            index = ep.outdir / "index.json"
            if not index.exists():
                update_reports_fallback(port, ep.agent)
            for _ in range(300):  # reports are written synchronously; bounded wait
                if index.exists():
                    break
                time.sleep(0.1)
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        for p in reversed(procs):
            stop(p)
    res.cases = load_report(ep)
    res.duration = time.monotonic() - t0
    verdict = "PASS" if res.passed else "FAIL"
    log(
        f"{ep.name}: {verdict} in {res.duration:.0f}s"
        + (f" ({res.error})" if res.error else "")
        + (f", {len(res.bad)} bad case(s)" if res.bad else "")
    )
    return res


# --------------------------------------------------------------------------- reports


def _one_line(text: str, limit: int = 160) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", " ", str(text)))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_report(ep: Endpoint) -> dict:
    index = ep.outdir / "index.json"
    if not index.exists():
        return {}
    try:
        data = json.loads(index.read_text())
    except ValueError:
        return {}
    cases = dict(data.get(ep.agent, {}))
    for c in cases.values():
        if (
            c["behavior"] in GOOD_BEHAVIOR
            and c["behavior"] != "NON-STRICT"
            and c["behaviorClose"] in GOOD_CLOSE
        ):
            continue
        try:
            detail = json.loads((ep.outdir / c["reportfile"]).read_text())
        except (OSError, ValueError, KeyError):
            continue
        c["description"] = _one_line(detail.get("description", ""))
        c["result"] = _one_line(detail.get("result", ""))
        c["resultClose"] = _one_line(detail.get("resultClose", ""))
    return cases


def case_key(cid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in cid.split(".") if x.isdigit())


def render(results: list[Result], title: str) -> str:
    lines = [f"## {title}", ""]
    lines.append(
        "| endpoint | cases | "
        + " | ".join(COLUMNS)
        + " | other | bad close | missing | time | verdict |"
    )
    lines.append("|---" * (len(COLUMNS) + 7) + "|")
    for r in results:
        counts = {k: 0 for k in COLUMNS}
        other = 0
        bad_close = 0
        for cid in r.expected:
            c = r.cases.get(cid)
            if c is None:
                continue
            if c["behavior"] in counts:
                counts[c["behavior"]] += 1
            else:
                other += 1
            if c["behaviorClose"] not in GOOD_CLOSE:
                bad_close += 1
        missing = sum(1 for cid in r.expected if cid not in r.cases)
        verdict = "PASS" if r.passed else "**FAIL**"
        lines.append(
            f"| {r.endpoint.name} | {len(r.expected)} | "
            + " | ".join(str(counts[k]) for k in COLUMNS)
            + f" | {other} | {bad_close} | {missing} | {r.duration:.0f}s | {verdict} |"
        )
    lines.append("")
    for r in results:
        notes = []
        if r.error:
            notes.append(f"- harness: {r.error}")
        bad = dict(r.bad)
        for cid in sorted(r.cases, key=case_key):
            c = r.cases[cid]
            if cid in bad or c["behavior"] != "OK" or c["behaviorClose"] != "OK":
                flag = "FAIL" if cid in bad else "note"
                desc = c.get("result") or c.get("description") or ""
                notes.append(
                    f"- {flag} {cid}: {c['behavior']} / close {c['behaviorClose']}"
                    f" (remote code {c.get('remoteCloseCode')})" + (f": {desc}" if desc else "")
                )
        missing = [cid for cid in r.expected if cid not in r.cases]
        if missing:
            shown = ", ".join(missing[:30]) + (" ..." if len(missing) > 30 else "")
            notes.append(f"- FAIL missing {len(missing)} case(s): {shown}")
        if notes:
            lines.append(f"### {r.endpoint.name} (agent `{r.endpoint.agent}`): not OK")
            lines.append("")
            # keep the summary readable: all failures, at most 40 notes
            fails = [n for n in notes if not n.startswith("- note")]
            infos = [n for n in notes if n.startswith("- note")]
            lines += fails + infos[:40]
            if len(infos) > 40:
                lines.append(f"- ... {len(infos) - 40} more non-OK (but passing) cases")
            lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def plan(args: argparse.Namespace) -> list[Endpoint]:
    names = args.endpoints.split(",") if args.endpoints else ALL_ENDPOINTS
    for n in names:
        if n not in ALL_ENDPOINTS:
            raise SystemExit(f"unknown endpoint {n!r}; known: {', '.join(ALL_ENDPOINTS)}")
    eps = []
    for n in names:
        parts = n.split("-")
        kind, transport, comp = parts[0], parts[1], len(parts) == 2
        if args.cases:
            cases = args.cases.split(",")
        elif args.stand_in:
            cases = ["1.*", "2.*"]
        else:
            cases = CORE + ((FULL_DEFLATE if args.full else SAMPLE_DEFLATE) if comp else [])
        prefix = "standin" if args.stand_in else "wscore"
        agent = f"{prefix}-{kind}-{transport}" + ("" if comp else "-nocomp")
        eps.append(Endpoint(n, kind, transport, comp, cases, agent, REPORTS / n))
    return eps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="all of 1-10, 12, 13 on every endpoint")
    p.add_argument("--endpoints", help="comma-separated subset: " + ", ".join(ALL_ENDPOINTS))
    p.add_argument("--cases", help="comma-separated case patterns, overriding the set")
    p.add_argument("--jobs", type=int, default=2, help="endpoints run in parallel (default 2)")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per endpoint before it is killed (default 1800, --full 5400)",
    )
    p.add_argument("--stand-in", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    timeout = args.timeout or (5400.0 if args.full else 1800.0)

    if not WSTEST_PY.exists():
        print(f"{WSTEST_PY} missing: run conformance/setup.sh first", file=sys.stderr)
        return 2
    eps = plan(args)
    REPORTS.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    mode = "full" if args.full else "default"
    if args.stand_in:
        mode += ", STAND-IN (websockets)"
    log(f"conformance ({mode}): {len(eps)} endpoint(s), {args.jobs} in parallel")

    # Longest runs first so the parallel slots stay busy.
    order = sorted(eps, key=lambda e: (-len(e.cases), e.kind != "client"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(run_endpoint, e, args.stand_in, timeout): e for e in order}
        done = {futs[f].name: f.result() for f in concurrent.futures.as_completed(futs)}
    results = [done[e.name] for e in eps]

    total = time.monotonic() - t0
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    title = f"Autobahn testsuite, {mode} run, {stamp}, {total:.0f}s wall, jobs={args.jobs}"
    text = render(results, title)
    sets = sorted({", ".join(e.cases) for e in eps})
    text += "\nCase patterns: " + "; ".join(f"`{s}`" for s in sets) + "\n"
    print()
    print(text)
    (REPORTS / "summary.md").write_text(text)
    ok = all(r.passed for r in results)
    print(
        f"conformance: {'PASS' if ok else 'FAIL'} ({total:.0f}s); "
        f"summary in {(REPORTS / 'summary.md').relative_to(ROOT)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
