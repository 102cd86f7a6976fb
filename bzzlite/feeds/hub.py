"""The feed hub of one process: who subscribes to what, and delivery from the journal.

While at least one subscriber is connected, one task follows the store's journal and
hands each batch of changes to the subscribers of the changed collections; nothing
runs when nobody subscribes. Subscribers that asked the same query form a group: the
match and the event body are computed once per group, then written to each member.
A write never waits for a subscriber: delivery only appends to the subscriber's
bounded output buffer, and one whose buffer is full is disconnected (it can resume).

A process whose reader falls more than the journal's size behind (a long GC pause, a paused
VM, a starved CPU, a slow link to MongoDB) finds the changes it had not read trimmed: the
next id it reads is not the one after its position. Its subscribers are then sent ``reset``,
as a resuming client whose id is too old is, never left with a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import HTTPError
from .events import Decoded, Event
from .journal import Journal, TooOld, Unsupported, stop_if_cancelled

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..query import Condition
    from ..runtime import Runtime
    from ..stores.base import Store

log = logging.getLogger("bzzlite.feeds")

_REPLAY_BATCH = 200
_MAX_BACKLOG = 10_000  # live events held for a subscriber while it replays
_SLICE = 500  # subscribers served before other work gets a turn (a send costs ~10-30 µs)


class Subscription:
    """One query followed by one client; subclasses write to an SSE stream or a WebSocket."""

    __slots__ = ("__weakref__", "backlog", "closed", "conditions", "fields", "key", "last", "lost", "reach", "spec")

    def __init__(self, spec: ResourceSpec, conditions: tuple[Condition, ...], fields: tuple[str, ...] | None,
                 reach: tuple[Condition, ...] = ()) -> None:
        self.spec = spec
        self.conditions = conditions  # the query's, scope and rules included
        self.fields = fields
        self.reach = reach  # the scope's and the rules' alone: what the subscriber may read at all
        self.key = (spec.path, orjson.dumps([[[c.path, c.op, c.value, c.is_list] for c in part]
                                             for part in (conditions, reach)]), fields)
        self.last = 0  # the id of the latest change this subscriber is up to date with
        self.backlog: list[Event] | None = None  # live events held while replaying
        self.lost = 0  # changes up to this id were trimmed before this process read them (while replaying)
        self.closed = False

    # -- what the hub calls --------------------------------------------------------------

    def offer(self, events: list[Event]) -> None:
        if self.backlog is not None:
            self.backlog.extend(events)
            if len(self.backlog) > _MAX_BACKLOG:
                self.overflow("too many changes arrived while replaying")
            return
        if events[0].seq <= self.last:
            events = [e for e in events if e.seq > self.last]
            if not events:
                return
        self.last = events[-1].seq
        self.deliver(events)

    def skip(self, resumed: int, reason: str) -> None:
        """The changes up to ``resumed`` were trimmed before this process read them: a
        subscriber not yet past them is told to reload (``reset``), then follows from there."""
        if self.backlog is not None:  # replaying from the journal: decided when the replay ends
            self.lost = max(self.lost, resumed)
        elif resumed > self.last:
            self.last = resumed
            self.control("reset", resumed, {"event_id": resumed, "reason": reason})

    def deliver(self, events: list[Event]) -> None:
        """Queue events for the client (never blocks; overflows instead)."""
        raise NotImplementedError

    def control(self, type_: str, seq: int | None, body: dict[str, Any]) -> None:
        """Send one of the feed's own events: ready, reset, overflow."""
        raise NotImplementedError

    def overflow(self, reason: str) -> None:
        """Disconnect a client that fell too far behind, telling it why and where it was."""
        raise NotImplementedError

    def end(self) -> None:
        """Stop (client gone, server stopping)."""
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait until what was queued so far has been handed to the network."""


class _Group:
    """Subscribers of one collection that asked the same conditions and fields."""

    __slots__ = ("conditions", "fields", "members", "reach")

    def __init__(self, conditions: tuple[Condition, ...], fields: tuple[str, ...] | None,
                 reach: tuple[Condition, ...]) -> None:
        self.conditions = conditions
        self.fields = fields
        self.reach = reach
        self.members: dict[Subscription, None] = {}  # insertion-ordered set


def journal_for(store: Store, *, size: int, poll: float, lease: float = 2.0) -> Journal | None:
    """The journal of a store, or None when the store keeps none (each store's journal is
    beside it: ``feeds.sqlite``, ``feeds.mongo``). ``lease``: the MongoDB journal leader's."""
    from ..stores.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from .sqlite import SQLiteJournal

        return SQLiteJournal(store, size=size, poll=poll)
    if type(store).__name__ == "MongoStore":
        from .mongo import MongoJournal

        return MongoJournal(store, size=size, poll=poll, lease=lease)  # type: ignore[arg-type]
    return None


