"""A nested URL path (``comments/2/author``), checked against a resource's nested tree, and
the place it names in one stored document: pure functions, no Tornado, no store.

* :func:`parse_path` checks a URL path against the tree without reading anything, so an
  unknown field or a malformed key is a 404 before any store call;
* :func:`locate` finds the addressed place in one stored document (list keys become
  positions), and :func:`set_in` / :func:`remove_in` build the changed document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..models.ids import is_valid_id
from ..models.nested import EMBEDDED, LIST, METHODS, REF, REF_LIST, NestedField, NestedModel

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..models.resource import ResourceSpec

MAX_SEGMENTS = 64  # deeper than any sane model; keeps a hostile URL from walking far
_POSITION = re.compile(r"(?:0|[1-9][0-9]{0,8})\Z")


# -- a URL path, checked against the tree ---------------------------------------------


class PathNotFound(Exception):
    """The path names nothing (unknown field, malformed key, index out of range...)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Step:
    """A field of the path, and the key given after it (lists only; None names the list)."""

    field: NestedField
    key: str | None = None


@dataclass(frozen=True, slots=True)
class NestedPath:
    """A parsed nested path: ``comments/2/author`` → two steps.

    ``inner`` is the rest of a path that goes through a reference (``users/{uid}/addresses``:
    the last step is ``users/{uid}``, ``inner`` is ``addresses`` in the referenced document).
    """

    steps: tuple[Step, ...]
    inner: NestedPath | None = None

    @property
    def own_segments(self) -> list[str]:
        """The segments in this document (up to the referenced document's id)."""
        out: list[str] = []
        for step in self.steps:
            out.append(step.field.name)
            if step.key is not None:
                out.append(step.key)
        return out

    @property
    def segments(self) -> list[str]:
        return self.own_segments + (self.inner.segments if self.inner is not None else [])

    @property
    def through(self) -> bool:
        """Whether the path goes on inside a referenced document."""
        return self.inner is not None

    @property
    def referenced(self) -> tuple[ResourceSpec, NestedModel, str] | None:
        """(resource, its tree, id) of the referenced document the path names or goes through."""
        last = self.last
        if last.field.target is None or last.key is None or last.field.target_tree is None:
            return None
        return last.field.target, last.field.target_tree, last.key

    @property
    def dotted(self) -> str:
        """``comments.2.author``: the key of ``updated_fields`` entries under this path."""
        return ".".join(self.segments)

    @property
    def last(self) -> Step:
        return self.steps[-1]

    @property
    def model(self) -> type[BaseModel]:
        """The model of what the path names: the sender of its signals."""
        return self.inner.model if self.inner is not None else self.last.field.model

    @property
    def endpoint(self) -> str:
        """One of the keys of :data:`METHODS`, or ``"through"`` for a path through a reference."""
        if self.inner is not None:
            return "through"
        kind, keyed = self.last.field.kind, self.last.key is not None
        if kind == EMBEDDED:
            return "embedded"
        if kind == LIST:
            return "element" if keyed else "list"
        if kind == REF:
            return "ref_document" if keyed else "ref"
        return "ref_element" if keyed else "ref_list"

    @property
    def methods(self) -> tuple[str, ...]:
        return self.inner.methods if self.inner is not None else METHODS[self.endpoint]


def parse_path(root: NestedModel, segments: Sequence[str]) -> NestedPath:
    """Check ``segments`` (the URL path after the parent's id) against the tree.

    After a reference and the referenced document's id (``author/{id}``, ``tags/{id}``),
    the rest is checked against the referenced resource's own tree.
    Raises:
        PathNotFound: an unknown or non-model field, a malformed key or id, a field after
            a reference without the referenced document's id, or an empty segment.
    """
    if not segments or len(segments) > MAX_SEGMENTS:
        raise PathNotFound("No such nested path.")
    node: NestedModel | None = root
    steps: list[Step] = []
    i = 0
    while i < len(segments):
        name = segments[i]
        if node is None:
            last = steps[-1]
            if last.key is not None and last.field.target_tree is not None:
                inner = parse_path(last.field.target_tree, segments[i:])
                return NestedPath(tuple(steps), inner)
            where = "/".join(segments[:i])
            raise PathNotFound(f"{where!r} holds a reference: name the referenced document's id after it.")
        found = node.fields.get(name)
        if found is None:
            raise PathNotFound(
                f"{node.model.__name__} has no field {name!r} holding an embedded model, "
                "a list of models or a reference."
            )
        i += 1
        key = None
        if found.kind in (LIST, REF_LIST, REF) and i < len(segments):
            key = _checked_key(found, segments[i])
            i += 1
        steps.append(Step(found, key))
        node = found.node if found.kind == EMBEDDED or (found.kind == LIST and key is not None) else None
    return NestedPath(tuple(steps))


