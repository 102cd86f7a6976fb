"""The benchmark harness's smallest configuration runs, so it cannot rot (no timings asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/install-test-deps installs it)")
def test_quick_benchmark_measures_every_stack(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "quick.json").read_text())
    assert not report["failures"]
    measured = {(row["stack"], row["workload"]) for row in report["summary"]
                if row["cpu_us_per_request"] > 0 and row["errors"] == 0}
    stacks = ("bzzlite", "bzzlite_tornado", "tornado_raw", "fastapi", "starlette", "asgi_raw")
    assert measured == {(s, w) for s in stacks for w in ("get", "list", "create")}
    assert {row["pinned"] for row in report["summary"]} == {False}  # --quick: unpinned, as deployed
    assert report["config"]["pinning"] == ["unpinned"]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/install-test-deps installs it)")
def test_quick_mixed_load_reports_memory_and_collections(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--mixed", "1", "--stacks", "bzzlite",
                             "--pinning", "pinned", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "quick-mixed.json").read_text())
    assert not report["failures"]
    (row,) = report["summary"]
    assert row["stack"] == "bzzlite" and row["errors"] == 0 and row["requests_per_second"] > 0
    assert row["pinned"] and report["pinning"]["server_cpu"] is not None  # the pinned reference runs too
    assert row["rss_start_mib"] > 0 and row["rss_end_mib"] > 0
    assert set(row["gc"]["generations"]) == {"0", "1", "2"}


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/install-test-deps installs it)")
def test_quick_workers_run_serves_bzzlite_once_per_worker_count(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--workers", "1,2", "--stacks", "bzzlite,fastapi",
                             "--workloads", "get", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "quick-workers.json").read_text())
    assert not report["failures"]
    assert report["config"]["workers"] == [1, 2]
    assert report["pinning"] == {"server_cpu": None, "load_cpu": None}
    measured = {row["stack"] for row in report["summary"] if row["cpu_us_per_request"] > 0 and row["errors"] == 0}
    assert measured == {"bzzlite:w1", "bzzlite:w2", "fastapi"}
    assert all(row["wrk_cpu_us_per_request"] > 0 for row in report["summary"])  # the load's own CPU
    scaling = (tmp_path / "quick-workers.md").read_text().split("ceiling req/s")[1]
    assert "| get | bzzlite:w2 |" in scaling and "fastapi" not in scaling  # worker counts of one stack


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/install-test-deps installs it)")
def test_quick_mongo_stack_reports_the_standins_cpu_apart(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--stacks", "bzzlite_mongo",
                             "--workloads", "get,create", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "quick.json").read_text())
    assert not report["failures"]
    rows = {row["workload"]: row for row in report["summary"]}
    assert set(rows) == {"get", "create"}
    assert all(row["errors"] == 0 and row["cpu_us_per_request"] > 0 for row in rows.values())
    assert all(row["store_cpu_us_per_request"] > 0 for row in rows.values())  # the stand-in's own CPU
    assert "The MongoDB store against the test stand-in" in (tmp_path / "quick.md").read_text()


def test_workers_apply_to_bzzlite_stacks_only() -> None:
    from bench.__main__ import parse_config
    from bench.stacks import stack, with_workers

    assert with_workers(stack("bzzlite"), 2).command(8000, Path("x.db"))[-2:] == ["--workers", "2"]
    with pytest.raises(ValueError, match="bzzlite stacks only"):
        with_workers(stack("fastapi"), 2)
    assert parse_config(["--workers", "1,2"]).workers == (1, 2)
    for bad in (["--workers", "0"], ["--workers", "two"], ["--workers", "2", "--mixed", "5"],
                ["--workers", "2", "--pinning", "pinned"]):
        with pytest.raises(SystemExit):
            parse_config(bad)


def test_unpinned_runs_are_the_headline_and_pinned_the_reference() -> None:
    from bench.__main__ import parse_config

    assert parse_config([]).pinning == ("unpinned", "pinned")
    assert parse_config(["--quick"]).pinning == ("unpinned",)
    assert parse_config(["--pinning", "pinned"]).pinning == ("pinned",)
    assert parse_config(["--workers", "1,2"]).pinning == ("unpinned",)  # the workers may use every CPU
    with pytest.raises(SystemExit):
        parse_config(["--pinning", "loose"])


def test_bzzlite_copies_are_migrated_before_they_are_served(tmp_path: Path) -> None:
    """As deployed after an upgrade (docs/changing-models.md): every document carries its model's mark."""
    import sqlite3

    from bench.data import build_dataset
    from bench.runner import migrate
    from bench.stacks import stack

    data = build_dataset(tmp_path, 50)
    migrate(stack("fastapi"), data.path)  # not bzzlite: left as written
    with sqlite3.connect(data.path) as db:
        assert db.execute("SELECT count(*) FROM item WHERE json_extract(doc, '$._model') IS NULL").fetchone()[0] == 50
    migrate(stack("bzzlite"), data.path)
    with sqlite3.connect(data.path) as db:
        assert db.execute("SELECT count(*) FROM item WHERE json_extract(doc, '$._model') IS NULL").fetchone()[0] == 0


def test_check_benchmark_runs_on_a_small_collection(tmp_path: Path) -> None:
    """bench/check.py (bzzlite check and migrate over a large SQLite collection), at its smallest."""
    result = subprocess.run([sys.executable, "-m", "bench.check", "--docs", "300", "--data", str(tmp_path / "c.db")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 6
    assert "all 300 document(s) fit their models" in rows[1]  # version 2: every document upgraded
    assert "300 document(s) written" in rows[3] and "0 document(s) written" in rows[4]
