"""CORS in a real browser: a page of another loopback origin signs in and writes with credentials;
a page of an origin not allowed is refused by the browser.

Debian's Chromium driven by Playwright (tests/_browser.py); skipped without them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bzzlite.cors import CORS
from bzzlite.testing import serve
from tests._browser import require
from tests.test_cors import make_app

require()

PAGE = b"<!doctype html><title>another origin</title><p>a page that calls the API</p>"

SCRIPT = """async (api) => {
  const headers = {"Content-Type": "application/json", "X-Requested-With": "fetch"};
  try {
    const signin = await fetch(api + "/auth/signin/", {method: "POST", credentials: "include", headers,
                                                        body: JSON.stringify({provider: "token", access_token: "good"})});
    const me = await (await fetch(api + "/auth/me/", {credentials: "include"})).json();
    const created = await fetch(api + "/secret", {method: "POST", credentials: "include",
                                                   headers, body: JSON.stringify({text: "from another origin"})});
    const id = (await created.json()).id;
    const patched = await fetch(api + "/secret/" + id, {method: "PATCH", credentials: "include", headers,
                                                        body: JSON.stringify({text: "patched"})});
    return {signin: signin.status, me, created: created.status, location: created.headers.get("Location"),
            etag: created.headers.get("ETag"), patched: patched.status};
  } catch (error) {
    return {refused: String(error)};
  }
}"""


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    """A plain page on a free loopback port: another origin than the API's."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_another_origin_fetches_with_credentials_and_a_stranger_is_refused(browser: Any) -> None:
    with page_server() as allowed, page_server() as stranger:
        app = make_app(cors=CORS(origins=[allowed], credentials=True), auth=True)
        with serve(app) as client:
            page = browser.new_page()
            page.goto(allowed + "/")
            result = page.evaluate(SCRIPT, client.base_url)
            assert result["signin"] == 200
            assert result["me"]["authenticated"] is True and result["me"]["userData"]["name"] == "Ann"
            assert result["created"] == 201 and result["patched"] == 200  # PATCH needed a preflight
            assert result["location"].startswith("/secret/")  # exposed headers are readable
            assert result["etag"]
            assert client.get("/secret", headers={"Authorization": "Bearer x"}).code == 401

            page = browser.new_page()
            page.goto(stranger + "/")
            result = page.evaluate(SCRIPT, client.base_url)
            assert result == {"refused": "TypeError: Failed to fetch"}
