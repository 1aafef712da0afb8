"""What each migration built, read from PostgreSQL itself, whatever language it is in.

A `Capture` watches the migrations of one transaction of a run (or of a check) and
answers with `core.isolation.Built` rows, which `core.isolation.judge` rules on. Two
ways, one answer:

- **Event triggers**, when the role is a superuser (the embedded server, most dev and CI
  databases): on `ddl_command_end` and `sql_drop`, made in the run's own transaction on
  a function in `pg_temp` and dropped before it commits. Uncommitted, they are invisible
  to every other session, and nothing stays in the database. Each DDL command is noted
  with the migration that ran it (`ydtb.migration`, set before each).
- **The catalog**, when the role may not create event triggers (a production role):
  `pg_class`, `pg_attribute`, `pg_constraint`, `pg_type`, `pg_proc`, `pg_trigger`,
  `pg_policy` and the schemas and extensions, read before and after each migration and
  compared. Also used for a migration that runs outside a transaction (`CREATE INDEX
  CONCURRENTLY`), where no transaction can hold the triggers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import asyncpg

from runtime.core.isolation import Built
from runtime.core.plan import Step

__all__ = ["Capture", "marker"]

_SEP = "\x1f"  # between package and migration in `ydtb.migration`
_SUFFIX = f"_{os.getpid()}"

# Made once per session (temporary objects outlive a transaction that commits): the
# table the triggers write to, their functions, and `finish`, which drops the triggers
# and returns what they noted with the table each object belongs to, read while it
# still exists, in one round trip.
_SESSION = f"""
CREATE TEMP TABLE ydtb_runtime_built (
    n serial, migration text, command text, kind text, identity text, objid oid,
    dropped boolean) ON COMMIT DELETE ROWS;
CREATE FUNCTION pg_temp.ydtb_runtime_ddl() RETURNS event_trigger
LANGUAGE plpgsql AS $f$
BEGIN
    IF coalesce(current_setting('ydtb.migration', true), '') = '' THEN RETURN; END IF;
    INSERT INTO pg_temp.ydtb_runtime_built (migration, command, kind, identity, objid, dropped)
    SELECT current_setting('ydtb.migration'), c.command_tag, c.object_type,
           c.object_identity, c.objid, false
    FROM pg_event_trigger_ddl_commands() c
    WHERE NOT c.in_extension AND c.object_identity IS NOT NULL;
END $f$;
CREATE FUNCTION pg_temp.ydtb_runtime_drop() RETURNS event_trigger
LANGUAGE plpgsql AS $f$
BEGIN
    IF coalesce(current_setting('ydtb.migration', true), '') = '' THEN RETURN; END IF;
    INSERT INTO pg_temp.ydtb_runtime_built (migration, command, kind, identity, objid, dropped)
    SELECT current_setting('ydtb.migration'), tg_tag, d.object_type, d.object_identity,
           d.objid, true
    FROM pg_event_trigger_dropped_objects() d
    WHERE d.original AND NOT d.is_temporary AND d.object_identity IS NOT NULL;
END $f$;
CREATE FUNCTION pg_temp.ydtb_runtime_finish()
RETURNS TABLE (migration text, command text, kind text, identity text, tbl text)
LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM set_config('ydtb.migration', '', true);
    DROP EVENT TRIGGER ydtb_runtime_ddl{_SUFFIX};
    DROP EVENT TRIGGER ydtb_runtime_drop{_SUFFIX};
    RETURN QUERY SELECT b.migration, b.command, b.kind, b.identity, CASE
        WHEN b.dropped THEN NULL
        WHEN b.kind = 'table' THEN (SELECT c.oid::regclass::text FROM pg_class c
                                    WHERE c.oid = b.objid)
        WHEN b.kind = 'index' THEN (SELECT i.indrelid::regclass::text FROM pg_index i
                                    WHERE i.indexrelid = b.objid)
        WHEN b.kind = 'sequence' THEN (SELECT d.refobjid::regclass::text FROM pg_depend d
                                       WHERE d.classid = 'pg_class'::regclass
                                       AND d.objid = b.objid
                                       AND d.refclassid = 'pg_class'::regclass
                                       AND d.deptype IN ('a', 'i') LIMIT 1)
        WHEN b.kind = 'table constraint' THEN (SELECT c.conrelid::regclass::text
                                               FROM pg_constraint c WHERE c.oid = b.objid)
        WHEN b.kind = 'trigger' THEN (SELECT t.tgrelid::regclass::text FROM pg_trigger t
                                      WHERE t.oid = b.objid)
        WHEN b.kind = 'policy' THEN (SELECT p.polrelid::regclass::text FROM pg_policy p
                                     WHERE p.oid = b.objid)
        WHEN b.kind = 'rule' THEN (SELECT r.ev_class::regclass::text FROM pg_rewrite r
                                   WHERE r.oid = b.objid)
        WHEN b.kind = 'table column' THEN (SELECT c.oid::regclass::text FROM pg_class c
                                           WHERE c.oid = b.objid)
        END
    FROM pg_temp.ydtb_runtime_built b ORDER BY b.n;
