"""The served OpenAPI document against the running server, type by type (tests/schema_truth.py),
under the pinned pydantic and under the lowest release pyproject.toml admits."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bzzlite.testing import Client, serve
from tests.schema_truth import FIELD_TYPES, build_app, disagreements, post

ROOT = Path(__file__).resolve().parent.parent
LOWEST = ROOT / ".cache" / "pydantic-lowest"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Client, dict[str, Any]]]:
    with serve(build_app()) as client:
        yield client, client.get("/openapi.json").json()


@pytest.mark.parametrize("name", list(FIELD_TYPES))
def test_the_document_says_what_the_server_accepts(name: str, served: tuple[Client, dict[str, Any]]) -> None:
    client, document = served
    problems = list(disagreements(lambda body: post(client, f"/t_{name}", body), document, name))
    assert not problems, "\n".join(problems)


def test_decimal_strings_are_described_whatever_pydantic_writes(served: tuple[Client, dict[str, Any]]) -> None:
    # pydantic 2.14 writes no pattern for a Decimal's string form: the document must still refuse ""
    _, document = served
    schema = document["components"]["schemas"]["T_decimalRequest"]["properties"]["v"]
    strings = [option for option in schema["anyOf"] if option.get("type") == "string"]
    assert strings and all("pattern" in option for option in strings)


def test_the_same_holds_under_the_lowest_pydantic() -> None:
    pins = (ROOT / "requirements" / "pydantic-lowest.txt").read_text()
    wanted = next(line.split("==")[1] for line in pins.splitlines() if line.lower().startswith("pydantic=="))
    assert LOWEST.is_dir(), f"{LOWEST} is missing: run scripts/install-test-deps"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LOWEST), str(ROOT)])}
    run = subprocess.run([sys.executable, "-m", "tests.schema_truth"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240, check=False)
    assert run.stdout.startswith(f"pydantic {wanted}:"), run.stdout + run.stderr[-3000:]
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
