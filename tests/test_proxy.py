"""Behind a reverse proxy (bzzlite/http/proxy.py): trusted forwarded headers, the root path, and a real
nginx in front (Debian's ``nginx``; skipped with the reason when /usr/sbin/nginx is missing)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.websocket

from bzzlite.http.proxy import parse_forwarded
from tests.test_cli import ENV, free_port

NGINX = Path("/usr/sbin/nginx")

APP = textwrap.dedent(
    """
    from pydantic import BaseModel
    from bzzlite import App, Registry

    registry = Registry()

    @registry.resource
    class Thing(BaseModel):
        name: str

    registry.mock([("GET", "/whoami", {"body": lambda r: {"ip": r.remote_ip, "scheme": r.protocol, "host": r.host}})])
    app = App(registry=registry)
    """
)

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream bzzlite {{ server 127.0.0.1:{app_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        location /api/ {{
            proxy_pass {pass_to};              # http://bzzlite passes /api on, http://bzzlite/ strips it
            proxy_http_version 1.1;
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;   # TLS ends here in production; see docs
            proxy_set_header Upgrade $http_upgrade;     # WebSocket change feeds
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;                        # Server-Sent Events arrive as sent
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def test_forwarded_parsing() -> None:
    assert parse_forwarded('for=192.0.2.60;proto=https;by=203.0.113.43, for="[2001:db8::1]:4711";host=a.example') == [
        {"for": "192.0.2.60", "proto": "https", "by": "203.0.113.43"},
        {"for": "[2001:db8::1]:4711", "host": "a.example"},
    ]


def get(port: int, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.headers, reply.read()
    finally:
        conn.close()


def wait_for(check, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def served(tmp_path: Path):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bzzlite", "serve", "app.py:app", "--port", str(port), "--db", "sqlite:///p.db",
         "--log-level", "warning", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1", "--root-path", "/api"],
        cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: get(port, "/_health")[0] == 200, "the app serves")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_headers_are_believed_from_trusted_peers_only(served: int) -> None:
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example"}
    _, _, body = get(served, "/whoami", forged, source="127.0.0.2")  # not a trusted proxy
    assert json.loads(body) == {"ip": "127.0.0.2", "scheme": "http", "host": f"127.0.0.1:{served}"}
    _, _, body = get(served, "/api/whoami", forged)  # from the trusted proxy, under the root path
    assert json.loads(body) == {"ip": "203.0.113.9", "scheme": "https", "host": "api.example"}
    rfc = {"Forwarded": 'for="[2001:db8::7]:4711";proto=https;host=b.example, for=127.0.0.1'}
    assert json.loads(get(served, "/whoami", rfc)[2]) == {"ip": "2001:db8::7", "scheme": "https", "host": "b.example"}


@contextlib.contextmanager
def nginx_in_front(folder: Path, app_port: int, *, strip: bool = False) -> Iterator[int]:
    """docs/deployment.md's nginx before the app on ``app_port``, under ``/api``: passing the prefix
    on (``proxy_pass http://bzzlite;``), or stripping it (``proxy_pass http://bzzlite/;``)."""
    if not NGINX.exists():
        print("SKIPPED: /usr/sbin/nginx is missing (apt-get install nginx)")
        pytest.skip("the nginx test needs Debian's nginx: apt-get install nginx")
    prefix = folder / "nginx"
    prefix.mkdir()
    port = free_port()
    pass_to = "http://bzzlite/" if strip else "http://bzzlite"
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=prefix, port=port, app_port=app_port,
                                                         pass_to=pass_to))
    proc = subprocess.Popen([str(NGINX), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
                             str(prefix / "error.log")], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: get(port, "/api/_health")[0] == 200, "nginx proxies")
        yield port
    finally:
        proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["keeps-the-prefix", "strips-it"])
def nginx(served: int, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    with nginx_in_front(tmp_path, served, strip=request.param == "strips-it") as port:
        yield port


def test_behind_nginx(nginx: int) -> None:
    _, _, body = get(nginx, "/api/whoami", source="127.0.0.2")
    assert json.loads(body) == {"ip": "127.0.0.2", "scheme": "https", "host": f"127.0.0.1:{nginx}"}

    conn = http.client.HTTPConnection("127.0.0.1", nginx, timeout=10)
    conn.request("POST", "/api/thing", body=json.dumps({"name": "a"}), headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    created = json.loads(reply.read())
    assert reply.status == 201
    assert reply.headers["Location"] == f"/api/thing/{created['id']}"
    conn.request("POST", "/api/thing", body=json.dumps({"name": "b"}), headers={"Content-Type": "application/json"})
    conn.getresponse().read()
    conn.request("GET", "/api/thing?per_page=1")
    reply = conn.getresponse()
    reply.read()
    assert '</api/thing?per_page=1&page=2>; rel="next"' in reply.headers["Link"]
    conn.request("GET", "/api/openapi.json")  # /docs calls the API through the prefix
    assert json.loads(conn.getresponse().read())["servers"] == [{"url": "/api"}]
    conn.request("GET", "/api/docs")  # and loads its files and the document through it
    page = conn.getresponse().read().decode()
    assert 'src="/api/docs/static/swagger-ui-bundle.js"' in page and '"/api/openapi.json"' in page
    conn.request("GET", "/api/docs/static/swagger-ui-bundle.js")
    reply = conn.getresponse()
    assert reply.status == 200 and reply.read()
    conn.close()

    # SSE: an event arrives through nginx while the stream stays open (not buffered)
    stream = socket.create_connection(("127.0.0.1", nginx), timeout=10)
    stream.sendall(b"GET /api/thing HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    received = stream.recv(4096)
    assert b"200" in received.split(b"\r\n")[0]
    get_status = get(nginx, "/api/_health")[0]
    assert get_status == 200
    conn = http.client.HTTPConnection("127.0.0.1", nginx, timeout=10)
    conn.request("POST", "/api/thing", body=json.dumps({"name": "live"}), headers={"Content-Type": "application/json"})
    conn.getresponse().read()
    conn.close()
    deadline = time.monotonic() + 10
    while b'"live"' not in received and time.monotonic() < deadline:
        received += stream.recv(4096)
    stream.close()
    assert b'"live"' in received

    async def websocket() -> str:
        socket_ = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{nginx}/api/thing/_changes")
        socket_.close()
        return "upgraded"

    assert asyncio.run(websocket()) == "upgraded"
