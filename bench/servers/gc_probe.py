"""Run a server module with Python's garbage collections timed, for the mixed-load run.

`python -m bench.servers.gc_probe OUT.json MODULE ARGS...` runs `python -m MODULE ARGS...` in
this process with a `gc.callbacks` hook that times every collection, and writes the counts and
pauses per generation to OUT.json when the server exits (SIGTERM included). SIGUSR1 starts the
count afresh (the harness sends it when the measured run starts, so start-up and warm-up
collections are left out). The hook costs a function call per collection, not per request.
"""

from __future__ import annotations

import atexit
import gc
import json
import runpy
import signal
import sys
import time
from pathlib import Path
from typing import Any

_started: dict[int, float] = {}
_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    generation = info["generation"]
    if phase == "start":
        _started[generation] = time.perf_counter()
    elif generation in _started:
        _pauses[generation].append((time.perf_counter() - _started.pop(generation)) * 1000)


def summary() -> dict[str, Any]:
    """Per generation: collections, total and longest pause (ms); and the thresholds in force."""
    return {
        "threshold": list(gc.get_threshold()),
        "frozen": gc.get_freeze_count(),
        "generations": {
            str(g): {
                "collections": len(p),
                "total_ms": round(sum(p), 3),
                "max_ms": round(max(p), 3) if p else 0.0,
                "over_1ms": sum(1 for x in p if x > 1.0),
            }
            for g, p in _pauses.items()
        },
    }


def _reset(signum: int, frame: Any) -> None:
    for pauses in _pauses.values():
        pauses.clear()


def main() -> None:
    out, module, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    gc.callbacks.append(_time_collection)

    def write() -> None:
        out.write_text(json.dumps(summary(), indent=2) + "\n")

    def stop(signum: int, frame: Any) -> None:  # for servers that leave SIGTERM alone (bzzlite's own wins)
        write()  # now: the SystemExit below may be swallowed by a server's broad except
        sys.exit(0)

    atexit.register(write)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, _reset)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
