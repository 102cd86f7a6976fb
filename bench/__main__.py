"""`python -m bench`: measure bzzlite against hand-written Tornado and FastAPI servers.

Exits 0 when every requested stack was measured, 1 when any failed (the others still run),
2 when nothing could be measured (wrk missing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from bench import machine, report, runner
from bench.config import PINNINGS, Config, quick
from bench.load import LoadFailed
from bench.stacks import MIXED_STACKS, STACKS, stack
from bench.workloads import WORKLOADS


def _known(choices: Mapping[str, object]) -> Callable[[str], bool]:
    return lambda name: name in choices


def _is_stack(name: str) -> bool:
    try:
        stack(name)
    except KeyError:
        return False
    return True


def _names(choices: Mapping[str, object], known: Callable[[str], bool] | None = None) -> Callable[[str], tuple[str, ...]]:
    """An argparse type for a comma-separated subset of `choices`, kept in the given order."""
    is_known = known or _known(choices)

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if not is_known(n)]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (got {text!r})")
        return names

    return parse


def _counts(text: str) -> tuple[int, ...]:
    """An argparse type for comma-separated worker counts, each at least 1."""
    try:
        counts = tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers of workers (got {text!r})") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"numbers of workers are 1 or more (got {text!r})")
    return counts


def parse_config(argv: list[str] | None = None) -> Config:
    """Command line → `Config`; `--quick` sets the small preset, explicit options still win."""
    defaults = Config(stacks=tuple(STACKS), workloads=tuple(WORKLOADS))
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smallest run, a few seconds (CI smoke test)")
    p.add_argument("--stacks", type=_names(STACKS, _is_stack),
                   help=f"comma-separated, default {','.join(STACKS)}; bzzlite@DIR serves bzzlite from another checkout")
    p.add_argument("--workloads", type=_names(WORKLOADS), help=f"comma-separated, default {','.join(WORKLOADS)}")
    p.add_argument("--duration", type=int, help=f"seconds per measured run (default {defaults.duration})")
    p.add_argument("--warmup", type=int, help=f"seconds of warm-up before each (default {defaults.warmup})")
    p.add_argument("--reps", type=int, help=f"interleaved repetitions (default {defaults.reps})")
    p.add_argument("--records", type=int, help=f"records in the data file (default {defaults.records})")
    p.add_argument("--connections", type=int, help=f"wrk connections (default {defaults.connections})")
    p.add_argument("--out", type=Path, help=f"results folder (default {defaults.out})")
    p.add_argument("--mixed", type=int, metavar="SECONDS",
                   help="instead of the workloads: SECONDS of mixed load (60 %% get, 20 %% list, 20 %% create) per "
                        f"stack, with RSS and GC pauses (default stacks {','.join(MIXED_STACKS)})")
    p.add_argument("--workers", type=_counts, metavar="N[,N...]",
                   help="serve each bzzlite stack with `--workers N`, once per N (as NAME:wN), nothing pinned: "
                        "for the throughput of several workers (wrk shares the CPUs)")
    p.add_argument("--pinning", type=_names(dict.fromkeys(PINNINGS)), metavar="unpinned,pinned",
                   help="unpinned: nothing pinned, as deployed (the headline); pinned: the server on one CPU, wrk on "
                        "the other (the stable reference); default both, each (rep, stack) once per mode "
                        "(--quick: unpinned; --workers: always unpinned)")
    args = p.parse_args(argv)
    if args.workers is not None and args.mixed is not None:
        p.error("--workers and --mixed do not go together")
    if args.workers is not None:
        if args.pinning not in (None, ("unpinned",)):
            p.error("--workers runs unpinned: the workers may use every CPU")
        args.pinning = ("unpinned",)
    given = {k: v for k, v in vars(args).items() if v is not None and k != "quick"}
    if args.mixed is not None and "stacks" not in given:
        given["stacks"] = MIXED_STACKS
    for key in ("duration", "reps", "records", "connections", "mixed"):
        if key in given and given[key] < 1:
            p.error(f"--{key} must be at least 1")
    return replace(quick(defaults) if args.quick else defaults, **given)


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    try:
        results = runner.run_mixed(config) if config.mixed else runner.run(config)
    except LoadFailed as exc:  # wrk missing: nothing can be measured
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 2
    text, paths = report.write(results, machine.describe())
    print(text)
    print("written: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
