"""bzzlite/http/dispatch.py: App.find_handler's index of rules by first path segment picks what
Tornado's own router picks, for every route of real apps and for paths nothing serves; the
handler delegate starts a request without a body whole on bzzlite's server."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
import tornado.web
from pydantic import BaseModel, create_model
from tornado import httputil

from bzzlite import App, Handler, Registry
from bzzlite.http.dispatch import first_segment
from bzzlite.http.observability import current_request_id
from bzzlite.mocks import sample_paths
from bzzlite.testing import serve
from tests.test_cors import make_app
from tests.test_custom_routes import load_shop


class _Connection:
    context = None

    def set_close_callback(self, callback) -> None:
        pass


def request(path: str, method: str = "GET") -> httputil.HTTPServerRequest:
    return httputil.HTTPServerRequest(start_line=httputil.RequestStartLine(method, path, "HTTP/1.1"),
                                      headers=httputil.HTTPHeaders({"Host": "x"}), connection=_Connection())


def many_resources() -> App:
    registry = Registry()
    for i in range(12):
        registry.resource(create_model(f"Thing{i}", name=(str, ...)))

    class Page(BaseModel):
        text: str

    registry.resource(Page)
    registry.mock([("GET", "/thing3/special", {"body": "mocked"}), ("GET", "/legacy/(.*)", {"body": "old"}),
                   ("GET", "/old/other", {"body": "literal"}), ("GET", "/(old|older)/page", {"body": "any"})])
    return App(registry, db="sqlite:///:memory:")


@pytest.mark.parametrize("build", [many_resources, lambda: load_shop().app, lambda: make_app(auth=True)],
                         ids=["many", "shop", "auth"])
def test_the_index_picks_what_tornado_picks(build) -> None:
    app = build()
    paths = {"/", "", "/nope", "/nope/x", "/%74hing0", "/THING0", "/thing0x", "/thing", "/openapi.json",
             "/openapi.jsonx", "/docs", "/legacy/a/b", "/old/page", "/older/page", "/old/other"}
    for route in app.routes:
        for path in sample_paths(route.rule()[0]):
            paths.update({path, path + "/", path + "/extra", path.upper()})
    for path in sorted(paths):
        for method in ("GET", "POST"):
            ours = app.find_handler(request(path or "/", method))
            tornados = tornado.web.Application.find_handler(app, request(path or "/", method))
            assert ours.handler_class is tornados.handler_class, path
            assert (ours.path_args, ours.path_kwargs, ours.handler_kwargs) == \
                (tornados.path_args, tornados.path_kwargs, tornados.handler_kwargs), path


def test_rules_added_later_are_routed() -> None:
    app = many_resources()
    app.find_handler(request("/thing0"))  # the index is built

    class Late(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("late")

    app.wildcard_router.add_rules([(r"/late", Late)])
    assert app.find_handler(request("/late")).handler_class is Late
    app.add_handlers(r"other\.example", [(r"/thing0", Late)])  # a host's rules: Tornado's own routing
    assert app.find_handler(request("/late")).handler_class is Late


@pytest.mark.parametrize(("pattern", "segment"), [
    ("/thing0/(?P<id>[^/]+)/?$", "thing0"), ("/thing0$", "thing0"), ("/$", ""), ("/openapi.json$", None),
    ("/(?P<x>.*)$", None), ("/auth/signin/$", "auth"), ("thing$", None),
])
def test_first_segment(pattern: str, segment: str | None) -> None:
    assert first_segment(tornado.routing.Rule(tornado.routing.PathMatches(pattern), object)) == segment


def _seen_app() -> tuple[App, list[tuple[str, bool, bool]]]:
    """An app whose handler notes, at prepare(), whether the request's body had ended and
    whether Tornado waits for prepare() before sending it the body."""
    seen: list[tuple[str, bool, bool]] = []
    registry = Registry()

    @registry.route("/probe", methods=["GET", "POST", "DELETE"])
    class Probe(Handler):
        ALLOWED = ("GET", "POST", "DELETE")

        def prepare(self) -> None:
            super().prepare()
            seen.append((self.request.method, self.request._body_future.done(), self._prepared_future is not None))

        def get(self) -> None:
            self.write_json({"context": current_request_id.get()})

        def post(self) -> None:
            self.write_json({"size": len(self.body)})

        def delete(self) -> None:
            self.set_status(204)

    return App(registry, db="sqlite:///:memory:"), seen


@pytest.mark.parametrize("http", ["httptools", "tornado"])
def test_a_request_without_a_body_starts_whole_on_bzzlites_server(http: str) -> None:
    app, seen = _seen_app()
    with serve(app, http=http) as client:
        got = client.get("/probe", headers={"X-Request-Id": "probe-1"})
        assert (got.code, got.json()) == (200, {"context": "probe-1"})  # initialize()'s context reaches the task
        assert client.post("/probe", body=b"x" * 1000).json() == {"size": 1000}
        assert client.delete("/probe").code == 204
    whole = http == "httptools"  # Tornado's own server keeps Tornado's way for every request
    assert seen == [("GET", whole, not whole), ("POST", False, True), ("DELETE", whole, not whole)]


def test_a_handler_waiting_on_what_only_it_holds_is_not_collected() -> None:
    # asyncio holds tasks weakly: a handler's task waiting on a future nothing else references is
    # garbage, unless the delegate that started it keeps it (Tornado's IOLoop did).
    registry = Registry()

    @registry.route("/wait", methods=["GET"])
    class Wait(Handler):
        ALLOWED = ("GET",)

        async def get(self) -> None:
            loop = asyncio.get_running_loop()
            future = loop.create_future()  # held by this coroutine only: the task is all that keeps it
            held = weakref.ref(future)

            def wake() -> None:
                gc.collect()
                if held() is not None:
                    held().set_result("woken")  # type: ignore[union-attr]

            loop.call_later(0.05, wake)
            self.write_json({"result": await future})

    with serve(App(registry, db="sqlite:///:memory:")) as client:
        assert client.get("/wait", timeout=3).json() == {"result": "woken"}


def test_a_handler_renders_tornado_templates_with_the_apps_ui_methods(tmp_path) -> None:
    # BaseHandler builds Tornado's template namespace (``ui``) on first use, not per request:
    # a custom handler that renders a template still sees the app's ui_methods and ui_modules.
    (tmp_path / "hello.html").write_text("{{ shout(name) }} {% module Badge(name) %}")
    registry = Registry()

    class Badge(tornado.web.UIModule):
        def render(self, name: str) -> str:
            return f"<b>{name}</b>"

    @registry.route("/hello/{name}", methods=["GET"])
    class Hello(Handler):
        ALLOWED = ("GET",)

        def get(self, name: str) -> None:
            self.render("hello.html", name=name)

    app = App(registry, db="sqlite:///:memory:", template_path=str(tmp_path),
              ui_methods={"shout": lambda handler, text: text.upper() + "!"}, ui_modules={"Badge": Badge})
    with serve(app) as client:
        got = client.get("/hello/ann")
        assert (got.code, got.body.strip()) == (200, b"ANN! <b>ann</b>")


def upload_app(seen: list[str]) -> App:
    """A handler that records prepare(), the body's arrival, the method, and the next turn of
    the loop after prepare() (tests/test_http11.py uses it too)."""
    registry = Registry()

    @registry.route("/upload", methods=["POST"])
    class Upload(Handler):
        ALLOWED = ("POST",)

        def prepare(self) -> None:
            super().prepare()
            seen.append("prepare")
            asyncio.get_running_loop().call_soon(seen.append, "next turn")

        def data_received(self, chunk: bytes) -> None:
            seen.append("data")
            super().data_received(chunk)

        def post(self) -> None:
            seen.append("post")
            self.write_json({"size": len(self.body)})

    return App(registry, db="sqlite:///:memory:")


@pytest.mark.parametrize("http", ["httptools", "tornado"])
def test_a_handler_is_prepared_then_gets_its_body_then_its_method_runs(http: str) -> None:
    seen: list[str] = []
    with serve(upload_app(seen), http=http) as client:
        assert client.post("/upload", body=b"y" * 100).json() == {"size": 100}
    assert [step for step in seen if step != "next turn"] == ["prepare", "data", "post"]


def test_headers_made_empty_still_take_what_httpheaders_takes() -> None:
    # bzzlite.http.headers.Headers skips only update()'s work when there is nothing to add.
    from bzzlite.http.headers import Headers

    assert dict(Headers()) == {}
    made = Headers({"content-type": "a/b"}, x_thing="1")
    assert isinstance(made, httputil.HTTPHeaders) and dict(made) == {"Content-Type": "a/b", "X_thing": "1"}
    made.add("Set-Cookie", "a=1")
    made.add("set-cookie", "b=2")
    made.update({"Vary": "Origin"})
    assert made.get_list("Set-Cookie") == ["a=1", "b=2"] and made["Vary"] == "Origin"
    copied = httputil.HTTPHeaders(made)
    assert sorted(copied.get_all()) == sorted(made.get_all())
    with pytest.raises(httputil.HTTPInputError):
        Headers().add("Bad Name", "x")


@pytest.mark.parametrize("uri", ["/item/abc", "/", "/item?category=a&x=1&x=2", "/a?", "/%C3%A9t%C3%A9"])
@pytest.mark.parametrize("version,host", [
    ("HTTP/1.1", "example.org"), ("HTTP/1.1", "EXAMPLE.org:8080"), ("HTTP/1.1", "[::1]:80"), ("HTTP/1.1", ""),
    ("HTTP/1.1", "x.org:port"), ("HTTP/1.0", None),
    ("HTTP/1.1", None), ("HTTP/1.1", "a b"), ("HTTP/1.1", "x.org,y.org"), ("HTTP/1.1", "caf\xe9.org"),
])
def test_bzzlites_request_is_tornados(uri: str, version: str, host: str | None) -> None:
    # bzzlite.http.dispatch.Request builds a request without a query in fewer steps: the same
    # attributes as Tornado's HTTPServerRequest, or the same refusal, whatever the target,
    # version and Host.
    from bzzlite.http.dispatch import Request

    class Context:
        remote_ip, protocol = "10.0.0.9", "https"

    connection = _Connection()
    connection.context = Context()
    start_line = httputil.RequestStartLine("GET", uri, version)
    headers = httputil.HTTPHeaders({"Host": host} if host is not None else {})

    def made(build):
        try:
            return build()
        except httputil.HTTPInputError as exc:
            return f"refused: {exc}"

    ours = made(lambda: Request(connection, "server", start_line, headers))
    tornados = made(lambda: httputil.HTTPServerRequest(connection=connection, server_connection="server",
                                                       start_line=start_line, headers=headers))
    if isinstance(tornados, str):
        assert ours == tornados
        return
    started = tornados._start_time
    state, expected = vars(ours), vars(tornados)
    assert abs(state.pop("_start_time") - started) < 5 and expected.pop("_start_time") == started
    assert state == expected
    assert ours.full_url() == tornados.full_url()
