"""``/docs`` in a real browser: Debian's Chromium, driven by Playwright, with no internet.

Needs ``apt-get install chromium`` (``/usr/bin/chromium``) and ``pip install playwright``
(not ``playwright install``: the test uses the system browser). Skipped without them.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel

from bzzlite import App, Registry
from bzzlite.auth import Auth
from bzzlite.auth.testing import StaticTokenProvider
from bzzlite.testing import serve
from tests._browser import require
from tests.test_proxy import nginx, served  # noqa: F401 - the fixtures: the app behind nginx, under /api

playwright = require()


def library(db: str, **options) -> App:
    registry = Registry()

    @registry.resource
    class Book(BaseModel):
        """Books on the shelf."""

        title: str
        pages: int = 0

    return App(registry, db=db, title="Library", **options)


def open_docs(browser, base_url: str, page=None):
    """A page on /docs that may reach the app and nothing else (no CDN, no internet)."""
    page = page or browser.new_page()
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


def reopen(page, base_url: str) -> None:
    """/docs loaded afresh, without the deep link (#/tag/operation) of the last operation tried:
    a reload would open that operation again while the page renders, racing the next click."""
    page.goto(f"{base_url}/docs")
    playwright.expect(page.locator(".info .title")).to_be_visible(timeout=15000)


def try_it_out(page, operation_id: str, body: dict | None, status: str):
    """Try it out on an operation with this JSON body; the answer once its status shows."""
    operation = page.locator(f"#operations-{operation_id}")
    if "is-open" not in (operation.get_attribute("class") or ""):  # a deep link may have opened it
        operation.locator(".opblock-summary").click()
    playwright.expect(operation).to_have_class(re.compile(r"\bis-open\b"))
    operation.get_by_role("button", name="Try it out").click()
    if body is not None:
        operation.locator("textarea.body-param__text").fill(json.dumps(body))
    operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table")
    playwright.expect(live.locator("tr.response td.response-col_status")).to_have_text(status, timeout=15000)
    shown = live.locator("tr.response td.response-col_description pre").first
    playwright.expect(shown).not_to_be_empty()
    return json.loads(shown.inner_text())


def test_try_it_out_creates_a_document(browser, sqlite_url):
    app = library(sqlite_url)
    with serve(app) as client:
        page, elsewhere = open_docs(browser, client.base_url)
        playwright.expect(page.locator(".info .title")).to_contain_text("Library", timeout=15000)

        created = try_it_out(page, "book-create_book", {"title": "Dune", "pages": 412}, "201")
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


def test_docs_behind_nginx_under_a_prefix(browser, nginx):  # noqa: F811 - the imported fixture
    """docs/deployment.md's nginx passes /api on (--root-path /api): the page, its files, the
    document and Try it out all go through the prefix."""
    base_url = f"http://127.0.0.1:{nginx}/api"
    page, elsewhere = open_docs(browser, base_url)
    loaded: list[str] = []
    page.on("requestfinished", lambda request: loaded.append(request.url))
    page.reload()
    playwright.expect(page.locator(".info .title")).to_be_visible(timeout=15000)
    created = try_it_out(page, "thing-create_thing", {"name": "through nginx"}, "201")
    assert created["name"] == "through nginx"
    assert f"{base_url}/docs/static/swagger-ui-bundle.js" in loaded and f"{base_url}/openapi.json" in loaded
    assert f"{base_url}/thing" in loaded
    page.close()
    assert elsewhere == []


def shelf(db: str) -> App:
    """Books anyone may read and only a signed-in user may write, with a local sign-in."""
    registry = Registry()

    @registry.resource(auth={"get": False, "list": False})
    class Book(BaseModel):
        title: str

    return App(registry, db=db, title="Shelf", auth=Auth("a-docs-test-secret-of-32-bytes-at-least", [
        StaticTokenProvider("local-dev", {"alice-local-token": {"id": "alice", "name": "Alice"}})]))


def test_sign_in_from_the_docs_then_create(browser, sqlite_url):
    with serve(shelf(sqlite_url)) as client:
        page, elsewhere = open_docs(browser, client.base_url)
        playwright.expect(page.locator(".info .title")).to_contain_text("Shelf", timeout=15000)
        try_it_out(page, "book-create_book", {"title": "Dune"}, "401")  # not signed in yet
        reopen(page, client.base_url)
        signed_in = try_it_out(page, "auth-signin", {"provider": "local-dev", "access_token": "alice-local-token"},
                               "200")
        assert signed_in["authenticated"] is True
        reopen(page, client.base_url)
        created = try_it_out(page, "book-create_book", {"title": "Dune"}, "201")  # the cookie, and the CSRF header
        assert client.get(f"/book/{created['id']}").json()["title"] == "Dune"
        # the cookie alone still does not make a write: a request without the header is refused
        refused = page.evaluate("""() => fetch("/book", {method: "POST", headers: {"Content-Type": "application/json"},
                                                          body: JSON.stringify({title: "forged"})}).then(r => r.status)""")
        assert refused == 403
        page.close()
    assert elsewhere == []


def test_paste_a_token_into_authorize_then_create(browser, sqlite_url):
    with serve(shelf(sqlite_url)) as client:
        signed_in = client.post("/auth/signin/", json={"provider": "local-dev", "access_token": "alice-local-token"})
        token = signed_in.headers["Set-Cookie"].split("=", 1)[1].split(";", 1)[0]  # as `curl -si` shows it
        page, elsewhere = open_docs(browser, client.base_url)
        page.get_by_role("button", name="Authorize").first.click()
        bearer = page.locator(".modal-ux .auth-container").filter(has_text="bearerToken")
        bearer.locator("#auth-bearer-value").fill(token)
        bearer.get_by_role("button", name="Apply credentials").click()
        bearer.get_by_role("button", name="Close").click()
        created = try_it_out(page, "book-create_book", {"title": "Emma"}, "201")
        assert created["title"] == "Emma"
        page.close()
    assert elsewhere == []
