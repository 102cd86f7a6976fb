"""The three workloads: which wrk script drives each, and a check that a server answers it right.

The check runs once per server before any load, so a stack that answers wrongly (a 404 for a
known id, a wrong total) fails loudly instead of being timed on its error path.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import CATEGORIES, Dataset

LUA_DIR = Path(__file__).parent / "lua"


class WrongAnswer(Exception):
    """A server answered a workload's request with the wrong status or body."""


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise WrongAnswer(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()


def _expect(ok: bool, what: str, status: int, body: Any) -> None:
    if not ok:
        raise WrongAnswer(f"{what}: got {status} {str(body)[:200]}")


def check_get(port: int, data: Dataset) -> None:
    status, body = _request(port, "GET", f"/item/{data.first_id}")
    ok = status == 200 and isinstance(body, dict) and body.get("id") == data.first_id
    _expect(ok and "category" in body, f"GET /item/{data.first_id}", status, body)


def check_list(port: int, data: Dataset) -> None:
    category = CATEGORIES[0]
    path = f"/item?category={category}&per_page=20"
    status, body = _request(port, "GET", path)
    ok = status == 200 and isinstance(body, dict) and body.get("total") == data.category_counts[category]
    _expect(ok and len(body["items"]) == min(20, body["total"]), f"GET {path}", status, body)


def check_create(port: int, data: Dataset) -> None:
    # Into the last category: `check_list` counts the first, so check order never matters.
    sent = {"name": "probe", "category": CATEGORIES[-1], "price": 1.5}
    status, body = _request(port, "POST", "/item", json.dumps(sent).encode())
    ok = status == 201 and isinstance(body, dict) and len(str(body.get("id"))) == 24
    _expect(ok and body.get("qty") == 0, "POST /item", status, body)


@dataclass(frozen=True)
class Workload:
    """One request mix: a wrk Lua script, its arguments, and the answer check."""

    name: str
    script: str
    args: Callable[[Dataset], list[str]]
    check: Callable[[int, Dataset], None]

    @property
    def script_path(self) -> Path:
        return LUA_DIR / self.script


_categories_arg: Callable[[Dataset], list[str]] = lambda data: [",".join(CATEGORIES)]


def check_all(port: int, data: Dataset) -> None:
    check_get(port, data)
    check_list(port, data)
    check_create(port, data)

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        # Ordered reads first: creates grow the table that later workloads of a server read.
        Workload("get", "get_by_id.lua", lambda data: [str(data.ids_file)], check_get),
        Workload("list", "list.lua", _categories_arg, check_list),
        Workload("create", "create.lua", _categories_arg, check_create),
    )
}

#: `--mixed`: 60 % get, 20 % list, 20 % create, chosen per request by the Lua script.
MIXED = Workload("mixed", "mixed.lua", lambda data: [str(data.ids_file), ",".join(CATEGORIES)], check_all)
