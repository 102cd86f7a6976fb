"""Finding the user's app from ``MODULE:ATTR``: "module not found" told apart from "your
module raised an error" (Flask's ``locate_app``), each a one-line :class:`CLIError`."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any


class CLIError(Exception):
    """A problem to report in one line, without a traceback.

    ``details`` is the full traceback behind it, shown with ``--traceback``.
    """

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details


def shadowing_folder() -> str | None:
    """The folder that hides bzzlite's own package, if there is one.

    ``python -m bzzlite`` puts the working directory first on ``sys.path``: a folder named
    ``bzzlite`` there with no ``__init__.py`` (the top of a checkout) is imported as a namespace
    package ahead of an editable install, whose finder comes after the path finder; its modules
    still load, but not the names of ``bzzlite/__init__.py``.
    """
    package = sys.modules.get("bzzlite")
    if package is None or getattr(package, "__file__", None) is not None:
        return None
    return next(iter(getattr(package, "__path__", None) or ()), "bzzlite")


def locate_app(target: str) -> Any:
    """Import ``MODULE:ATTR`` (MODULE dotted or a ``.py`` path) and return the app.

    Tells "module not found" apart from "the module raised while importing".
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"expected MODULE:ATTR (e.g. examples.todo:app or examples/todo.py:app), got {target!r}")
    module = _import(module_name)
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise CLIError(f"{module_name!r} has no attribute {attr!r}")
        value = getattr(value, part)
    from ..app import App

    if not isinstance(value, App) and callable(value):
        try:
            value = value()
        except Exception as exc:  # noqa: BLE001 - the user's code: reported in one line
            raise CLIError(f"calling {target} failed: {_describe(exc)}", traceback.format_exc()) from None
    if not isinstance(value, App):
        raise CLIError(f"{target} is a {type(value).__name__}, not a bzzlite App")
    return value


def _import(name: str) -> Any:
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise CLIError(f"no such file: {name}")
        directory = str(path.resolve().parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise CLIError(f"cannot import {name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code: reported in one line
            sys.modules.pop(path.stem, None)
            raise CLIError(f"error while importing {name}: {_describe(exc)}", traceback.format_exc()) from None
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CLIError(f"no module named {name!r} (run from the directory that contains it, "
                           "or give a .py file path)") from None
        raise CLIError(f"error while importing {name}: {_describe(exc)}", traceback.format_exc()) from None
    except Exception as exc:  # noqa: BLE001 - the user's code: reported in one line
        raise CLIError(f"error while importing {name}: {_describe(exc)}", traceback.format_exc()) from None


def _describe(exc: BaseException) -> str:
    """``Type: message (file.py:line)``, the line being the innermost one of the user's code.

    A SyntaxError is located where the parser stopped, in the user's file; any other error
    at the innermost frame outside bzzlite, importlib and installed packages, if there is one.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{type(exc).__name__}: {exc.msg} ({Path(exc.filename).name}:{exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    ours = [f for f in frames if not f.filename.startswith(_NOT_USER_CODE)]
    frames = ours or frames
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0] if message else ''}{where}"


_NOT_USER_CODE = tuple(
    {str(Path(__file__).parent) + os.sep}
    | {sysconfig.get_paths()[key] + os.sep for key in ("stdlib", "purelib", "platlib")}
)
