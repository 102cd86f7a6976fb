"""The operations layer: every way of reaching a resource's documents goes through here.

:class:`Documents` (``operations``) validates, authorizes, sends the signals and writes; its
helpers, below it, turn request data into stored documents and back (``conversion``), keep
references whole (``references``) and match documents against queries (``matcher``).
"""

from __future__ import annotations

from .operations import Documents, Found, Transaction, entity_tags, etag, etag_of, precondition_holds, version_of

__all__ = ["Documents", "Found", "Transaction", "entity_tags", "etag", "etag_of", "precondition_holds", "version_of"]
