"""Shared fixtures: every store-level and HTTP-level test runs against each store.

``store_url`` is parametrized over SQLite and MongoDB (the stand-in server from
``tests/mongo_standin``, or a real MongoDB when ``BZZLITE_TEST_MONGO_URL`` is set),
so one conformance suite keeps the stores from drifting apart.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests._browser import browser  # noqa: F401 (the headless Chromium fixture of the browser tests)

pytest_plugins = ["tests.mongo_standin.fixture"]

STORES = ["sqlite", "mongo"]


def mongo_store_available() -> bool:
    return importlib.util.find_spec("bzzlite.stores.mongo") is not None


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    if not mongo_store_available():
        pytest.skip("the MongoDB store is not built yet")
    return request.getfixturevalue("mongo_db_url")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A fresh SQLite file, for tests of SQLite-only behavior."""
    return f"sqlite:///{tmp_path}/test.db"
