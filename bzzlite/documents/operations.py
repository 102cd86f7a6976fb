"""The operations layer: every way of reaching a resource's documents goes through here.

HTTP handlers, nested routes, custom routes, receivers, scripts and tests all call a
:class:`Documents`; it validates, authorizes (the app's auth and the resource's ``scope``),
sends the ``pre_*``/``post_*`` signals, makes one conditional store write, and the store's
journal feeds the change feeds. Handlers only parse requests and render answers. See
``docs/architecture.md``.

    orders = app.documents(Order)                 # the app's own access: no user, no scope
    order = await orders.create({"total": 10})
    order = await orders.patch(order.id, {"status": "paid"}, if_match=etag_of(order))
    page = await orders.find({"status": "open"}, sort="-total", per_page=50)

Inside a request, ``handler.documents(Order)`` is bound to it: the app's auth rules and the
resource's scope apply, and receivers get that ``handler`` (``None`` otherwise).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from ..errors import HTTPError, NotFound, Referenced, ValidationFailed, VersionConflict
from ..models.ids import is_valid_id, new_id
from ..permissions import OPERATIONS
from ..query import Condition, Query, build_query, encode_cursor, parse_arguments, sort_values
from ..signals import send, send_after_commit
from ..stores.base import Record, Write
from . import conversion, references
from .access import Access, forbidden_fields, merge_filters
from .transactions import current_transaction, transaction

if TYPE_CHECKING:
    from ..models.nested import Referrer
    from ..models.resource import ResourceSpec
    from ..permissions import Rule
    from ..runtime import Runtime
    from ..stores.base import Page, Store

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_WRITE_ATTEMPTS = 64  # read-modify-write tries when concurrent writers keep winning (no If-Match given)
_VERSION = "_bzz_version"


def _etag(version: int) -> str:
    return f'"{version}"'


def etag(record: Record) -> str:
    """A strong validator of a stored document's current version."""
    return _etag(record.version)


def version_of(instance: BaseModel) -> int | None:
    """The stored version of an instance the document API returned (None for others)."""
    private = getattr(instance, "__pydantic_private__", None) or {}
    version = private.get(_VERSION)
    return version if isinstance(version, int) else None


def etag_of(instance: BaseModel) -> str | None:
    """The ``ETag`` of an instance the document API returned, for ``if_match=``."""
    version = version_of(instance)
    return None if version is None else _etag(version)


def entity_tags(header: str) -> list[str]:
    """The entity tags of an ``If-Match`` or ``If-None-Match`` header."""
    return [t.strip() for t in header.split(",") if t.strip()]


def precondition_holds(record: Record, if_match: str | int | None) -> bool:
    """Whether ``If-Match`` (an ETag list, ``*`` or a version number) holds for ``record``."""
    if if_match is None:
        return True
    if isinstance(if_match, int):
        return record.version == if_match
    tags = entity_tags(if_match)
    return "*" in tags or etag(record) in tags


@dataclass(slots=True)
class Found(Generic[M]):
    """A page of documents: ``next`` is the cursor (``after=``) of the next page, in keyset mode."""

    items: list[M]
    total: int | None
    page: int | None
    per_page: int
    next: str | None = None


