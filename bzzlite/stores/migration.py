"""Bringing stored documents to the model: what ``bzzlite check`` and ``bzzlite migrate`` do.

Both read every document of every resource in id order, in batches, as stored (the model's
mark included), and fit each to the current model (:meth:`bzzlite.models.migrations.Versions.fit`).

- :func:`check` validates every document (trusting no mark) and reports, per resource and
  field, how many fail the model and why, with a few ids; the fields stored documents hold that
  the model does not declare; and the unique constraints that the documents break, as they are
  or once upgraded (values held by more than one document), or that the store could not build.
- :func:`migrate` writes every document that does not carry the current mark in the model's
  form, one batch at a time, each write conditioned on the version read and keeping it (what is
  served does not change, so neither does the ETag, and no signal or change event says so).
  Nothing to remember between runs: a document written carries the current mark and the next
  run passes over it, so a run stopped halfway (a crash, Ctrl-C) is resumed by running it again.
  A document changed by the app meanwhile is read again. Documents that fail the model, or hold
  fields it does not declare (a rename without a migration would lose them), are left as stored
  and reported.

Nothing here prints: the caller gets :class:`Report` objects and a progress callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..models.migrations import MARK, Fitted
from .base import Record, Rewrite, Store

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec

#: Documents read (and written) at a time.
BATCH = 500
#: How many times a batch's documents that the app changed meanwhile are read again.
ATTEMPTS = 8
#: Example ids kept per finding.
EXAMPLES = 3

Progress = Callable[["Report", int, int], None]  # (report, documents done, documents in all)


@dataclass(slots=True)
class Finding:
    """How many documents something is true of, and a few of their ids."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, id_: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(id_)


@dataclass(slots=True)
class Report:
    """What a check or a migration found (and did) in one resource."""

    resource: str  # the collection path
    model: str
    version: int  # the model's current version
    total: int = 0  # documents read
    current: int = 0  # documents that needed nothing (carry the current mark; for check: and validate)
    upgradable: dict[int, int] = field(default_factory=dict)  # stored version -> documents that fit (check)
    written: dict[int, int] = field(default_factory=dict)  # stored version -> documents written (migrate)
    failing: int = 0  # documents that do not fit the model
    failures: dict[tuple[str, str], Finding] = field(default_factory=dict)  # (field, reason) -> documents
    undeclared: dict[str, Finding] = field(default_factory=dict)  # stored field the model lacks -> documents
    kept: int = 0  # documents migrate left as stored because they hold undeclared fields
    duplicates: dict[str, list[tuple[Any, list[str]]]] = field(default_factory=dict)  # unique field -> values
    shared_values: dict[str, int] = field(default_factory=dict)  # unique field -> values held more than once
    unbuilt: list[str] = field(default_factory=list)  # unique fields whose index the store could not build
    blocked: dict[str, Finding] = field(default_factory=dict)  # unique field -> documents a write would break it
    changing: Finding = field(default_factory=Finding)  # documents the app kept changing (migrate gave up)

    @property
    def ok(self) -> bool:
        """Nothing that needs the operator: no failure, no broken constraint, nothing left behind."""
        return not (self.failing or self.duplicates or self.unbuilt or self.kept or self.blocked
                    or self.changing.count)

    def fail(self, id_: str, fitted: Fitted) -> None:
        self.failing += 1
        for error in fitted.errors:
            key = (_field(error.get("loc") or ()), str(error.get("msg", "")))
            self.failures.setdefault(key, Finding()).add(id_)

    def note_undeclared(self, id_: str, fitted: Fitted) -> None:
        for name in fitted.undeclared:
            self.undeclared.setdefault(name, Finding()).add(id_)


def _field(loc: Sequence[Any]) -> str:
    """A validation error's place as a field path: ``address.city``, ``tags[]`` (any member)."""
    text = ""
    for part in loc:
        text += "[]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the document)"


class _Unique:
    """The values of a resource's unique fields, to find those more than one document holds."""

    def __init__(self, spec: ResourceSpec) -> None:
        self.seen: dict[str, dict[Any, Any]] = {name: {} for name in spec.schema.unique}

    def add(self, id_: str, doc: dict[str, Any]) -> None:
        """The unique values of a document as it will be once every document that fits is upgraded
        (fitted when it fits, as stored when it does not)."""
        for name, seen in self.seen.items():
            value = doc.get(name)
            if value is None or isinstance(value, (dict, list)):
                continue
            held = seen.get(value)
            if held is None:
                seen[value] = id_
            elif isinstance(held, list):
                held.append(id_)
            else:
                seen[value] = [held, id_]

    def report(self, report: Report) -> None:
        for name, seen in self.seen.items():
            shared = [(value, ids) for value, ids in seen.items() if isinstance(ids, list)]
            if shared:
                shared.sort(key=lambda pair: -len(pair[1]))
                report.duplicates[name] = [(value, ids[:EXAMPLES + 1]) for value, ids in shared[:EXAMPLES]]
                report.shared_values[name] = len(shared)


def _new_report(store: Store, spec: ResourceSpec) -> Report:
    versions = spec.versions
    report = Report(spec.path, versions.name, versions.version)
    report.unbuilt = [breach.field for breach in store.broken if breach.resource == spec.path]
    return report


