"""Turn measurements into per-(workload, stack) medians, a Markdown table and JSON files."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.runner import Measurement, Results
from bench.stacks import BASELINE, RIVAL


def _modes(results: Results) -> list[bool]:
    """The pinning modes measured, the headline (unpinned) first."""
    return sorted({m.pinned for m in results.measurements})


def summarize(results: Results) -> list[dict[str, Any]]:
    """Medians over repetitions, and each stack's CPU per request relative to the baseline's in
    the same pinning mode; unpinned rows (the headline) first."""
    rows: list[dict[str, Any]] = []
    for pinned in _modes(results):
        rows += _summarize(results, pinned)
    return rows


def _summarize(results: Results, pinned: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for workload in results.config.workloads:
        by_stack: dict[str, list[Measurement]] = {}
        for m in results.measurements:
            if m.workload == workload and m.pinned == pinned:
                by_stack.setdefault(m.stack, []).append(m)
        cpu = {s: statistics.median(m.cpu_us_per_request for m in ms) for s, ms in by_stack.items()}
        for stack, ms in by_stack.items():
            rows.append(
                {
                    "workload": workload,
                    "stack": stack,
                    "pinned": pinned,
                    "reps": len(ms),
                    "cpu_us_per_request": cpu[stack],
                    "cpu_us_min": min(m.cpu_us_per_request for m in ms),
                    "cpu_us_max": max(m.cpu_us_per_request for m in ms),
                    "cpu_ratio_to_baseline": cpu[stack] / cpu[BASELINE] if BASELINE in cpu else None,
                    "cpu_ratio_to_rival": cpu[stack] / cpu[RIVAL] if RIVAL in cpu else None,
                    "cpu_busy": statistics.median(m.cpu_busy for m in ms),
                    "wrk_cpu_us_per_request": statistics.median(m.load_cpu_us_per_request for m in ms),
                    "requests_per_second": statistics.median(m.requests_per_second for m in ms),
                    "p50_ms": statistics.median(m.p50_ms for m in ms),
                    "p99_ms": statistics.median(m.p99_ms for m in ms),
                    "rss_start_mib": statistics.median(m.rss_start_kib for m in ms) / 1024,
                    "rss_end_mib": statistics.median(m.rss_end_kib for m in ms) / 1024,
                    "errors": sum(m.errors for m in ms),
                    "store_cpu_us_per_request": statistics.median(store) if (store := [
                        m.store_cpu_us_per_request for m in ms if m.store_cpu_us_per_request is not None]) else None,
                }
            )
    return rows


def markdown(results: Results, rows: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """The human-readable report: setup, one table per pinning mode (unpinned, the headline,
    first), and any stack that could not be measured."""
    c = results.config
    server_cpu, load_cpu = results.cpus
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    lines = [
        f"# bzzlite benchmark ({c.name})",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['cpus']} CPUs; {machine['platform']}",
        f"- Software: Python {machine['python']}, SQLite {machine['sqlite']}, wrk {machine['wrk']}; {packages}",
        (
            f"- Run: {c.records:,} records, {c.reps} rep(s) × {c.duration} s per workload after {c.warmup} s"
            f" warm-up, {c.connections} connections, one wrk thread; {time.strftime('%Y-%m-%d %H:%M %Z')}"
        ),
        "- bzzlite stacks serve a copy brought to their model by `python -m bzzlite migrate` first (not timed)",
        "",
        (
            "CPU µs/req is the server's user+system CPU time over the measured run ÷ requests completed"
            f" (median over reps, min–max in brackets); × {BASELINE} and × {RIVAL} are its ratios to those stacks"
            " in the same pinning mode; server CPU % is that CPU time ÷ the run's wall time: well under 100 %"
            " when pinned, the server waited or another process took CPU from it or from wrk (unpinned, a"
            " server's threads may use more than one CPU); wrk µs/req is the load generator's own CPU time"
            " per request."
        ),
    ]
    for pinned in sorted({r["pinned"] for r in rows}):
        if pinned:
            title = f"Pinned: server on CPU {server_cpu}, wrk on CPU {load_cpu} (the stable reference)"
        else:
            title = "Unpinned: nothing pinned, as deployed (the headline)"
        lines += ["", f"## {title}", "", *_table([r for r in rows if r["pinned"] == pinned])]
    standin = [r for r in rows if r["store_cpu_us_per_request"] is not None]
    if standin:
        lines += ["", "## The MongoDB store against the test stand-in", "",
                  ("The stand-in (nx-27017 over SQLite, tests/mongo_standin/) is test infrastructure: its CPU per"
                   " request is its own, stated apart and not added to the server's; its req/s and latency say"
                   " nothing of a real MongoDB's (bench/mongo.py)."), "",
                  "| workload | pinned | stack | server CPU µs/req | × fastapi | stand-in CPU µs/req | req/s |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for r in standin:
            rival = f"{r['cpu_ratio_to_rival']:.2f}" if r["cpu_ratio_to_rival"] is not None else "–"
            lines.append(f"| {r['workload']} | {'yes' if r['pinned'] else 'no'} | {r['stack']}"
                         f" | {r['cpu_us_per_request']:.1f} | {rival} | {r['store_cpu_us_per_request']:.1f}"
                         f" | {r['requests_per_second']:,.0f} |")
    if c.workers:
        lines += scaling(rows, machine["cpus"])
    if results.failures:
        lines += ["", "Not measured:", ""]
        lines += [f"- **{stack}** failed: {why}" for stack, why in results.failures.items()]
    return "\n".join(lines) + "\n"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        (f"| workload | stack | CPU µs/req | × {BASELINE} | × {RIVAL} | server CPU % | wrk µs/req | req/s | p50 ms"
         " | p99 ms | RSS MiB start → end | errors |"),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['cpu_ratio_to_baseline']:.2f}" if r["cpu_ratio_to_baseline"] is not None else "–"
        ratio += f" | {r['cpu_ratio_to_rival']:.2f}" if r["cpu_ratio_to_rival"] is not None else " | –"
        lines.append(
            f"| {r['workload']} | {r['stack']} | {r['cpu_us_per_request']:.1f}"
            f" ({r['cpu_us_min']:.1f}–{r['cpu_us_max']:.1f}) | {ratio} | {r['cpu_busy']:.0%}"
            f" | {r['wrk_cpu_us_per_request']:.1f} | {r['requests_per_second']:,.0f}"
            f" | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rss_start_mib']:.1f} → {r['rss_end_mib']:.1f}"
            f" | {r['errors']} |"
        )
    return lines


def scaling(rows: list[dict[str, Any]], cpus: int) -> list[str]:
    """Each worker count's throughput against one worker's, and against what the machine allows
    at the CPU the requests cost: the server's plus wrk's, on the same CPUs."""
    lines = ["", (f"Throughput by worker count (× w1), and the ceiling of {cpus} CPUs at the measured CPU cost"
                  " per request (server + wrk): the most any number of workers could serve at that cost."), "",
             "| workload | stack | req/s | × w1 | server + wrk µs/req | ceiling req/s | × w1 at the ceiling |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        stack, _, count = r["stack"].rpartition(":w")
        one = next((o for o in rows if o["workload"] == r["workload"] and o["stack"] == f"{stack}:w1"
                    and o["pinned"] == r["pinned"]), None)
        if not count.isdigit() or one is None or not one["requests_per_second"]:
            continue
        cost = r["cpu_us_per_request"] + r["wrk_cpu_us_per_request"]
        ceiling = cpus * 1e6 / cost if cost else 0.0
        lines.append(f"| {r['workload']} | {r['stack']} | {r['requests_per_second']:,.0f}"
                     f" | {r['requests_per_second'] / one['requests_per_second']:.2f} | {cost:.1f} | {ceiling:,.0f}"
                     f" | {ceiling / one['requests_per_second']:.2f} |")
    return lines


def summarize_mixed(results: Results) -> list[dict[str, Any]]:
    """Per stack and pinning mode (unpinned first), medians over repetitions of the mixed run;
    GC pauses per generation."""
    rows: list[dict[str, Any]] = []
    by_stack: dict[tuple[bool, str], list[Measurement]] = {}
    for m in sorted(results.measurements, key=lambda m: m.pinned):
        by_stack.setdefault((m.pinned, m.stack), []).append(m)
    for (pinned, stack), ms in by_stack.items():

        def med(f: Any, ms: list[Measurement] = ms) -> float:
            return statistics.median(f(m) for m in ms)

        row: dict[str, Any] = {
            "stack": stack,
            "pinned": pinned,
            "reps": len(ms),
            "seconds": med(lambda m: m.seconds),
            "cpu_us_per_request": med(lambda m: m.cpu_us_per_request),
            "requests_per_second": med(lambda m: m.requests_per_second),
            "p50_ms": med(lambda m: m.p50_ms),
            "p99_ms": med(lambda m: m.p99_ms),
            "max_ms": med(lambda m: m.max_ms),
            "rss_start_mib": med(lambda m: m.rss_start_kib) / 1024,
            "rss_end_mib": med(lambda m: m.rss_end_kib) / 1024,
            "rss_max_mib": med(lambda m: m.rss_max_kib) / 1024,
            "errors": sum(m.errors for m in ms),
            "gc": None,
        }
        probed = [m.gc for m in ms if m.gc is not None]
        if probed:
            row["gc"] = {
                "threshold": probed[0]["threshold"],
                "frozen": probed[0]["frozen"],
                "generations": {
                    g: {k: statistics.median(p["generations"][g][k] for p in probed)
                        for k in ("collections", "total_ms", "max_ms", "over_1ms")}
                    for g in probed[0]["generations"]
                },
            }
        rows.append(row)
    return rows


def markdown_mixed(results: Results, rows: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """The mixed-load report: latency, memory over the run, and the collector's pauses."""
    c = results.config
    lines = [
        f"# bzzlite benchmark: {c.mixed} s of mixed load ({c.name})",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['cpus']} CPUs; {machine['platform']}; Python {machine['python']}",
        (
            f"- Run: {c.records:,} records; per stack and repetition a fresh server, {c.warmup} s warm-up, then"
            f" {c.mixed} s of 60 % get, 20 % list, 20 % create chosen per request; {c.connections} connections;"
            f" {c.reps} rep(s); {time.strftime('%Y-%m-%d %H:%M %Z')}"
        ),
        "",
        (
            "Medians over repetitions. RSS is VmRSS at the start and end of the measured run and its peak"
            " (sampled every second). GC: collections per generation during the measured run / their total"
            " pause / the longest pause, timed in the server by `gc.callbacks` (bench/servers/gc_probe.py)."
        ),
        "",
        "| stack | pinned | CPU µs/req | req/s | p50 ms | p99 ms | max ms | RSS MiB start → end (peak) | GC gen0"
        " | GC gen1 | GC gen2 | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        gens = ["–", "–", "–"]
        if r["gc"] is not None:
            gens = [
                f"{g['collections']:,.0f} / {g['total_ms']:,.0f} ms / {g['max_ms']:.1f} ms"
                for g in (r["gc"]["generations"][k] for k in ("0", "1", "2"))
            ]
        lines.append(
            f"| {r['stack']} | {'yes' if r['pinned'] else 'no'} | {r['cpu_us_per_request']:.1f}"
            f" | {r['requests_per_second']:,.0f} | {r['p50_ms']:.2f}"
            f" | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['rss_start_mib']:.1f} → {r['rss_end_mib']:.1f}"
            f" ({r['rss_max_mib']:.1f}) | {' | '.join(gens)} | {r['errors']} |"
        )
    if results.failures:
        lines += ["", "Not measured:", ""]
        lines += [f"- **{stack}** failed: {why}" for stack, why in results.failures.items()]
    return "\n".join(lines) + "\n"


def write(results: Results, machine: dict[str, Any]) -> tuple[str, list[Path]]:
    """Write `<name>.json` and `<name>.md` under the output folder; return the Markdown and paths."""
    if results.config.mixed:
        rows = summarize_mixed(results)
        text = markdown_mixed(results, rows, machine)
    else:
        rows = summarize(results)
        text = markdown(results, rows, machine)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(results.config).items()}
    document = {
        "machine": machine,
        "config": config,
        "pinning": {"server_cpu": results.cpus[0], "load_cpu": results.cpus[1]},
        "baseline": BASELINE,
        "summary": rows,
        "runs": [dataclasses.asdict(m) | {"requests_per_second": m.requests_per_second} for m in results.measurements],
        "failures": results.failures,
    }
    out = results.config.out
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{results.config.name}.json", out / f"{results.config.name}.md"]
    paths[0].write_text(json.dumps(document, indent=2) + "\n")
    paths[1].write_text(text)
    return text, paths