END $f$;
"""

# Per transaction: the session's objects if this session has none yet, and the triggers.
_SETUP = f"""
DO $do$ BEGIN
    IF to_regprocedure('pg_temp.ydtb_runtime_finish()') IS NULL THEN
        EXECUTE $s${_SESSION}$s$;
    END IF;
END $do$;
CREATE EVENT TRIGGER ydtb_runtime_ddl{_SUFFIX} ON ddl_command_end
    EXECUTE FUNCTION pg_temp.ydtb_runtime_ddl();
CREATE EVENT TRIGGER ydtb_runtime_drop{_SUFFIX} ON sql_drop
    EXECUTE FUNCTION pg_temp.ydtb_runtime_drop();
"""

_FINISH = "SELECT * FROM pg_temp.ydtb_runtime_finish()"

_USER = """n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_%'"""
_NOT_EXTENSION = """NOT EXISTS (SELECT 1 FROM pg_depend e
    WHERE e.objid = {oid} AND e.deptype = 'e')"""

# Every object a migration can build, with the table it belongs to and a digest of
# what it is: a new name is created, a new digest altered, a missing name dropped.
_CATALOG = f"""
SELECT CASE WHEN c.relkind IN ('r', 'p') THEN 'table' WHEN c.relkind IN ('i', 'I') THEN 'index'
            WHEN c.relkind = 'S' THEN 'sequence' WHEN c.relkind = 'v' THEN 'view'
            WHEN c.relkind = 'm' THEN 'materialized view' WHEN c.relkind = 'c' THEN 'type'
            WHEN c.relkind = 'f' THEN 'foreign table' ELSE 'relation' END,
       c.oid::regclass::text,
       CASE WHEN c.relkind IN ('r', 'p') THEN c.oid::regclass::text
            WHEN c.relkind IN ('i', 'I') THEN
                (SELECT i.indrelid::regclass::text FROM pg_index i WHERE i.indexrelid = c.oid)
            WHEN c.relkind = 'S' THEN
                (SELECT d.refobjid::regclass::text FROM pg_depend d
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                 AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1)
       END,
       md5(concat_ws(':', c.relrowsecurity, c.reloptions::text,
                     obj_description(c.oid, 'pg_class'),
                     (SELECT string_agg(concat_ws(' ', a.attname, a.atttypid, a.atttypmod,
                                                  a.attnotnull, a.atthasdef, a.attisdropped,
                                                  col_description(c.oid, a.attnum)),
                                        ',' ORDER BY a.attnum)
                      FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0)))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_USER} AND c.relkind <> 't' AND {_NOT_EXTENSION.format(oid="c.oid")}
UNION ALL
SELECT 'table constraint', co.conname || ' on ' || co.conrelid::regclass,
       co.conrelid::regclass::text, md5(pg_get_constraintdef(co.oid))
FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
WHERE {_USER} AND co.conrelid <> 0
UNION ALL
SELECT 'trigger', t.tgname || ' on ' || t.tgrelid::regclass, t.tgrelid::regclass::text,
       md5(pg_get_triggerdef(t.oid))
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n
    ON n.oid = c.relnamespace
WHERE {_USER} AND NOT t.tgisinternal
UNION ALL
SELECT 'policy', p.polname || ' on ' || p.polrelid::regclass, p.polrelid::regclass::text,
       md5(concat_ws(':', p.polcmd, p.polroles::text, pg_get_expr(p.polqual, p.polrelid),
                     pg_get_expr(p.polwithcheck, p.polrelid)))
FROM pg_policy p
UNION ALL
SELECT 'type', t.oid::regtype::text, NULL,
       md5(coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                     FROM pg_enum e WHERE e.enumtypid = t.oid), t.typbasetype::text))
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE {_USER} AND t.typtype IN ('e', 'd', 'r', 'm') AND {_NOT_EXTENSION.format(oid="t.oid")}
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                      ELSE 'function' END,
       p.oid::regprocedure::text, NULL, md5(concat_ws(':', p.prosrc, p.prorettype))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {_USER} AND {_NOT_EXTENSION.format(oid="p.oid")}
UNION ALL
SELECT 'schema', n.nspname, NULL, '' FROM pg_namespace n WHERE {_USER}
    AND n.nspname <> 'public'
UNION ALL
SELECT 'extension', e.extname, NULL, e.extversion FROM pg_extension e
"""

