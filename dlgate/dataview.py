"""What the data checks query: the result of a scan, a read snapshot of the cache (see
`dlgate.datacache`) with each split's layout problems, and the samples as checks name them.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlgate.dataanalysis import Record, unpack
from dlgate.dataset import DataSettings, natural
from dlgate.datasources import Problem

# The samples of the multi keys or hashes (the view `multi_*`), from base rows and deltas
# apart: the view `samples` joined to them would be read whole.
_BOTH = """
SELECT {columns} FROM {multi} m CROSS JOIN main.samples s ON {on} {files} WHERE {where}
    AND NOT EXISTS (SELECT 1 FROM delta_gone g WHERE g.split = s.split AND g.id = s.id)
UNION ALL
SELECT {columns} FROM {multi} m CROSS JOIN delta_samples s ON {on} {files} WHERE {where}
ORDER BY {order}
"""


@dataclass(frozen=True)
class SplitScan:
    name: str
    location: str
    fatal: Problem | None
    problems: tuple[Problem, ...]
    how: str  # "unchanged" | "delta" | "rebuilt" | "missing"


@dataclass(frozen=True)
class SampleRef:
    """A sample as the checks name it."""

    split: str
    id: str
    label: str
    location: str  # the file an annotation points at
    line: int  # 0: the whole file
    file: str | None  # the content file (repository-relative, or absolute for hook objects)


@dataclass
class DataScan:
    settings: DataSettings
    splits: dict[str, SplitScan]
    db: sqlite3.Connection  # a read snapshot
    analyzed: int = 0  # contents read and measured in this run
    seconds: float = 0.0
    _counters: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def counters(self, split: str) -> dict[str, dict[str, int]]:
        """name → bucket → count for a split: `count` (per label), `size`, `mode`, `format`,
        `file_size` (log2 bins), `brightness`, `pixels.<mode>`, `length`, `chars`, `errors`,
        `bombs`."""
        if not self._counters:
            for s, name, bucket, value in self.db.execute("SELECT * FROM agg"):
                self._counters.setdefault(s, {}).setdefault(name, {})[bucket] = value
        return self._counters.get(split, {})

    def total(self, split: str) -> int:
        return sum(self.counters(split).get("count", {}).values())

    def classes(self) -> tuple[str, ...]:
        """The declared classes, else every label found, in natural order."""
        if self.settings.classes:
            return self.settings.classes
        found = {b for s in self.splits for b in self.counters(s).get("count", {})}
        return tuple(sorted(found, key=natural))

    def refs(
        self, sql: str, params: Sequence[Any] = ()
    ) -> Iterator[tuple[SampleRef, tuple[Any, ...]]]:
        """Samples (alias `s`, joined with their record as `f` where the query does) and the
        extra columns the query selects after `s.*`."""
        for row in self.db.execute(sql, params):
            split, sid, label, file, line, where = row[:6]
            yield SampleRef(split, sid, label, where or file or sid, line, file), tuple(row[8:])

    def with_records(
        self, where: str, params: Sequence[Any] = ()
    ) -> Iterator[tuple[SampleRef, Record]]:
        """Samples (alias `s`) whose record (alias `f`, see `datacache.files`) matches
        `where`, with the record, ordered by split and id."""
        for ref, (rec,) in self.refs(
            f"SELECT s.*, f.rec FROM samples s JOIN files f ON f.key = s.key WHERE {where} "
            "ORDER BY s.split, s.id", params
        ):  # fmt: skip
            yield ref, unpack(rec)

    def key_groups(self) -> Iterator[list[SampleRef]]:
        """Samples that share one content, two or more per group (unreadable ones left to
        `data.integrity`), ordered by split and id within a group."""
        rows = self.refs(_BOTH.format(
            columns="s.*, s.key", multi="multi_key", on="s.key = m.key",
            files="CROSS JOIN files f ON f.key = s.key", where="f.flags & 1 = 0",
            order="7, 1, 2",
        ))  # fmt: skip
        for _key, group in itertools.groupby(rows, key=lambda r: r[1][0]):
            yield [ref for ref, _ in group]

    def near_groups(self) -> Iterator[list[tuple[SampleRef, bytes]]]:
        """Samples of two or more splits that share a perceptual hash (images) or their
        normalized text, with each one's content key."""
        rows = self.refs(_BOTH.format(
            columns="s.*, s.ph, s.key", multi="multi_ph", on="s.ph = m.ph", files="",
            where="1", order="8, 1, 2",
        ))  # fmt: skip
        for _ph, group in itertools.groupby(rows, key=lambda r: r[1][0]):
            yield [(ref, extra[1]) for ref, extra in group]

    def close(self) -> None:
        self.db.close()
