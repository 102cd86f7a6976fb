"""The authorization decision of one caller on one resource, made once per request.

Two questions, both answered here for every path (item, list, count, nested, references,
actions, custom routes through ``handler.documents``, change feeds):

- *which documents* the caller reaches: the resource's ``scope`` — outside it a document
  does not exist for them (404), on reads and writes alike;
- *what they may do*: the resource's permission rules (``allow=``, :mod:`bzzlite.permissions`)
  per operation and action, and per field (``writable_by=``). An operation refused outright is
  401 (no user, and one is needed) or 403; a document the caller may not read is a 404, one
  they may read but not change a 403; a field they may not set a 403 naming it.

A rule is resolved once per request and operation (:meth:`Access.resolve`): what remains is
"every document", "none", or conditions on the document, which become query filters for reads
(so a list, a count and a feed show exactly what item reads would) and are checked against the
stored document for writes. Only callers bound to a request are decided: the app's own access
(``app.documents(...)``) reaches everything.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import HTTPError
from ..permissions import ANONYMOUS, Caller, Check, Filters, Resolved, Rule
from ..query import All, Condition, build_query
from .matcher import matches

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..runtime import Runtime
    from ..stores.base import Record

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="bzzlite"'}
#: The operation a nested write or an action counts as when nothing more precise is declared.
_READ = "get"


def sign_in_first() -> HTTPError:
    return HTTPError(401, "Sign in first: this operation needs an authenticated user.", headers=WWW_AUTHENTICATE)


def refusal(rule: Rule | None, caller: Caller, what: str) -> HTTPError:
    """401 for an anonymous caller a user could pass, else 403 naming what was refused."""
    if caller.user is None and (rule is None or rule.needs_user):
        return sign_in_first()
    return HTTPError(403, f"You may not {what}.")


def _scope_arity(function: Any) -> int:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 1
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return 2 if len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters) else 1


def merge_filters(base: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Filters that must all hold: a key given twice keeps both conditions (``All``)."""
    merged = dict(base or {})
    for key, value in extra.items():
        if key in merged:
            known = merged[key]
            merged[key] = All((*(known if isinstance(known, All) else (known,)), value))
        else:
            merged[key] = value
    return merged


