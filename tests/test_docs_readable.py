"""``/docs`` stays readable for a model with many fields: a list operation shows its control and
equality parameters, and a table of the operators, not one row per field and operator.

Set ``BZZLITE_SCREENS=/some/dir`` to also save full-page screenshots of the list operation
before (``?filters=all``: every parameter, as the page used to show) and after.
"""

from __future__ import annotations

import os
from pathlib import Path

from bzzlite.testing import serve
from examples.catalog import make_app
from tests._browser import require

playwright = require()


def open_list(browser, base_url: str, query: str = ""):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url}/docs{query}#/products/list_products")
    operation = page.locator("#operations-products-list_products")
    playwright.expect(operation.locator("table.parameters")).to_be_visible(timeout=15000)
    return page, operation


def test_a_list_operation_folds_operator_parameters(browser, tmp_path: Path) -> None:
    screens = os.environ.get("BZZLITE_SCREENS")
    with serve(make_app(f"sqlite:///{tmp_path / 'shop.db'}")) as client:
        document = client.get("/openapi.json").json()
        declared = document["paths"]["/products"]["get"]["parameters"]
        page, operation = open_list(browser, client.base_url, "?filters=all")
        rows_all = operation.locator("table.parameters > tbody > tr").count()
        height_all = operation.locator("table.parameters").bounding_box()["height"]
        if screens:
            page.screenshot(path=str(Path(screens) / "docs-list-before.png"), full_page=True)
        page.close()

        page, operation = open_list(browser, client.base_url)
        rows = operation.locator("table.parameters > tbody > tr").count()
        height = operation.locator("table.parameters").bounding_box()["height"]
        description = operation.locator(".opblock-description-wrapper")
        playwright.expect(description.locator("table")).to_contain_text("supplier.city")  # the operators' table
        playwright.expect(description.locator("table")).to_contain_text("__startswith")
        playwright.expect(description).to_contain_text("show them all")
        if screens:
            page.screenshot(path=str(Path(screens) / "docs-list-after.png"), full_page=True)
        page.close()

    assert rows_all == len(declared)  # every parameter, typed, stays in the document
    kept = [p for p in declared if "__" not in p["name"]]
    assert rows == len(kept) < 20 < len(declared)
    assert height < height_all / 3, (height, height_all)  # the parameters' table, in pixels
