"""The benchmark driver behind ``python -m benchmarks``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import report
from . import scenarios as S
from .common import proc_rss, proc_threads
from .procs import PY, ROOT, Holder, Server, _env, run_client

HERE = Path(__file__).resolve().parent
PIN_MODES = {"same": ("0", "0"), "split": ("0", "1"), "none": (None, None)}


class Progress:
    def __init__(self, total: int):
        self.total = max(total, 1)
        self.i = 0
        self.t0 = time.monotonic()

    def step(self, what: str) -> None:
        self.i += 1
        el = time.monotonic() - self.t0
        print(f"[{self.i:3d}/{self.total}] {el:6.1f}s  {what}", file=sys.stderr, flush=True)


def check_ours() -> dict[str, str | None]:
    """None when the transport imports and has serve/connect; else the reason."""
    notes: dict[str, str | None] = {}
    for mod in ("threaded", "asyncio"):
        code = f"import transports.{mod} as m; m.serve; m.connect"
        p = subprocess.run(
            [PY, "-c", code], capture_output=True, text=True, env=_env(), cwd=str(ROOT), timeout=60
        )
        notes[mod] = (
            None
            if p.returncode == 0
            else ((p.stderr.strip().splitlines() or ["import failed"])[-1][:200])
        )
    return notes


def machine() -> dict:
    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        from importlib.metadata import version

        versions = {
            n: version(n)
            for n in ("websockets", "picows", "aiohttp", "simple-websocket", "uvloop", "wsproto")
        }
    except Exception:  # pragma: no cover
        versions = {}
    return {
        "cpus": os.cpu_count(),
        "model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


def record(scenario, lib, role, rnd, r) -> dict:
    rec = {"scenario": scenario, "lib": lib, "role": role, "round": rnd}
    if r.get("error"):
        rec["error"] = r["error"]
        return rec
    msgs, el = r["msgs"], r["elapsed"]
    rec.update(
        msgs=msgs,
        elapsed=el,
        rate=msgs / el if el > 0 else 0.0,
        server_cpu=r.get("server_cpu"),
        client_cpu=r.get("client_cpu"),
    )
    if r.get("bytes") is not None:
        rec["mbps"] = r["bytes"] / el / 1e6 if el > 0 else 0.0
    if msgs:
        rec["server_us_per_msg"] = (r.get("server_cpu") or 0) / msgs * 1e6
        rec["client_us_per_msg"] = (r.get("client_cpu") or 0) / msgs * 1e6
    rec["client_cpu_share"] = (r.get("client_cpu") or 0) / el if el > 0 else 0.0
    return rec


def workloads_for(names_groups, duration):
    out = []
    for name, w in names_groups:
        out.append({"name": name, **w, "duration": duration})
    return out


def timeout_for(wl) -> float:
    return sum(w.get("duration", 1) for w in wl) + 60 + sum(w.get("conns", 0) for w in wl) / 50


def calibrate(args, cfg, log_dir, prog) -> tuple[str, dict]:
    """Echo-16 and stream-16 against the websockets server, alternating pin modes; pick
    the mode whose rates vary least (coefficient of variation)."""
    modes = ["same", "split"]
    samples: dict[str, list[list[float]]] = {m: [[], []] for m in modes}
    wl = [S.WARM] + workloads_for(
        [("echo-16", S.ECHO["echo-16"]), ("stream-16", S.STREAM["stream-16"])],
        max(0.2, cfg["duration"]),
    )
    for rnd in range(cfg["calib_rounds"]):
        for m in modes if rnd % 2 == 0 else modes[::-1]:
            scpu, ccpu = PIN_MODES[m]
            prog.step(f"calibrate pinning  mode={m}  round {rnd + 1}")
            try:
                srv = Server("websockets", scpu, log_dir)
            except RuntimeError:
                continue
            try:
                res = run_client(S.LOADGEN, srv.port, srv.pid, ccpu, wl, timeout_for(wl), log_dir)
            finally:
                srv.stop()
            for r in res:
                if not r.get("error") and r["elapsed"] > 0:
                    samples[m][0 if r["name"] == "echo-16" else 1].append(r["msgs"] / r["elapsed"])

    def cv(xs):
        return (
            statistics.pstdev(xs) / statistics.mean(xs)
            if len(xs) > 1 and statistics.mean(xs)
            else 9.9
        )

    info = {}
    for m in modes:
        info[m] = {
            "echo16_rates": samples[m][0],
            "stream16_rates": samples[m][1],
            "cv": (cv(samples[m][0]) + cv(samples[m][1])) / 2,
        }
    best = min(modes, key=lambda m: info[m]["cv"])
    return best, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="about 3 minutes")
    ap.add_argument("--only", default="", help=f"comma list of {','.join(S.ALL_SCENARIOS)}")
    ap.add_argument("--libs", default="", help="comma list of library names to keep")
    ap.add_argument(
        "--pin",
        default="same",
        choices=["auto", "same", "split", "none"],
        help="same (default): server and load generator on CPU 0, the steadiest here and "
        "comparable from run to run; split: CPU 0 and 1; auto: measure both, keep the steadier",
    )
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None, help="seconds per measurement")
    ap.add_argument("--memory-conns", default=None, help="e.g. 1000,10000")
    ap.add_argument(
        "--out",
        default=None,
        help="output directory (default benchmarks/results, "
        "or results/raw/partial-* when filtered)",
    )
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args(argv)

    cfg = S.settings(args.quick)
    if args.rounds:
        cfg["rounds"] = args.rounds
    if args.duration:
        cfg["duration"] = args.duration
    if args.memory_conns:
        cfg["memory_conns"] = [int(x) for x in args.memory_conns.split(",") if x]
    only = [x.strip() for x in args.only.split(",") if x.strip()] or list(S.ALL_SCENARIOS)
    bad = [x for x in only if x not in S.ALL_SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {bad}; choose from {S.ALL_SCENARIOS}")
    libs = {x.strip() for x in args.libs.split(",") if x.strip()}
    filtered = bool(args.only or args.libs)
    out_dir = (
        Path(args.out)
        if args.out
        else (
            HERE / "results" / "raw" / time.strftime("partial-%Y%m%d-%H%M%S")
            if filtered
            else HERE / "results"
        )
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = HERE / "results" / "raw" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.monotonic()
    notes: list[str] = []
    ours = check_ours()
    disabled: set[str] = set()
    for mod, why in ours.items():
        if why:
            names = {f"ours-{mod}", f"ours-{mod}-uvloop"}
            disabled |= names
            notes.append(f"ours-{mod}* skipped: `import transports.{mod}` failed ({why})")

    def keep(name: str) -> bool:
        return name not in disabled and (not libs or name in libs)

    flow_groups = ("echo", "stream", "many", "handshake")
    server_groups = [g for g in flow_groups if g in only]
    if "ceiling" in only and not server_groups:
        server_groups = list(flow_groups)
    if any(g in only for g in flow_groups):
        ws_servers = [s for s in S.WS_SERVERS if keep(s)]
    elif "ceiling" in only and not libs:
        ws_servers = [S.BASELINE]  # for the ratio column
    else:
        ws_servers = []
    raw_servers = [s for s in S.RAW_SERVERS if keep(s)] if "ceiling" in only else []
    servers = ws_servers + raw_servers
    clients = [c for c in S.CLIENTS if keep(c)] if "clients" in only else []
    mem_servers = [s for s in S.WS_SERVERS + S.RAW_SERVERS if keep(s)] if "memory" in only else []
    rounds = cfg["rounds"]
    d = cfg["duration"]

    total = cfg["calib_rounds"] * 2 if args.pin == "auto" else 0
    total += rounds * (len(servers) + len(clients)) + len(mem_servers) * len(cfg["memory_conns"])
    total += 1 if "frames" in only else 0
    prog = Progress(total)

    meta = {
        "machine": machine(),
        "quick": args.quick,
        "rounds": rounds,
        "duration": d,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "ours": {k: (v or "enabled") for k, v in ours.items()},
        "loadgen": {
            "server scenarios": S.LOADGEN,
            "handshakes": S.HANDSHAKE_LOADGEN,
            "raw TCP": S.RAW_LOADGEN,
            "client scenarios server": S.FIXED_SERVER,
        },
    }

    if args.pin == "auto":
        mode, calib = calibrate(args, cfg, log_dir, prog)
        meta["pin_calibration"] = calib
        notes.append(
            f"pinning: auto-selected `{mode}` (server on CPU 0, client on CPU "
            f"{PIN_MODES[mode][1]}); coefficient of variation same={calib['same']['cv']:.3f}, "
            f"split={calib['split']['cv']:.3f} (lower is steadier)"
        )
    else:
        mode = args.pin
        notes.append(
            f"pinning: `{mode}`"
            + ("" if mode == "none" else f" (server on CPU 0, client on CPU {PIN_MODES[mode][1]})")
        )
    meta["pin"] = mode
    scpu, ccpu = PIN_MODES[mode]
    print(notes[-1], file=sys.stderr)

    records: list[dict] = []
    raw_path = HERE / "results" / "raw" / time.strftime("records-%Y%m%d-%H%M%S.jsonl")
    raw_f = open(raw_path, "w")

    def add(rec):
        records.append(rec)
        raw_f.write(json.dumps(rec) + "\n")
        raw_f.flush()

    # ---- scenario 1: frames (someone else's module)
    if "frames" in only:
        prog.step("frames  (benchmarks/frames.py)")
        frames_res = run_frames(args.quick, log_dir)
        if isinstance(frames_res, str):
            notes.append(f"frames: {frames_res}")
        else:
            for r in frames_res:
                add({"scenario": "frames", "role": "core", **r})

    # ---- scenarios 2-4, 5, 6: servers, interleaved rounds
    srv_work = []
    for g in server_groups:
        srv_work += list(S.GROUPS[g].items())
    for rnd in range(rounds):
        order = servers[rnd % max(len(servers), 1) :] + servers[: rnd % max(len(servers), 1)]
        for name in order:
            is_raw = name.startswith("raw-")
            flow = [(n, w) for n, w in srv_work if w["kind"] != "handshake"]
            hs = [(n, w) for n, w in srv_work if w["kind"] == "handshake"]
            prog.step(f"{'+'.join(server_groups)}  server={name}  round {rnd + 1}/{rounds}")
            try:
                srv = Server(name, scpu, log_dir)
            except RuntimeError as exc:
                for n, _ in srv_work:
                    add(
                        {
                            "scenario": n,
                            "lib": name,
                            "role": "server",
                            "round": rnd,
                            "error": str(exc)[:300],
                        }
                    )
                continue
            try:
                flow_gen = S.RAW_LOADGEN if is_raw else S.LOADGEN
                if not flow:  # the handshake load generator sends no messages
                    run_client(flow_gen, srv.port, srv.pid, ccpu, [S.WARM], 60, log_dir)
                for gen, items, warm in (
                    (flow_gen, flow, [S.WARM]),
                    (S.RAW_LOADGEN if is_raw else S.HANDSHAKE_LOADGEN, hs, []),
                ):
                    if not items:
                        continue
                    wl = warm + workloads_for(items, d)
                    for r in run_client(gen, srv.port, srv.pid, ccpu, wl, timeout_for(wl), log_dir):
                        add(record(r["name"], name, "server", rnd, r))
            finally:
                srv.stop()

        # clients against the fixed server, same round
        corder = clients[rnd % max(len(clients), 1) :] + clients[: rnd % max(len(clients), 1)]
        for name in corder:
            prog.step(f"clients  client={name}  server={S.FIXED_SERVER}  round {rnd + 1}/{rounds}")
            try:
                srv = Server(S.FIXED_SERVER, scpu, log_dir)
            except RuntimeError as exc:
                notes.append(str(exc))
                continue
            try:
                wl = [S.WARM] + workloads_for(list(S.CLIENT.items()), d)
                for r in run_client(name, srv.port, srv.pid, ccpu, wl, timeout_for(wl), log_dir):
                    add(record(r["name"], name, "client", rnd, r))
            finally:
                srv.stop()

    # ---- scenario 4b: memory per idle connection
    for n in cfg["memory_conns"]:
        for name in mem_servers:
            prog.step(f"memory-{n}  server={name}")
            add(memory_one(name, n, scpu, ccpu, log_dir))

    raw_f.close()
    elapsed = time.monotonic() - t_start
    meta["elapsed_s"] = round(elapsed, 1)
    meta["notes"] = notes
    summary = report.summarize(records)
    (out_dir / "results.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "records": records}, indent=1)
    )
    md = report.markdown(meta, summary, records)
    (out_dir / "results.md").write_text(md)
    report.charts(summary, out_dir)
    if not filtered and not args.no_readme:
        report.update_readme(HERE / "README.md", md)
    print(
        f"\ndone in {elapsed:.0f}s; wrote {out_dir}/results.md, results.json, *.png",
        file=sys.stderr,
    )
    print(md)
    return 0


def run_frames(quick: bool, log_dir: Path):
    """Scenario 1 lives in benchmarks/frames.py (another author): ``run(quick)`` returning a
    list of dicts if it has one, else ``python -m benchmarks.frames [--quick]`` whose
    output is kept as text."""
    if not (HERE / "frames.py").exists():
        return "skipped: benchmarks/frames.py does not exist yet"
    code = (
        "import json, sys; from benchmarks import frames\n"
        "if not hasattr(frames, 'run'): print('\\nNORUN'); sys.exit(0)\n"
        f"res = frames.run({bool(quick)}); sys.stdout.write('\\nFRAMES ' + json.dumps(res))"
    )
    try:
        p = subprocess.run(
            [PY, "-c", code], capture_output=True, text=True, env=_env(), cwd=str(ROOT), timeout=600
        )
    except subprocess.TimeoutExpired:
        return "skipped: frames.run timed out (600 s)"
    if "NORUN" in p.stdout.splitlines():
        args = [PY, "-m", "benchmarks.frames"] + (["--quick"] if quick else [])
        try:
            p = subprocess.run(
                args, capture_output=True, text=True, env=_env(), cwd=str(ROOT), timeout=600
            )
        except subprocess.TimeoutExpired:
            return "skipped: python -m benchmarks.frames timed out (600 s)"
        if p.returncode == 0 and p.stdout.strip():
            return [{"text": p.stdout[-8000:]}]
        (log_dir / "frames.err").write_text(p.stderr)
        return f"skipped: benchmarks.frames failed (exit {p.returncode})"
    for line in p.stdout.splitlines():
        if line.startswith("FRAMES "):
            try:
                res = json.loads(line[7:])
                return [r if isinstance(r, dict) else {"result": r} for r in res]
            except ValueError:
                break
    (log_dir / "frames.err").write_text(p.stderr)
    return f"skipped: frames.run failed ({(p.stderr.strip().splitlines() or ['?'])[-1][:200]})"


def memory_one(name: str, n: int, scpu, ccpu, log_dir: Path) -> dict:
    rec = {"scenario": f"memory-{n}", "lib": name, "role": "server", "round": 0}
    gen = S.RAW_LOADGEN if name.startswith("raw-") else S.LOADGEN
    try:
        srv = Server(name, scpu, log_dir)
    except RuntimeError as exc:
        rec["error"] = str(exc)[:300]
        return rec
    holder = None
    try:
        holder = Holder(gen, srv.port, n, ccpu, log_dir, S.OPEN_BUDGET)
        line = holder.expect("WARM", 60)
        if line is None or not line.startswith("WARM"):
            rec["error"] = f"holder did not warm up: {(line or 'timeout')[-200:]}"
            return rec
        time.sleep(0.3)
        rss0, th0 = proc_rss(srv.pid), proc_threads(srv.pid)
        holder.go()
        line = holder.expect("READY", S.OPEN_BUDGET + 60)
        if line is None or not line.startswith("READY"):
            why = f": {line[-200:]}" if line else ": timeout"
            try:
                tail = srv.err_path.read_text(errors="replace")[-20000:]
                if "Too many open files" in tail:
                    import resource

                    why += (
                        f"; server hit EMFILE (RLIMIT_NOFILE hard limit "
                        f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]}; "
                        f"{proc_threads(srv.pid)} threads)"
                    )
            except OSError:
                pass
            rec["error"] = f"could not open {n} connections (server alive={srv.alive()})" + why
            return rec
        time.sleep(0.5)
        rss1, th1 = proc_rss(srv.pid), proc_threads(srv.pid)
        parts = line.split(None, 4)
        opened = int(parts[1])
        failed = int(parts[3]) if len(parts) > 3 else 0
        if opened < max(1, n // 10):
            rec["error"] = f"only {opened} of {n} connections opened: {line[-160:]}"
            return rec
        if failed:
            rec["partial"] = (
                f"{opened} of {n} opened "
                f"({failed} failed: {parts[4][:120] if len(parts) > 4 else ''})"
            )
        rec.update(
            rss_before=rss0,
            rss_after=rss1,
            conns=opened,
            threads_before=th0,
            threads_after=th1,
            open_s=float(line.split()[2]),
            kib_per_conn=(rss1 - rss0) / opened / 1024,
            rate=(rss1 - rss0) / opened / 1024,
        )
        return rec
    finally:
        try:
            if holder:
                holder.stop()
        finally:
            srv.stop()