def _checked_key(nested: NestedField, key: str) -> str:
    if nested.kind in (REF, REF_LIST):
        if not is_valid_id(key.lower()):
            raise PathNotFound(f"{key!r} is not an id (24 hexadecimal characters).")
        return key.lower()
    if not key:
        raise PathNotFound(f"An empty key after {nested.name!r}.")
    if nested.key is None and not _POSITION.match(key):
        raise PathNotFound(f"{key!r} is not a position in {nested.name!r} (0, 1, 2...).")
    return key


# -- the addressed place in one document ----------------------------------------------


Loc = tuple[str | int, ...]


def locate(path: NestedPath, doc: dict[str, Any]) -> tuple[Loc, Any]:
    """The location (keys and list positions) of what ``path`` names in ``doc``, and its value.

    The value may be None (an unset embedded model or reference); a list that is unset
    counts as empty.
    Raises:
        PathNotFound: a key matches no element, or an embedded model on the way is unset.
    """
    loc: list[str | int] = []
    value: Any = doc
    for step in path.steps:
        if not isinstance(value, dict):
            where = "/".join(path.segments[: len(loc)]) if loc else "the document"
            raise PathNotFound(f"{where!r} is not set.")
        name = step.field.name
        loc.append(name)
        value = value.get(name)
        if step.key is not None and step.field.kind == REF:
            if not (isinstance(value, str) and value.lower() == step.key):
                where = "/".join(path.own_segments[: len(loc)])
                raise PathNotFound(f"{where!r} does not reference {step.key}.")
        elif step.key is not None:
            items = value if isinstance(value, list) else []
            position = find_position(step, items)
            loc.append(position)
            value = items[position]
    return tuple(loc), value


def find_position(step: Step, items: list[Any]) -> int:
    """The position in ``items`` of the element ``step.key`` names."""
    nested, key = step.field, step.key
    assert key is not None
    if nested.kind == REF_LIST:
        for position, item in enumerate(items):
            if isinstance(item, str) and item.lower() == key:
                return position
        raise PathNotFound(f"{key} is not in {nested.name!r}.")
    if nested.key is not None:
        for position, item in enumerate(items):
            if isinstance(item, dict) and item.get(nested.key) is not None and str(item[nested.key]) == key:
                return position
        raise PathNotFound(f"No element of {nested.name!r} has id {key!r}.")
    position = int(key)
    if position >= len(items):
        raise PathNotFound(f"{nested.name!r} has {len(items)} element(s): there is no position {position}.")
    return position


def get_in(doc: Any, loc: Loc) -> Any:
    for part in loc:
        doc = doc[part]
    return doc


def set_in(doc: Any, loc: Loc, value: Any) -> Any:
    """A copy of ``doc`` with ``value`` at ``loc`` (containers on the way are copied, not changed)."""
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if isinstance(doc, list):
        copy = list(doc)
        copy[head] = set_in(copy[head], rest, value)  # type: ignore[index]
        return copy
    copy_d = dict(doc) if isinstance(doc, dict) else {}
    copy_d[head] = set_in(copy_d.get(head), rest, value)  # type: ignore[arg-type]
    return copy_d


def remove_in(doc: Any, loc: Loc) -> Any:
    """A copy of ``doc`` without the list element at ``loc`` (whose last part is a position)."""
    container_loc, position = loc[:-1], loc[-1]
    items = list(get_in(doc, container_loc))
    del items[position]  # type: ignore[arg-type]
    return set_in(doc, container_loc, items)
