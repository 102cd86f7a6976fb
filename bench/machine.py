"""A description of the machine and software a run was measured on, kept with its figures."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("bzzlite", "tornado", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic", "orjson")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "not installed"
    return out.split(" [", 1)[0].removeprefix("wrk ").strip() or "unknown"


def describe() -> dict[str, Any]:
    """CPU, core count, OS and the versions of everything on the measured path."""
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": _wrk_version(),
        "packages": {name: _version(name) for name in PACKAGES},
    }
