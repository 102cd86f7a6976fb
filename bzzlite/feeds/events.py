"""What a feed carries: changes read from the journal, and the events made of them.

A :class:`Change` is one committed write as the journal recorded it (one per document,
in commit order, numbered by the journal). A subscriber receives an :class:`Event` for
each change whose document matches its query before or after the change; the event's
JSON body is made once per distinct query and shared by every subscriber that asked
the same thing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..documents import conversion as documents
from ..documents.matcher import matches
from ..errors import InvalidDocument
from ..query import project
from ..stores.base import Record

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..query import Condition

log = logging.getLogger("bzzlite.feeds")

CREATED, UPDATED, DELETED = "created", "updated", "deleted"
RESET = "reset"  # a journal marker: this collection's changes since the previous event are unknown


@dataclass(slots=True)
class Change:
    """A committed write: ``doc`` is the document after it (before it, for a deletion);
    ``old`` the document before an update."""

    seq: int
    collection: str  # the resource's collection path, e.g. "/api/people"
    op: str  # created | updated | deleted
    doc_id: str
    doc: dict[str, Any]
    old: dict[str, Any] | None = None
    at: str | None = None  # ISO time of the commit, when the store knows it
    before_known: bool = True  # False: the document before an update or deletion is unknown


class Decoded:
    """A change as its resource's subscribers see it: full documents (defaults filled,
    with their id) before and after, and the updated fields."""

    __slots__ = ("after", "before", "change", "unknown", "updated_fields")

    def __init__(self, spec: ResourceSpec, change: Change) -> None:
        self.change = change
        self.before: dict[str, Any] | None = None
        self.after: dict[str, Any] | None = None
        self.updated_fields: dict[str, Any] | None = None
        self.unknown = not change.before_known and change.op not in (CREATED, RESET)
        if change.op == RESET:
            return
        doc = _public(spec, change.doc_id, change.doc)
        if doc is None and change.op != DELETED:
            # The document does not match the model (logged): it is served to no one, so the
            # subscribers are told only its id, to drop it.
            self.unknown = True
        if self.unknown:  # written by another program, with no pre-image to tell
            self.before, self.after = None, None if change.op == DELETED else doc
        elif change.op == CREATED:
            self.before, self.after = None, doc
        elif change.op == DELETED:
            self.before, self.after = doc, None
            self.unknown = doc is None
        else:
            self.before = _public(spec, change.doc_id, change.old or {})
            self.after = doc
            if self.before is None:
                self.unknown = True
                return
            # as clients see the document: write-only fields never, computed ones as computed
            self.updated_fields = documents.updated_fields(
                {k: v for k, v in self.before.items() if k != "id"}, {k: v for k, v in doc.items() if k != "id"}
            )

    def event_for(self, conditions: tuple[Condition, ...], fields: tuple[str, ...] | None,
                  reach: tuple[Condition, ...] = ()) -> Event | None:
        """The event a subscriber with this query receives, or None when it concerns none
        of the documents it can see (neither before nor after the change). ``reach`` is what
        it may read at all (the scope's and the rules' conditions): a change whose document
        before is unknown is told (by its id only) to a subscriber that may read the document
        after it, never to one that may not (it may have been theirs: MongoDB's pre-images
        tell, docs/feeds.md)."""
        change = self.change
        if change.op == RESET:  # every subscriber of the collection must reload
            reset = {"type": RESET, "event_id": change.seq, "reason": "changes were lost: " + str(change.doc.get("reason", "")) +
                    "; reload, then follow from this event"}
            return Event(change.seq, RESET, orjson.dumps(reset))
        now = matches(conditions, self.after)
        if not now and self.unknown and reach and not matches(reach, self.after):
            return None  # nothing about a document outside what the subscriber may read
        if not now and self.unknown:
            # Whether the subscriber could see the document before is unknown: tell it only
            # the id, to drop the document if it has it.
            doc: dict[str, Any] = {"id": change.doc_id}
        elif not now and not matches(conditions, self.before):
            return None
        else:
            doc = project(self.after if self.after is not None else self.before, fields)  # type: ignore[arg-type]
        body: dict[str, Any] = {"event_id": change.seq, "type": change.op, "doc": doc, "matches": now}
        if self.updated_fields is not None:
            body["updated_fields"] = project_updated_fields(self.updated_fields, fields)
        if change.at is not None:
            body["at"] = change.at
        return Event(change.seq, change.op, orjson.dumps(body))


def _public(spec: ResourceSpec, doc_id: str, doc: dict[str, Any]) -> dict[str, Any] | None:
    """A journaled document as clients see it (fitted to the model: the journal keeps documents as
    stored), or None, logged, when it does not match the model."""
    try:
        return documents.as_json(spec, Record(doc_id, 0, spec.versions.read(doc_id, doc)))
    except InvalidDocument as exc:
        log.error("change feed of %s: %s; its subscribers are told only its id. `bzzlite check` lists every "
                  "such document", spec.path, exc)
        return None


def project_updated_fields(updated: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """``updated_fields`` limited to what ``?fields=`` asked for (a dotted path narrows
    ``from`` and ``to``; a field whose asked-for part did not change is left out)."""
    if fields is None:
        return updated
    before = project({"id": None, **{k: v["from"] for k, v in updated.items()}}, fields)
    after = project({"id": None, **{k: v["to"] for k, v in updated.items()}}, fields)
    out: dict[str, Any] = {}
    for key in updated:
        if key == "id" or (key not in before and key not in after):
            continue
        old, new = before.get(key), after.get(key)
        if old != new or type(old) is not type(new):
            out[key] = {"from": old, "to": new}
    return out


class Event:
    """One event for the subscribers of one query: its id, type and JSON body."""

    __slots__ = ("_chunk", "_sse", "body", "seq", "type")

    def __init__(self, seq: int, type_: str, body: bytes) -> None:
        self.seq = seq
        self.type = type_
        self.body = body
        self._sse: bytes | None = None
        self._chunk: bytes | None = None

    @property
    def sse(self) -> bytes:
        """The event as Server-Sent Events lines (made once, shared by subscribers)."""
        if self._sse is None:
            self._sse = b"id: %d\nevent: %s\ndata: %s\n\n" % (self.seq, self.type.encode(), self.body)
        return self._sse

    @property
    def sse_chunk(self) -> bytes:
        """:attr:`sse` framed as one HTTP/1.1 chunk, ready for the socket."""
        if self._chunk is None:
            sse = self.sse
            self._chunk = b"%x\r\n%s\r\n" % (len(sse), sse)
        return self._chunk

    def message(self, sub_id: bytes) -> bytes:
        """The event as a WebSocket message naming the subscription (``sub_id`` is JSON)."""
        return b'{"sub":' + sub_id + b"," + self.body[1:]


def sse_control(type_: str, seq: int, body: dict[str, Any]) -> bytes:
    """A feed's own event (ready, reset, overflow) as Server-Sent Events lines."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, type_.encode(), orjson.dumps(body))
