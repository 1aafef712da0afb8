"""Which tables last agreed with the database, so a comparison may skip them (#14).

The dev daemon compares a package with its database on every save of `schema.py`;
alembic reflects and compares each of the package's tables, though a save changes one
of them, and the other tables are as they were when the last comparison found them in
agreement. `Agreement` remembers, for each table found to agree, a key of each side:

- declared: `Package.table_keys`, a hash of the table's structural description (what
  the package fingerprint is made of: a change there is a schema edit);
- database: `CATALOG_KEY`, a hash of the identity and the version (`xmin`, the
  transaction that last wrote it) of every catalog row the comparison reads of the
  table: the table, its columns and defaults, constraints, indexes, comments, the
  types of its columns (an enum's values), its identity sequences, the relations its
  defaults name (a sequence in `nextval`), and the tables and columns its foreign keys
  point at: renamed, they change how its keys and defaults reflect.

While both keys are unchanged, comparing the table again would find what it found:
nothing. Any DDL on the table writes one of those rows, so its key changes, whoever ran
it (a migration, the dev sync, psql); so does a database recreated or restored. A
change is never missed; a key changed for nothing (a `VACUUM FREEZE`) costs one
comparison. The catalog key must be read before the comparison reflects the table:
DDL committed in between then changes the key, rather than being recorded under it.

For the same reason, what the comparison read of a table (alembic's reflection, the
catalog's shapes) is what a new read would find while the table's catalog key is
unchanged: `Agreement` keeps those readings too, so a save of `schema.py` that changes
one table compares it with the database as last read, without reading it again.

A reading is kept pickled: a copy the comparison may mark, made 5x faster than
`copy.deepcopy` and a fifth of the size (1.7 kB against 7.6 kB for a table of 8
columns), so the readings of every table a developer edits in a day fit in `KEPT_BYTES`.
While `spilling`, an `Agreement` keeps every reading in a temporary file instead, and
in memory only where each is (30 bytes): the dev daemon keeps what its start-up read of
every package, whose first save then reads no table (#14), without the memory (#17).
One file, appended to: a file a reading took 0.7 ms each to create here (ext4), 2 s of
the daemon's start-up at N = 300.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["CATALOG_KEY", "KEPT_BYTES", "Agreement"]

logger = logging.getLogger(__name__)

#: How many bytes of pickled readings an `Agreement` keeps, the latest: about 1,000
#: tables'. At 256 readings, a benchmark going round 30 packages of 5 tables found the
#: first ones evicted by the time it came back to them (#14).
KEPT_BYTES = 2 << 20

#: A SQL expression of the table `c` (a `pg_class` row): its catalog key.
CATALOG_KEY = """md5(concat_ws('|', c.oid, c.xmin,
  (SELECT string_agg(a.attnum || ':' || a.xmin, ',' ORDER BY a.attnum)
   FROM pg_attribute a WHERE a.attrelid = c.oid),
  (SELECT string_agg(d.adnum || ':' || d.xmin, ',' ORDER BY d.adnum)
   FROM pg_attrdef d WHERE d.adrelid = c.oid),
  (SELECT string_agg(k.oid || ':' || k.xmin, ',' ORDER BY k.oid)
   FROM pg_constraint k WHERE k.conrelid = c.oid),
  (SELECT string_agg(r.oid || ':' || r.xmin || ':' || f.attnum || ':' || f.xmin, ','
                     ORDER BY r.oid, f.attnum)
   FROM pg_constraint k JOIN pg_class r ON r.oid = k.confrelid
   JOIN pg_attribute f ON f.attrelid = k.confrelid AND f.attnum = ANY(k.confkey)
   WHERE k.conrelid = c.oid AND k.contype = 'f'),
  (SELECT string_agg(i.indexrelid || ':' || i.xmin || ':' || x.xmin, ',' ORDER BY i.indexrelid)
   FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE i.indrelid = c.oid),
  (SELECT string_agg(s.classoid || ':' || s.objoid || ':' || s.objsubid || ':' || s.xmin, ','
                     ORDER BY s.classoid, s.objoid, s.objsubid)
   FROM pg_description s
   WHERE (s.classoid, s.objoid) IN (SELECT 'pg_class'::regclass, c.oid
                                    UNION ALL SELECT 'pg_class'::regclass, i.indexrelid
                                    FROM pg_index i WHERE i.indrelid = c.oid
                                    UNION ALL SELECT 'pg_constraint'::regclass, k.oid
                                    FROM pg_constraint k WHERE k.conrelid = c.oid)),
  (SELECT string_agg(t.oid || ':' || t.xmin || ':' || coalesce(
       (SELECT string_agg(e.oid || ':' || e.xmin, ',' ORDER BY e.oid)
        FROM pg_enum e WHERE e.enumtypid = t.oid), ''), ',' ORDER BY t.oid)
   FROM pg_type t WHERE t.oid IN (SELECT a.atttypid FROM pg_attribute a
                                  WHERE a.attrelid = c.oid AND a.attnum > 0)),
  (SELECT string_agg(q.seqrelid || ':' || q.xmin || ':' || sc.xmin, ',' ORDER BY q.seqrelid)
   FROM pg_depend p JOIN pg_sequence q ON q.seqrelid = p.objid
   JOIN pg_class sc ON sc.oid = q.seqrelid
   WHERE p.classid = 'pg_class'::regclass AND p.refclassid = 'pg_class'::regclass
     AND p.refobjid = c.oid),
  (SELECT string_agg(r.oid || ':' || r.xmin, ',' ORDER BY r.oid)
   FROM pg_attrdef d
   CROSS JOIN LATERAL (SELECT p.refobjid FROM pg_depend p
                       WHERE p.classid = 'pg_attrdef'::regclass AND p.objid = d.oid
                         AND p.refclassid = 'pg_class'::regclass OFFSET 0) p
   JOIN pg_class r ON r.oid = p.refobjid
   WHERE d.adrelid = c.oid)))"""


@dataclass
class Agreement:
    """The tables last found to agree with one database, with the keys of both sides.

    Kept by the dev daemon for its database (`runtime.db.diff.compare_each` reads and
    updates it); a new one knows nothing, so everything is compared.
    """

    _keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    _read: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    _bytes: int = 0
    _spill: _Spill | None = None
    #: What the server answered when asked whether two defaults are equal, by what was
    #: asked (`runtime.db.diff`): the same for this database whatever the table.
    answers: dict[Any, bool] = field(default_factory=dict)

    @property
    def spills(self) -> bool:
        """Whether readings are kept in a file (`spilling`), not in memory."""
        return self._spill is not None

    @contextmanager
    def spilling(self) -> Iterator[None]:
        """Keep the readings in a temporary file while the block runs, every one of them:
        memory keeps where each is. They go with the file when the block ends."""
        try:
            file = tempfile.TemporaryFile(prefix="runtime-readings-")  # noqa: SIM115
        except OSError as exc:  # no temporary directory to write to: memory it is
            logger.debug("readings kept in memory: %s", exc)
            yield
            return
        with file:
            self._spill = _Spill(file)
            try:
                yield
            finally:
                self._spill = None

    def unchanged(self, declared: Mapping[str, str], catalog: Mapping[str, str]) -> set[str]:
        """The tables whose declared and catalog keys are those they agreed under."""
        # By the declared tables, not every table agreed: a package's few, at any N.
        return {name for name, key in declared.items()
                if self._keys.get(name) == (key, catalog.get(name))}

    def agrees(self, name: str, declared: str, catalog: str | None) -> bool:
        """Whether table `name` agreed under these keys, the last time it was compared."""
        return catalog is not None and self._keys.get(name) == (declared, catalog)

    def knows(self, name: str) -> bool:
        """Whether table `name` was found to agree (under whatever keys)."""
        return name in self._keys

    def record(self, name: str, declared: str | None, catalog: str | None) -> None:
        """Remember that table `name` agrees under these keys; forget it without both."""
        if declared is None or catalog is None:
            self.forget(name)
        else:
            self._keys[name] = (declared, catalog)

    def forget(self, name: str) -> None:
        """Compare table `name` next time (it differs, or is gone)."""
        self._keys.pop(name, None)

    def reading(self, name: str, what: str, catalog: str | None) -> Any | None:
        """A copy of what was read of table `name` (`what`: which reading) when its
        catalog key was `catalog`; None when it was read under another key, or never."""
        kept = self._kept((name, what))
        if kept is None or not catalog or kept[0] != catalog:
            return None
        try:
            return pickle.loads(kept[1])  # a copy: the comparison may mark it
        except Exception as exc:  # a spilled file cut short: read the table again
            logger.debug("%s: its %s reading is unreadable: %s", name, what, exc)
            return None

    def has_reading(self, name: str, what: str, catalog: str | None) -> bool:
        """Whether `reading` has something for these arguments (without copying it)."""
        kept = self._kept((name, what))
        return kept is not None and bool(catalog) and kept[0] == catalog

    def keep(self, name: str, what: str, catalog: str | None, value: Any) -> None:
        """Remember `value`, read of table `name` when its catalog key was `catalog`.

        The latest `KEPT_BYTES` are kept: the readings of the tables being edited.
        """
        self._drop((name, what))
        if not catalog:
            return
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a type of a dialect's own: read again next time
            logger.debug("%s: its %s reading is not kept: %s", name, what, exc)
            return
        if self._spill is not None:
            self._spill.put((name, what), catalog, data)
            return
        self._read[(name, what)] = (catalog, data)
        self._bytes += len(data)
        while self._bytes > KEPT_BYTES:
            self._drop(next(iter(self._read)))  # the oldest: dicts keep their order

    def _kept(self, key: tuple[str, str]) -> tuple[str, bytes] | None:
        return self._read.get(key) if self._spill is None else self._spill.get(key)

    def _drop(self, key: tuple[str, str]) -> None:
        if self._spill is not None:
            self._spill.drop(key)
            return
        kept = self._read.pop(key, None)
        if kept is not None:
            self._bytes -= len(kept[1])


class _Spill:
    """Readings appended to `file`, found by where each is: offset and length in one
    int. A reading kept again is appended again; the file goes when the daemon stops."""

    def __init__(self, file: IO[bytes]) -> None:
        self._fd = file.fileno()
        self._end = 0
        self._at: dict[tuple[str, str], int] = {}

    def put(self, key: tuple[str, str], catalog: str, data: bytes) -> None:
        record = catalog.encode() + b"\n" + data  # a catalog key is an md5: no newline
        try:
            os.pwrite(self._fd, record, self._end)
        except OSError as exc:  # the disk is full: the table is read again next time
            logger.debug("%s: its %s reading is not kept: %s", *key, exc)
            return
        self._at[key] = self._end << 32 | len(record)
        self._end += len(record)

    def get(self, key: tuple[str, str]) -> tuple[str, bytes] | None:
        at = self._at.get(key)
        if at is None:
            return None
        try:
            record = os.pread(self._fd, at & 0xFFFFFFFF, at >> 32)
        except OSError as exc:
            logger.debug("%s: its %s reading is unreadable: %s", *key, exc)
            return None
        catalog, _, data = record.partition(b"\n")
        return catalog.decode(), data

    def drop(self, key: tuple[str, str]) -> None:
        self._at.pop(key, None)
