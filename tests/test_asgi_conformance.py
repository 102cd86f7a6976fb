"""The HTTP conformance modules once more, every app served through bzzlite.asgi under uvicorn.

``bzzlite.testing.serve`` serves through the ASGI adapter under uvicorn when
``BZZLITE_TEST_HTTP=asgi``; this runs the modules that test the HTTP contract (CRUD, errors,
queries, nested paths, feeds over SSE and WebSocket, custom routes, CORS, the route-table
authorization tests) that way in a child pytest, on SQLite (the adapter does not touch the
store). Run one by hand the same way: ``BZZLITE_TEST_HTTP=asgi pytest tests/test_crud.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests._processes import ROOT

pytest.importorskip("uvicorn", reason="the ASGI conformance run serves through uvicorn (the bench extra)")

MODULES = ["test_crud", "test_errors", "test_queries_http", "test_nested", "test_feeds", "test_feeds_ws",
           "test_custom_routes", "test_security_routes", "test_cors"]


def test_the_http_contract_holds_through_the_asgi_adapter_under_uvicorn() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-k", "not mongo",
         *(f"tests/{module}.py" for module in MODULES)],
        cwd=ROOT, env={**os.environ, "BZZLITE_TEST_HTTP": "asgi"}, capture_output=True, text=True, timeout=300,
        check=False,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 180, summary  # the modules ran, not a selection of none
    assert not re.search(r"failed|error", summary), summary
