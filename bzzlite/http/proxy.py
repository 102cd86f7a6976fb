"""Behind a reverse proxy: the client's address, scheme and host from trusted proxies' headers,
and the path prefix the app is mounted under.

The meaning is uvicorn's (``--proxy-headers``, ``--forwarded-allow-ips``): ``X-Forwarded-For``,
``X-Forwarded-Proto`` and ``X-Forwarded-Host``, or RFC 7239 ``Forwarded``, are believed only
when the connection comes from a trusted address; the client is the rightmost address of the
chain that is not itself a trusted proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_PAIR = re.compile(r'\s*([a-zA-Z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


def trusted_set(addresses: Iterable[str] | str) -> frozenset[str]:
    """``--forwarded-allow-ips`` as a set; ``"*"`` in it trusts every peer."""
    if isinstance(addresses, str):
        addresses = addresses.split(",")
    return frozenset(a.strip() for a in addresses if a.strip())


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded`` as one dict per proxy hop (keys lower-cased, quotes removed)."""
    hops = []
    for element in value.split(","):
        hop = {}
        for pair in element.split(";"):
            match = _PAIR.fullmatch(pair)
            if match:
                hop[match.group(1).lower()] = match.group(2).strip('"')
        hops.append(hop)
    return hops


def _address(node: str) -> str:
    """``for=`` node: ``"[2001:db8::1]:4711"`` -> ``2001:db8::1``, ``192.0.2.1:80`` -> ``192.0.2.1``."""
    node = node.strip()
    if node.startswith("["):
        return node[1:].split("]")[0]
    return node.split(":")[0] if node.count(":") == 1 else node


def apply_proxy_headers(request: Any, trusted: frozenset[str]) -> None:
    """Rewrite ``request.remote_ip``, ``protocol`` and ``host`` from a trusted proxy's headers."""
    if "*" not in trusted and request.remote_ip not in trusted:
        return
    headers = request.headers
    forwarded = headers.get("Forwarded")
    if forwarded is not None:  # each hop tells what the proxy that wrote it received
        hops = parse_forwarded(forwarded)
        index = next((i for i in range(len(hops) - 1, -1, -1)
                      if _address(hops[i].get("for", "")) not in trusted), 0)
        hop = hops[index]
        if "for" in hop:
            request.remote_ip = _address(hop["for"])
        proto, host = hop.get("proto"), hop.get("host")
    else:
        chain = [a.strip() for a in headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if chain:
            request.remote_ip = next((a for a in reversed(chain) if a not in trusted), chain[0])
        proto = headers.get("X-Forwarded-Proto", "").split(",")[-1].strip() or None
        host = headers.get("X-Forwarded-Host", "").split(",")[-1].strip() or None
    if proto is not None and proto.lower() in ("http", "https"):
        request.protocol = proto.lower()
    if host:
        request.host = host
        request.host_name = host.rsplit(":", 1)[0] if not host.endswith("]") else host


def strip_root_path(request: Any, root_path: str) -> None:
    """Route ``/api/thing`` as ``/thing`` when the app is mounted under ``root_path`` ``/api``
    and the proxy passes the prefix on (a proxy that strips it needs nothing)."""
    path = request.path
    if path == root_path or path.startswith(root_path + "/"):
        request.path = path[len(root_path):] or "/"
        request.uri = request.uri[len(root_path):] or "/"
