"""The operations layer: every way of reaching a resource's documents goes through here.

:class:`Documents` (``operations``) validates, authorizes, sends the signals and writes;
:class:`NestedDocuments` (``nested``) does the same inside one document; ``transaction``
groups writes. Their helpers, below them, turn request data into stored documents and back
(``conversion``), keep references whole (``references``), address a part of a document
(``paths``) and match documents against queries (``matcher``). Code above this package
imports the names below; only the change feeds, which render and match change events, use
``conversion`` and ``matcher`` themselves.
"""

from __future__ import annotations

from .access import authorize_call
from .matcher import matches
from .nested import NestedDocuments
from .operations import Documents, Found, entity_tags, etag, etag_of, precondition_holds, version_of
from .paths import NestedPath, PathNotFound
from .transactions import Transaction, current_transaction, transaction

__all__ = [
    "Documents", "Found", "authorize_call", "NestedDocuments", "NestedPath", "PathNotFound", "Transaction", "current_transaction",
    "entity_tags", "etag", "etag_of", "matches", "precondition_holds", "transaction", "version_of",
]
