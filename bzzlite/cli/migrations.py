"""``bzzlite check`` and ``bzzlite migrate``: stored documents against the models as they are now.

The work is :mod:`bzzlite.stores.migration`'s; here the store is opened (tolerantly: a unique
constraint the data breaks is reported, not fatal), the reports are printed on stdout and a
progress bar is drawn on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, TextIO

from ..stores import migration
from .discovery import locate_app

#: Collections at least this large get a progress bar (on a terminal, unless --progress says otherwise).
LARGE = 1000


class ProgressBar:
    """One line on ``stream`` per resource, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO, enabled: bool | None = None, width: int = 30) -> None:
        self.stream = stream
        self.forced = enabled
        self.width = width
        self._drawn = 0.0
        self._open = False

    def __call__(self, report: migration.Report, done: int, total: int) -> None:
        if self.forced is False or (self.forced is None and (total < LARGE or not self.stream.isatty())):
            return
        now = time.monotonic()
        finished = done >= total
        if not finished and self._open and now - self._drawn < 0.1:
            return
        self._drawn = now
        fraction = done / total if total else 1.0
        filled = round(self.width * fraction)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{report.resource} [{bar}] {done:,}/{total:,} ({fraction:.0%})")
        self._open = not finished
        if finished:
            self.stream.write("\n")
        self.stream.flush()


def _ids(finding: migration.Finding) -> str:
    more = ", ..." if finding.count > len(finding.examples) else ""
    return f"{finding.count:,}: {', '.join(finding.examples)}{more}"


def _shared(report: migration.Report, out: list[str]) -> None:
    for name, groups in report.duplicates.items():
        shown = "; ".join(f"{value!r} in {', '.join(ids[:migration.EXAMPLES])}"
                          f"{', ...' if len(ids) > migration.EXAMPLES else ''}" for value, ids in groups)
        count = report.shared_values[name]
        out.append(f"  Unique {name!r}: {count:,} value(s) held by more than one document: {shown}"
                   + (", ..." if count > len(groups) else ""))
    for name in report.unbuilt:
        out.append(f"  Unique {name!r}: the store cannot build its index, so the app does not start until no two "
                   "documents share a value")


def _heading(report: migration.Report) -> str:
    return f"{report.resource} ({report.model}, version {report.version}): {report.total:,} document(s)"


def _failures(report: migration.Report, out: list[str], verb: str) -> None:
    if report.failing:
        out.append(f"  {report.failing:,} {verb}:")
        for (where, reason), finding in sorted(report.failures.items(), key=lambda item: -item[1].count):
            out.append(f"    {where}: {reason} ({_ids(finding)})")


def describe_check(report: migration.Report) -> list[str]:
    out = [_heading(report)]
    if report.current:
        out.append(f"  {report.current:,} stored by this version of the model")
    for version, count in sorted(report.upgradable.items()):
        if version < report.version:
            out.append(f"  {count:,} stored by version {version}: they fit once upgraded (served upgraded; "
                       "`bzzlite migrate` writes them, so that filters and sorts reach their new values)")
        else:
            out.append(f"  {count:,} stored before the model last changed: they validate (`bzzlite migrate` "
                       "marks them, so that reading them needs no validation)")
    _failures(report, out, "fail the model (reading them answers 500)")
    for name, finding in report.undeclared.items():
        out.append(f"  field {name!r}, which the model does not declare, is held by {_ids(finding)}: not served, "
                   "dropped at the document's next write; if it was renamed, declare a migration")
    _shared(report, out)
    return out


