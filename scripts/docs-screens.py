"""Screenshots of /docs for examples/catalog.py in Debian's Chromium (for before/after comparisons).

    python scripts/docs-screens.py OUT_DIR [LABEL]

Saves OUT_DIR/docs-list-LABEL.png (the products list operation, expanded) and
OUT_DIR/docs-create-LABEL.png (the create operation with its request example).
Run from a checkout: it serves that checkout's bzzlite on a free loopback port.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright

from bzzlite.testing import serve
from examples.catalog import make_app
from tests._browser import ARGS, CHROMIUM


def main(out: Path, label: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with serve(make_app("sqlite:///:memory:")) as client, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            for name, operation in (("list", "list_products"), ("create", "create_products")):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{client.base_url}/docs#/products/{operation}")
                block = page.locator(f"#operations-products-{operation}")
                block.locator(".opblock-body").wait_for(timeout=15000)
                page.wait_for_timeout(500)
                block.screenshot(path=str(out / f"docs-{name}-{label}.png"))
                print(name, label, round(block.bounding_box()["height"]), "px")
                page.close()
        finally:
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "after")
