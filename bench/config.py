"""One run's settings, and the two presets (`--quick` for CI, the default for figures)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

PINNINGS = ("unpinned", "pinned")


@dataclass(frozen=True)
class Config:
    """Everything that shapes a benchmark run; recorded with its results."""

    stacks: tuple[str, ...]
    workloads: tuple[str, ...]
    records: int = 10_000
    duration: int = 5  # seconds per measured wrk run (wrk takes whole seconds)
    warmup: int = 1  # seconds of wrk before each measured run; 0 skips it
    reps: int = 3
    connections: int = 32
    start_timeout: float = 30.0
    out: Path = Path("bench/results")
    quick: bool = False
    mixed: int = 0  # > 0: instead of the workloads, this many seconds of the mixed load per stack
    workers: tuple[int, ...] = ()  # bzzlite stacks served with `serve --workers N` for each N, unpinned
    #: "unpinned": nothing pinned, as deployed (the headline); "pinned": the server on one CPU and
    #: wrk on the other (the stable reference). Each (repetition, stack) runs once per mode.
    pinning: tuple[str, ...] = PINNINGS

    @property
    def name(self) -> str:
        """Results file stem: a quick run must not overwrite the full run's figures."""
        return ("quick" if self.quick else "latest") + ("-mixed" if self.mixed else "") + \
            ("-workers" if self.workers else "")


def quick(config: Config) -> Config:
    """The smallest run that still exercises every path: for CI, so the harness cannot rot."""
    return replace(config, records=1_000, duration=1, warmup=0, reps=1, connections=8, start_timeout=15.0, quick=True,
                   pinning=("unpinned",))
