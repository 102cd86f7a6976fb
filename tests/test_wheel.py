"""The getting-started page as a newcomer follows it: a wheel built from this checkout
(``python -m build``), installed into a fresh virtual environment in an empty directory,
then every command of docs/getting-started.md run as written, each answer compared with
the one the page shows; the served app's /docs page and its Swagger UI assets load.

What the test changes in the page's commands, and only that: ``BZZLITE`` is the wheel it
built (the page has the reader set it), and port 8888 is a free port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
CONSOLE = re.compile(r"^```console\n(.*?)^```", re.DOTALL | re.MULTILINE)
PYTHON = re.compile(r"Save this as `todo.py`:\s*```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
SERVE = "python -m bzzlite serve"
ID = re.compile(r"[0-9a-f]{24}")


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """Each ``$ command`` of the page's console blocks, with the lines the page shows it printing."""
    commands: list[tuple[str, list[str]]] = []
    for block in CONSOLE.findall(text):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif commands and line.strip():
                commands[-1][1].append(line)
    return commands


def pattern(shown: str) -> re.Pattern[str]:
    """A line the page shows, as a pattern of what the command prints (ids differ from run to run)."""
    return re.compile("[0-9a-f]{24}".join(re.escape(part) for part in ID.split(shown)) + r"\Z")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built from a copy (the build leaves build/ and *.egg-info behind)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "bzzlite", src / "bzzlite", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    result = run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)], cwd=src, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    wheels = list(dist.glob("bzzlite-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_holds_the_package_and_its_marker(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"bzzlite/__init__.py", "bzzlite/py.typed", "bzzlite/handlers/docs.py"} <= names
    assert not any(n.startswith(("tests/", "docs/", "bench/")) for n in names)


@pytest.mark.timeout(900)
def test_getting_started_as_written_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    text = PAGE.read_text()
    home = tmp_path / "newcomer"
    home.mkdir()
    (home / "todo.py").write_text(PYTHON.search(text).group(1))  # "Save this as todo.py"
    port = free_port()
    commands = [(c.replace("8888", str(port)), shown) for c, shown in console_commands(text)
                if not c.startswith("export BZZLITE=")]
    serving = [i for i, (c, _) in enumerate(commands) if c.startswith(SERVE)]
    assert len(serving) == 1, "the page serves the app once"

    # One shell, as a reader's: the commands in order, each output fenced by a marker line; the
    # server goes to the background (the page has the reader use a second terminal for it).
    script = ["set -euo pipefail"]
    for index, (command, _) in enumerate(commands):
        script.append(f"printf '\\n@@@ {index}\\n'")
        if index in serving:
            script.append(f"{command} --port {port} > serve.log 2>&1 & echo $! > serve.pid")
            script.append("python -c 'import socket, sys, time\n"
                          "for _ in range(300):\n"
                          "    try:\n"
                          f"        socket.create_connection((\"127.0.0.1\", {port}), 1).close(); sys.exit(0)\n"
                          "    except OSError: time.sleep(0.1)\n"
                          "sys.exit(1)'")
        else:
            script.append(command)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(BZZLITE=str(wheel), PIP_DISABLE_PIP_VERSION_CHECK="1")
    try:
        result = run(["bash", "-c", "\n".join(script)], cwd=home, env=env, timeout=800)
        assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        printed = re.split(r"^@@@ \d+\n", result.stdout, flags=re.MULTILINE)[1:]
        assert len(printed) == len(commands)
        for (command, shown), output in zip(commands, printed):
            if command.startswith(SERVE):
                continue
            lines = [line.rstrip("\r") for line in output.splitlines()]
            for line in shown:
                assert any(pattern(line).match(actual) for actual in lines), \
                    f"`{command}` did not print {line!r}; it printed:\n{output}"

        # the interactive page of the served app, with its Swagger UI assets, from the wheel
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=10)
        html = page.read().decode()
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        assets = re.findall(r'(?:src|href)="(/docs/[^"]+\.(?:js|css))"', html)
        assert any(a.endswith("swagger-ui-bundle.js") for a in assets) and any(a.endswith(".css") for a in assets)
        for asset in assets:
            reply = urllib.request.urlopen(f"http://127.0.0.1:{port}{asset}", timeout=10)
            body = reply.read()
            kind = "javascript" if asset.endswith(".js") else "css"
            assert reply.status == 200 and kind in reply.headers["Content-Type"], asset
            assert len(body) > 1000, asset
        installed = run([str(home / ".venv" / "bin" / "python"), "-c", "import bzzlite; print(bzzlite.__file__)"],
                        cwd=home, env=env)  # the reader's environment: no PYTHONPATH to this checkout
        assert installed.stdout.startswith(str(home / ".venv")), installed.stdout  # not this checkout
    finally:
        pid_file = home / "serve.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by the script's shell): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        status = Path(f"/proc/{pid}/stat")
        return status.exists() and status.read_text().split()[2] != "Z"
    return waited == 0

