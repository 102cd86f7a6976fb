"""Operations inside one document: its embedded models, lists of them and references.

A :class:`NestedDocuments` is a resource's :class:`~bzzlite.documents.Documents` seen through
its nested tree. Each operation names a part of a parent document with a checked
:class:`~bzzlite.documents.paths.NestedPath`: the parent's auth (reading it is ``get``,
changing anything inside it is ``update``), the ``pre_*`` signal with the inner model as
sender (``arguments`` carry the ``path``), then the parent's scope and the store.

Every change is a read-modify-write of the parent document ended by ONE conditional
write, conditioned on the version read, after the whole parent validated with its model
and its references checked. A concurrent writer makes that write fail; the change is then
redone on the fresh document (or refused, 412, when the caller gave ``If-Match``), so no
change is lost and no constraint is skipped, on every store alike.

A reference names a document of another resource: reading it goes through that resource's
own documents (its auth rules and its scope), so a reference never shows what its target's
own URL would not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..errors import HTTPError, NotFound, ValidationFailed
from ..models.ids import is_valid_id, new_id
from ..models.nested import REF_LIST, NestedField, NestedModel
from ..models.schema import check_object
from ..query import build_query
from ..signals import send, send_after_commit
from ..stores.base import Record, Store
from . import conversion, references
from .access import forbidden_fields
from .paths import NestedPath, PathNotFound, get_in, locate, parse_path, remove_in, set_in

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from .operations import Documents

#: A change of the addressed part: ``(parent document, where the part is, its value)`` to
#: ``(changed document, where the result is)``, or None when there is nothing to write.
Change = Callable[[dict[str, Any], Any, Any], "tuple[dict[str, Any], Any] | None"]


def inner_instance(model: type[BaseModel], value: Any) -> BaseModel:
    """An inner model instance for receivers (as stored when it no longer validates)."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return model.model_construct(**value) if isinstance(value, dict) else model.model_construct()


@dataclass(slots=True)
class Written:
    """What a nested write did: the parent as stored, before and after, and where the result is
    (``id`` and ``path`` are the ones written, after the ``pre_*`` receivers)."""

    record: Record
    before: dict[str, Any]
    doc: dict[str, Any]
    loc: Any
    id: str = ""
    path: NestedPath | None = None

    @property
    def value(self) -> Any:
        return get_in(self.doc, self.loc)

    @property
    def old(self) -> Any:
        return get_in(self.before, self.loc)


@dataclass(slots=True)
class Read:
    """What a nested read found: the parent as read, the addressed value, and for a reference
    the referenced document (read under its own resource's rules)."""

    record: Record
    value: Any
    target: ResourceSpec | None = None
    target_record: Record | None = None


@dataclass(slots=True)
class Window:
    """A page of a list inside a document: the parent, the items of the page (a list of
    references: the referenced documents' records, those that still exist and are reachable),
    and how many the whole list holds."""

    record: Record
    items: list[Any]
    total: int
    page: int
    per_page: int


