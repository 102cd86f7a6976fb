"""bzzlite's one error tree.

Configuration mistakes are the developer's and are raised at import time;
``HTTPError`` is the client's and becomes a problem+json response; store errors
know nothing of HTTP and are mapped to statuses by the HTTP layer.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class BzzliteError(Exception):
    """Base class of every error bzzlite raises on purpose."""


class ConfigurationError(BzzliteError, TypeError):
    """The application is declared wrongly; the message says how to fix it."""


class HTTPError(BzzliteError):
    """Stop the request and answer with ``status`` and a problem+json body.

    Raise it from a handler or from a ``pre_*`` receiver. ``message`` is shown to
    the client; ``log_message`` (optional) goes only to the log.
    """

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        log_message: str | None = None,
    ) -> None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        self.status = status
        self.reason = reason
        self.message = message if message is not None else reason
        self.errors = errors
        self.headers = headers or {}
        self.log_message = log_message
        super().__init__(status, self.message)

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


class ValidationFailed(HTTPError):
    """The body is well-formed but does not validate against the model (422)."""

    def __init__(self, errors: list[dict[str, Any]], message: str = "The request body is invalid.") -> None:
        super().__init__(422, message, errors=errors)


class QueryError(HTTPError):
    """A query parameter is unknown, malformed or does not coerce (400)."""

    def __init__(self, parameter: str, message: str, type_: str = "query_invalid") -> None:
        self.parameter = parameter
        super().__init__(
            400,
            f"Bad query parameter {parameter!r}: {message}",
            errors=[{"loc": ["query", parameter], "msg": message, "type": type_}],
        )


class StoreError(BzzliteError):
    """Base of the errors a store raises; they carry no HTTP status."""


class NotFound(StoreError):
    """No document with that id."""


class DuplicateKey(StoreError):
    """A unique field already holds that value."""

    def __init__(self, field: str | None, value: Any = None) -> None:
        self.field = field
        self.value = value
        super().__init__(field, value)


class Referenced(StoreError):
    """A delete refused: other documents refer to this one (``on_delete="restrict"``); 409."""

    def __init__(self, referrers: list[tuple[str, str, int]]) -> None:
        self.referrers = referrers  # (model name, field, how many): none when the caller may read none of them
        named = "; ".join(f"{n} {model} document(s) in {field}" for model, field, n in referrers)
        super().__init__(f"other documents refer to this one: {named}" if named else "other documents refer to it")


class VersionConflict(StoreError):
    """The document changed since the version the write was conditioned on."""


class QueryTooComplex(StoreError):
    """The store refuses the query itself (too many terms): the client's to simplify, not to retry."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (or answered too late)."""


class TransactionIncomplete(StoreError):
    """A transaction on a MongoDB without transactions failed midway and some of its writes
    could not be undone (someone else changed those documents in between): 409 over HTTP."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        super().__init__(f"the transaction failed and these writes could not be undone: {', '.join(ids)}")


class ConstraintBroken(StoreUnavailable):
    """A unique constraint the stored documents break: the store cannot build its index, so it
    does not open (a new ``Unique`` on a field that holds duplicates). ``bzzlite check`` lists
    every offending document; ``command`` is that command line, when the caller knows it."""

    def __init__(self, resource: str, field: str, groups: list[tuple[Any, list[str]]], values: int,
                 command: str | None = None) -> None:
        self.resource = resource  # the collection path, e.g. "/item"
        self.field = field
        self.groups = groups  # a few (value, ids holding it)
        self.values = values  # how many values more than one document holds
        self.command = command
        super().__init__(str(self))

    def __str__(self) -> str:
        shown = "; ".join(f"{value!r} in {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}"
                          for value, ids in self.groups[:3])
        more = f" (and {self.values - 3} more value(s))" if self.values > 3 else ""
        command = f"`{self.command}`" if self.command else "`bzzlite check` on this app"
        return (f"{self.resource}: Unique on {self.field!r} cannot hold, {self.values} value(s) are held by more "
                f"than one document: {shown}{more}; {command} lists them all")


class QueryTimeout(StoreError):
    """A query ran past its time budget and was stopped (``App(query_timeout=...)``)."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        super().__init__(f"the query ran past its budget of {budget:g} s and was stopped")


class InvalidDocument(BzzliteError):
    """A stored document that does not match its resource's model, and that no declared migration
    brings to it: never served as if it were valid. A problem of the server's data, not of the
    request that met it (500 over HTTP); ``bzzlite check`` lists every such document."""

    def __init__(self, resource: str, id: str, errors: list[dict[str, Any]], model: str = "") -> None:
        self.resource = resource  # the collection path, e.g. "/person"
        self.id = id
        self.errors = errors  # pydantic-style {"loc", "msg", "type"} entries
        self.model = model
        super().__init__(str(self))

    def __str__(self) -> str:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in self.errors[:3])
        more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
        return (f"the stored document {self.resource}/{self.id} does not match the {self.model or 'current'} "
                f"model: {reasons}{more}")


def error_list(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """pydantic's errors as problem+json ``errors`` entries (``loc`` is the field path)."""
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
