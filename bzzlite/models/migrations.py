"""Model versions: documents stored by an older model are brought to the current one.

A resource declares its migrations next to its model, one step per version, each a plain
function from a stored document of the version before to one of its own version::

    def split_name(doc):
        first, _, last = doc.pop("name").partition(" ")
        return {**doc, "first": first, "last": last}

    @resource(migrations={2: split_name})
    class Person(BaseModel):
        first: str
        last: str = ""

The model's version is the number of its last step (1 without migrations): there is no second
number to keep in step with the dictionary. A step may take the document's id as a second
argument (``def step(doc, id)``), for back-fills computed from it.

Every stored document carries, under :data:`MARK`, the version and a fingerprint of the model
that wrote it (``"2:5f0c1e9a7b3d"``). A document whose mark is the current one validated
against this very model when it was written: reading it costs a dictionary lookup. Any other
(stored by an older version, or before the model changed without a new version, or by another
program) is *fitted* on the way out: upgraded by the steps after its version, cut to the
fields the model declares, validated (in JSON mode, the inverse of how it was stored) and
dumped again, so what is served is what the model says. One that cannot be fitted is an
:class:`~bzzlite.errors.InvalidDocument`. No I/O here: the stores call :meth:`Versions.load`
on every document they read, the change feeds :meth:`Versions.read`, ``bzzlite check`` and
``bzzlite migrate`` :meth:`Versions.fit`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import TypeAdapter, ValidationError

from ..errors import ConfigurationError, InvalidDocument, error_list

if TYPE_CHECKING:
    from .schema import ModelSchema

log = logging.getLogger("bzzlite")

#: The key under which a stored document records the model version that wrote it. Model fields
#: cannot start with an underscore (pydantic makes those private attributes), so it never
#: collides with one; clients cannot send it (it is an unknown key) and never see it.
MARK = "_model"

#: A migration step: the stored document of the version before (a dict it may change), and
#: optionally its id; returns the document of its own version (None: the dict it changed).
Step = Callable[..., "dict[str, Any] | None"]

_NEVER = object()  # the trusted mark of a model without a fingerprint: no document matches it
_DESCRIPTIVE = frozenset({"title", "description", "examples", "deprecated", "$comment"})
_NAMED = frozenset({"properties", "$defs", "definitions", "patternProperties"})  # keys are names


def rename(old: str, new: str) -> Step:
    """A step that moves a field to a new name (nothing happens when ``old`` is absent)."""

    def step(doc: dict[str, Any]) -> dict[str, Any]:
        if old in doc:
            doc[new] = doc.pop(old)
        return doc

    step.__name__ = f"rename_{old}_to_{new}"
    return step


def fingerprint(model: type[Any]) -> str | None:
    """What the stored form of a model depends on: a hash of its JSON schema in validation mode,
    titles and descriptions left out. None when pydantic cannot describe it (then every read
    validates the document)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "default value is not JSON serializable"
            schema = TypeAdapter(model).json_schema(mode="validation")
        text = json.dumps(_essential(schema), sort_keys=True)  # no repr(): it may hold an address
    except Exception:  # noqa: BLE001 - arbitrary types, unresolved forward references
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _essential(node: Any, names: bool = False) -> Any:
    if isinstance(node, dict):
        if names:
            return {key: _essential(value) for key, value in node.items()}
        return {key: _essential(value, key in _NAMED) for key, value in node.items() if key not in _DESCRIPTIVE}
    if isinstance(node, list):
        return [_essential(item) for item in node]
    return node


@functools.lru_cache(maxsize=256)  # a collection holds a handful of distinct marks
def _version_of(mark: str) -> int | None:
    head = mark.partition(":")[0]
    return int(head) if head.isdigit() and int(head) >= 1 else None


def stored_version(mark: Any) -> int | None:
    """The model version a stored mark names: 1 for none (stored before any), None if unreadable."""
    if mark is None:
        return 1
    return _version_of(mark) if isinstance(mark, str) else None


