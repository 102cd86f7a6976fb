"""examples/auth.py works as its docstring says: each user reaches only their own notes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bzzlite.testing import serve

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "auth.py"


def load_example():
    spec = importlib.util.spec_from_file_location("bzzlite_example_auth", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sign_in(client, token):
    response = client.post("/auth/signin/", json={"provider": "local-dev", "access_token": token})
    assert response.code == 200
    return response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def test_the_auth_example(store_url):
    example = load_example()
    example.app.use_store(store_url)
    with serve(example.app) as client:
        alice, bob = sign_in(client, "alice-local-token"), sign_in(client, "bob-local-token")
        as_alice = {"Authorization": f"Bearer {alice}"}
        as_bob_in_a_browser = {"Cookie": f"AUTH_TOKEN={bob}", "X-Requested-With": "fetch"}

        assert client.get("/note").code == 401
        note = client.post("/note", json={"text": "milk", "owner": "bob"}, headers=as_alice).json()
        assert note["owner"] == "alice"
        assert client.post("/note", json={"text": "bread"}, headers=as_bob_in_a_browser).code == 201

        mine = client.get("/note", headers=as_alice).json()
        assert [n["text"] for n in mine["items"]] == ["milk"]
        # a client's own filter holds as well as the scope: asking for Bob's notes finds none
        assert client.get("/note", params={"owner": "bob"}, headers=as_alice).json()["total"] == 0

        item = f"/note/{note['id']}"
        unknown = client.get("/note/0123456789abcdef01234567", headers=as_bob_in_a_browser).json()
        for response in (client.get(item, headers=as_bob_in_a_browser),
                         client.put(item, json={"text": "mine now"}, headers=as_bob_in_a_browser),
                         client.patch(item, json={"owner": "bob"}, headers=as_bob_in_a_browser),
                         client.delete(item, headers=as_bob_in_a_browser)):
            assert response.code == 404  # outside Bob's scope: the same answer as an unknown id
            assert response.json() == unknown
        assert client.put(item, json={"text": "oat milk"}, headers=as_alice).json()["owner"] == "alice"
        assert client.patch(item, json={"owner": "bob"}, headers=as_alice).json()["owner"] == "alice"
        assert client.get("/note/0123456789abcdef01234567", headers=as_alice).code == 404

        me = client.get("/auth/me/", headers=as_alice).json()
        assert me == {"authenticated": True, "userData": {"id": "alice", "email": "alice@localhost",
                                                          "name": "Alice", "provider": "local-dev", "initial": "A"}}
        assert client.delete(item, headers=as_alice).code == 204
        assert client.post("/auth/signin/", json={"provider": "local-dev", "access_token": "guess"}).code == 401
