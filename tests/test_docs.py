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
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
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
                            timeout=120, env=checkout_env())
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"


def test_site_builds_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=DOCS.parent, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
