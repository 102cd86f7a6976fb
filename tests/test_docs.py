"""The documentation: every ```python block runs, and the site builds with --strict."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