class Documents(Generic[M]):
    """One resource's documents as one caller sees them (see the module docstring)."""

    def __init__(self, runtime: Runtime, spec: ResourceSpec, handler: Any = None,
                 authorized: Sequence[str] = ()) -> None:
        self.runtime = runtime
        self.spec = spec
        self.model = spec.model
        self.handler = handler
        # the authorization decision of a caller bound to a request, when the resource has a
        # scope or rules (None: the app's own access, or the app's auth decides alone)
        self.access: Access | None = (Access(runtime, spec, handler) if handler is not None
                                      and (spec.scope is not None or spec.permissions.declared) else None)
        self._authorized: set[str] = set(authorized)  # operations already decided for this request

    @classmethod
    def of(cls, runtime: Runtime, model: type[M], handler: Any = None) -> Documents[M]:
        """The documents of a resource's model in the app of ``runtime``: bound to ``handler``'s
        request when given. KeyError for a model the app does not serve."""
        try:
            spec = runtime.registry.spec_for(model)
        except KeyError:
            raise KeyError(f"{getattr(model, '__name__', model)!r} is not a resource of this app") from None
        return cls(runtime, spec, handler)

    def __repr__(self) -> str:
        bound = "bound to a request" if self.handler is not None else "unbound"
        return f"<Documents of {self.model.__name__} ({bound})>"

    # -- the authorization decision (bzzlite/documents/access.py) -----------------------

    async def authorize(self, operation: str, *, rule: Rule | None = None, fallback: str | None = None) -> None:
        """Decide ``operation`` for a bound caller, once per request: 401 when it needs a user and
        there is none, 403 when its rule refuses this caller. ``rule`` and ``fallback``: an
        action's own rule, or the operation whose rule applies (see :meth:`Access.authorize`)."""
        if self.handler is None or operation in self._authorized:
            return
        if self.access is None and rule is not None:  # an action's own rule on a resource without any
            self.access = Access(self.runtime, self.spec, self.handler)
        if self.access is not None:
            await self.access.authorize(operation, rule=rule, fallback=fallback)
        elif self.runtime.auth is not None:  # no scope, no rule: whether a user is needed, as ever
            known = operation in OPERATIONS or fallback is None
            await self.runtime.auth.authorize(self.handler, self.spec, operation if known else fallback)
        self._authorized.add(operation)

    def scope(self) -> dict[str, Any] | None:
        """The resource's scope for this caller: filters every document it reaches must match."""
        return None if self.access is None else self.access.scope()

    async def visible(self, records: Sequence[Record]) -> list[Record]:
        """The records this caller may read (its scope and the resource's read rule)."""
        if self.access is None:
            return list(records)
        await self.access.resolve("get")
        return [r for r in records if self.access.readable(r)]

    # -- record-level operations (what the HTTP handlers call) -------------------------

    async def store(self) -> Store:
        return await self.runtime.ready_store()

    async def read(self, id_: Any, operation: str = "get") -> Record:
        """The document ``id_`` for ``operation``: NotFound (404) when the caller may not read
        it, the same answer as an unknown id; 403 when they may read it but not ``operation``
        it (a write, an action)."""
        if self.spec.lookup is not None:
            record = await self._by_lookup(id_)
        elif not is_valid_id(id_):
            raise NotFound(str(id_))
        else:
            record = self._pending(id_) or await (await self.store()).get(self.spec, id_)
        access = self.access
        if access is not None:
            if operation == "get":
                await access.resolve("get")
                if not access.readable(record):
                    raise NotFound(str(id_))
            else:
                await access.check(record, operation)
        return record

    def _pending(self, id_: str) -> Record | None:
        """The document as the current transaction wrote it (None: it did not); NotFound when
        the transaction deleted it."""
        tx = current_transaction(self.runtime)
        if tx is None or (self.spec.path, id_) not in tx.pending:
            return None
        after = tx.pending[(self.spec.path, id_)]
        if after is None:
            raise NotFound(id_)
        return after

    async def _by_lookup(self, value: Any) -> Record:
        """The document whose lookup field holds ``value`` (as text from a URL, coerced)."""
        spec, field = self.spec, self.spec.lookup
        assert field is not None
        if not isinstance(value, str):
            value = str(value)
        try:
            query = build_query(spec.schema, parse_arguments(spec.schema, {field: [value]}, per_page=1))
        except HTTPError:  # not even of the field's type
            raise NotFound(value) from None
        found = await (await self.store()).find(spec, query)
        if not found.records:
            raise NotFound(value)
        return self._pending(found.records[0].id) or found.records[0]

    def public(self, record: Record, spec: ResourceSpec | None = None) -> dict[str, Any]:
        """What clients see of a stored document of this resource (or of ``spec``'s, a
        referenced one): its id first, its fields but the write-only ones, its computed fields."""
        return conversion.as_json(spec or self.spec, record)

    def from_client(self, data: Any) -> Any:
        """A client's body without the fields no client sets (read-only and computed ones): ignored,
        as the ``id`` is, so a document read back can be sent as it is."""
        return conversion.without_read_only(self.spec, data)

    def url_key(self, record: Record) -> str:
        """What item URLs name this document by: its id, or its lookup field's value."""
        if self.spec.lookup is None:
            return record.id
        return str(self.spec.schema.fill_defaults(record.doc).get(self.spec.lookup))

    async def get_record(self, id_: Any) -> Record:
        await self.authorize("get")
        arguments: dict[str, Any] = {"id": id_}
        await send(self.runtime.signals.pre_get_instance, self.model, arguments=arguments, handler=self.handler)
        record = await self.read(arguments.get("id"))
        await self._announce("post_get_instance", record=record)
        return record

    async def list_query(self, arguments: dict[str, Any]) -> Query:
        """The query of a list (or of a change feed's subscription) for ``arguments`` as
        ``pre_get_list`` receivers see them; the scope is added after them."""
        spec = self.spec
        await self.authorize("list")
        await send(self.runtime.signals.pre_get_list, self.model, arguments=arguments, handler=self.handler)
        reach = self.reach("list")
        if reach:  # after the receivers, so nothing widens it; a client's own filter must hold too
            arguments = {**arguments, "filters": merge_filters(arguments.get("filters"), reach)}
        return build_query(spec.schema, arguments, max_per_page=spec.max_per_page,
                           max_offset=spec.max_offset if self.handler is not None else None)

    def reach(self, operation: str = "list") -> dict[str, Any] | None:
        """The filters of everything this caller may ``operation`` (its scope and the rule's
        conditions on documents; None: everything): what a list, a count and a feed add."""
        return None if self.access is None else self.access.reach(operation)

    def reach_conditions(self, operation: str = "list") -> tuple[Condition, ...]:
        """:meth:`reach` as query conditions (what a feed tests a change it knows little of by)."""
        reach = self.reach(operation)
        return build_query(self.spec.schema, {"filters": reach}).conditions if reach else ()

    async def find_records(self, arguments: dict[str, Any]) -> tuple[Query, Page]:
        """A page for list ``arguments`` (as ``pre_get_list`` receivers see them)."""
        spec = self.spec
        query = await self.list_query(arguments)
        page = await (await self.store()).find(spec, query)
        signal = self.runtime.signals.post_get_list
        if signal.receivers:
            items = [conversion.instance(spec, r) for r in page.records]
            await send_after_commit(signal, self.model, items=items, handler=self.handler)
        return query, page

    async def create_records(self, items: Sequence[Any], *, bulk: bool) -> list[Record]:
        """Create one document per item, all or nothing."""
        spec, signals = self.spec, self.runtime.signals
        await self.authorize("create")
        if bulk and not items:
            raise ValidationFailed([{"loc": [], "msg": "The array is empty: send at least one object",
                                     "type": "too_short"}])
        all_arguments = [{"data": item} for item in items]
        access = self.access
        # the fields each item names, as the client sent them (field rules judge those)
        mentioned = [set(item) if isinstance(item, dict) else set() for item in items] if access is not None else []
        for arguments in all_arguments:
            await send(signals.pre_create_instance, self.model, arguments=arguments, handler=self.handler)
        docs, errors = [], []
        for index, arguments in enumerate(all_arguments):
            data = arguments.get("data")
            try:
                docs.append(conversion.validate(spec, data if access is None else access.fill(data, "create"),
                                                (index,) if bulk else ()))
            except ValidationFailed as exc:
                errors.extend(exc.errors or [])
        if errors:
            raise ValidationFailed(errors)
        pairs = [(new_id(), doc) for doc in docs]
        if access is not None:
            await access.resolve_fields()
            blank = spec.schema.fill_defaults({})
            for index, (id_, doc) in enumerate(pairs):
                prefix = (index,) if bulk else ()
                access.check_created(doc, id_, prefix)
                errors += access.field_errors(mentioned[index], blank, {"id": id_, **doc}, "create", prefix)
            if errors:
                raise forbidden_fields(errors)
        for index, doc in enumerate(docs):
            errors += await self.missing_references(doc, (index,) if bulk else ())
        if errors:
            raise ValidationFailed(errors)
        tx = current_transaction(self.runtime)
        if tx is not None:
            records = [Record(id_, 1, doc) for id_, doc in pairs]
            for record in records:
                tx.add(Write("insert", spec, record.id, record.doc), record)
                await self._announce("post_create_instance", record=record)  # once committed
            return records
        records = await (await self.store()).insert(spec, pairs)
        for record in records:
            await self._announce("post_create_instance", record=record)
        return records

    async def update_record(self, id_: Any, data: Any, *, partial: bool,
                            if_match: str | int | None = None, preserve: Collection[str] = ()) -> Record:
        """Replace (``partial=False``) or merge-patch a document; one conditional write.
        A replace keeps the stored values of the ``preserve`` fields (the read-only ones,
        which a client's body cannot carry)."""
        spec, access = self.spec, self.access
        await self.authorize("update")
        mentioned = set(data) if access is not None and isinstance(data, dict) else set()  # as the client sent it
        arguments: dict[str, Any] = {"id": id_, "data": data, "partial": partial}
        await send(self.runtime.signals.pre_update_instance, self.model, arguments=arguments, handler=self.handler)
        id_, partial, data = arguments.get("id"), bool(arguments.get("partial")), arguments.get("data")
        if spec.lookup is None and not is_valid_id(id_):
            raise NotFound(str(id_))
        patch = conversion.check_patch(spec, data) if partial else None
        if access is not None:
            await access.resolve_fields()

        def change(current: Record) -> tuple[dict[str, Any], dict[str, Any]]:
            before = spec.schema.fill_defaults(current.doc)
            after = conversion.merge_patch(before, patch) if partial else data
            if not partial and isinstance(after, dict):
                keep = set(preserve)
                if access is not None:  # a field the caller may not set keeps its value, as a read-only one
                    stored = {"id": current.id, **before}
                    keep |= {f for f in spec.permissions.fields if f not in after and not access.may_set(f, stored)}
                if keep:
                    after = {**after, **{k: before[k] for k in keep if k in before}}
            if access is None:
                return before, conversion.validate(spec, after)
            doc = conversion.validate(spec, access.fill(after, "update"))
            errors = access.field_errors(mentioned, {"id": current.id, **before}, {"id": current.id, **doc}, "update")
            if errors:
                raise forbidden_fields(errors)
            return before, doc

        before, record = await self._write(id_, if_match, change, "update")
        await self._announce("post_update_instance", record=record,
                             updated_fields=conversion.updated_fields(before, record.doc))
        return record

    async def delete_record(self, id_: Any, *, if_match: str | int | None = None) -> Record:
        """Delete a document; returns it as it was."""
        await self.authorize("delete")
        arguments: dict[str, Any] = {"id": id_}
        await send(self.runtime.signals.pre_delete_instance, self.model, arguments=arguments, handler=self.handler)
        referrers = self.runtime.referrers(self.spec)
        if referrers and current_transaction(self.runtime) is None:
            async with transaction(self.runtime):  # the referrers' changes and the delete, together
                record = await self._delete(arguments.get("id"), if_match, referrers)
        else:
            record = await self._delete(arguments.get("id"), if_match, referrers)
        await self._announce("post_delete_instance", record=record)
        return record

    async def _delete(self, id_: Any, if_match: str | int | None, referrers: list[Referrer]) -> Record:
        """Apply each reference's ``on_delete`` to the documents naming ``id_``, then delete it.

        A bound caller acts on those documents with its own rights: ``restrict`` names only the
        referring documents it may read (and says nothing more when it may read none of them);
        ``cascade`` and ``set_null`` go ahead only when it may delete (or change) every one of
        them, else the delete is refused like a ``restrict`` (409), and nothing is written."""
        if referrers:
            current = await self.read(id_, "delete")
            store = await self.store()
            tx = current_transaction(self.runtime)
            blocking: list[tuple[str, str, int]] = []
            hidden = False  # referring documents the caller may not read, or may not change
            plans = []
            for referrer in referrers:
                others: Documents[Any] = Documents(self.runtime, referrer.spec, self.handler)
                if referrer.on_delete == "restrict" and others.access is None:
                    page = await store.find(referrer.spec, references.referring_query(referrer, current.id, 1))
                    if page.total:
                        blocking.append((referrer.spec.model.__name__, referrer.label, page.total))
                    continue
                page = await store.find(referrer.spec, references.referring_query(referrer, current.id, 10_000))
                records = [r for r in page.records if not (tx is not None and tx.deleted(referrer.spec.path, r.id))]
                if not records:
                    continue
                if referrer.on_delete == "restrict":
                    visible = await others.visible(records)
                    if visible:
                        blocking.append((referrer.spec.model.__name__, referrer.label, len(visible)))
                    hidden = hidden or len(visible) < len(records)
                    continue
                if not await others.may_apply(referrer, records):
                    hidden = True
                plans.append((referrer, others, records))
            if blocking or hidden:
                raise Referenced(blocking)
            for referrer, others, records in plans:
                for record in records:
                    if tx is not None and tx.deleted(referrer.spec.path, record.id):
                        continue  # already deleted by this transaction (a cascade through another field)
                    if referrer.on_delete == "cascade":
                        await others.delete_record(record.id)
                    else:
                        doc = referrer.spec.schema.fill_defaults(record.doc)
                        value = references.without_reference(doc, referrer, current.id)
                        await others.update_record(record.id, {referrer.field: value}, partial=True)
        _, record = await self._write(id_, if_match, None, "delete")
        return record

    async def may_apply(self, referrer: Referrer, records: Sequence[Record]) -> bool:
        """Whether this caller may do to ``records`` what ``referrer``'s ``on_delete`` does:
        delete them (cascade) or change the field holding the reference (set_null)."""
        access = self.access
        if access is None:
            return True
        operation = "delete" if referrer.on_delete == "cascade" else "update"
        try:
            await self.authorize(operation)
        except HTTPError:
            return False
        await access.resolve("get")
        await access.resolve_fields()
        for record in records:
            if not access.allows(operation, record):
                return False
            if operation == "update" and not access.may_set(referrer.field, access.document(record)):
                return False
        return True

    async def missing_references(self, doc: dict[str, Any], prefix: tuple[Any, ...] = (),
                                 before: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """422 errors for the references of ``doc`` that name no document (none the caller may
        reach, when bound: someone else's document does not exist for them either). References
        the document already held (``before``) are not judged again: removing one dangling
        reference must not fail because another dangles."""
        tree = self.runtime.nested_trees.get(self.spec.path)
        found = list(references.referenced_ids(tree, doc)) if tree is not None and tree.fields else []
        if found and before is not None:
            held = {(t.path, i) for _, t, i in references.referenced_ids(tree, before)}  # type: ignore[arg-type]
            found = [(loc, t, i) for loc, t, i in found if (t.path, i) not in held]
        if not found:
            return []
        store = await self.store()
        tx = current_transaction(self.runtime)
        errors = []
        for target in {id(t): t for _, t, _ in found}.values():
            ids = [i for _, t, i in found if t is target]
            found_records = await references.existing(store, target, ids)
            known = {r.id for r in await Documents(self.runtime, target, self.handler).visible(found_records)}
            if tx is not None:  # the transaction's own inserts and deletes count
                for (path, pending_id), after in tx.pending.items():
                    if path == target.path:
                        (known.add if after is not None else known.discard)(pending_id)
            errors += [{"loc": [*prefix, *loc], "msg": f"No {target.model.__name__} with id {i}",
                        "type": "reference_missing"} for loc, t, i in found if t is target and i not in known]
        return errors

    async def check_references(self, doc: dict[str, Any], before: dict[str, Any] | None = None) -> None:
        """Raise ValidationFailed (422) for references of ``doc`` (new since ``before``) that name
        no document."""
        errors = await self.missing_references(doc, before=before)
        if errors:
            raise ValidationFailed(errors)

    async def conditional_write(self, id_: Any, if_match: str | int | None,
                                write: Callable[[Store, Record], Awaitable[T]], operation: str = "update") -> T:
        """Run ``write(store, current)`` — one write conditioned on ``current.version`` — for
        the document ``id_`` (read for ``operation``: 404 or 403 as :meth:`read` says), after
        checking ``if_match`` against it.

        When another writer wins in between (VersionConflict), a caller that gave ``if_match``
        gets it (412 over HTTP); any other reads again and retries after a short random
        back-off, so concurrent changes are never lost. Too many lost races answer 409.
        """
        store = await self.store()
        for attempt in range(_WRITE_ATTEMPTS):
            current = await self.read(id_, operation)
            if not precondition_holds(current, if_match):
                raise VersionConflict(str(id_))
            try:
                return await write(store, current)
            except VersionConflict:
                if if_match is not None:
                    raise
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
        raise HTTPError(409, "The document is being changed by others; try again.")

    async def _write(self, id_: Any, if_match: str | int | None,
                     change: Callable[[Record], tuple[dict[str, Any], dict[str, Any]]] | None, operation: str
                     ) -> tuple[dict[str, Any], Record]:
        """Replace (``change`` gives before/after) or delete (``change`` None) one document;
        inside a transaction the write is collected, conditioned on the version read."""
        spec = self.spec
        tx = current_transaction(self.runtime)
        if tx is not None:
            current = await self.read(id_, operation)
            if not precondition_holds(current, if_match):
                raise VersionConflict(str(id_))
            if change is None:
                tx.add(Write("delete", spec, current.id, None, current.version, current.doc), None)
                return current.doc, current
            before, doc = change(current)
            await self.check_references(doc, before)
            record = Record(current.id, current.version + 1, doc)
            tx.add(Write("replace", spec, current.id, doc, current.version, current.doc), record)
            return before, record

        async def write(store: Store, current: Record) -> tuple[dict[str, Any], Record]:
            if change is None:
                await store.delete(spec, current.id, current.version)
                return current.doc, current
            before, doc = change(current)
            await self.check_references(doc, before)
            return before, await store.replace(spec, current.id, doc, current.version)

        return await self.conditional_write(id_, if_match, write, operation)

    async def _announce(self, name: str, record: Record, **kwargs: Any) -> None:
        """A ``post_*`` signal for ``record`` (after the transaction commits, inside one)."""
        signal = self.runtime.signals[name]
        if not signal.receivers:
            return
        tx = current_transaction(self.runtime)
        if tx is not None and name != "post_get_instance":
            tx.after_commit.append(lambda: self._announce_now(signal, record, kwargs))
            return
        await self._announce_now(signal, record, kwargs)

    async def _announce_now(self, signal: Any, record: Record, kwargs: dict[str, Any]) -> None:
        await send_after_commit(signal, self.model, instance=conversion.instance(self.spec, record),
                                handler=self.handler, **kwargs)

    # -- the public API: model instances in and out ------------------------------------

    def instance(self, record: Record) -> M:
        """A stored document as a model instance carrying its ``id`` and version."""
        value = conversion.instance(self.spec, record)
        private = getattr(value, "__pydantic_private__", None)
        object.__setattr__(value, "__pydantic_private__", {**(private or {}), _VERSION: record.version})
        return value  # type: ignore[return-value]

    async def get(self, id: str) -> M:
        """The document with this id. Raises NotFound (also outside the caller's scope)."""
        return self.instance(await self.get_record(id))

    async def find(
        self,
        filters: Mapping[str, Any] | None = None,
        *,
        sort: str | Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        page: int = 1,
        per_page: int | None = None,
        after: str | None = None,
    ) -> Found[M]:
        """A page of documents, in the HTTP list's query language.

        ``filters`` are keyed as in a query string (``{"price__gt": 10, "tags__in": ["a"]}``);
        ``sort`` is ``"-price,name"`` or a list; ``after=""`` starts keyset pagination, whose
        ``Found.next`` cursor gives the next page. ``fields`` projects the stored documents
        (instances are then built without validation, as pydantic's ``model_construct``).
        """
        arguments: dict[str, Any] = {
            "filters": dict(filters or {}),
            "sort": [s for s in sort.split(",") if s] if isinstance(sort, str) else list(sort or []),
            "fields": list(fields) if fields is not None else None,
            "page": page,
            "per_page": per_page if per_page is not None else self.spec.per_page,
            "after": after,
        }
        query, found = await self.find_records(arguments)
        items = [self.instance(r) for r in found.records]
        cursor = None
        if query.keyset and found.has_more and found.records:
            last = found.records[-1]
            cursor = encode_cursor(query, sort_values(query, last.doc), last.id)
        return Found(items, found.total, None if query.keyset else query.page, query.per_page, cursor)

    async def count(self, filters: Mapping[str, Any] | None = None) -> int:
        """How many documents match ``filters`` (within the caller's scope)."""
        found = await self.find(filters, per_page=1)
        return found.total or 0

    async def create(self, data: M | Mapping[str, Any]) -> M:
        """Create one document from a model instance or a dict; returns it with its ``id``."""
        return self.instance((await self.create_records([_as_data(data)], bulk=False))[0])

    async def create_many(self, items: Sequence[M | Mapping[str, Any]]) -> list[M]:
        """Create several documents, all or nothing."""
        records = await self.create_records([_as_data(item) for item in items], bulk=True)
        return [self.instance(r) for r in records]

    async def replace(self, id: str, data: M | Mapping[str, Any], *,
                      if_match: str | int | None = None) -> M:
        """Replace a whole document; ``if_match`` (an ETag or a version) makes it conditional."""
        return self.instance(await self.update_record(id, _as_data(data), partial=False, if_match=if_match))

    async def patch(self, id: str, changes: Mapping[str, Any], *,
                    if_match: str | int | None = None) -> M:
        """Change some fields (a JSON merge patch: ``None`` returns a field to its default)."""
        return self.instance(await self.update_record(id, dict(changes), partial=True, if_match=if_match))

    async def delete(self, id: str, *, if_match: str | int | None = None) -> M:
        """Delete a document; returns it as it was."""
        return self.instance(await self.delete_record(id, if_match=if_match))


def _as_data(value: Any) -> Any:
    """A model instance as request data (its ``id``, if any, is ignored like a body's)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude={"id"} if "id" in type(value).model_fields else None)
    return dict(value) if isinstance(value, Mapping) else value


