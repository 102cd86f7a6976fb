"""examples/live.html in a real browser: a document created over HTTP appears in the list.

Debian's Chromium (``/usr/bin/chromium``) driven by Playwright (``pip install playwright``,
never ``playwright install``); skipped without them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bzzlite.testing import serve
from tests._browser import require

EXAMPLE = Path(__file__).parent.parent / "examples" / "live.py"

playwright = require()


def live_example():
    spec = importlib.util.spec_from_file_location("live_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def open_page(browser, base_url: str):
    page = browser.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base_url) else route.abort())
    page.goto(f"{base_url}/")
    playwright.expect(page.locator("#status")).to_have_text("live", timeout=15000)
    return page


def test_the_list_updates_itself(browser, tmp_path):
    app = live_example().make_app(db=f"sqlite:///{tmp_path}/live.db")
    with serve(app) as client:
        first = client.post("/task", json={"title": "there before"}).json()
        one, two = open_page(browser, client.base_url), open_page(browser, client.base_url)
        for page in (one, two):
            playwright.expect(page.locator(f'li[data-id="{first["id"]}"]')).to_contain_text("there before")

        created = client.post("/task", json={"title": "made over HTTP"}).json()  # not by the page
        for page in (one, two):
            playwright.expect(page.locator(f'li[data-id="{created["id"]}"] .title')).to_have_text(
                "made over HTTP", timeout=10000)

        one.locator(f'li[data-id="{created["id"]}"] input[type=checkbox]').check()  # a PATCH from page one
        playwright.expect(two.locator(f'li[data-id="{created["id"]}"]')).to_have_class("done", timeout=10000)
        assert client.get(f"/task/{created['id']}").json()["done"] is True

        two.locator("input[name=title]").fill("typed in page two")
        two.locator("#add button").click()
        playwright.expect(one.locator("li .title", has_text="typed in page two")).to_have_count(1, timeout=10000)

        assert client.delete(f"/task/{first['id']}").code == 204
        for page in (one, two):
            playwright.expect(page.locator(f'li[data-id="{first["id"]}"]')).to_have_count(0, timeout=10000)
            assert page.locator("li").count() == 2