def describe_migrate(report: migration.Report, dry_run: bool) -> list[str]:
    out = [_heading(report)]
    if report.current:
        out.append(f"  {report.current:,} already current")
    done = "would be written" if dry_run else "written"
    for version, count in sorted(report.written.items()):
        origin = f"upgraded from version {version}" if version < report.version else "validated and marked"
        out.append(f"  {count:,} {origin}: {done}")
    _failures(report, out, "fail the model, left as stored")
    if report.kept:
        names = ", ".join(f"{name!r} ({_ids(finding)})" for name, finding in report.undeclared.items())
        out.append(f"  {report.kept:,} left as stored: they hold fields the model does not declare, which a write "
                   f"would drop: {names}. Declare a migration step that moves them, or run again with "
                   "--drop-undeclared")
    for name, finding in report.blocked.items():
        out.append(f"  not written, they would break Unique {name!r}: {_ids(finding)}")
    if report.changing.count:
        out.append(f"  changed by the app at every attempt, not written (run again): {_ids(report.changing)}")
    _shared(report, out)
    return out


async def _open(args: argparse.Namespace) -> Any:
    app = locate_app(args.target)
    if args.db:
        app.use_store(args.db)
    app.runtime.store.tolerate_broken = True  # report a unique constraint the data breaks
    app.runtime.settings.store_timeout = None  # opening a large file may take a while: no 503 here
    await app.startup()
    return app


def _progress(args: argparse.Namespace) -> ProgressBar:
    return ProgressBar(sys.stderr, args.progress)


def cmd_check(args: argparse.Namespace) -> int:
    async def run() -> list[migration.Report]:
        app = await _open(args)
        try:
            specs = list(app.registry.resources.values())
            return await migration.check(app.runtime.store, specs, batch=args.batch_size, progress=_progress(args))
        finally:
            await app.shutdown()

    reports = asyncio.run(run())
    for report in reports:
        print("\n".join(describe_check(report)))
    bad = [r.resource for r in reports if not r.ok]
    total = sum(r.total for r in reports)
    if bad:
        print(f"bzzlite check: documents of {', '.join(bad)} do not fit their models (see above)")
        return 1
    print(f"bzzlite check: all {total:,} document(s) fit their models")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    async def run() -> list[migration.Report]:
        app = await _open(args)
        try:
            store = app.runtime.store
            specs = list(app.registry.resources.values())
            reports = await migration.migrate(store, specs, dry_run=args.dry_run, batch=args.batch_size,
                                              drop_undeclared=args.drop_undeclared, progress=_progress(args))
            if store.broken and not args.dry_run:  # the documents written may let the indexes be built now
                await app.shutdown()
                store.broken = []
                await app.startup()
                for report in reports:
                    report.unbuilt = [b.field for b in store.broken if b.resource == report.resource]
            return reports
        finally:
            await app.shutdown()

    reports = asyncio.run(run())
    for report in reports:
        print("\n".join(describe_migrate(report, args.dry_run)))
    bad = [r.resource for r in reports if not r.ok]
    if bad:
        print(f"bzzlite migrate: some documents of {', '.join(bad)} were left as stored (see above)")
        return 1
    written = sum(sum(r.written.values()) for r in reports)
    print(f"bzzlite migrate: {written:,} document(s) {'would be ' if args.dry_run else ''}written; "
          f"{'every document would fit' if args.dry_run else 'every document fits'} its model")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``check`` and ``migrate`` subcommands."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("target", help="MODULE:ATTR, as for serve")
    shared.add_argument("--db", help="store URL (wins over App(db=...) and BZZLITE_DB)")
    shared.add_argument("--batch-size", type=_positive, default=migration.BATCH,
                        help=f"documents read (and written) at a time (default {migration.BATCH})")
    shared.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help=f"a progress bar on stderr (default: on a terminal, for {LARGE:,} documents or more)")
    check = sub.add_parser("check", parents=[common, shared],
                           help="report the stored documents that do not fit the models, and broken Unique")
    check.set_defaults(run=cmd_check)
    migrate = sub.add_parser("migrate", parents=[common, shared],
                             help="write every stored document in its model's current form")
    migrate.add_argument("--dry-run", action="store_true", help="write nothing; report what would be written")
    migrate.add_argument("--drop-undeclared", action="store_true",
                         help="also write documents holding fields the model does not declare (dropping them)")
    migrate.set_defaults(run=cmd_migrate)


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