async def _batches(store: Store, spec: ResourceSpec, batch: int) -> Any:
    """Every document of a resource as stored, ``batch`` at a time, in id order: ``(after, records)``
    (``after``: the id the batch was read after, to read the same window again). The next batch is
    read while this one is worked on (SQLite reads in a thread, MongoDB over the network)."""
    after: str | None = None
    records = await store.scan(spec, after, batch)
    while records:
        ahead = asyncio.ensure_future(store.scan(spec, records[-1].id, batch))
        try:
            yield after, records
        except BaseException:
            ahead.cancel()
            raise
        after = records[-1].id
        records = await ahead


def _split(record: Record) -> tuple[dict[str, Any], Any]:
    """A stored document without its mark (a copy the migration steps may change), and the mark."""
    doc = dict(record.doc)
    return doc, doc.pop(MARK, None)


async def check(store: Store, specs: Sequence[ResourceSpec], *, batch: int = BATCH,
                progress: Progress | None = None) -> list[Report]:
    """Validate every stored document against its current model (no mark trusted); see the module."""
    reports = []
    for spec in specs:
        versions = spec.versions
        report = _new_report(store, spec)
        total = await store.count(spec)
        unique = _Unique(spec)
        if progress is not None:
            progress(report, 0, total)
        unique_fields = spec.schema.unique
        async for _, records in _batches(store, spec, batch):
            for record in records:
                doc = record.doc  # read for this check alone: the steps may change it
                mark = doc.pop(MARK, None)
                stored = {name: doc.get(name) for name in unique_fields} if unique_fields else doc
                # a document with the current mark was dumped by this model: validating it is enough
                fitted = versions.fit(doc, mark, record.id, dump=mark != versions.trusted)
                report.total += 1
                report.note_undeclared(record.id, fitted)
                if fitted.doc is None:
                    report.fail(record.id, fitted)
                    unique.add(record.id, stored)
                    continue
                if mark == versions.trusted:
                    report.current += 1
                else:
                    version = fitted.version or 0
                    report.upgradable[version] = report.upgradable.get(version, 0) + 1
                unique.add(record.id, fitted.doc)
            if progress is not None:
                progress(report, report.total, max(total, report.total))
        unique.report(report)
        reports.append(report)
    return reports


async def migrate(store: Store, specs: Sequence[ResourceSpec], *, dry_run: bool = False, batch: int = BATCH,
                  drop_undeclared: bool = False, progress: Progress | None = None) -> list[Report]:
    """Write every document not in its model's current form (see the module). ``dry_run``: write
    nothing, report what would be written (and the unique values it would make shared)."""
    reports = []
    for spec in specs:
        report = _new_report(store, spec)
        total = await store.count(spec)
        unique = _Unique(spec) if dry_run else None
        if progress is not None:
            progress(report, 0, total)
        async for after, records in _batches(store, spec, batch):
            report.total += len(records)
            await _migrate_batch(store, spec, report, after, records, dry_run, drop_undeclared, unique)
            if progress is not None:
                progress(report, report.total, max(total, report.total))
        if unique is not None:
            unique.report(report)
        reports.append(report)
    return reports


async def _migrate_batch(store: Store, spec: ResourceSpec, report: Report, after: str | None,
                         records: list[Record], dry_run: bool, drop_undeclared: bool, unique: _Unique | None) -> None:
    """Fit and write one batch; the documents the app changed meanwhile are read again and fitted
    anew (up to :data:`ATTEMPTS` times), so a concurrent write is never overwritten."""
    versions = spec.versions
    size = len(records)
    for attempt in range(ATTEMPTS):
        rewrites: list[Rewrite] = []
        versions_of: dict[str, int] = {}
        for record in records:
            doc, mark = _split(record)
            if mark == versions.trusted:
                report.current += 1
                if unique is not None:
                    unique.add(record.id, doc)
                continue
            fitted = versions.fit(doc, mark, record.id)
            if fitted.doc is None or (fitted.undeclared and not drop_undeclared):
                report.note_undeclared(record.id, fitted)
                if fitted.doc is None:
                    report.fail(record.id, fitted)
                else:  # a write would drop those fields: leave it as stored, and say so
                    report.kept += 1
                if unique is not None:
                    unique.add(record.id, record.doc)
                continue
            if unique is not None:
                unique.add(record.id, fitted.doc)
            versions_of[record.id] = fitted.version or 0
            rewrites.append(Rewrite(record.id, record.version, fitted.doc, record.doc))
        if dry_run:
            for rewrite in rewrites:
                report.written[versions_of[rewrite.id]] = report.written.get(versions_of[rewrite.id], 0) + 1
            return
        done = await store.rewrite(spec, rewrites) if rewrites else None
        if done is None:
            return
        changed = set(done.conflicts)
        for rewrite in rewrites:
            if rewrite.id in done.duplicates:
                report.blocked.setdefault(done.duplicates[rewrite.id] or "a unique field", Finding()).add(rewrite.id)
            elif rewrite.id not in changed:
                report.written[versions_of[rewrite.id]] = report.written.get(versions_of[rewrite.id], 0) + 1
        if not changed:
            return
        if attempt == ATTEMPTS - 1:
            for id_ in sorted(changed):
                report.changing.add(id_)
            return
        # the same window again: those the app changed are fitted anew (deleted ones are gone)
        records = [r for r in await store.scan(spec, after, size) if r.id in changed]


