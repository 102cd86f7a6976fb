"""Mock routes (bzz's MockHive): declared on a registry, served by the same App."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import bzzlite
from bzzlite import App, ConfigurationError, Registry
from bzzlite.testing import serve


def make_app(entries, tmp_path, **options) -> App:
    registry = Registry()

    @registry.resource
    class Item(BaseModel):
        name: str

    registry.mock(entries)
    return App(registry, db=f"sqlite:///{tmp_path}/mock.db", **options)


def test_the_seed_example(tmp_path):
    app = make_app([
        ("GET", "/much/api", {"body": "much api"}),
        ("POST", "/much/api"),
        ("*", r"/such/.*", {"cookies": {"cookie": "param"}}),
        ("*", "/very/api", {"status": 202}),
    ], tmp_path)
    with serve(app) as client:
        got = client.get("/much/api")
        assert got.code == 200
        assert got.body == b"much api"
        assert got.headers["Content-Type"] == "text/plain; charset=utf-8"
        posted = client.post("/much/api", body=b"anything")
        assert posted.code == 200
        assert posted.body == b""
        for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
            such = client.request(method, "/such/api/deeper")
            assert such.code == 200
            assert "cookie=param" in such.headers["Set-Cookie"]
        assert client.put("/very/api").code == 202
        # the resource next to them still works
        assert client.post("/item", json={"name": "x"}).code == 201


def test_json_bytes_headers_and_status(tmp_path):
    app = make_app([
        ("GET", "/json", {"body": {"such": ["doge"]}, "status": 201, "headers": {"X-Wow": "very"}}),
        ("GET", "/list", {"body": [1, 2]}),
        ("GET", "/bytes", {"body": b"\x00\x01"}),
        ("GET", "/typed", {"body": "<b>hi</b>", "headers": {"Content-Type": "text/html"}}),
        ("DELETE", "/gone", {"status": 204}),
    ], tmp_path)
    with serve(app) as client:
        got = client.get("/json")
        assert got.code == 201
        assert got.json() == {"such": ["doge"]}
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["X-Wow"] == "very"
        assert client.get("/list").json() == [1, 2]
        raw = client.get("/bytes")
        assert raw.body == b"\x00\x01"
        assert raw.headers["Content-Type"] == "application/octet-stream"
        assert client.get("/typed").headers["Content-Type"] == "text/html"
        gone = client.delete("/gone")
        assert gone.code == 204
        assert gone.body == b""


def test_callable_bodies_see_the_request(tmp_path):
    async def later(request):
        return {"path": request.path, "query": request.query}

    app = make_app([
        ("POST", "/echo", {"body": lambda request: request.body.upper()}),
        ("GET", r"/user/(\d+)", {"body": lambda request: f"user {request.path.rsplit('/', 1)[1]}"}),
        ("GET", "/async", {"body": later}),
    ], tmp_path)
    with serve(app) as client:
        echoed = client.post("/echo", body=b"much data")
        assert echoed.code == 200
        assert echoed.body == b"MUCH DATA"
        assert client.get("/user/42").text == "user 42"
        assert client.get("/async?a=1").json() == {"path": "/async", "query": "a=1"}


def test_callable_raising_http_error_and_bug(tmp_path):
    def forbidden(request):
        raise bzzlite.HTTPError(403, "no mocks for you")

    def buggy(request):
        raise RuntimeError("oops")

    app = make_app([("GET", "/forbidden", {"body": forbidden}), ("GET", "/buggy", {"body": buggy})], tmp_path)
    with serve(app) as client:
        refused = client.get("/forbidden")
        assert refused.code == 403
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.json()["detail"] == "no mocks for you"
        failed = client.get("/buggy")
        assert failed.code == 500
        assert b"oops" not in failed.body
        assert b"Traceback" not in failed.body


def test_unmatched_method_is_405_with_allow(tmp_path):
    app = make_app([
        ("GET", "/much/api", {"body": "much api"}),
        ("PUT", r"/much/.*", {"body": "put"}),
    ], tmp_path)
    with serve(app) as client:
        refused = client.post("/much/api")
        assert refused.code == 405
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.headers["Allow"] == "GET, PUT"
        assert refused.json()["status"] == 405
        # the regex mock answers the method the literal one does not take
        assert client.put("/much/api").text == "put"
        assert client.request("PROPFIND", "/much/api").code == 405


def test_first_declared_mock_wins(tmp_path):
    app = make_app([("GET", r"/a/.*", {"body": "regex"}), ("GET", "/a/b", {"body": "literal"})], tmp_path)
    with serve(app) as client:
        assert client.get("/a/b").text == "regex"


def test_body_size_limit_applies(tmp_path):
    app = make_app([("POST", "/echo", {"body": lambda r: r.body})], tmp_path, max_body_size=10)
    with serve(app) as client:
        assert client.post("/echo", body=b"x" * 100).code == 413


def test_default_registry_binding():
    assert bzzlite.mock == bzzlite.default_registry.mock
    assert "mock" in bzzlite.__all__


@pytest.mark.parametrize("url", ["/item", "/item/", r"/item/.*", r"/.*", "/_health", "/openapi.json", r"/docs/.+"])
def test_collision_with_an_app_route_is_a_configuration_error(tmp_path, url):
    with pytest.raises(ConfigurationError, match="give the mock a URL of its own"):
        make_app([("GET", url, {"body": "x"})], tmp_path)


def test_docs_paths_are_free_for_mocks_when_docs_are_off(tmp_path):
    app = make_app([("GET", "/docs", {"body": "my docs"})], tmp_path, docs=False)
    with serve(app) as client:
        assert client.get("/docs").text == "my docs"
        assert client.get("/openapi.json").code == 404


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("GET",), "expected \\(method, url\\)"),
        ("GET /x", "expected \\(method, url\\)"),
        (("FETCH", "/x"), "mocks answer"),
        (("GE T", "/x"), "HTTP method"),
        (("GET", "x"), 'starting with "/"'),
        (("GET", "/x(", {}), "not a valid regular expression"),
        (("GET", r"/(?P<a>\d)/(\d)"), "name all the groups"),
        (("GET", "/x", {"bdy": "typo"}), "unknown option\\(s\\) bdy"),
        (("GET", "/x", {"status": 99}), "status is an HTTP status"),
        (("GET", "/x", {"status": "200"}), "status is an HTTP status"),
        (("GET", "/x", {"body": object()}), "a mock body must be"),
        (("GET", "/x", {"status": 204, "body": "x"}), "has no body"),
        (("GET", "/x", {"headers": {"X": "a\nb"}}), "forbidden characters"),
        (("GET", "/x", {"headers": {"Bad Name": "a"}}), "not a valid header name"),
        (("GET", "/x", {"cookies": {"c": "a b"}}), "forbidden characters"),
        (("GET", "/x", {"cookies": ["c"]}), "dict of names to values"),
    ],
)
def test_malformed_entries_name_the_fix(entry, message):
    with pytest.raises(ConfigurationError, match=message):
        Registry().mock([entry])


def test_declaring_a_mock_twice_or_late_is_an_error(tmp_path):
    registry = Registry()
    registry.mock([("GET", "/x")])
    with pytest.raises(ConfigurationError, match="declared twice"):
        registry.mock([("get", "/x")])
    App(registry, db=f"sqlite:///{tmp_path}/late.db")
    with pytest.raises(ConfigurationError, match="bzzlite.mock after an App was built"):
        registry.mock([("GET", "/y")])