class Served(dict):  # type: ignore[type-arg]
    """A document fitted to the model, remembering what was stored (``stored``): the store's
    filters, sorts and cursors compare the stored values (see :func:`bzzlite.query.sort_values`)."""

    __slots__ = ("stored",)

    def __init__(self, doc: dict[str, Any], stored: dict[str, Any]) -> None:
        super().__init__(doc)
        self.stored = stored


@dataclass(slots=True)
class Fitted:
    """A stored document brought to the current model, or why it cannot be."""

    doc: dict[str, Any] | None  # None when it cannot be
    version: int | None  # the model version it was stored by (None: unreadable)
    errors: list[dict[str, Any]] = field(default_factory=list)
    undeclared: tuple[str, ...] = ()  # stored fields the model does not declare (left out)


class Versions:
    """A resource's model version, its migration steps, and how its stored documents are read."""

    def __init__(self, resource: str, schema: ModelSchema, steps: Mapping[int, Step] | None = None) -> None:
        self.resource = resource
        self.schema = schema
        self.name = schema.model.__name__
        self.steps = _checked_steps(self.name, steps)
        self.version = max(self.steps, default=1)
        self._noticed: set[Any] = set()

    def __repr__(self) -> str:
        return f"<Versions of {self.resource}: version {self.version}, mark {self.mark!r}>"

    @functools.cached_property
    def fingerprint(self) -> str | None:
        # Computed on first use, not at @resource: a model may name classes defined after it.
        return fingerprint(self.schema.model)

    @functools.cached_property
    def mark(self) -> str:
        """What a document stored by this model carries under :data:`MARK`."""
        return f"{self.version}:{self.fingerprint or '-'}"

    @functools.cached_property
    def trusted(self) -> Any:
        """The mark of documents that need no fitting (a sentinel no mark equals, without a fingerprint)."""
        return self.mark if self.fingerprint is not None else _NEVER

    @functools.cached_property
    def _validator(self) -> Any:
        return self.schema.model.__pydantic_validator__

    def stamp(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The document as a store writes it: with this model's mark."""
        return {**doc, MARK: self.mark}

    def load(self, id_: str, doc: dict[str, Any]) -> dict[str, Any]:
        """A document a store just read (a dict it owns: changed in place) as the model says.

        Raises:
            InvalidDocument: it does not validate, even after the migration steps.
        """
        mark = doc.pop(MARK, None)
        if mark == self.trusted:
            return doc
        return self.fitted(id_, doc, mark)

    def fitted(self, id_: str, doc: dict[str, Any], mark: Any) -> dict[str, Any]:
        """:meth:`load`'s work for a document whose mark (popped from it) is not the current one. The
        steps get a shallow copy: ``doc`` stays as stored (what sorts and cursors compare)."""
        return Served(self._served(id_, self.fit(dict(doc), mark, id_)), doc)

    def read(self, id_: str, doc: dict[str, Any]) -> dict[str, Any]:
        """:meth:`load` for a document shared with others (the change journal's): left as it is."""
        mark = doc.get(MARK)
        if mark == self.trusted:
            return {key: value for key, value in doc.items() if key != MARK}
        copied = orjson.loads(orjson.dumps({k: v for k, v in doc.items() if k != MARK}, default=str))
        return self._served(id_, self.fit(copied, mark, id_))

    def fit(self, doc: dict[str, Any], mark: Any, id_: str = "", dump: bool = True) -> Fitted:
        """Bring a stored document (without its mark, a dict the steps may change) to the model:
        upgrade it through the steps after its version, leave out the fields the model does not
        declare, validate it and dump it again (``dump=False``: validate only, ``Fitted.doc`` is
        then the document validated, not as the model would dump it)."""
        version = stored_version(mark)
        if version is None:
            return Fitted(None, None, [_error([MARK], f"unreadable model version {mark!r}", "model_version")])
        if version > self.version:
            return Fitted(None, version, [_error([], f"stored by version {version} of the model, newer than this "
                                                    f"app's version {self.version}", "model_version")])
        for target in range(version + 1, self.version + 1):
            step, with_id = self.steps[target]
            try:
                result = step(doc, id_) if with_id else step(doc)
            except Exception as exc:  # noqa: BLE001 - the user's step: report it, never crash a read
                return Fitted(None, version, [_error([], f"the migration to version {target} "
                                                         f"({_name(step)}) failed: {type(exc).__name__}: {exc}",
                                                     "migration_failed")])
            if result is not None:
                doc = result
            if not isinstance(doc, dict):
                return Fitted(None, version, [_error([], f"the migration to version {target} ({_name(step)}) "
                                                         f"returned {type(doc).__name__}, not a dict",
                                                     "migration_failed")])
        keys = self.schema.key_set
        undeclared = tuple(key for key in doc if key not in keys)
        data = {key: value for key, value in doc.items() if key in keys} if undeclared else doc
        try:
            instance = self._validator.validate_json(orjson.dumps(data, default=str))
        except ValidationError as exc:
            return Fitted(None, version, error_list(exc), undeclared)
        except orjson.JSONEncodeError as exc:  # a value no JSON holds (another program wrote it)
            return Fitted(None, version, [_error([], f"a value cannot be read: {exc}", "unreadable")], undeclared)
        return Fitted(self.schema.dump(instance) if dump else data, version, [], undeclared)

    def _served(self, id_: str, fitted: Fitted) -> dict[str, Any]:
        if fitted.doc is None:
            raise InvalidDocument(self.resource, id_, fitted.errors, self.name)
        self._notice(fitted)
        return fitted.doc

    def _notice(self, fitted: Fitted) -> None:
        """Say once per process what lazily fitted documents mean for the app's operator."""
        if fitted.version is not None and fitted.version < self.version and "older" not in self._noticed:
            self._noticed.add("older")
            log.warning("%s: documents stored by version %d of the %s model are upgraded as they are read; "
                        "filters and sorts compare what is stored, so they miss those documents' new values "
                        "until `bzzlite migrate` has upgraded them all", self.resource, fitted.version, self.name)
        if fitted.undeclared and fitted.undeclared not in self._noticed:
            self._noticed.add(fitted.undeclared)
            log.warning("%s: stored documents hold field(s) %s that the %s model does not declare: they are not "
                        "served, and a write of such a document drops them. If a field was renamed, declare a "
                        "migration (docs: Changing your models); `bzzlite check` counts them", self.resource,
                        ", ".join(fitted.undeclared), self.name)


def _error(loc: list[Any], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def _name(step: Any) -> str:
    return str(getattr(step, "__name__", None) or type(step).__name__)


def _checked_steps(model: str, steps: Mapping[int, Step] | None) -> dict[int, tuple[Step, bool]]:
    """The steps by the version they lead to, each with whether it takes the id; a mistake is a
    ConfigurationError naming the fix."""
    if steps is None:
        return {}
    if not isinstance(steps, Mapping):
        raise ConfigurationError(f"{model}: migrations= takes a dict from version to step, e.g. "
                                 "migrations={2: upgrade_to_v2}")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in steps):
        raise ConfigurationError(f"{model}: migrations= keys are the versions (2, 3, ...) each step leads to")
    versions = sorted(steps)
    if versions and versions != list(range(2, versions[-1] + 1)):
        missing = sorted(set(range(2, versions[-1] + 1)) - set(versions))
        raise ConfigurationError(
            f"{model}: migrations= needs one step for each version from 2 (documents stored before any "
            f"migration are version 1) to {versions[-1]}"
            + (f"; missing {', '.join(map(str, missing))}" if missing else f"; {versions[0]} is not a version"))
    checked = {}
    for version in versions:
        step = steps[version]
        if not callable(step):
            raise ConfigurationError(f"{model}: the migration to version {version} is {step!r}, not a function "
                                     "of the stored document")
        checked[version] = (step, _takes_id(model, version, step))
    return checked


def _takes_id(model: str, version: int, step: Step) -> bool:
    try:
        parameters = [p for p in inspect.signature(step).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):  # a builtin without a signature: one argument
        return False
    if len(parameters) not in (1, 2):
        raise ConfigurationError(f"{model}: the migration to version {version} ({_name(step)}) must take the "
                                 "stored document, and optionally its id: def step(doc) or def step(doc, id)")
    return len(parameters) == 2