class Access:
    """What one request may reach and do on one resource (see the module docstring)."""

    def __init__(self, runtime: Runtime, spec: ResourceSpec, handler: Any) -> None:
        self.runtime = runtime
        self.spec = spec
        self.handler = handler
        self.caller: Caller = ANONYMOUS
        self._user_known = False
        self._resolved: dict[str, Resolved] = {}
        self._rules: dict[str, Rule | None] = {}  # operation -> rule, where a route gave its own
        self._scopes: dict[str, dict[str, Any] | None] = {}
        self._compiled: dict[int, tuple[Condition, ...]] = {}
        self._fields: dict[str, Resolved] = {}

    # -- who asks -------------------------------------------------------------------------

    def rule(self, operation: str) -> Rule | None:
        if operation in self._rules:
            return self._rules[operation]
        return self.spec.permissions.rule(operation)

    def required(self, operation: str, fallback: str | None = None) -> bool:
        """Whether ``operation`` needs a signed-in user (its rule says so, else the app's auth)."""
        rule = self.rule(operation)
        if rule is not None:
            return rule.needs_user
        auth = self.runtime.auth
        return auth is not None and auth.required(self.spec, fallback or operation)

    async def _identify(self, required: bool) -> None:
        auth = self.runtime.auth
        if auth is None:
            user = getattr(self.handler, "current_user", None)
            roles = user.get("roles") if isinstance(user, Mapping) else None
            self.caller = Caller(user, frozenset(roles or ())) if user is not None else ANONYMOUS
            if required and user is None:
                raise sign_in_first()
        else:
            await auth.resolve_user(self.handler, required=required)
            self.caller = await auth.caller(self.handler)
        self._user_known = True

    async def authorize(self, operation: str, *, rule: Rule | None = None, fallback: str | None = None,
                        what: str | None = None) -> None:
        """Decide ``operation`` for this request: 401 when it needs a user and there is none (or
        the token does not stand), 403 when its rule refuses this caller whatever the document.
        ``rule`` overrides the resource's (a route's own); ``fallback`` is the operation whose
        rules apply when none is declared for ``operation`` (an action: ``update``)."""
        if rule is not None:
            self._rules[operation] = rule
        elif fallback is not None and self.spec.permissions.rule(operation) is None:
            self._rules[operation] = self.spec.permissions.rule(fallback)
        required = self.required(operation, fallback)
        if not self._user_known:
            await self._identify(required)  # once per request: the token is verified once
        elif required and self.caller.user is None:
            raise sign_in_first()
        resolved = self._resolve(operation, fallback)
        if resolved is False:
            raise refusal(self.rule(operation), self.caller,
                          what or f"{operation} {self.spec.model.__name__} documents")

    def _resolve(self, operation: str, fallback: str | None = None) -> Resolved:
        if operation not in self._resolved:
            rule = self.rule(operation)
            if rule is not None:
                self._resolved[operation] = rule.resolve(self.caller)
            else:  # no rule: the app's auth alone (a user when one is required)
                self._resolved[operation] = not (self.required(operation, fallback) and self.caller.user is None)
        return self._resolved[operation]

    async def resolve(self, operation: str) -> Resolved:
        """What ``operation``'s rule leaves for this caller, without refusing: for questions
        such as "may they read this document?" asked on the way to another operation."""
        if not self._user_known:
            await self._identify(False)
        return self._resolve(operation)

    # -- which documents ----------------------------------------------------------------------

    def scope(self, operation: str = _READ) -> dict[str, Any] | None:
        """The resource's scope for this caller: filters every document it reaches must match.
        A scope function may take the operation as its second argument (``scope(handler,
        operation)``). A scope that needs a user, asked without one, is a 401."""
        if operation in self._scopes:
            return self._scopes[operation]
        function = self.spec.scope
        if function is None:
            found = None
        else:
            try:
                value = function(self.handler, operation) if _scope_arity(function) == 2 else function(self.handler)
            except Exception:
                if getattr(self.handler, "current_user", None) is None:
                    raise sign_in_first() from None  # a scope that reads the user, asked by nobody
                raise
            found = dict(value) if value else None
        self._scopes[operation] = found
        return found

    def reach(self, operation: str) -> dict[str, Any] | None:
        """The filters of everything this caller may ``operation`` (a list, a count, a feed):
        the scope and, once :meth:`authorize` or :meth:`resolve` ran, the operation's rule."""
        filters = self.scope(operation)
        resolved = self._resolved.get(operation, True)
        if resolved is True or resolved is False:
            return filters
        (conjunct,) = resolved  # reads' rules are filterable: one conjunction (bzzlite.permissions)
        for atom in conjunct:
            assert isinstance(atom, Filters)
            filters = merge_filters(filters, atom.filters)
        return filters

    def _conditions(self, filters: Mapping[str, Any]) -> tuple[Condition, ...]:
        key = id(filters)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = build_query(self.spec.schema, {"filters": filters}).conditions
        return found

    def _holds(self, resolved: Resolved, doc: Mapping[str, Any]) -> bool:
        if resolved is True or resolved is False:
            return resolved
        return any(all(self._atom(atom, doc) for atom in conjunct) for conjunct in resolved)

    def _atom(self, atom: Any, doc: Mapping[str, Any]) -> bool:
        if isinstance(atom, Check):
            return atom.test(self.caller, doc)
        assert isinstance(atom, Filters)
        return matches(self._conditions(atom.filters), doc)

    def document(self, record: Record) -> dict[str, Any]:
        """A stored document as rules see it: every field (defaults filled) and its ``id``."""
        return {"id": record.id, **self.spec.schema.fill_defaults(record.doc)}

    def in_scope(self, record: Record, operation: str = _READ) -> bool:
        scope = self.scope(operation)
        return scope is None or matches(self._conditions(scope), self.document(record))

    def allows(self, operation: str, record: Record) -> bool:
        """Whether this caller may ``operation`` this document (scope and rule; the rule must
        have been resolved)."""
        return self.in_scope(record, operation) and self._holds(self._resolved.get(operation, True),
                                                                self.document(record))

    def readable(self, record: Record) -> bool:
        return self.allows(_READ, record)

    async def check(self, record: Record, operation: str) -> None:
        """A write or an action on ``record``: refused like an unknown id (404) when the caller
        may not read it, 403 when they may read it but not ``operation`` it."""
        if not self.in_scope(record, operation):
            raise HTTPError(404, "No document with that id.")
        if self._holds(self._resolved.get(operation, True), self.document(record)):
            return
        await self.resolve(_READ)
        if self.readable(record):
            raise HTTPError(403, f"You may not {operation} this {self.spec.model.__name__}.")
        raise HTTPError(404, "No document with that id.")

    # -- what a write may say ---------------------------------------------------------------

    def fill(self, data: Any, operation: str) -> Any:
        """A document to create or replace, with the scope's equality conditions written in
        (the owner) and the rule's owner filled where the client left it out."""
        if not isinstance(data, dict):
            return data
        scope = self.scope(operation)
        if scope:
            data = {**data, **{k: v for k, v in scope.items()
                               if "__" not in k and k != "id" and not isinstance(v, (list, tuple, All))}}
        resolved = self._resolved.get(operation, True)
        if resolved is not True and resolved is not False and len(resolved) == 1:
            for atom in resolved[0]:
                if isinstance(atom, Filters):
                    data = {**{k: v for k, v in atom.filters.items() if k in atom.sticky}, **data}
        return data

    def check_created(self, doc: Mapping[str, Any], id_: str, prefix: tuple[Any, ...] = ()) -> None:
        """A new document must satisfy the create rule (an owner naming someone else: 403)."""
        resolved = self._resolved.get("create", True)
        if not self._holds(resolved, {"id": id_, **doc}):
            where = f" (item {prefix[0]})" if prefix else ""
            raise HTTPError(403, f"You may not create this {self.spec.model.__name__}{where}.")

    async def resolve_fields(self) -> None:
        for name, rule in self.spec.permissions.fields.items():
            if name not in self._fields:
                if not self._user_known:
                    await self._identify(False)
                self._fields[name] = rule.resolve(self.caller)

    def may_set(self, field: str, doc: Mapping[str, Any]) -> bool:
        """Whether this caller may set ``field`` of ``doc`` (:meth:`resolve_fields` first)."""
        resolved = self._fields.get(field)
        return True if resolved is None else self._holds(resolved, doc)

    def field_errors(self, mentioned: Iterable[str], before: Mapping[str, Any], after: Mapping[str, Any],
                     operation: str, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Errors for the fields this write changes that the caller may not set: the ones
        ``writable_by`` protects, and the owner field of a rule that allowed an update."""
        protected = self.spec.permissions.fields
        sticky: set[str] = set()
        resolved = self._resolved.get(operation, True)
        if operation == "update" and resolved is not True and resolved is not False:
            for conjunct in resolved:
                if all(self._atom(atom, before) for atom in conjunct):
                    sticky |= {f for atom in conjunct if isinstance(atom, Filters) for f in atom.sticky}
        errors = []
        mentioned = set(mentioned)
        for name in self.spec.schema.top_level:  # in the model's order
            if name not in mentioned or (name not in protected and name not in sticky):
                continue
            old, new = before.get(name), after.get(name)
            if old == new and type(old) is type(new):
                continue
            if name in sticky or not self.may_set(name, before if operation != "create" else after):
                errors.append({"loc": [*prefix, name], "msg": "You may not set this field", "type": "field_forbidden"})
        return errors


def forbidden_fields(errors: list[dict[str, Any]]) -> HTTPError:
    names = ", ".join(dict.fromkeys(str(e["loc"][-1]) for e in errors))
    return HTTPError(403, f"You may not set {names}.", errors=errors)


async def authorize_call(runtime: Runtime, handler: Any, rule: Rule | None, *, required: bool) -> None:
    """A custom route's decision (it reaches no document): the user when one is ``required``
    (401 otherwise), then its rule on the user (403 for a caller it refuses)."""
    if rule is not None:
        required = rule.needs_user
    auth = runtime.auth
    if auth is not None:
        await auth.resolve_user(handler, required=required)
        caller = await auth.caller(handler)
    else:
        user = getattr(handler, "current_user", None)
        caller = Caller(user, frozenset(user.get("roles") or ())) if isinstance(user, Mapping) else ANONYMOUS
        if required and caller.user is None:
            raise sign_in_first()
    if rule is not None and rule.resolve(caller) is False:
        raise refusal(rule, caller, "call this route")
