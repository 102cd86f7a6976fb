"""The servers being compared, each as the command line that starts it on a port and data file."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Stack:
    """A server under test: a name for the tables and how to launch it."""

    name: str
    label: str
    command: Callable[[int, Path | str], list[str]]
    cwd: Path | None = None  # where the server runs (its imports come from there); None: this checkout
    store: str = "sqlite"  # "mongodb": served against the MongoDB stand-in (bench/mongo.py), given its URL
    workloads: tuple[str, ...] | None = None  # the only workloads it is measured on; None: every one


def _module(module: str) -> Callable[[int, Path | str], list[str]]:
    """The command line of a hand-written baseline in `bench/servers/`."""
    return lambda port, db: [sys.executable, "-m", module, "--port", str(port), "--db", str(db)]


def _bzzlite(port: int, db: Path | str) -> list[str]:
    """`db`: the SQLite file, or a store URL (the `bzzlite_mongo` stack's)."""
    url = db if isinstance(db, str) else f"sqlite:///{db.resolve()}"
    return [
        sys.executable, "-m", "bzzlite", "serve", "bench.servers.bzz_app:app",
        "--port", str(port), "--db", url, "--log-level", "warning",
    ]  # fmt: skip


STACKS: dict[str, Stack] = {
    s.name: s
    for s in (
        Stack("bzzlite", "bzzlite serve: its HTTP/1.1 server (httptools, uvloop), embedded SQLite store", _bzzlite),
        Stack("bzzlite_tornado", "bzzlite serve --http tornado: the same app on Tornado's HTTPServer",
              lambda port, db: [*_bzzlite(port, db), "--http", "tornado"]),
        Stack("tornado_raw", "hand-written Tornado + sqlite3", _module("bench.servers.tornado_raw")),
        Stack("fastapi", "FastAPI on uvicorn (httptools, uvloop) + sqlite3", _module("bench.servers.fastapi_app")),
        Stack("starlette", "Starlette on uvicorn (httptools, uvloop) + sqlite3: a floor",
              _module("bench.servers.starlette_app")),
        Stack("asgi_raw", "a bare ASGI callable on uvicorn (httptools, uvloop) + sqlite3: the floor",
              _module("bench.servers.asgi_raw")),
    )
}
def _bzzlite_no_feeds(port: int, db: Path | str) -> list[str]:
    command = _bzzlite(port, db)
    command[command.index("bench.servers.bzz_app:app")] = "bench.servers.bzz_app:without_feeds"
    return command


#: Not run unless named: bzzlite with CPython's own garbage-collector settings (`--gc default`),
#: bzzlite with its change feeds off (no journal row per write), and bzzlite's MongoDB store
#: against the tests' stand-in (bench/mongo.py: its own CPU is reported apart).
EXTRA_STACKS: dict[str, Stack] = {
    "bzzlite_gc_default": Stack(
        "bzzlite_gc_default", "bzzlite serve --gc default", lambda port, db: [*_bzzlite(port, db), "--gc", "default"]
    ),
    "bzzlite_no_feeds": Stack("bzzlite_no_feeds", "bzzlite serve, App(feeds=False)", _bzzlite_no_feeds),
    # Not `list`: the stand-in counts a category in Python over every document (75 ms at 1,000
    # documents; at 10,000, 32 connections get no answer within wrk's 10 s): that is not MongoDB.
    "bzzlite_mongo": Stack("bzzlite_mongo", "bzzlite serve, its MongoDB store against the test stand-in (nx-27017)",
                           _bzzlite, store="mongodb", workloads=("get", "create")),
}
BASELINE = "tornado_raw"  # CPU ratios are against what a user would write on plain Tornado
RIVAL = "fastapi"  # and against the framework bzzlite is measured against (issue 16's targets)
MIXED_STACKS = ("bzzlite", "bzzlite_gc_default", "tornado_raw")  # --mixed's default


def with_workers(stack: Stack, workers: int) -> Stack:
    """A bzzlite stack served by ``serve --workers N``, named ``NAME:wN`` in the tables.

    Raises:
        ValueError: not a bzzlite stack (the baselines have no workers option here).
    """
    if not is_bzzlite(stack):
        raise ValueError(f"{stack.name} is not served by bzzlite: --workers applies to bzzlite stacks only")
    command = stack.command
    return replace(stack, name=f"{stack.name}:w{workers}", label=f"{stack.label}, --workers {workers}",
                   command=lambda port, db: [*command(port, db), "--workers", str(workers)])


def is_bzzlite(stack: Stack) -> bool:
    """Whether the stack is ``python -m bzzlite serve`` (the ones ``--workers`` applies to)."""
    return stack.command(0, Path("x.db"))[1:4] == ["-m", "bzzlite", "serve"]


def probed(command: list[str], gc_stats: Path) -> list[str]:
    """`python -m MODULE ARGS` run under `bench.servers.gc_probe`, which times its collections."""
    if command[1:2] != ["-m"]:
        raise ValueError(f"not a python -m command: {command}")
    return [command[0], "-m", "bench.servers.gc_probe", str(gc_stats), *command[2:]]


def stack(name: str) -> Stack:
    """A stack by name; ``bzzlite@DIR`` is the bzzlite stack served from another checkout.

    DIR holds a ``bzzlite/`` package and ``bench/servers/`` (a ``git worktree`` of an older
    commit, or a copy), so one run can compare two versions of bzzlite, interleaved.

    Raises:
        KeyError: not a known stack, or DIR has no bzzlite package.
    """
    if name in STACKS:
        return STACKS[name]
    if name in EXTRA_STACKS:
        return EXTRA_STACKS[name]
    base, sep, where = name.partition("@")
    tree = Path(where).expanduser().resolve()
    if base != "bzzlite" or not sep or not (tree / "bzzlite" / "__init__.py").is_file():
        raise KeyError(name)
    return Stack(name, f"bzzlite serve from {tree}", _bzzlite, cwd=tree)
