"""Who may do what: permission rules, declared beside the model, decided in the operations layer.

    from bzzlite.permissions import anyone, owner, role, signed_in

    @resource(
        allow={"read": anyone, "create": signed_in, "update": owner("author") | role("admin"),
               "delete": role("admin"), "publish": owner("author")},      # an action's name
        writable_by={"featured": role("editor")},                         # fields only some may set
    )
    class Post(BaseModel): ...

A :class:`Rule` answers, for the caller of an operation, "yes", "no", or "yes, for documents
like these": ``role("admin")`` depends on the user only, ``owner("author")`` and
:func:`where` on the document too. The operations layer (:mod:`bzzlite.documents`) asks the
rule once per request with the caller (:meth:`Rule.resolve`), then turns what is left into
query filters for reads (so lists, counts and feeds show exactly what an item read would) and
checks it against the document for writes. No I/O here: rules are tested in microseconds.

``scope=`` is the other decision, made first: which documents a caller reaches at all (a
tenant, an owner); a document outside it is unknown to them (404). Rules decide what they may
do with the documents they reach.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

#: The operations of a resource, and the groups ``allow=`` accepts for them.
OPERATIONS = ("get", "list", "create", "update", "delete")
GROUPS: dict[str, tuple[str, ...]] = {
    "read": ("get", "list"),
    "write": ("create", "update", "delete"),
    "*": OPERATIONS,
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the signed-in user's data (None: anonymous) and their roles."""

    user: Mapping[str, Any] | None
    roles: frozenset[str] = frozenset()

    @property
    def id(self) -> str | None:
        if self.user is None:
            return None
        value = self.user.get("id")
        return None if value is None else str(value)


ANONYMOUS = Caller(None)

#: A rule resolved for one caller: True (every document), False (none), or the alternatives
#: (any of them) a document must satisfy, each a conjunction of filters (query-string keys,
#: as ``scope`` returns them) and document checks (functions of the caller and the document).
Resolved = bool | tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class Filters:
    """Query filters a document must match (``{"buyer": "ann"}``); ``sticky``: the fields an
    update by this caller may not change (the owner stays the owner)."""

    filters: Mapping[str, Any]
    sticky: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Check:
    """A document check that is no query filter: ``test(caller, document)``."""

    test: Callable[[Caller, Mapping[str, Any]], bool]
    name: str


def _and(a: Resolved, b: Resolved) -> Resolved:
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return tuple((*x, *y) for x in a for y in b)  # type: ignore[union-attr]


def _or(a: Resolved, b: Resolved) -> Resolved:
    if a is True or b is True:
        return True
    if a is False:
        return b
    if b is False:
        return a
    return (*a, *b)  # type: ignore[misc]


class Rule:
    """A permission. Combine with ``|`` (either), ``&`` (both) and ``~`` (not: for rules on
    the user only)."""

    #: Never allows an anonymous caller, though some signed-in caller may pass: a request
    #: without a user is answered 401 (sign in), not 403.
    needs_user: bool = True
    #: Depends on the document: the operation is then allowed for some documents only.
    on_documents: bool = False
    #: Can be turned into query filters for every caller (reads need that: a list shows what
    #: the item reads would).
    filterable: bool = True

    def resolve(self, caller: Caller) -> Resolved:
        """What this rule allows ``caller``: True, False, or the documents it may act on."""
        raise NotImplementedError

    def __or__(self, other: Rule) -> Rule:
        return _Either(self, _rule(other, "|"))

    def __and__(self, other: Rule) -> Rule:
        return _Both(self, _rule(other, "&"))

    def __invert__(self) -> Rule:
        return _Not(self)

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """The rule as written (for ``bzzlite routes --permissions`` and the OpenAPI document)."""
        raise NotImplementedError

    def roles(self) -> frozenset[str]:
        """The roles this rule names (the columns of a permission matrix)."""
        return frozenset()


def _rule(value: Any, where: str) -> Rule:
    if not isinstance(value, Rule):
        raise ConfigurationError(f"{where}: expected a permission rule (anyone, signed_in, role(...), owner(...), "
                                 f"where(...), rule(...)), got {value!r}")
    return value


