"""pytest fixtures for testing a bzzlite app; import them in your ``conftest.py``:

    # conftest.py
    import pytest
    from bzzlite.fixtures import async_client, client  # noqa: F401

    @pytest.fixture
    def app():
        return make_app(db="sqlite:///:memory:")

``client`` is a :class:`bzzlite.testclient.TestClient`, ``async_client`` an
:class:`~bzzlite.testclient.AsyncTestClient` (for async tests: mark them ``@pytest.mark.anyio``,
or use pytest-asyncio's ``auto`` mode); both need your ``app`` fixture, and are closed after
the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .client import AsyncTestClient, TestClient


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
async def async_client(app: Any) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app) as test_client:
        yield test_client
