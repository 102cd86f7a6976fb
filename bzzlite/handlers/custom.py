"""The handler of custom routes and actions (``@route``, ``@action``).

Each request: the method (405 with ``Allow``), auth (the app's rules; for an action, its
resource's rules for the action's operation), typed path parameters, the document an action
is on (through the resource's :class:`~bzzlite.documents.Documents`: its scope applies, so
someone else's document is a 404), the body model (422), then the endpoint; its return value
is the JSON answer (a model, a dict or list; ``None`` is a 204). Errors are problem+json.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..documents import Documents, authorize_call, etag_of
from ..errors import HTTPError, ValidationFailed, error_list
from ..models.schema import check_object, unknown_keys
from ..routing import CustomRoute, convert_path
from .base import BaseHandler, _AnyMethod

if TYPE_CHECKING:
    from ..runtime import Runtime


class RouteHandler(BaseHandler):
    """Serves one :class:`~bzzlite.routing.CustomRoute`.

    The endpoint gets this handler first: ``handler.documents(Model)`` (bound to the request),
    ``handler.current_user``, ``handler.request``, ``handler.set_header(...)``.
    """

    SUPPORTED_METHODS = _AnyMethod()  # type: ignore[assignment]
    route: CustomRoute
    instance: BaseModel | None = None  # an action's document

    def initialize(self, runtime: Runtime, route: CustomRoute, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.route = route

    def allowed_methods(self) -> tuple[str, ...]:
        return self.route.methods

    def prepare(self) -> Any:
        if self.request.method not in self.route.methods:
            raise HTTPError(405, f"{self.request.method} is not allowed here; use {', '.join(self.route.methods)}.")
        return super().prepare()

    async def _serve(self, **path: str) -> None:
        route = self.route
        kwargs: dict[str, Any] = {}
        if route.spec is not None:  # an action: its rule (else the resource's for its operation)
            docs: Documents[Any] = Documents(self.runtime, route.spec, self)
            name = route.action or route.operation or "update"
            await docs.authorize(name, rule=route.rule, fallback=route.operation or "update")
            record = await docs.read(path.get("id"), name)  # 404 for what they may not read, else 403
            self.instance = docs.instance(record)
            if route.instance_param:
                kwargs[route.instance_param] = self.instance
        elif route.allow is not None or (self.runtime.auth is not None and route.auth is not False):
            await authorize_call(self.runtime, self, route.allow, required=route.auth is not False)
        try:
            kwargs.update({k: v for k, v in convert_path(route, path).items() if k not in kwargs})
        except ValueError as exc:
            name = str(exc)
            kind = route.path_params[name].__name__
            raise ValidationFailed([{"loc": ["path", name], "msg": f"Input should be a valid {kind}",
                                     "type": f"{kind}_parsing"}], "A path parameter is invalid.") from None
        if route.body is not None and route.body_param is not None:
            data = check_object(self.parse_body())
            errors = list(unknown_keys(route.body_shape, data))
            try:
                kwargs[route.body_param] = route.body.model_validate(data)
            except ValidationError as exc:
                errors += error_list(exc)
            if errors:
                raise ValidationFailed(errors)
        result = route.endpoint(self, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if self._finished:
            return  # the endpoint answered itself
        self._render(result)

    def _render(self, result: Any) -> None:
        if result is None:
            self.set_status(204)
            self.finish()
            return
        if isinstance(result, BaseModel):
            tag = etag_of(result)
            if tag is not None:
                self.set_header("ETag", tag)
        self.write_json(self._public(result), self.route.status)

    def _public(self, value: Any) -> Any:
        """What an endpoint returned, as JSON: models (in lists, dicts, ``Found`` pages too) are
        dumped, a resource's documents without their write-only fields."""
        if isinstance(value, BaseModel):
            body = value.model_dump(mode="json")
            hidden = self._hidden(type(value))
            if hidden is None:  # not a resource's document: the model's own order
                return body
            if "id" in body:  # a document: its id first, as every other answer holding one
                body = {"id": body["id"], **body}
            return {k: v for k, v in body.items() if k not in hidden}
        if isinstance(value, list | tuple):
            return [self._public(item) for item in value]
        if isinstance(value, dict):
            return {key: self._public(item) for key, item in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {field.name: self._public(getattr(value, field.name)) for field in dataclasses.fields(value)}
        return value

    def _hidden(self, model: type) -> frozenset[str] | None:
        """The write-only fields of the resource whose model ``model`` is (or extends); None for
        a model that is no resource's."""
        known = self.runtime.write_only
        if model in known:
            return known[model]
        return next((fields for base, fields in known.items() if issubclass(model, base)), None)

    async def get(self, **path: str) -> None:
        await self._serve(**path)

    async def post(self, **path: str) -> None:
        await self._serve(**path)

    async def put(self, **path: str) -> None:
        await self._serve(**path)

    async def patch(self, **path: str) -> None:
        await self._serve(**path)

    async def delete(self, **path: str) -> None:
        await self._serve(**path)