class _Constant(Rule):
    def __init__(self, allowed: bool, name: str) -> None:
        self.allowed = allowed
        self.name = name
        self.needs_user = False

    def resolve(self, caller: Caller) -> Resolved:
        return self.allowed

    def describe(self) -> str:
        return self.name


class _SignedIn(Rule):
    def resolve(self, caller: Caller) -> Resolved:
        return caller.user is not None

    def describe(self) -> str:
        return "signed_in"


#: Everyone, signed in or not: the operation is public.
anyone: Rule = _Constant(True, "anyone")
#: No client at all (the app's own code, ``app.documents(...)``, still may).
nobody: Rule = _Constant(False, "nobody")
#: Any signed-in user.
signed_in: Rule = _SignedIn()


class _Role(Rule):
    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = frozenset(names)

    def resolve(self, caller: Caller) -> Resolved:
        return caller.user is not None and not self.names.isdisjoint(caller.roles)

    def describe(self) -> str:
        return "role(" + ", ".join(repr(n) for n in sorted(self.names)) + ")"

    def roles(self) -> frozenset[str]:
        return self.names


def role(*names: str) -> Rule:
    """Signed-in users with any of these roles (``Auth(roles=...)`` says a user's roles; by
    default the ``roles`` list of the user data)."""
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError("role(...) takes one or more role names, e.g. role('admin')")
    return _Role(names)


class _Where(Rule):
    def __init__(self, filters: Mapping[str, Any], owner_field: str | None = None) -> None:
        self.filters = dict(filters)
        self.owner_field = owner_field
        self.on_documents = True
        self.needs_user = owner_field is not None or any(callable(v) for v in self.filters.values())

    def resolve(self, caller: Caller) -> Resolved:
        if self.owner_field is not None:
            if caller.id is None:
                return False
            return ((Filters({self.owner_field: caller.id}, frozenset({self.owner_field})),),)
        values: dict[str, Any] = {}
        for key, value in self.filters.items():
            if callable(value):
                if caller.user is None:
                    return False
                value = value(caller.user)
            values[key] = value
        return ((Filters(values),),)

    def describe(self) -> str:
        if self.owner_field is not None:
            return f"owner({self.owner_field!r})"
        return "where(" + ", ".join(f"{k}={'<user>' if callable(v) else repr(v)}" for k, v in self.filters.items()) + ")"


def owner(field: str = "owner") -> Rule:
    """Documents whose ``field`` holds the signed-in user's id. A create is filled in with it
    when the client leaves it out (and refused when it names someone else); an update allowed
    by this rule may not change it."""
    if not isinstance(field, str) or not field:
        raise ConfigurationError("owner(...) takes the name of the field holding the owner's id, e.g. owner('author')")
    return _Where({field: None}, owner_field=field)


def where(filters: Mapping[str, Any] | None = None, /, **more: Any) -> Rule:
    """Documents matching these filters, keyed as in a query string (``where(status="open")``,
    ``where({"price__lt": 100})``); a value may be a function of the user data
    (``where(team=lambda user: user["team"])``)."""
    merged = {**(filters or {}), **more}
    if not merged:
        raise ConfigurationError("where(...) takes at least one filter, e.g. where(status='open')")
    return _Where(merged)


