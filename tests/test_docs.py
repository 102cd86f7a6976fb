"""The documentation: every ```python block runs, and the site builds with --strict."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._processes import http, serve_workers, stop

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PAGES = sorted(p for p in DOCS.glob("*.md") if BLOCK.search(p.read_text()))


def checkout_env() -> dict[str, str]:
    """The environment of a subprocess that imports this checkout's bzzlite (not an installed one)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_in_page_runs(page: Path, tmp_path: Path) -> None:
    """A page's Python blocks run in order, as one program, in a fresh process."""
    program = "\n\n".join(BLOCK.findall(page.read_text()))
    script = tmp_path / f"{page.stem}.py"
    script.write_text(program)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env=checkout_env(), check=False)
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"


STEP = re.compile(r"^```python\n(# shelf\.py, step (\d+)\n.*?)^```", re.DOTALL | re.MULTILINE)


def test_each_tutorial_step_is_a_whole_file(tmp_path: Path) -> None:
    """Each step's ``shelf.py``, saved alone as the tutorial says, serves its routes."""
    steps = STEP.findall((DOCS / "tutorial.md").read_text())
    assert [int(number) for _, number in steps] == [1, 2, 3, 4, 5]
    env = {k: v for k, v in checkout_env().items() if k != "BZZLITE_AUTH_SECRET"}
    for source, number in steps:
        folder = tmp_path / f"step{number}"
        folder.mkdir()
        (folder / "shelf.py").write_text(source)
        routes = subprocess.run([sys.executable, "-m", "bzzlite", "routes", "shelf:app"], cwd=folder,
                                capture_output=True, text=True, timeout=60, env=env, check=False)
        assert routes.returncode == 0, f"step {number}: {routes.stderr[-3000:]}"
        assert "/book/{id}" in routes.stdout


def test_the_tutorials_local_sign_in_works_as_its_curl_lines_show(tmp_path: Path) -> None:
    """Step 5 served alone: sign in with the local token, write with the Bearer token."""
    source = dict((number, text) for text, number in STEP.findall((DOCS / "tutorial.md").read_text()))["5"]
    (tmp_path / "shelf.py").write_text(source)
    env = {k: v for k, v in checkout_env().items() if k != "BZZLITE_AUTH_SECRET"}
    proc, port = serve_workers(tmp_path, "shelf:app", f"sqlite:///{tmp_path / 'shelf.db'}", workers=1, env=env)
    try:
        status, headers, _ = http(port, "POST", "/auth/signin/",
                                  b'{"provider": "local-dev", "access_token": "ann-local-token"}')
        assert status == 200
        token = headers["Set-Cookie"].split("AUTH_TOKEN=", 1)[1].split(";", 1)[0]
        status, _, body = http(port, "POST", "/shelf", b'{"name": "to read"}', {"Authorization": f"Bearer {token}"})
        assert status == 201 and json.loads(body)["owner"] == "ann"
        assert list(json.loads(body)) == ["id", "name", "owner", "books"]  # as the page shows it
        assert http(port, "POST", "/shelf", b'{"name": "x"}')[0] == 401
    finally:
        stop(proc)


def test_the_testing_pages_fixtures_run_under_pytest(tmp_path: Path) -> None:
    """docs/testing.md's conftest.py and async test, as a project of their own: pytest runs the
    test (with its anyio marker) on the ``async_client`` fixture."""
    blocks = BLOCK.findall((DOCS / "testing.md").read_text())
    notes = next(b for b in blocks if "def make_notes_app" in b)
    conftest = next(b for b in blocks if b.startswith("# conftest.py"))
    test = next(b for b in blocks if b.startswith("# test_notes.py"))
    (tmp_path / "notes.py").write_text(notes)
    (tmp_path / "conftest.py").write_text("from notes import make_notes_app\n" + conftest)
    (tmp_path / "test_notes.py").write_text(test)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=checkout_env(), check=False)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]


def test_site_builds_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=DOCS.parent, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_api_reference_covers_the_public_surface() -> None:
    """Every name ``bzzlite`` and ``bzzlite.auth`` export is in the generated reference."""
    import bzzlite
    import bzzlite.auth

    reference = (DOCS / "reference.md").read_text()
    members = " ".join(re.findall(r"members: \[(.*?)\]", reference))  # names listed under a module
    missing = [name for name in bzzlite.__all__ if f"bzzlite.{name}" not in reference
               and f"Registry.{name}" not in reference and not re.search(rf"\b{name}\b", members)]
    assert missing == []
    documented = {"Auth", "AuthProvider", "GoogleProvider", "GitHubProvider", "FacebookProvider", "authenticated"}
    assert documented <= set(bzzlite.auth.__all__)
    assert all(f"::: bzzlite.auth.{name}" in reference for name in documented)


def test_the_site_has_the_generated_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--site-dir", str(site)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    page = (site / "reference" / "index.html").read_text()
    for anchor in ("bzzlite.App", "bzzlite.Registry.resource", "bzzlite.signals.check_receiver",
                   "bzzlite.auth.Auth", "bzzlite.testing.serve", "bzzlite.errors.HTTPError"):
        assert f'id="{anchor}"' in page, anchor
    assert "Serve a pydantic (or ODMantic) model as a REST collection" in page  # a docstring, rendered
