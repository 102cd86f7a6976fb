"""``/docs`` in a real browser: Debian's Chromium, driven by Playwright, with no internet.

Needs ``apt-get install chromium`` (``/usr/bin/chromium``) and ``pip install playwright``
(not ``playwright install``: the test uses the system browser). Skipped without them.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from bzzlite import App, Registry
from bzzlite.testing import serve
from tests._browser import require

playwright = require()


def library(db: str, **options) -> App:
    registry = Registry()

    @registry.resource
    class Book(BaseModel):
        """Books on the shelf."""

        title: str
        pages: int = 0

    return App(registry, db=db, title="Library", **options)


def open_docs(browser, base_url: str):
    """A page on /docs that may reach the app and nothing else (no CDN, no internet)."""
    page = browser.new_page()
    elsewhere: list[str] = []

    def only_the_app(route) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_app)
    page.goto(f"{base_url}/docs")
    return page, elsewhere


def test_try_it_out_creates_a_document(browser, sqlite_url):
    app = library(sqlite_url)
    with serve(app) as client:
        page, elsewhere = open_docs(browser, client.base_url)
        playwright.expect(page.locator(".info .title")).to_contain_text("Library", timeout=15000)

        operation = page.locator("#operations-book-create_book")
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        body = operation.locator("textarea.body-param__text")
        body.fill(json.dumps({"title": "Dune", "pages": 412}))
        operation.get_by_role("button", name="Execute").click()

        live = operation.locator(".live-responses-table")
        playwright.expect(live.locator("tr.response td.response-col_status")).to_have_text("201", timeout=15000)
        shown = live.locator("tr.response td.response-col_description pre").first
        playwright.expect(shown).to_contain_text("Dune")
        created = json.loads(shown.inner_text())
        assert created["title"] == "Dune"
        assert created["pages"] == 412
        assert len(created["id"]) == 24
        page.close()

        stored = client.get(f"/book/{created['id']}")
        assert stored.code == 200
        assert stored.json() == created
    assert elsewhere == []  # every asset came from the app itself


def test_docs_can_be_turned_off(sqlite_url):
    with serve(library(sqlite_url, docs=False)) as client:
        assert client.get("/docs").code == 404
        assert client.get("/docs/static/swagger-ui-bundle.js").code == 404
        assert client.get("/openapi.json").code == 404