class _Custom(Rule):
    def __init__(self, test: Callable[..., bool], anonymous: bool) -> None:
        self.test = test
        self.needs_user = not anonymous
        try:
            arity = len([p for p in inspect.signature(test).parameters.values()
                         if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
        except (TypeError, ValueError):
            arity = 1
        if arity not in (1, 2):
            raise ConfigurationError(f"rule({getattr(test, '__name__', test)!r}): the function takes the user "
                                     "(and the document, for a rule on documents): def f(user) or def f(user, doc)")
        self.on_documents = arity == 2
        self.filterable = not self.on_documents
        self.name = getattr(test, "__name__", "rule")

    def resolve(self, caller: Caller) -> Resolved:
        if caller.user is None and self.needs_user:
            return False
        if not self.on_documents:
            return bool(self.test(caller.user))
        test = self.test
        return ((Check(lambda who, doc: bool(test(who.user, doc)), self.name),),)

    def describe(self) -> str:
        return f"rule({self.name})"


def rule(test: Callable[..., bool], *, anonymous: bool = False) -> Rule:
    """A rule of your own: ``test(user)`` (the user data dict) or ``test(user, document)``
    (the stored document as a dict, with its ``id``) returns whether the caller may. It is
    called only for signed-in users unless ``anonymous=True`` (then ``user`` may be None).
    A rule on documents cannot be a query filter: use it for writes and actions, not reads."""
    if not callable(test):
        raise ConfigurationError(f"rule(...) takes a function, got {test!r}")
    return _Custom(test, anonymous)


class _Either(Rule):
    def __init__(self, a: Rule, b: Rule) -> None:
        self.a, self.b = a, b
        self.needs_user = a.needs_user and b.needs_user
        self.on_documents = a.on_documents or b.on_documents
        self.filterable = a.filterable and b.filterable and not (a.on_documents and b.on_documents)

    def resolve(self, caller: Caller) -> Resolved:
        return _or(self.a.resolve(caller), self.b.resolve(caller))

    def describe(self) -> str:
        return f"{_group(self.a, _Both)} | {_group(self.b, _Both)}"

    def roles(self) -> frozenset[str]:
        return self.a.roles() | self.b.roles()


class _Both(Rule):
    def __init__(self, a: Rule, b: Rule) -> None:
        self.a, self.b = a, b
        self.needs_user = a.needs_user or b.needs_user
        self.on_documents = a.on_documents or b.on_documents
        self.filterable = a.filterable and b.filterable

    def resolve(self, caller: Caller) -> Resolved:
        return _and(self.a.resolve(caller), self.b.resolve(caller))

    def describe(self) -> str:
        return f"{_group(self.a, _Either)} & {_group(self.b, _Either)}"

    def roles(self) -> frozenset[str]:
        return self.a.roles() | self.b.roles()


class _Not(Rule):
    def __init__(self, inner: Rule) -> None:
        if inner.on_documents:
            raise ConfigurationError(f"~{inner!r}: only rules on the user can be negated; for documents write the "
                                     "opposite filter, e.g. where(status__ne='paid')")
        self.inner = inner
        self.needs_user = False

    def resolve(self, caller: Caller) -> Resolved:
        return not self.inner.resolve(caller)

    def describe(self) -> str:
        return f"~{_group(self.inner, (_Either, _Both))}"

    def roles(self) -> frozenset[str]:
        return self.inner.roles()


def _group(rule: Rule, kinds: type | tuple[type, ...]) -> str:
    return f"({rule.describe()})" if isinstance(rule, kinds) else rule.describe()


# -- a resource's permissions ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Permissions:
    """The rules of one resource: per operation or action name, and per field it may set."""

    rules: Mapping[str, Rule]
    fields: Mapping[str, Rule]

    def rule(self, operation: str) -> Rule | None:
        """The rule of an operation (``get``, ``list``, ``create``, ``update``, ``delete``) or of
        an action by name; None: no rule (the app's ``auth`` decides alone)."""
        return self.rules.get(operation)

    @property
    def declared(self) -> bool:
        return bool(self.rules or self.fields)

    def names(self) -> frozenset[str]:
        """The operation and action names rules were given for."""
        return frozenset(self.rules)

    def roles(self) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for value in (*self.rules.values(), *self.fields.values()):
            found |= value.roles()
        return found


NO_PERMISSIONS = Permissions({}, {})


def permissions(model_name: str, allow: Mapping[str, Any] | None, writable_by: Mapping[str, Any] | None,
                fields: Iterable[str]) -> Permissions:
    """Check ``@resource(allow=..., writable_by=...)`` and expand its groups.

    Raises:
        ConfigurationError: not a dict, a value that is no rule, a read rule that cannot be a
            query filter, a field the model does not have.
    """
    where = f"@resource(allow=...) of {model_name}"
    rules: dict[str, Rule] = {}
    if allow is not None:
        if not isinstance(allow, Mapping):
            raise ConfigurationError(f"{where}: a dict from operation to rule, e.g. "
                                     "{'read': anyone, 'write': role('admin')}")
        # groups first, then single operations: {"write": role("admin"), "create": signed_in}
        for key in sorted(allow, key=lambda k: (k not in GROUPS, k != "*")):
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"{where}: keys are operation or action names, got {key!r}")
            value = _rule(allow[key], f"{where}[{key!r}]")
            for operation in GROUPS.get(key, (key,)):
                rules[operation] = value
        for operation in ("get", "list"):
            read = rules.get(operation)
            if read is not None and not read.filterable:
                raise ConfigurationError(
                    f"{where}[{operation!r}]: {read!r} cannot be a query filter, and a list must show what "
                    "item reads would: give reads rules on the user (role, signed_in), owner(...) or where(...) "
                    "(combined with | only where one side is on the user); keep rules on documents for writes")
    field_rules: dict[str, Rule] = {}
    if writable_by is not None:
        if not isinstance(writable_by, Mapping):
            raise ConfigurationError(f"@resource(writable_by=...) of {model_name}: a dict from field to rule, "
                                     "e.g. {'status': role('admin')}")
        known = set(fields)
        for name, value in writable_by.items():
            if name not in known:
                raise ConfigurationError(f"@resource(writable_by=...) of {model_name}: {name!r} is not a top-level "
                                         f"field (fields: {', '.join(sorted(known))})")
            field_rules[name] = _rule(value, f"@resource(writable_by=...) of {model_name}[{name!r}]")
    return Permissions(rules, field_rules)


def route_rule(value: Any, where: str) -> Rule | None:
    """``@route(allow=...)`` / ``@action(allow=...)``: a rule, or None."""
    return None if value is None else _rule(value, where)


# -- the permission matrix: routes × callers ---------------------------------------------------


#: The callers a matrix shows besides one column per role the rules name.
ANONYMOUS_COLUMN, SIGNED_IN_COLUMN = "anonymous", "signed in"
_USER = "<user>"


def columns(roles: Iterable[str]) -> list[tuple[str, Caller]]:
    """(column, caller) of a permission matrix: anonymous, any signed-in user, then each role."""
    found = [(ANONYMOUS_COLUMN, ANONYMOUS), (SIGNED_IN_COLUMN, Caller({"id": _USER}))]
    return found + [(f"role {name}", Caller({"id": _USER}, frozenset({name}))) for name in sorted(roles)]


def verdict(rule: Rule | None, caller: Caller, required: bool) -> str:
    """A matrix cell: ``yes``, ``401``, ``403``, or what the caller may do it to (``own buyer``,
    ``where status='open'``, ``if rule(name)``)."""
    if rule is None:
        return "401" if required and caller.user is None else "yes"
    resolved = rule.resolve(caller)
    if resolved is True:
        return "yes"
    if resolved is False:
        return "401" if caller.user is None and rule.needs_user else "403"
    return " or ".join(" and ".join(_describe_atom(atom) for atom in conjunct) for conjunct in resolved)


def _describe_atom(atom: Any) -> str:
    if isinstance(atom, Check):
        return f"if rule({atom.name})"
    owned = [f"own {name}" for name in sorted(atom.sticky)]
    rest = [f"{k}={'<user>' if v == _USER else repr(v)}" for k, v in atom.filters.items() if k not in atom.sticky]
    return " and ".join([*owned, *(["where " + ", ".join(rest)] if rest else [])])


__all__ = [
    "ANONYMOUS", "ANONYMOUS_COLUMN", "SIGNED_IN_COLUMN", "Caller", "Check", "Filters", "GROUPS", "NO_PERMISSIONS", "OPERATIONS", "Permissions", "Rule",
    "anyone", "columns", "nobody", "owner", "permissions", "role", "route_rule", "rule", "signed_in", "verdict",
    "where",
]
