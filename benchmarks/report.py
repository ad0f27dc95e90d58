"""Summaries, markdown tables, JSON and PNG charts."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from . import scenarios as S

ORDER = [
    "frames",
    *S.ECHO,
    *S.STREAM,
    *S.MANY,
    "memory-1000",
    "memory-10000",
    *S.HANDSHAKE,
    *S.CLIENT,
]
TITLES = {
    "echo-16": "2. Echo round trip, 16 B, one connection, one message in flight",
    "echo-1k": "2. Echo round trip, 1 KiB, one connection, one message in flight",
    "stream-16": "3. Pipelined stream, 16 B, window 64",
    "stream-64k": "3. Pipelined stream, 64 KiB, window 16",
    "stream-1m": "3. Pipelined stream, 1 MiB, window 4",
    "many-100": "4. Many connections: 100 clients doing round trips",
    "many-1000": "4. Many connections: 1,000 clients doing round trips",
    "memory-1000": "4. Server memory per idle connection, 1,000 connections",
    "memory-10000": "4. Server memory per idle connection, 10,000 connections",
    "handshake-seq": "5. Connection setup, sequential",
    "handshake-c50": "5. Connection setup, 50 concurrent",
    "client-echo-16": "Clients: echo 16 B (against picows+uvloop server)",
    "client-echo-1k": "Clients: echo 1 KiB (against picows+uvloop server)",
    "client-stream-16": "Clients: stream 16 B, window 64",
    "client-stream-64k": "Clients: stream 64 KiB, window 16",
    "client-stream-1m": "Clients: stream 1 MiB, window 4",
    "client-handshake-seq": "Clients: sequential handshakes",
}


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(records: list[dict]) -> dict:
    by: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("scenario") == "frames":
            continue
        by.setdefault((r["scenario"], r["lib"], r["role"]), []).append(r)
    out: dict[str, list[dict]] = {}
    for (scen, lib, role), rs in by.items():
        ok = [r for r in rs if "error" not in r]
        errs = sorted({r["error"] for r in rs if "error" in r})
        row = {"lib": lib, "role": role, "n": len(ok), "errors": errs}
        if ok:
            rates = [r["rate"] for r in ok]
            row.update(
                median=_med(rates),
                min=min(rates),
                max=max(rates),
                mbps=_med([r.get("mbps") for r in ok]),
                server_us=_med([r.get("server_us_per_msg") for r in ok]),
                client_us=_med([r.get("client_us_per_msg") for r in ok]),
                client_share=_med([r.get("client_cpu_share") for r in ok]),
            )
            if scen.startswith("memory"):
                row.update(
                    conns=ok[0].get("conns"),
                    threads=ok[0].get("threads_after"),
                    partial=ok[0].get("partial"),
                    open_s=ok[0].get("open_s"),
                    rss_before=ok[0].get("rss_before"),
                    rss_after=ok[0].get("rss_after"),
                )
        out.setdefault(scen, []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: -(r.get("median") or -1))
    return out


def _fmt(x, digits=0):
    if x is None:
        return "–"
    if abs(x) >= 100 or digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def _ratio(x, base):
    if x is None or not base:
        return "–"
    return f"{x / base:.2f}×"


def _lib(row):
    name = row["lib"]
    if name.startswith("ours"):
        return f"**{name}**"
    if name.startswith("raw"):
        return f"{name} (TCP ceiling)"
    return name


def loadgen_bound(r: dict, pin: str) -> bool:
    share = r.get("client_share") or 0
    return share >= 0.9 or (
        pin == "same" and (r.get("client_us") or 0) >= (r.get("server_us") or 0)
    )


def bottleneck_note(summary: dict, pin: str) -> str:
    hits: dict[str, list[str]] = {}
    for scen, rows in summary.items():
        if scen.startswith(("client-", "memory")):
            continue
        for r in rows:
            if r.get("median") is not None and loadgen_bound(r, pin):
                hits.setdefault(r["lib"], []).append(scen)
    if not hits:
        return "load generator: never the bottleneck (no row marked †)."
    parts = [f"{lib} ({', '.join(sorted(sc))})" for lib, sc in sorted(hits.items())]
    ours = [lib for lib in hits if lib.startswith("ours") or lib == S.BASELINE]
    tail = (
        ""
        if ours
        else "; it was never the bottleneck for websockets or ours, whose "
        "figures are therefore server-bound"
    )
    return "load generator at its limit (†) for: " + "; ".join(parts) + tail + "."


def table(scen: str, rows: list[dict], pin: str = "split") -> str:
    base = next((r for r in rows if r["lib"] == S.BASELINE and r.get("median")), None)
    lines = [f"### {TITLES.get(scen, scen)}", ""]
    if scen.startswith("memory"):
        lines += [
            "| library | KiB per connection | ×websockets | server threads | "
            "RSS before → after (MiB) | time to open (s) |",
            "|---|---:|---:|---:|---|---:|",
        ]
        rows = sorted(rows, key=lambda r: (r.get("median") is None, r.get("median") or 0))
        for r in rows:
            if r.get("median") is None:
                lines.append(f"| {_lib(r)} | failed: {'; '.join(r['errors'])[:220]} | | | | |")
                continue
            name = _lib(r) + (f" ({r['partial']})" if r.get("partial") else "")
            lines.append(
                f"| {name} | {r['median']:.1f} | {_ratio(r['median'], base and base['median'])} "
                f"| {r.get('threads')} "
                f"| {r['rss_before'] / 2**20:.1f} → {r['rss_after'] / 2**20:.1f} "
                f"| {r.get('open_s') or 0:.1f} |"
            )
        return "\n".join(lines) + "\n"
    client = scen.startswith("client-")
    stream = "stream" in scen
    unit = "handshakes/s" if "handshake" in scen else "msgs/s"
    hdr = f"| library | {unit} (median) | min–max | ×websockets |"
    sep = "|---|---:|---:|---:|"
    if stream:
        hdr += " MB/s |"
        sep += "---:|"
    if client:
        hdr += " client CPU µs/op | ×websockets CPU | server CPU µs/op |"
    else:
        hdr += " server CPU µs/op | ×websockets CPU | load-gen CPU share |"
    sep += "---:|---:|---:|"
    lines += [hdr, sep]
    for r in rows:
        if r.get("median") is None:
            lines.append(
                f"| {_lib(r)} | failed: {'; '.join(r['errors'])[:150]} |"
                + " |" * (sep.count("|") - 3)
            )
            continue
        cells = [
            _lib(r),
            _fmt(r["median"]),
            f"{_fmt(r['min'])}–{_fmt(r['max'])}",
            _ratio(r["median"], base and base["median"]),
        ]
        if stream:
            cells.append(_fmt(r.get("mbps"), 1))
        if client:
            cells += [
                _fmt(r.get("client_us"), 1),
                _ratio(r.get("client_us"), base and base.get("client_us")),
                _fmt(r.get("server_us"), 1),
            ]
        else:
            share = r.get("client_share") or 0
            bound = loadgen_bound(r, pin)
            cells += [
                _fmt(r.get("server_us"), 1),
                _ratio(r.get("server_us"), base and base.get("server_us")),
                f"{share * 100:.0f}%" + (" †" if bound else ""),
            ]
        if r["errors"]:
            cells[0] += f" ({len(r['errors'])} failed round(s))"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def frames_table(records: list[dict]) -> str:
    rows = [r for r in records if r.get("scenario") == "frames"]
    if not rows:
        return ""
    if len(rows) == 1 and "text" in rows[0]:
        return (
            "### 1. Core frame throughput (benchmarks/frames.py)\n\n```\n"
            + rows[0]["text"].strip()
            + "\n```\n"
        )
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in ("scenario", "role") and k not in keys:
                keys.append(k)
    lines = [
        "### 1. Core frame throughput (benchmarks/frames.py)",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
    ]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cells.append(_fmt(v, 2) if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(meta: dict, summary: dict, records: list[dict]) -> str:
    m = meta["machine"]
    out = [
        f"Run {meta['started']} ({'--quick' if meta['quick'] else 'full'}, "
        f"{meta['rounds']} interleaved rounds × {meta['duration']} s per figure, "
        f"took {meta.get('elapsed_s', '?')} s) on {m['cpus']} CPUs, {m['model']}, "
        f"Python {m['python']}, Linux {m['kernel']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) + ".",
        "",
        "Figures: median over rounds; min–max spread; ratios are to `websockets` (asyncio) in "
        "the same table (>1× is faster for rates, <1× is cheaper for CPU and memory). "
        "Server CPU µs/op = server process utime+stime (/proc) per message or handshake; "
        f"resolution 10 ms per sample. Load generator: {S.LOADGEN} (handshakes: a lean raw "
        f"asyncio+uvloop handshake client; raw TCP: an asyncio+uvloop protocol client). "
        f"Client tables: each client against a {S.FIXED_SERVER} server. "
        "Load-gen CPU share = load generator CPU time / wall time; † marks rows where the "
        "load generator used ≥90% of its core (or, when both share one core, at least as "
        "much CPU as the server): those rates are a lower bound set by the load generator, "
        "compare server CPU µs/op instead.",
        "",
    ]
    for n in meta.get("notes", []):
        out.append(f"- {n}")
    out.append(f"- {bottleneck_note(summary, meta.get('pin', 'split'))}")
    out.append("")
    kr = key_ratios(summary)
    if kr:
        out.append(kr)
    ft = frames_table(records)
    if ft:
        out.append(ft)
    for scen in ORDER + sorted(k for k in summary if k not in ORDER):
        if scen in summary:
            out.append(table(scen, summary[scen], meta.get("pin", "split")))
    return "\n".join(out)


def charts(summary: dict, out_dir: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # pragma: no cover
        return
    for scen, rows in summary.items():
        rows = [r for r in rows if r.get("median") is not None]
        if not rows:
            continue
        mem = scen.startswith("memory")
        client = scen.startswith("client-")
        rows = sorted(rows, key=lambda r: r["median"], reverse=not mem)[::-1]
        names = [r["lib"] for r in rows]
        colors = [
            "tab:red" if n.startswith("ours") else "tab:gray" if n.startswith("raw") else "tab:blue"
            for n in names
        ]
        ncols = 1 if mem else 2
        fig, axes = plt.subplots(
            1, ncols, figsize=(5.2 * ncols, 0.33 * len(rows) + 1.3), sharey=True, squeeze=False
        )
        ax = axes[0][0]
        vals = [r["median"] for r in rows]
        lo = [r["median"] - r["min"] for r in rows]
        hi = [r["max"] - r["median"] for r in rows]
        ax.barh(names, vals, xerr=None if mem else [lo, hi], color=colors, capsize=3)
        unit = (
            "KiB per idle connection"
            if mem
            else ("handshakes/s" if "handshake" in scen else "messages/s")
        )
        ax.set_xlabel(unit + ("" if mem else " (median, min–max)"), fontsize=8)
        ax.tick_params(labelsize=7)
        if not mem:
            key = "client_us" if client else "server_us"
            ax2 = axes[0][1]
            ax2.barh(names, [r.get(key) or 0 for r in rows], color=colors)
            ax2.set_xlabel(
                ("client" if client else "server") + " CPU µs per op (lower is better)", fontsize=8
            )
            ax2.tick_params(labelsize=7)
        fig.suptitle(TITLES.get(scen, scen), fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / f"{scen}.png", dpi=90)
        plt.close(fig)


KEY_LIBS = [
    "ours-threaded",
    "ours-asyncio",
    "ours-asyncio-uvloop",
    "websockets-sync",
    "picows-uvloop",
    "raw-asyncio-uvloop",
    "raw-threaded",
]


def key_ratios(summary: dict) -> str:
    """One line per scenario: rate and CPU ratios of the key libraries to websockets."""
    present = [k for k in KEY_LIBS if any(r["lib"] == k for rows in summary.values() for r in rows)]
    if not present:
        return ""
    lines = [
        "### Summary: ratio to websockets (asyncio) — rate× / CPU per op×",
        "",
        "| scenario | websockets | " + " | ".join(present) + " |",
        "|---|---:|" + "---:|" * len(present),
    ]
    for scen in ORDER:
        rows = summary.get(scen)
        if not rows or scen.startswith("memory"):
            continue
        by = {r["lib"]: r for r in rows if r.get("median")}
        base = by.get(S.BASELINE)
        if not base:
            continue
        key = "client_us" if scen.startswith("client-") else "server_us"
        cells = [scen, _fmt(base["median"])]
        for k in present:
            r = by.get(k)
            if not r:
                cells.append("–")
                continue
            cpu = _ratio(r.get(key), base.get(key))
            cells.append(f"{_ratio(r['median'], base['median'])} / {cpu}")
        lines.append("| " + " | ".join(cells) + " |")
    for scen in ("memory-1000", "memory-10000"):
        rows = summary.get(scen)
        if not rows:
            continue
        by = {r["lib"]: r for r in rows if r.get("median")}
        base = by.get(S.BASELINE)
        if not base:
            continue
        cells = [scen + " (KiB/conn)", f"{base['median']:.1f}"]
        for k in present:
            r = by.get(k)
            cells.append(f"{r['median']:.1f} ({_ratio(r['median'], base['median'])})" if r else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_readme(path: Path, md: str) -> None:
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    text = path.read_text() if path.exists() else f"{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    text = re.sub(
        re.escape(start) + ".*?" + re.escape(end),
        lambda _: f"{start}\n{md}\n{end}",
        text,
        flags=re.S,
    )
    path.write_text(text)