class NestedDocuments:
    """One resource's documents seen through its nested tree, for one caller (see the module).

    ``parent_id``, ``nested_path`` (the path's segments) and ``parent_record`` are the last
    operation's, once its ``pre_*`` receivers ran: the nested handler shows them to receivers.
    """

    def __init__(self, docs: Documents[Any], tree: NestedModel) -> None:
        self.docs = docs
        self.tree = tree
        self.parent_id: str | None = None
        self.nested_path: list[str] | None = None
        self.parent_record: Record | None = None
        self._targets: dict[str, Documents[Any]] = {}

    @property
    def spec(self) -> ResourceSpec:
        return self.docs.spec

    @property
    def handler(self) -> Any:
        return self.docs.handler

    @property
    def signals(self) -> Any:
        return self.docs.runtime.signals

    def parse(self, segments: list[str]) -> NestedPath:
        """A URL path checked against the tree; 404 for one that names nothing."""
        if segments and segments[0] in self.spec.schema.write_only:  # hidden from clients: as if absent
            raise HTTPError(404, "No such nested path.")
        try:
            return parse_path(self.tree, segments)
        except PathNotFound as exc:
            raise HTTPError(404, exc.message) from None

    def _checked_id(self, value: Any) -> str:
        spec = self.spec
        if spec.lookup is not None:  # a lookup field's value: any text, found or not later
            if not isinstance(value, str):
                raise HTTPError(404, f"No document with that {spec.lookup}.")
            return value
        if not is_valid_id(value):
            raise HTTPError(404, "No document with that id (ids are 24 hexadecimal characters).")
        return str(value)

    def _arguments(self, arguments: dict[str, Any], path: NestedPath) -> tuple[str, NestedPath]:
        """The id and path after the ``pre_*`` receivers, validated again."""
        id_ = self._checked_id(arguments.get("id"))
        segments = arguments.get("path")
        if segments != path.segments:
            if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
                raise HTTPError(404, "No such nested path.")
            changed = self.parse(segments)
            if changed.endpoint != path.endpoint:  # the operation was chosen for the first path
                raise HTTPError(404, "No such nested path.")
            path = changed
        self.parent_id, self.nested_path = id_, path.segments
        return id_, path

    @staticmethod
    def _locate(path: NestedPath, doc: dict[str, Any]) -> tuple[Any, Any]:
        try:
            return locate(path, doc)
        except PathNotFound as exc:
            raise HTTPError(404, exc.message) from None

    async def _read_parent(self, id_: str, path: NestedPath) -> tuple[Record, Any]:
        record = await self.docs.read(id_)  # the parent's scope
        self.parent_record = record
        _, value = self._locate(path, self.spec.schema.fill_defaults(record.doc))
        return record, value

    # -- through a reference --------------------------------------------------------------

    async def follow(self, id_: str, path: NestedPath) -> tuple[ResourceSpec, NestedModel, str]:
        """Check that the parent (read under its own ``get`` rule and scope) holds the reference
        ``path`` goes through; returns the referenced resource, its tree and the id, whose own
        rules serve the rest of the request."""
        referenced = path.referenced
        assert referenced is not None
        await self.docs.authorize("get")  # following the parent's reference reads the parent
        record = await self.docs.read(id_)
        self._locate(path, self.spec.schema.fill_defaults(record.doc))  # 404 unless it holds that reference
        return referenced

    # -- reading ----------------------------------------------------------------------------

    async def get(self, id_: str, path: NestedPath) -> Read:
        """The part ``path`` names (a reference: the referenced document, by its own rules)."""
        await self.docs.authorize("get")
        signals = self.signals
        arguments: dict[str, Any] = {"id": id_, "path": path.segments}
        await send(signals.pre_get_instance, path.model, arguments=arguments, handler=self.handler)
        id_, path = self._arguments(arguments, path)
        record, value = await self._read_parent(id_, path)
        if value is None:
            raise HTTPError(404, f"{'/'.join(path.segments)!r} is not set.")
        nested = path.last.field
        if nested.target is not None:  # a reference: the referenced document, from its own resource
            target_record = await self._referenced(nested, value)
            if signals.post_get_instance.receivers:
                await send_after_commit(signals.post_get_instance, path.model,
                                        instance=conversion.instance(nested.target, target_record),
                                        handler=self.handler)
            return Read(record, value, nested.target, target_record)
        if signals.post_get_instance.receivers:
            await send_after_commit(signals.post_get_instance, path.model,
                                    instance=inner_instance(path.model, value), handler=self.handler)
        return Read(record, value)

    async def list(self, id_: str, path: NestedPath, page: int, per_page: int) -> Window:
        """A page of the list ``path`` names (a list of references: of the referenced documents)."""
        await self.docs.authorize("get")
        spec, signals = self.spec, self.signals
        arguments: dict[str, Any] = {"id": id_, "path": path.segments, "page": page, "per_page": per_page}
        await send(signals.pre_get_list, path.model, arguments=arguments, handler=self.handler)
        id_, path = self._arguments(arguments, path)
        query = build_query(spec.schema, {"page": arguments.get("page", 1),
                                          "per_page": arguments.get("per_page", spec.per_page)},
                            max_per_page=spec.max_per_page)
        record, value = await self._read_parent(id_, path)
        items = value if isinstance(value, list) else []
        window = items[query.offset: query.offset + query.per_page]
        nested = path.last.field
        if nested.kind == REF_LIST:
            assert nested.target is not None
            await self._authorize_target(nested.target, "list")
            records = await self._referenced_many(nested.target, window)
            if signals.post_get_list.receivers:
                instances = [conversion.instance(nested.target, r) for r in records]
                await send_after_commit(signals.post_get_list, path.model, items=instances, handler=self.handler)
            return Window(record, records, len(items), query.page, query.per_page)
        if signals.post_get_list.receivers:
            instances = [inner_instance(path.model, v) for v in window]
            await send_after_commit(signals.post_get_list, path.model, items=instances, handler=self.handler)
        return Window(record, window, len(items), query.page, query.per_page)

    # -- the conditional write of the parent ---------------------------------------------------

    async def _write(self, id_: str, path: NestedPath, if_match: str | None, change: Change) -> Written:
        """Apply ``change`` to the parent and store it with one conditional write.

        Raises:
            HTTPError: 404 (the path names nothing in the document), 412 (``If-Match`` does
                not hold), 422 (the parent does not validate after the change).
        """
        spec = self.spec

        async def write(store: Store, current: Record) -> Written:
            before = spec.schema.fill_defaults(current.doc)
            loc, value = self._locate(path, before)
            outcome = change(before, loc, value)
            if outcome is None:
                return Written(current, before, before, loc)
            changed, result_loc = outcome
            doc = conversion.validate(spec, changed)
            access = self.docs.access
            if access is not None:  # a change inside a field is a change of that field
                errors = access.field_errors((path.steps[0].field.name,), {"id": current.id, **before},
                                             {"id": current.id, **doc}, "update")
                if errors:
                    raise forbidden_fields(errors)
            await self.docs.check_references(doc, before)  # a reference it now holds names a document
            return Written(await store.replace(spec, current.id, doc, current.version), before, doc, result_loc)

        if self.docs.access is not None:
            await self.docs.access.resolve_fields()
        written = await self.docs.conditional_write(id_, if_match, write)
        written.id, written.path = id_, path
        self.parent_record = written.record
        return written

    # -- creating: append to a list -----------------------------------------------------------

    async def create(self, id_: str, path: NestedPath, data: Any, *, if_match: str | None = None
                     ) -> tuple[Written, str, Record | None]:
        """Append ``data`` to the list ``path`` names (a list of references: associate the
        document ``{"id": ...}`` names). Returns the write, the new element's key, and for a
        reference the referenced document (the write's ``record is`` unchanged when it was
        already associated)."""
        await self.docs.authorize("update")
        arguments: dict[str, Any] = {"id": id_, "path": path.segments, "data": data}
        await send(self.signals.pre_create_instance, path.model, arguments=arguments, handler=self.handler)
        id_, path = self._arguments(arguments, path)
        if path.endpoint == "ref_list":
            return await self._associate(id_, path, arguments.get("data"), if_match)
        written, key = await self._append(id_, path, arguments.get("data"), if_match)
        return written, key, None

    async def _append(self, id_: str, path: NestedPath, data: Any, if_match: str | None) -> tuple[Written, str]:
        nested, signals = path.last.field, self.signals
        element = _element_body(nested, check_object(data), creating=True)
        key = nested.key

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            items = list(value) if isinstance(value, list) else []
            new_key = element.get(key) if key is not None else None
            if new_key is not None and any(isinstance(i, dict) and str(i.get(key)) == str(new_key) for i in items):
                raise HTTPError(409, f"{nested.name!r} already has an element with id {new_key!r}.",
                                errors=[{"loc": [*loc, len(items), key], "msg": "value already taken",
                                         "type": "unique"}])
            return set_in(doc, loc, [*items, element]), (*loc, len(items))

        written = await self._write(id_, path, if_match, change)
        value = written.value
        element_key = str(value[key]) if key is not None and isinstance(value, dict) and value.get(key) is not None \
            else str(written.loc[-1])
        if signals.post_create_instance.receivers:
            await send_after_commit(signals.post_create_instance, path.model,
                                    instance=inner_instance(path.model, value), handler=self.handler)
        return written, element_key

    async def _associate(self, id_: str, path: NestedPath, data: Any, if_match: str | None
                         ) -> tuple[Written, str, Record]:
        nested, signals = path.last.field, self.signals
        assert nested.target is not None
        ref_id = reference_body(data)
        target_record = await self._referenced(nested, ref_id)

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            items = list(value) if isinstance(value, list) else []
            if ref_id in items:
                return None  # already associated: nothing to write
            return set_in(doc, loc, [*items, ref_id]), (*loc, len(items))

        written = await self._write(id_, path, if_match, change)
        if written.doc is not written.before and signals.post_create_instance.receivers:
            await send_after_commit(signals.post_create_instance, path.model,
                                    instance=conversion.instance(nested.target, target_record), handler=self.handler)
        return written, ref_id, target_record

    # -- replacing and patching ---------------------------------------------------------------

    async def update(self, id_: str, path: NestedPath, data: Any, *, partial: bool, if_match: str | None = None
                     ) -> tuple[Written, Record | None]:
        """Replace (or merge-patch) the part ``path`` names; a reference is replaced by
        ``{"id": ...}`` (returned: the newly referenced document)."""
        await self.docs.authorize("update")
        signals = self.signals
        arguments: dict[str, Any] = {"id": id_, "path": path.segments, "data": data, "partial": partial}
        await send(signals.pre_update_instance, path.model, arguments=arguments, handler=self.handler)
        id_, path = self._arguments(arguments, path)
        data, partial = arguments.get("data"), bool(arguments.get("partial"))
        if path.endpoint == "ref":
            if partial:
                raise HTTPError(405, "PATCH is not allowed on a reference; PUT {\"id\": ...} to change it.")
            return await self._set_reference(id_, path, data, if_match)
        nested = path.last.field
        body = _element_body(nested, check_object(data), creating=False)

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            old = value if isinstance(value, dict) else None
            new = conversion.merge_patch(old or {}, body) if partial else dict(body)
            if nested.key is not None and old is not None and nested.key in old:
                new[nested.key] = old[nested.key]  # the key is read-only, like a document's id
            return set_in(doc, loc, new), loc

        written = await self._write(id_, path, if_match, change)
        if signals.post_update_instance.receivers:
            old, new = written.old, written.value
            changes = conversion.updated_fields(old if isinstance(old, dict) else {}, new)
            await send_after_commit(signals.post_update_instance, path.model,
                                    instance=inner_instance(path.model, new),
                                    updated_fields={f"{path.dotted}.{k}": v for k, v in changes.items()},
                                    handler=self.handler)
        return written, None

    async def _set_reference(self, id_: str, path: NestedPath, data: Any, if_match: str | None
                             ) -> tuple[Written, Record]:
        nested, signals = path.last.field, self.signals
        assert nested.target is not None
        ref_id = reference_body(data)
        target_record = await self._referenced(nested, ref_id)

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            return set_in(doc, loc, ref_id), loc

        written = await self._write(id_, path, if_match, change)
        if signals.post_update_instance.receivers:
            old, new = written.old, written.value
            changes = {path.dotted: {"from": old, "to": new}} if old != new else {}
            await send_after_commit(signals.post_update_instance, path.model,
                                    instance=conversion.instance(nested.target, target_record),
                                    updated_fields=changes, handler=self.handler)
        return written, target_record

    # -- deleting -------------------------------------------------------------------------------

    async def delete(self, id_: str, path: NestedPath, *, if_match: str | None = None) -> Written:
        """Remove a list element (a reference: dissociate it) or unset an optional part."""
        await self.docs.authorize("update")
        signals = self.signals
        arguments: dict[str, Any] = {"id": id_, "path": path.segments}
        await send(signals.pre_delete_instance, path.model, arguments=arguments, handler=self.handler)
        id_, path = self._arguments(arguments, path)
        nested, endpoint = path.last.field, path.endpoint
        label = "/".join(path.segments)

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            if endpoint in ("element", "ref_element"):
                return remove_in(doc, loc), loc  # a list element: removed (a reference: dissociated)
            if value is None:
                raise HTTPError(404, f"{label!r} is not set.")
            if not nested.nullable:
                raise ValidationFailed([{
                    "loc": list(loc),
                    "msg": f"{nested.name!r} is required: it cannot be removed, only replaced (PUT)",
                    "type": "missing",
                }])
            return set_in(doc, loc, None), loc

        written = await self._write(id_, path, if_match, change)
        if signals.post_delete_instance.receivers:
            removed = written.old
            if nested.target is not None:
                instance = await self._ref_instance(nested.target, removed)
            else:
                instance = inner_instance(path.model, removed)
            await send_after_commit(signals.post_delete_instance, path.model, instance=instance, handler=self.handler)
        return written

    # -- references -------------------------------------------------------------------------

    async def _authorize_target(self, target: ResourceSpec, operation: str) -> None:
        """Reading a referenced document also needs what its own resource requires."""
        if target is not self.spec:
            await self._target_docs(target).authorize(operation)

    def _target_docs(self, target: ResourceSpec) -> Documents[Any]:
        """The referenced resource's documents, for this caller (its rules, its scope)."""
        if target is self.spec:
            return self.docs
        found = self._targets.get(target.path)
        if found is None:
            found = self._targets[target.path] = type(self.docs)(self.docs.runtime, target, self.handler)
        return found

    async def _referenced(self, nested: NestedField, ref_id: Any) -> Record:
        assert nested.target is not None
        await self._authorize_target(nested.target, "get")
        name = nested.target.model.__name__
        if not (isinstance(ref_id, str) and is_valid_id(ref_id)):
            raise HTTPError(404, f"No {name} with that id.")
        try:
            return await self._target_docs(nested.target).read(ref_id)  # its own scope
        except NotFound:
            raise HTTPError(404, f"No {name} with id {ref_id}.") from None

    async def _referenced_many(self, target: ResourceSpec, ids: list[Any]) -> list[Record]:
        """The referenced documents in the order of ``ids``; ids of deleted documents are skipped."""
        wanted = list(dict.fromkeys(i for i in ids if isinstance(i, str) and is_valid_id(i)))
        if not wanted:
            return []
        found = await references.existing(await self.docs.store(), target, wanted)
        by_id = {r.id: r for r in await self._target_docs(target).visible(found)}
        return [by_id[i] for i in ids if i in by_id]

    async def _ref_instance(self, target: ResourceSpec, ref_id: str) -> BaseModel:
        """The referenced document for receivers, or a stub carrying only its id if it is gone."""
        try:
            record = await (await self.docs.store()).get(target, ref_id)
        except NotFound:
            record = Record(ref_id, 0, {})
        return conversion.instance(target, record)


def _element_body(nested: NestedField, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """An embedded model's body: its ``id`` is the server's unless the element model keys
    by it and this creates the element (a missing text id is assigned then)."""
    if nested.key is None or not creating:
        return {k: v for k, v in body.items() if k != "id"} if "id" in body else body
    if body.get(nested.key) is None and nested.key_is_text:
        return {**body, nested.key: new_id()}
    return body


def reference_body(data: Any) -> str:
    """A body naming a document to reference: ``{"id": "<24 hex>"}``."""
    body = check_object(data)
    errors = [{"loc": [k], "msg": "Send only the id of the document to reference; change the document "
               "itself at its own URL", "type": "extra_forbidden"} for k in body if k != "id"]
    ref_id = body.get("id")
    if not (isinstance(ref_id, str) and is_valid_id(ref_id.lower())):
        errors.append({"loc": ["id"], "msg": "Input should be the id of a document (24 hexadecimal characters)",
                       "type": "reference_id"})
    if errors:
        raise ValidationFailed(errors)
    return str(ref_id).lower()
