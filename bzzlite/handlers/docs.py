"""``GET /openapi.json`` and ``GET /docs``: the app's OpenAPI document and Swagger UI.

Swagger UI's files come from the installed ``swagger-ui-py`` package and are served by
the app itself under ``/docs/static/``, so the page works with no internet access.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import HTTPError
from ..http import jsoncodec as _json
from ..routing import Route
from .base import BaseHandler

if TYPE_CHECKING:
    from ..runtime import Runtime

#: The Swagger UI files the page loads, with their media types.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
_PACKAGE = "swagger_ui"  # the import name of the swagger-ui-py distribution

#: Loads the document, folds the ``field__op`` filter parameters of list operations into the
#: Markdown table their description already holds (93 rows for 7 fields otherwise), unless the
#: page is opened with ``?filters=all``, and starts Swagger UI on it. The document itself, which
#: client generators read, keeps every parameter typed.
_SCRIPT = """
    const showAll = new URLSearchParams(window.location.search).get("filters") === "all";
    function fold(spec) {
      Object.keys(spec.paths || {}).forEach(function (path) {
        const op = spec.paths[path].get;
        if (!op || !op.parameters) { return; }
        const kept = op.parameters.filter(function (p) { return !(p.in === "query" && p.name.indexOf("__") > 0); });
        const folded = op.parameters.length - kept.length;
        if (folded === 0) { return; }
        op.parameters = kept;
        op.description = (op.description || "") + "\\n\\n" + folded + " operator parameters (`field__op`, as in "
          + "the table) are folded here to keep this page short: [show them all](?filters=all" + window.location.hash + ")."
          + " Try-it-out then offers each one.";
      });
      return spec;
    }
    // Try-it-out requests to the app itself carry the header a cookie-authenticated write needs,
    // as the app's own pages do: once signed in (POST /auth/signin/ right here), writes work.
    function sameSiteHeader(request) {
      if (CSRF_HEADER && new URL(request.url, window.location.href).origin === window.location.origin) {
        request.headers[CSRF_HEADER] = "swagger-ui";
      }
      return request;
    }
    fetch(DOCUMENT_URL).then(function (r) { return r.json(); }).then(function (spec) {
      window.ui = SwaggerUIBundle({
        spec: showAll ? spec : fold(spec),
        dom_id: "#swagger-ui",
        deepLinking: true,
        layout: "BaseLayout",
        validatorUrl: null,
        requestInterceptor: sameSiteHeader,
        presets: [SwaggerUIBundle.presets.apis]
      });
    });
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="{root}/docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="{root}/docs/static/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{root}/docs/static/swagger-ui-bundle.js"></script>
  <script>{script}</script>
</body>
</html>
"""


@functools.cache
def asset_dir() -> Path | None:
    """Where swagger-ui-py keeps Swagger UI's files; found without importing the package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


@functools.cache
def _asset(name: str) -> bytes:
    folder = asset_dir()
    assert folder is not None
    return (folder / name).read_bytes()


class OpenAPIHandler(BaseHandler):
    """``GET /openapi.json``: built on first request, then served from memory."""

    ALLOWED = ("GET",)

    def initialize(self, runtime: Runtime, document: Callable[[], bytes], **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.document = document

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(self.document())


class DocsHandler(BaseHandler):
    """``GET /docs``: Swagger UI for ``/openapi.json``."""

    ALLOWED = ("GET",)

    def get(self) -> None:
        if asset_dir() is None:
            raise HTTPError(501, "The docs page needs the swagger-ui-py package: pip install swagger-ui-py "
                                 "(or build the App with docs=False).")
        title = html.escape(f"{self.runtime.settings.title} - docs")
        root = self.runtime.settings.root_path  # behind a proxy, the page's URLs go through its prefix
        self.set_header("Content-Type", "text/html; charset=utf-8")
        script = (_SCRIPT.replace("DOCUMENT_URL", _script_value(f"{root}/openapi.json"), 1)
                  .replace("CSRF_HEADER", _script_value(csrf_header(self.runtime)), 2))
        self.finish(_PAGE.format(title=title, script=script, root=html.escape(root)))


def csrf_header(runtime: Runtime) -> str | None:
    """The header the app's auth policy wants on a cookie-authenticated write (None without auth)."""
    config = getattr(runtime.auth, "auth", None)
    return getattr(config, "csrf_header", None)


def _script_value(value: str | None) -> str:
    """``value`` as a JavaScript literal inside a ``<script>`` element."""
    return json.dumps(value).replace("<", "\\u003c")


class AssetHandler(BaseHandler):
    """``GET /docs/static/{file}``: the few Swagger UI files the page loads."""

    ALLOWED = ("GET",)

    def get(self, name: str) -> None:
        if name not in ASSETS or asset_dir() is None:
            raise HTTPError(404, "No route matches this URL.")
        self.set_header("Content-Type", ASSETS[name])
        self.set_header("Cache-Control", "public, max-age=86400")
        self.finish(_asset(name))


def docs_routes(runtime: Runtime, build: Callable[[], dict[str, Any]]) -> list[Route]:
    """The routes of ``/openapi.json``, ``/docs`` and its files; ``build`` makes the document."""
    document = functools.cache(lambda: _json.dumps(build()))
    kwargs = {"runtime": runtime}
    return [
        Route("/openapi.json", ("GET",), "docs", OpenAPIHandler, {**kwargs, "document": document},
              pattern=r"/openapi\.json"),  # no trailing slash: a file's name
        Route("/docs", ("GET",), "docs", DocsHandler, kwargs),
        Route("/docs/static/{name}", ("GET",), "docs", AssetHandler, kwargs, pattern=r"/docs/static/([^/]+)"),
    ]
