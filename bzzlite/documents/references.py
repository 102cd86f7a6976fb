"""Reference integrity: ``Ref`` fields name documents that exist, and deleting a referenced
document follows each reference's ``on_delete`` policy (restrict, set_null, cascade).

Used by :class:`~bzzlite.documents.Documents` on every write and delete, so HTTP routes,
nested routes, custom routes and the document API all keep references whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..models.nested import EMBEDDED, LIST, REF, REF_LIST, NestedModel
from ..query import Condition, Query

if TYPE_CHECKING:
    from ..models.nested import Referrer
    from ..models.resource import ResourceSpec
    from ..stores.base import Record, Store


def referenced_ids(node: NestedModel, doc: Any, loc: tuple[Any, ...] = ()
                   ) -> Iterator[tuple[tuple[Any, ...], ResourceSpec, str]]:
    """(location, referenced resource, id) of every reference in a document, at any depth."""
    if not isinstance(doc, dict):
        return
    for name, nested in node.fields.items():
        value = doc.get(name)
        if value is None:
            continue
        if nested.kind == REF and isinstance(value, str) and nested.target is not None:
            yield (*loc, name), nested.target, value
        elif nested.kind == REF_LIST and isinstance(value, list) and nested.target is not None:
            for index, item in enumerate(value):
                if isinstance(item, str):
                    yield (*loc, name, index), nested.target, item
        elif nested.kind == EMBEDDED and nested.node is not None:
            yield from referenced_ids(nested.node, value, (*loc, name))
        elif nested.kind == LIST and nested.node is not None and isinstance(value, list):
            for index, item in enumerate(value):
                yield from referenced_ids(nested.node, item, (*loc, name, index))


async def existing(store: Store, target: ResourceSpec, ids: Iterable[str]) -> list[Record]:
    """The documents of ``target`` among ``ids`` (each id once)."""
    wanted = list(dict.fromkeys(ids))
    page = await store.find(target, Query(conditions=(Condition("id", "in", wanted),), per_page=len(wanted)))
    return page.records


def referring_query(referrer: Referrer, id_: str, per_page: int) -> Query:
    """The documents whose reference names ``id_`` (a list of references: any member; inside a
    list of embedded models: any element's)."""
    return Query(conditions=(Condition(referrer.path or referrer.field, "eq", id_, referrer.many),), per_page=per_page)


def without_reference(doc: dict[str, Any], referrer: Referrer, id_: str) -> Any:
    """The value of ``referrer.field`` in ``doc`` once every reference to ``id_`` at
    ``referrer.path`` is gone: a reference set to None, a list of references without it."""

    def clear(value: Any, steps: list[str]) -> Any:
        step, rest = steps[0], steps[1:]
        name, through_list = step.removesuffix("[]"), step.endswith("[]")
        if not isinstance(value, dict) or value.get(name) is None:
            return value
        inner = value[name]
        if through_list:
            new = [clear(item, rest) for item in inner] if isinstance(inner, list) else inner
        elif rest:
            new = clear(inner, rest)
        elif referrer.many:
            new = [i for i in inner if i != id_] if isinstance(inner, list) else inner
        else:
            new = None if inner == id_ else inner
        return {**value, name: new}

    steps = (referrer.path or referrer.field).replace("[].", "[] ").replace(".", " ").split(" ")
    return clear(doc, steps).get(referrer.field)
