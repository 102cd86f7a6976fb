"""Request ids, JSON logs and health probes (bzzlite/http/observability.py)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from bzzlite import App, ConfigurationError, Registry
from bzzlite.testing import serve
from tests.test_cli import ENV, free_port, request
from tests.test_process import answers, wait_for


def make_app(**options: object) -> App:
    registry = Registry()

    @registry.resource
    class Thing(BaseModel):
        name: str

    return App(registry, db="sqlite:///:memory:", **options)


def test_request_id_is_honoured_or_generated_and_returned() -> None:
    with serve(make_app(cors=["http://shop.example"])) as client:
        assert client.get("/thing", headers={"X-Request-ID": "req-42.a:b_c"}).headers["X-Request-ID"] == "req-42.a:b_c"
        generated = {client.get("/thing").headers["X-Request-ID"] for _ in range(3)}
        assert len(generated) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", r) for r in generated)
        for insane in ("a b", "x" * 129, "<script>", ""):
            rid = client.get("/thing", headers={"X-Request-ID": insane}).headers["X-Request-ID"]
            assert re.fullmatch(r"[0-9a-f]{16}", rid), insane
        for reply in (client.get("/nowhere", headers={"X-Request-ID": "e1"}),
                      client.post("/thing", body=b"{", headers={"X-Request-ID": "e1"}),
                      client.request("OPTIONS", "/thing", headers={"X-Request-ID": "e1", "Origin": "http://shop.example",
                                                                   "Access-Control-Request-Method": "GET"})):
            assert reply.headers["X-Request-ID"] == "e1"
            assert reply.headers.get_all("X-Request-ID") == ["e1"]


def test_liveness_and_readiness() -> None:
    with serve(make_app()) as client:
        assert client.get("/_health/live").json() == {"status": "ok"}
        ready = client.get("/_health/ready")
        assert ready.code == 200 and ready.json()["status"] == "ok"
        assert client.get("/_health").json() == ready.json()  # kept
        assert client.post("/_health/live").code == 405


def test_bad_log_format() -> None:
    with pytest.raises(ConfigurationError, match="log_format is 'text' or 'json'"):
        make_app(log_format="xml")


APP = textwrap.dedent(
    """
    import logging
    from pydantic import BaseModel
    from bzzlite import App, Registry

    registry = Registry()

    @registry.resource
    class Thing(BaseModel):
        name: str

    @registry.on("pre_create_instance")
    def audit(sender, arguments, handler):
        logging.getLogger("shop").warning("creating %s", arguments["data"]["name"])

    app = App(registry=registry, db="sqlite:///obs.db"{options})
    """
)


@pytest.mark.parametrize("where", ["flag", "app"])
def test_json_log_lines_carry_the_request_id(tmp_path: Path, where: str) -> None:
    (tmp_path / "app.py").write_text(APP.format(options=', log_format="json"' if where == "app" else ""))
    port = free_port()
    flags = ["--log-format", "json"] if where == "flag" else []
    proc = subprocess.Popen([sys.executable, "-m", "bzzlite", "serve", "app.py:app", "--port", str(port), *flags],
                            cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: answers(port, "/_health/live") == 200, "the server")
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{port}/thing", data=b'{"name": "lamp"}', method="POST",
                                     headers={"Content-Type": "application/json", "X-Request-ID": "order-7"})
        with urllib.request.urlopen(req, timeout=10) as reply:
            assert reply.status == 201 and reply.headers["X-Request-ID"] == "order-7"
        assert request(port, "GET", "/thing")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    lines = [json.loads(line) for line in proc.stderr.read().splitlines()]  # every line is JSON
    mine = [entry for entry in lines if entry["request_id"] == "order-7"]
    assert [e["logger"] for e in mine] == ["shop", "tornado.access"]
    assert mine[0]["message"] == "creating lamp" and mine[0]["level"] == "warning"
    assert "201 POST /thing" in mine[1]["message"]
    assert {"time", "level", "logger", "message", "request_id"} == set(mine[0])
    others = [e for e in lines if e["logger"] == "tornado.access" and "GET /thing" in e["message"]]
    assert len(others) == 1 and re.fullmatch(r"[0-9a-f]{16}", others[0]["request_id"])
    assert any(e["request_id"] == "-" and "serving" in e["message"] for e in lines)  # outside any request


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_metrics_by_route_template_and_status(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client", reason="the metrics extra: pip install 'bzzlite[metrics]'")
    dead = App(Registry(), db=f"sqlite:///{tmp_path}/missing/dir/x.db", metrics=True)  # the store cannot open
    with serve(make_app(metrics=True)) as client, serve(dead) as broken:
        ids = [client.post("/thing", json={"name": str(i)}).json()["id"] for i in range(3)]
        for id_ in ids:
            assert client.get(f"/thing/{id_}").code == 200
        assert client.get("/thing/000000000000000000000000").code == 404
        assert client.get("/no/such/1").code == 404 and client.get("/no/such/2").code == 404
        reply = client.get("/_metrics")
        assert reply.code == 200 and reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.text
        assert sample(text, "bzzlite_requests_total", method="POST", route="/thing", status="201") == 3
        assert sample(text, "bzzlite_requests_total", method="GET", route="/thing/{id}", status="200") == 3
        assert sample(text, "bzzlite_requests_total", method="GET", route="/thing/{id}", status="404") == 1
        assert sample(text, "bzzlite_requests_total", method="GET", route="(unmatched)", status="404") == 2
        assert sample(text, "bzzlite_request_duration_seconds_count", method="GET", route="/thing/{id}") == 4
        assert sample(text, "bzzlite_feed_subscribers") == 0
        import socket

        with socket.create_connection(("127.0.0.1", client.port), timeout=10) as stream:
            stream.sendall(b"GET /thing HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            assert stream.recv(4096).startswith(b"HTTP/1.1 200")
            assert sample(client.get("/_metrics").text, "bzzlite_feed_subscribers") == 1
        assert sample(text, "bzzlite_store_errors_total") == 0
        assert "/no/such/1" not in text

        assert broken.get("/_health/ready").code == 503
        assert broken.get("/_health/live").code == 200
        assert sample(broken.get("/_metrics").text, "bzzlite_store_errors_total") == 1
    with serve(make_app()) as client:
        assert client.get("/_metrics").code == 404  # off by default