class Feeds:
    """The change feeds of one :class:`~bzzlite.runtime.Runtime` (one process)."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.journal_size = settings.feed_journal_size
        self.heartbeat = settings.feed_heartbeat
        self.buffer = settings.feed_buffer
        self.poll = settings.feed_poll
        self.lease = settings.feed_lease
        self.specs = {spec.path: spec for spec in runtime.registry.resources.values()}
        self.journal: Journal | None = None
        self.groups: dict[str, dict[Any, _Group]] = {}  # collection path -> key -> group
        self.count = 0  # subscriptions in this process
        self.position = 0  # id of the latest change handed to subscribers
        self.overflows = 0  # subscribers disconnected for falling behind
        self.closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._endpoints: dict[Any, None] = {}  # open streams and sockets, ended on close

    # -- store lifecycle -----------------------------------------------------------------

    async def attach(self, store: Store) -> None:
        """Start journaling in a newly opened store (the runtime calls this at open)."""
        self.closing = False
        if self.journal is not None:
            await self._stop()
            await self.journal.close()
        self.journal = journal_for(store, size=self.journal_size, poll=self.poll, lease=self.lease)
        if self.journal is not None:
            try:
                await self.journal.attach(list(self.specs.values()))
            except Unsupported as exc:
                log.warning("change feeds are off: %s", exc)
                self.journal = None

    async def close(self) -> None:
        """End every stream and socket, stop following the journal."""
        self.closing = True
        for endpoint in list(self._endpoints):
            endpoint.shutdown()
        self._endpoints.clear()
        for group in [g for groups in self.groups.values() for g in groups.values()]:
            for sub in list(group.members):
                sub.end()
        await self._stop()
        if self.journal is not None:
            await self.journal.close()

    def opened(self, endpoint: Any) -> None:
        """Track a stream or socket (it has a ``handler``): it gets ``heartbeat(position)``
        calls, ``unauthorized()`` when its user's session ends, ``shutdown()`` when the
        feeds close."""
        self._endpoints[endpoint] = None

    def closed(self, endpoint: Any) -> None:
        self._endpoints.pop(endpoint, None)

    # -- subscribing ---------------------------------------------------------------------

    async def ready(self) -> Journal:
        """Make sure the journal is being followed; call before answering a subscriber.

        Raises:
            HTTPError: 503 while the store (or the server) is unavailable, 501 when the
                store keeps no journal.
        """
        await self.runtime.ready_store()  # (re)opening the store re-attaches the feeds
        if self.closing:
            raise HTTPError(503, "The server is shutting down.", headers={"Retry-After": "1"})
        journal = self.journal
        if journal is None:
            raise HTTPError(501, "This store offers no change feeds.")
        try:
            await journal.wake()
        except Unsupported as exc:
            log.warning("change feeds are off: %s", exc)
            self.journal = None
            raise HTTPError(501, "This store offers no change feeds.") from None
        if not self._tasks:
            head = await journal.head()
            if not self._tasks:  # nobody started them while we waited
                self.position = head
                self._tasks = [
                    asyncio.ensure_future(self._follow(journal, head)),
                    asyncio.ensure_future(self._beat()),
                ]
        return journal

    async def subscribe(self, sub: Subscription, since: int | None) -> None:
        """Register ``sub``; first replay what it missed after ``since`` (if given).

        The subscriber gets a ``reset`` event when ``since`` is older than the journal, then
        a ``ready`` event carrying the id it is up to date with, then live events.
        """
        journal = await self.ready()
        if since is None:
            sub.last = self.position
            self._add(sub)
            sub.control("ready", sub.last, {"event_id": sub.last})
            return
        sub.last = since
        sub.backlog = []
        self._add(sub)
        try:
            if since < 0:  # not an id this server gave
                raise TooOld(since)
            await self._replay(journal, sub)
        except TooOld:
            sub.last = max(self.position, await journal.head())
            sub.control("reset", sub.last, {
                "event_id": sub.last,
                "reason": f"the changes after event {since} are no longer in the journal "
                          "(or that id is unknown here): reload, then follow from this event",
            })
        if sub.closed:
            return
        if sub.lost > sub.last:  # the live path lost changes the replay did not reach
            reason = _behind(sub.last, sub.lost)
            sub.last = sub.lost
            sub.control("reset", sub.last, {"event_id": sub.last, "reason": reason})
        backlog, sub.backlog = sub.backlog or [], None
        if backlog:
            sub.offer(backlog)
        sub.last = max(sub.last, self.position)
        sub.control("ready", sub.last, {"event_id": sub.last})

    async def _replay(self, journal: Journal, sub: Subscription) -> None:
        spec = sub.spec
        budget = max(1, self.buffer // 4)
        while not sub.closed:
            changes = await journal.replay(sub.last, _REPLAY_BATCH, spec.path)
            events: list[Event] = []
            size = 0
            for change in changes:
                if change.collection != spec.path:
                    continue
                event = Decoded(spec, change).event_for(sub.conditions, sub.fields, sub.reach)
                if event is not None:
                    events.append(event)
                    size += len(event.body)
                if size > budget:
                    sub.deliver(events)
                    events, size = [], 0
                    await sub.drain()
            if events:
                sub.deliver(events)
            if changes:
                sub.last = changes[-1].seq
            if len(changes) < _REPLAY_BATCH:
                return
            await sub.drain()

    def _add(self, sub: Subscription) -> None:
        groups = self.groups.setdefault(sub.spec.path, {})
        group = groups.get(sub.key)
        if group is None:
            group = groups[sub.key] = _Group(sub.conditions, sub.fields, sub.reach)
        group.members[sub] = None
        self.count += 1

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` (idempotent); the last one out stops following the journal."""
        groups = self.groups.get(sub.spec.path)
        group = groups.get(sub.key) if groups is not None else None
        if groups is None or group is None or sub not in group.members:
            return
        del group.members[sub]
        self.count -= 1
        if not group.members:
            del groups[sub.key]
            if not groups:
                del self.groups[sub.spec.path]
        if self.count == 0:
            if self.journal is not None:
                self.journal.idle()
            asyncio.ensure_future(self._stop())

    async def _stop(self) -> None:
        if self.count and not self.closing:
            return
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was logged
                await task

    # -- delivery ------------------------------------------------------------------------

    async def _follow(self, journal: Journal, after: int) -> None:
        try:
            async for batch in journal.follow(after):
                if batch and batch[0].seq > self.position + 1:  # ids are consecutive: these were trimmed
                    self.fell_behind(batch[0].seq - 1)
                await self.dispatch(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following the change journal failed; feeds stop until the next subscriber")
            for group in [g for groups in self.groups.values() for g in groups.values()]:
                for sub in list(group.members):
                    sub.end()
            self._tasks = []

    def fell_behind(self, resumed: int) -> None:
        """The changes after :attr:`position` up to ``resumed`` left the journal before this
        process read them: every subscriber here is told to reload (``reset``)."""
        log.warning("the change feed fell behind the journal: changes %d to %d were trimmed before this process "
                    "read them (feed_journal_size=%d); its subscribers are told to reload",
                    self.position + 1, resumed, self.journal_size)
        reason = _behind(self.position, resumed)
        self.position = max(self.position, resumed)
        for group in [g for groups in self.groups.values() for g in groups.values()]:
            for sub in list(group.members):
                try:
                    sub.skip(resumed, reason)
                except Exception:
                    log.exception("telling a feed subscriber to reload failed; disconnecting it")
                    sub.end()

    async def dispatch(self, changes: list[Any]) -> None:
        """Hand a batch of committed changes (in id order) to the matching subscribers,
        letting other work run between slices of a large audience."""
        pending: dict[_Group, list[Event]] = {}
        for change in changes:
            groups = self.groups.get(change.collection)
            if not groups:
                continue
            decoded = Decoded(self.specs[change.collection], change)
            for group in groups.values():
                event = decoded.event_for(group.conditions, group.fields, group.reach)
                if event is not None:
                    pending.setdefault(group, []).append(event)
        if changes:
            self.position = max(self.position, changes[-1].seq)
        done = 0
        for group, events in pending.items():
            for sub in list(group.members):
                try:
                    sub.offer(events)
                except Exception:
                    log.exception("delivering to a feed subscriber failed; disconnecting it")
                    sub.end()
                done += 1
                if done % _SLICE == 0:
                    await asyncio.sleep(0)

    async def _beat(self) -> None:
        while True:
            stop_if_cancelled()
            await asyncio.sleep(self.heartbeat)
            for done, endpoint in enumerate(list(self._endpoints), 1):
                try:
                    endpoint.heartbeat(self.position)
                except Exception:
                    log.exception("a feed heartbeat failed")
                if done % _SLICE == 0:
                    await asyncio.sleep(0)
            if self.runtime.auth is not None:
                await self._recheck_users()

    async def _recheck_users(self) -> None:
        """End the streams of users whose session ended (signed out, expired) since they
        subscribed: a feed must not outlive the right to read the list."""
        auth = self.runtime.auth
        assert auth is not None
        for endpoint in list(self._endpoints):
            handler = endpoint.handler
            user = getattr(handler, "_current_user", None)
            if not user:
                continue
            try:
                signed_in = await auth.still_signed_in(handler, user)
            except Exception as exc:  # noqa: BLE001 - the revocation store is away: check next time
                log.warning("cannot re-check a feed subscriber's session: %s", exc)
                continue
            if not signed_in:
                endpoint.unauthorized()


def _behind(after: int, resumed: int) -> str:
    return (f"the changes after event {after} up to {resumed} left the journal before this server read them "
            "(it fell behind by more than feed_journal_size changes): reload, then follow from this event")
