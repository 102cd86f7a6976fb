"""Live change feeds: every collection as a resumable stream of its changes.

``GET /name?<query>`` with ``Accept: text/event-stream`` streams Server-Sent Events;
``/name/_changes`` is a WebSocket carrying several subscriptions. Changes come from a
journal kept in the store (so every worker process, and on MongoDB every program,
feeds every subscriber), numbered so that a client can resume where it left off.
See ``docs/feeds.md``.
"""

from __future__ import annotations

from ..documents import matches
from .events import Change, Event
from .hub import Feeds, Subscription
from .journal import Journal, TooOld

__all__ = ["Change", "Event", "Feeds", "Journal", "Subscription", "TooOld", "matches"]