Catalog = dict[str, tuple[str, str | None, str]]  # name -> (kind, table, digest)


def marker(step: Step | None) -> str:
    """SQL naming the migration that runs next, for the event triggers (None: no one)."""
    value = f"{step.package.name}{_SEP}{step.migration.id}" if step else ""
    return f"SELECT set_config('ydtb.migration', '{value.replace(chr(39), chr(39) * 2)}', true)"


@dataclass
class Capture:
    """What the migrations run on `raw` build, from the first `before` until `finish`."""

    raw: asyncpg.Connection
    triggers: bool
    _set_up: bool = False
    _catalog: Catalog | None = None
    _found: list[Built] | None = None

    @classmethod
    def start(cls, raw: asyncpg.Connection, *, transactional: bool = True) -> Capture:
        """Watch the open transaction (`transactional`), or migrations without one.

        The server says at connection whether the role is a superuser (`is_superuser`,
        a reported parameter): no round trip to ask.
        """
        superuser = getattr(raw.get_settings(), "is_superuser", "off") == "on"
        return cls(raw, transactional and superuser, _found=[])

    @property
    def watching(self) -> bool:
        """Whether the triggers are in place: a migration's marker is set."""
        return self.triggers and self._set_up

    def begin(self, step: Step) -> str:
        """SQL to run just before `step`: the triggers the first time, then its marker."""
        setup, self._set_up = ("" if self._set_up else _SETUP), True
        return setup + marker(step)

    async def before(self, step: Step) -> None:
        """Note that `step` runs next."""
        if self.triggers:
            await self.raw.execute(self.begin(step))
        elif self._catalog is None:  # else what the last step left, read after it
            self._catalog = await _read_catalog(self.raw)

    async def after(self, step: Step) -> None:
        """Note what `step` built (the catalog way; the triggers noted it as it ran)."""
        if self.triggers or self._catalog is None or self._found is None:
            return
        now = await _read_catalog(self.raw)
        self._found.extend(_compared(step, self._catalog, now))
        self._catalog = now

    async def finish(self) -> list[Built]:
        """Stop watching (dropping the triggers) and return what was built, in order."""
        found = list(self._found or [])
        if self.triggers and self._set_up:
            # Read a batch at a time, each made `Built` before the next arrives: the dev
            # daemon's cold start at N = 1000 notes some 40,000 rows in one transaction,
            # 17 MB as asyncpg's records beside what they say (#17).
            note = _Notes()
            async for row in self.raw.cursor(_FINISH, prefetch=_BATCH):
                found.append(note(*row))
            self._set_up = False
        return found


_BATCH = 2000  # rows of `_FINISH` read in one round trip


class _Notes:
    """Turn `_FINISH`'s rows into `Built`, keeping each repeated text once."""

    def __init__(self) -> None:
        # Each migration's rows are many: its name is split once.
        self._whose: dict[str, tuple[str, str]] = {}
        # Each row's text is a string of its own; command, kind and table repeat.
        self._same: dict[str, str] = {}

    def __call__(
        self, migration: str, command: str, kind: str, identity: str, table: str | None
    ) -> Built:
        if migration not in self._whose:
            package, _, migration_id = migration.partition(_SEP)
            self._whose[migration] = package, migration_id
        package, migration_id = self._whose[migration]
        same = self._same
        name = _bare(identity)
        name = same.setdefault(name, name)  # a table's name is its rows' table too
        if table is None and kind == "table":
            table = name
        elif table is None and " on " in name:  # a dropped constraint, trigger or policy
            table = _bare(name.rpartition(" on ")[2])
        elif table is None and kind == "default value":  # DROP DEFAULT: "for t.column"
            table = _bare(name.removeprefix("for ")).rpartition(".")[0]
        return Built(package, migration_id, same.setdefault(command, command),
                     same.setdefault(kind, kind), name,
                     None if table is None else same.setdefault(table, table))


def _bare(identity: str) -> str:
    return identity.removeprefix("public.").replace(" on public.", " on ")


async def _read_catalog(raw: asyncpg.Connection) -> Catalog:
    return {name: (kind, table, digest) for kind, name, table, digest
            in await raw.fetch(_CATALOG)}


def _compared(step: Step, before: Catalog, after: Catalog) -> list[Built]:
    package, migration = step.package.name, step.migration.id
    found = []
    for name, (kind, table, digest) in after.items():
        old = before.get(name)
        if old is None or old[2] != digest:
            verb = "CREATE" if old is None else "ALTER"
            found.append(Built(package, migration, f"{verb} {kind.upper()}", kind, name, table))
    for name, (kind, table, _) in before.items():
        if name not in after:
            found.append(Built(package, migration, f"DROP {kind.upper()}", kind, name, table))
    return found
