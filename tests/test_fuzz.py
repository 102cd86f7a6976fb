"""Fuzzing from the spec: schemathesis against the example apps' own ``/openapi.json``.

Each example app, and one whose model has every kind of field, is served (on a fresh
SQLite file) by this process; schemathesis runs as its command line in a child process,
through all its phases (coverage, fuzzing, stateful), and fails on any 5xx or any answer the document does not describe: status
codes, content types, headers and bodies. The server counts the requests it answered,
so "at least 1,000 generated requests" is measured where they arrive.

What is not checked, and why:
- ``negative_data_rejection``: pydantic's lax mode accepts more than the schema says
  (``"5"`` for an integer, ``0`` for a datetime), as in every pydantic-based framework.
- ``positive_data_acceptance`` allows a 400 on list queries (an ``after`` cursor is
  opaque: valid ones only come from ``next`` links, and it cannot go with ``page``) and on
  ``/_changes`` (a plain GET is not a WebSocket upgrade), and
  a 412 on writes (a made-up ``If-Match`` does not match the document's ETag), and a 422
  on PATCH of a nested path (a merge patch onto an unset embedded model can leave its
  required fields missing: whether it does depends on the stored document).
A document whose references do not resolve, or that schemathesis cannot read, fails too.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import importlib
import importlib.util
import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from bzzlite import App, Registry, Unique
from bzzlite.testing import serve
from tests.conftest import mongo_store_available

pytest.importorskip("schemathesis", reason="pip install schemathesis (see pyproject's test extras)")

#: (app, store, examples per operation, requests at least): together well over 1,000 requests.
RUNS = [
    ("examples.todo", "sqlite", 40, 600),
    ("examples.signals", "sqlite", 25, 300),
    ("every_kind_of_field", "sqlite", 12, 800),
    ("examples.todo", "mongo", 15, 300),
    ("every_kind_of_field", "mongo", 8, 300),
]
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
])
CONFIG = """
[warnings]
fail-on = ["unresolvable_reference", "unsupported_regex", "method_not_allowed", "missing_deserializer"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "429"]

[[operations]]
include-operation-id-regex = "^(list|changes)_"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]

[[operations]]
include-method-regex = "^(POST|PUT|DELETE)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429"]

[[operations]]
include-method = "PATCH"
exclude-path-regex = "id}/."
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429"]

[[operations]]
include-method = "PATCH"
include-path-regex = "id}/."
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429"]
"""
answered: dict[str, Counter[int]] = {}


class Kind(str, enum.Enum):
    a = "a"
    b = "b"


class Part(BaseModel):
    name: str
    qty: int = 1


class Address(BaseModel):
    city: str
    zip: str | None = None
    geo: list[float] = []


def every_kind_of_field() -> App:
    """An app whose models use every kind of field the query language and stores handle."""
    registry = Registry()

    @registry.resource(name="things", prefix="/api")
    class Thing(BaseModel):
        name: Annotated[str, Unique]
        count: int = 0
        ratio: float | None = None
        price: decimal.Decimal | None = None
        day: datetime.date | None = None
        at: datetime.time | None = None
        when: datetime.datetime | None = None
        kind: Kind = Kind.a
        level: Literal[1, 2, 3] = 1
        ref: uuid.UUID | None = None
        flags: list[bool] = []
        parts: list[Part] = []
        address: Address | None = None
        meta: dict[str, int] = {}
        score: int = Field(default=0, ge=0, le=100)

    class Adjust(BaseModel):
        by: int = Field(ge=-100, le=100)

    class Summary(BaseModel):
        things: int
        counted: int

    @registry.action(Thing, "adjust")
    async def adjust(handler: Any, thing: Thing, body: Adjust) -> Thing:
        """Add ``by`` to a thing's count (a custom action: fuzzed with the rest)."""
        things = handler.documents(Thing)
        return await things.patch(thing.id, {"count": thing.count + body.by},  # type: ignore[attr-defined]
                                  if_match=handler.request.headers.get("If-Match"))

    @registry.route("/api/summary/{minimum}", methods=["GET"])
    async def summary(handler: Any, minimum: int) -> Summary:
        """How many things there are, and how many count at least ``minimum``."""
        things = handler.documents(Thing)
        return Summary(things=await things.count(), counted=await things.count({"count__gte": minimum}))

    registry.mock([("GET", "/much/api", {"body": "much api"}),
                   ("POST", "/much/api", {"body": {"ok": True}, "status": 201, "headers": {"X-Wow": "such"}})])
    return App(registry)


def store_for(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if store == "sqlite":
        return f"sqlite:///{tmp_path}/fuzz.db"
    if not mongo_store_available():
        pytest.skip("the MongoDB store is not built yet")
    if importlib.util.find_spec("bzzlite.feeds.mongo") is None:
        pytest.skip("the MongoDB change-feed journal is not built yet (every app opens one)")
    return str(request.getfixturevalue("mongo_db_url"))


@pytest.mark.parametrize(("name", "store", "examples", "minimum"), RUNS, ids=[f"{r[0]}-{r[1]}" for r in RUNS])
def test_schemathesis_finds_nothing(
    name: str, store: str, examples: int, minimum: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = store_for(store, request, tmp_path)
    app = importlib.import_module(name).app if name.startswith("examples.") else every_kind_of_field()
    app.use_store(url)
    statuses = answered.setdefault(f"{name}-{store}", Counter())
    app.settings["log_function"] = lambda handler: statuses.update([handler.get_status()])
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with serve(app) as client:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
             f"{client.base_url}/openapi.json",
             "--checks", CHECKS, "--max-examples", str(examples), "--seed", "20261124",
             "--workers", "1", "--request-timeout", "10", "--continue-on-failure",
             "--suppress-health-check", "all", "--output-truncate", "false",
             "--report", "json", "--report-json-path", str(tmp_path / "report.json")],
            cwd=tmp_path, capture_output=True, text=True, timeout=240,
        )
    report = json.loads((tmp_path / "report.json").read_text()) if (tmp_path / "report.json").exists() else {}
    assert run.returncode == 0, f"schemathesis found problems:\n{run.stdout[-20000:]}\n{run.stderr[-3000:]}"
    assert report.get("complete") is True
    assert not [s for s in statuses if s >= 500], statuses
    assert sum(statuses.values()) >= minimum, statuses


def test_at_least_a_thousand_requests_in_total() -> None:
    if not {f"{name}-sqlite" for name, store, *_ in RUNS if store == "sqlite"} <= set(answered):
        pytest.skip("runs after the fuzzing tests")
    assert sum(sum(c.values()) for c in answered.values()) >= 1000, answered
