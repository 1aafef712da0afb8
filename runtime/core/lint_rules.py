"""The safety lint's rules: what one statement does to a table that holds rows. No I/O.

Each rule reads a parse tree from `runtime.core.sql` (PostgreSQL's own parser, in its
JSON form: a node is `{"Kind": {field: value}}` where a field may hold any kind, bare
where it holds one; fields at their default are left out) and says
what the statement locks or rewrites, and the lock-safe way to do it, as squawk and
strong_migrations do (README, "Deploying to production", lists them). A statement on a
table that is new, created within what is judged together (the same file, or the same
pending run: `runtime.core.lint` decides), is exempt: PostgreSQL locks and rewrites an
empty table in no time, and no deployed code uses it yet. What is never exempt is a
statement that cannot run inside the transaction its migration runs in (Y524).

`Schema` follows, statement by statement, what a package's migrations built, so that a
rule can tell a type change that rewrites from one that does not (`varchar(20)` to
`text`), or a `SET NOT NULL` that a validated `CHECK (col IS NOT NULL)` makes a catalog
update only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.core.sql import Statement

__all__ = ["Hit", "Schema", "judge"]

_NO_TRANSACTION = "alone in a migration marked `-- runtime: no-transaction`"

# The functions of PostgreSQL 18's pg_catalog that are only ever VOLATILE (`SELECT
# proname FROM pg_proc WHERE provolatile = 'v'`, those a default could call), and the
# common ones of extensions: a default calling one is computed for every row, so the
# new column is written into every row (a rewrite).
_VOLATILE = frozenset({
    "array_sample", "array_shuffle", "clock_timestamp", "currval", "gen_random_uuid",
    "lastval", "nextval", "random", "random_normal", "set_config", "setval", "timeofday",
    "uuidv4", "uuidv7", "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4",
    "gen_random_bytes", "gen_salt",
})
_SERIAL = frozenset({"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"})
_TYPE_NAMES = {"int2": "smallint", "int4": "integer", "int8": "bigint", "bool": "boolean",
               "float4": "real", "float8": "double precision", "bpchar": "char"}
_LOCK_MODES = {5: "SHARE", 6: "SHARE ROW EXCLUSIVE", 7: "EXCLUSIVE", 8: "ACCESS EXCLUSIVE"}
_REWRITES = {"AT_SetTableSpace": "SET TABLESPACE", "AT_SetLogged": "SET LOGGED",
             "AT_SetUnLogged": "SET UNLOGGED", "AT_SetAccessMethod": "SET ACCESS METHOD"}

#: A column's type as written: its name and its modifiers (`varchar`, (20,)).
ColumnType = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class Hit:
    """What a rule found in one statement: the code, the table, what is wrong, the fix.

    `breaking` marks a drop or rename of a table or column (Y525-Y528), which the
    major-version rule (Y303) reads too, silenced or not.
    """

    code: str
    table: str | None
    message: str
    fix: str
    column: str | None = None

    @property
    def breaking(self) -> bool:
        """A drop or rename: code that still runs against the old schema breaks."""
        return self.code in ("Y525", "Y526", "Y527", "Y528")


@dataclass
class Schema:
    """What a package's migrations built, as the lint follows them statement by statement.

    Attributes:
        new: tables treated as empty and unused (created within what is judged together).
        built: every table its migrations created so far.
        types: the declared type of each column, by (table, column).
        indexes: the table of each index its migrations created.
        checks: the not-null constraints not yet validated, by name: (table, column).
        proven: the columns a valid constraint proves hold no null.
    """

    new: set[str] = field(default_factory=set)
    built: set[str] = field(default_factory=set)
    types: dict[tuple[str, str], ColumnType] = field(default_factory=dict)
    indexes: dict[str, str] = field(default_factory=dict)
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    proven: set[tuple[str, str]] = field(default_factory=set)

    def exempt(self, table: str | None) -> bool:
        """Tell whether `table` is new: nothing locked there blocks anyone."""
        return table is not None and table in self.new


def judge(statement: Statement, schema: Schema, *, transactional: bool) -> list[Hit]:
    """Return what `statement` does that a rule flags, then learn what it built into `schema`.

    Args:
        statement: from `runtime.core.sql.parse`.
        schema: what the statements before it built; updated.
        transactional: the statement runs inside a transaction (its migration's, or a
            `DO` block's, which always is).
    """
    if statement.kind in _LEARNED:
        _LEARNED[statement.kind](statement.node, schema)
        return []
    if statement.kind not in _RULES:
        return []
    hits = _RULES[statement.kind](statement.node, schema, transactional)
    # Each hit is judged as it is made, before the rule learns what the statement did
    # (a table renamed is new under its new name only after).
    return [h for h in hits if h.code == "Y524" or not schema.exempt(h.table)]


def _name(relation: Any) -> str:
    """The name of a `RangeVar` (a table), or "?"."""
    return str(relation["relname"]) if relation else "?"


def _sval(node: Any) -> str | None:
    """The value of a `String` node, else None."""
    return node.get("String", {}).get("sval") if isinstance(node, dict) else None


def _type_of(type_name: Any) -> ColumnType:
    names = [_sval(n) for n in type_name.get("names", ())]
    mods = tuple(int(m["A_Const"]["ival"].get("ival", 0)) for m in type_name.get("typmods", ())
                 if "ival" in m.get("A_Const", {}))
    return str(names[-1]) if names else "?", mods


def _in_transaction(what: str, transactional: bool) -> Iterator[Hit]:
    if transactional:
        yield Hit("Y524", None, f"{what} cannot run inside a transaction block, and this "
                  "migration runs in one", f"put it {_NO_TRANSACTION}, outside any DO block")


def _index(node: Any, schema: Schema, transactional: bool) -> Iterator[Hit]:
    """CREATE INDEX."""
    table, name = str(node["relation"]["relname"]), node.get("idxname")
    if name:
        schema.indexes[name] = table
    if node.get("concurrent"):
        yield from _in_transaction("CREATE INDEX CONCURRENTLY", transactional)
        return
    unique = "UNIQUE " if node.get("unique") else ""
    yield Hit("Y510", table, f"builds index {name or 'without a name'} while holding a "
              f"SHARE lock on {table}, which blocks every write to it until the build ends",
              f"CREATE {unique}INDEX CONCURRENTLY, {_NO_TRANSACTION}")


def _drop(node: Any, schema: Schema, transactional: bool) -> Iterator[Hit]:
    names = [_last_name(o) for o in node.get("objects", ())]
    if node["removeType"] == "OBJECT_INDEX":
        if node.get("concurrent"):
            yield from _in_transaction("DROP INDEX CONCURRENTLY", transactional)
            return
        for index in names:
            table = schema.indexes.get(index)
            yield Hit("Y511", table, f"drops index {index} holding an ACCESS EXCLUSIVE lock "
                      f"on {table or 'its table'}, which blocks reads and writes while it "
                      "waits and runs", f"DROP INDEX CONCURRENTLY, {_NO_TRANSACTION}")
    elif node["removeType"] == "OBJECT_TABLE":
        for table in names:
            yield Hit("Y525", table, f"drops table {table}: deployed code that still reads "
                      "or writes it breaks, and its rows are gone",
                      "first release code that no longer uses it, then drop it in a later "
                      "migration")
            schema.built.discard(table)


def _options(node: Any, key: str) -> set[str]:
    """The names of the options (`DefElem`s) in field `key` of `node`."""
    return {d["DefElem"]["defname"] for d in node.get(key, ()) if "DefElem" in d}


def _last_name(qualified: Any) -> str:
    """The last part of a qualified name (`List` of `String`s), or "?"."""
    items = qualified.get("List", {}).get("items") if isinstance(qualified, dict) else None
    return str(_sval(items[-1]) or "?") if items else "?"


def _reindex(node: Any, schema: Schema, transactional: bool) -> Iterator[Hit]:
    if "concurrently" in _options(node, "params"):
        yield from _in_transaction("REINDEX CONCURRENTLY", transactional)
        return
    name = _name(node["relation"]) if "relation" in node else str(node.get("name", ""))
    table = schema.indexes.get(name) if node["kind"] == "REINDEX_OBJECT_INDEX" else name
    yield Hit("Y512", table, f"rebuilds {name or 'indexes'} holding locks that block writes "
              "to the table, and reads through the index, until it ends",
              f"REINDEX ... CONCURRENTLY, {_NO_TRANSACTION}")


def _rewrite(table: str | None, what: str) -> Hit:
    return Hit("Y521", table, f"{what} rewrites {table or 'tables'} holding an ACCESS "
               "EXCLUSIVE lock, which blocks reads and writes until it ends",
               "leave it out of migrations: run pg_repack, or REPACK CONCURRENTLY from "
               "PostgreSQL 19, in a maintenance window")


def _vacuum(node: Any, schema: Schema, transactional: bool) -> Iterator[Hit]:
    if node.get("is_vacuumcmd"):
        yield from _in_transaction("VACUUM", transactional)
    if "full" in _options(node, "options"):
        for rel in node.get("rels") or [{}]:
            relation = rel.get("VacuumRelation", {}).get("relation")
            yield _rewrite(_name(relation) if relation else None, "VACUUM FULL")


def _cluster(node: Any, schema: Schema, transactional: bool) -> Iterator[Hit]:
    yield _rewrite(_name(node["relation"]) if "relation" in node else None, "CLUSTER")


def _lock(node: Any, schema: Schema, transactional: bool) -> Iterator[Hit]:
    mode = _LOCK_MODES.get(node.get("mode", 0))
    if mode is None:
        return  # the weaker modes block no reader or writer
    for relation in node.get("relations", ()):
        table = _name(relation.get("RangeVar"))
        yield Hit("Y522", table, f"locks {table} IN {mode} MODE until the run commits, "
                  "after every migration run with it, and blocks its writes all along",
                  "leave it out: each statement takes the lock it needs, for as long as it "
                  "runs")


def _rename(node: Any, schema: Schema, transactional: bool) -> Iterator[Hit]:
    table, new_name, old_name = _name(node.get("relation")), node["newname"], node.get("subname")
    if node["renameType"] == "OBJECT_TABLE":
        yield Hit("Y527", table, f"renames table {table} to {new_name}: deployed code "
                  "that uses the old name breaks",
                  "keep the table's name; or release code that reads a view of the new "
                  "name first, and rename once no deployed code uses the old one")
        for known in (schema.new, schema.built):
            if table in known:
                known.discard(table)
                known.add(new_name)
    elif node["renameType"] == "OBJECT_COLUMN":
        yield Hit("Y528", table, f"renames column {table}.{old_name} to {new_name}: "
                  "deployed code that uses the old name breaks",
                  "add the new column, write both, backfill, move the readers, then drop "
                  "the old one in a later release", column=old_name)
        old = schema.types.pop((table, old_name), None)
        if old is not None:
            schema.types[(table, new_name)] = old


def _created(table: str, schema: Schema) -> None:
    if table not in schema.built:  # `IF NOT EXISTS` of a table built before: not new
        schema.new.add(table)
        schema.built.add(table)


def _create(node: Any, schema: Schema) -> None:
    """Learn a CREATE TABLE from its JSON tree: the table, its columns' types, and the
    columns a constraint proves hold no null."""
    table = str(node["relation"]["relname"])
    _created(table, schema)
    for element in node.get("tableElts", ()):
        column = element.get("ColumnDef")
        if column is not None:
            if "typeName" in column:  # none in `CREATE TABLE ... OF type`
                schema.types[(table, column["colname"])] = _type_of(column["typeName"])
            if any(c["Constraint"]["contype"] == "CONSTR_NOTNULL"
                   for c in column.get("constraints", ())):
                schema.proven.add((table, column["colname"]))
        constraint = element.get("Constraint", {})
        test = constraint.get("raw_expr", {}).get("NullTest", {})
        fields = test.get("arg", {}).get("ColumnRef", {}).get("fields", ())
        if (constraint.get("contype") == "CONSTR_CHECK" and len(fields) == 1
                and test.get("nulltesttype") == "IS_NOT_NULL" and "String" in fields[0]):
            key = (table, str(fields[0]["String"]["sval"]))
            if constraint.get("skip_validation"):
                schema.checks[constraint.get("conname", "")] = key
            else:
                schema.proven.add(key)


def _create_as(node: Any, schema: Schema) -> None:
    _created(str(node["into"]["rel"]["relname"]), schema)


def _alter(node: Any, schema: Schema, transactional: bool) -> Iterator[Hit]:
    if node["objtype"] != "OBJECT_TABLE":
        return
    table = _name(node["relation"])
    for cmd in node.get("cmds", ()):
        yield from _alter_command(cmd["AlterTableCmd"], table, schema, transactional)


def _alter_command(cmd: Any, table: str, schema: Schema,
                   transactional: bool) -> Iterator[Hit]:
    kind, name, definition = cmd["subtype"], cmd.get("name"), cmd.get("def", {})
    if kind == "AT_AddColumn":
        yield from _add_column(definition["ColumnDef"], table, schema)
    elif kind == "AT_AlterColumnType":
        yield from _change_type(name, definition["ColumnDef"], table, schema)
    elif kind == "AT_SetNotNull":
        yield from _set_not_null(table, name, schema)
    elif kind == "AT_AddConstraint":
        yield from _add_constraint(definition["Constraint"], table, schema)
    elif kind == "AT_ValidateConstraint":
        proven = schema.checks.pop(name, None)
        if proven is not None:
            schema.proven.add(proven)
    elif kind == "AT_DropColumn":
        yield Hit("Y526", table, f"drops column {table}.{name}: deployed code that "
                  "still reads or writes it breaks, and its values are gone",
                  "first release code that no longer uses it, then drop it in a later "
                  "migration", column=name)
        schema.types.pop((table, name), None)
    elif kind in _REWRITES:
        yield _rewrite(table, f"ALTER TABLE ... {_REWRITES[kind]}")
    elif kind == "AT_DetachPartition":
        partition = definition["PartitionCmd"]
        if partition.get("concurrent"):
            yield from _in_transaction("DETACH PARTITION CONCURRENTLY", transactional)
        else:
            detached = _name(partition.get("name"))
            yield Hit("Y523", table, f"detaches partition {detached} holding an "
                      f"ACCESS EXCLUSIVE lock on {table}, which blocks reads and writes",
                      f"DETACH PARTITION ... CONCURRENTLY, {_NO_TRANSACTION}")


def _volatile(expression: Any) -> str | None:
    """Name the function that makes `expression` volatile (or may), else None."""
    for name in _calls(expression):
        # A package's own functions are named after its tables (Y503): their
        # volatility is not known here, so they are taken for volatile.
        if name in _VOLATILE or name.startswith("ydtb_"):
            return f"{name}()"
    return None


def _calls(node: Any) -> Iterator[str]:
    """The names of the functions called anywhere in `node`."""
    if isinstance(node, list):
        for item in node:
            yield from _calls(item)
    elif isinstance(node, dict):
        call = node.get("FuncCall")
        if isinstance(call, dict) and call.get("funcname"):
            yield str(_sval(call["funcname"][-1]))
        for value in node.values():
            yield from _calls(value)


def _add_column(column: Any, table: str, schema: Schema) -> Iterator[Hit]:
    name = column["colname"]
    schema.types[(table, name)] = column_type = _type_of(column["typeName"])
    constraints = {c["Constraint"]["contype"]: c["Constraint"]
                   for c in column.get("constraints", ())}
    default = constraints.get("CONSTR_DEFAULT")
    generated = constraints.get("CONSTR_GENERATED")
    volatile = _volatile(default.get("raw_expr")) if default is not None else None
    filled = (f"a volatile default, {volatile}" if volatile else
              "an identity" if "CONSTR_IDENTITY" in constraints else
              f"type {column_type[0]}" if column_type[0] in _SERIAL else
              "a STORED generated expression" if generated is not None
              and generated.get("generated_kind") == "s" else None)
    if filled:
        yield Hit("Y517", table, f"adds column {table}.{name} with {filled}: PostgreSQL "
                  "computes it for every row, rewriting the table under an ACCESS "
                  "EXCLUSIVE lock", "add the column without it, or with a constant "
                  "default, set the default for new rows with ALTER COLUMN ... SET "
                  "DEFAULT, then backfill in batches"
                  + ("; or make it VIRTUAL, as PostgreSQL 18 does by default"
                     if generated is not None else ""), column=name)
    if ("CONSTR_NOTNULL" in constraints and default is None and not filled
            and generated is None):
        yield Hit("Y518", table, f"adds column {table}.{name} NOT NULL without a default: it "
                  "fails on a table holding rows, and deployed code that inserts without "
                  "it breaks", "give it a constant DEFAULT; or add it nullable, backfill, "
                  "then add the NOT NULL constraint NOT VALID and validate it", column=name)
    for kind in ("CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_FOREIGN", "CONSTR_CHECK"):
        if kind in constraints:
            yield from _add_constraint(constraints[kind], table, schema, column=name)


def _safe_change(old: ColumnType | None, new: ColumnType) -> bool:
    """Tell whether PostgreSQL changes `old` to `new` without a rewrite or a scan.

    As PostgreSQL 18 does (tests/core/test_lint.py proves each on a server): varchar(n)
    to text, to varchar or to varchar(m >= n); numeric(p, s) to numeric or numeric(q >= p, s).
    """
    if old is None:
        return False
    (old_name, old_mods), (name, mods) = old, new
    if old_name == "varchar":
        return name == "text" or (name == "varchar" and (
            not mods or (bool(old_mods) and mods[0] >= old_mods[0])))
    if old_name == "text":
        return name == "varchar" and not mods
    if old_name == "numeric" and name == "numeric":
        return not mods or (len(old_mods) == len(mods) == 2 and mods[0] >= old_mods[0]
                            and mods[1] == old_mods[1])
    return False


def _change_type(name: str, column: Any, table: str, schema: Schema) -> Iterator[Hit]:
    new = _type_of(column["typeName"])
    old = schema.types.get((table, name))
    schema.types[(table, name)] = new
    if _plain_using(name, column.get("raw_default"), new) and _safe_change(old, new):
        return
    was = f" from {_shown_type(old)}" if old else ""
    yield Hit("Y513", table, f"changes the type of {table}.{name}{was} to "
              f"{_shown_type(new)}: PostgreSQL rewrites the table and its indexes holding an "
              "ACCESS EXCLUSIVE lock, and deployed code reading the column may break",
              "add a column of the new type, write both, backfill in batches, move the "
              "readers, then drop the old one; widening varchar to text or to a longer "
              "varchar, or numeric to more digits, needs no rewrite", column=name)


def _plain_using(name: str, using: Any, new: ColumnType) -> bool:
    """Tell whether a type change has no `USING`, or only `USING col::new_type`, which
    PostgreSQL reads as no `USING` at all."""
    if using is None:
        return True
    cast = using.get("TypeCast")
    if cast is None or "ColumnRef" not in cast.get("arg", {}):
        return False
    fields = cast["arg"]["ColumnRef"].get("fields", ())
    return [_sval(f) for f in fields] == [name] and _type_of(cast["typeName"]) == new


def _shown_type(column_type: ColumnType | None) -> str:
    if column_type is None:
        return "?"
    name, mods = column_type
    name = _TYPE_NAMES.get(name, name)
    return f"{name}({', '.join(map(str, mods))})" if mods else name


def _set_not_null(table: str, column: str, schema: Schema) -> Iterator[Hit]:
    if (table, column) in schema.proven:
        return
    constraint = f"{table}_{column}_not_null"
    yield Hit("Y514", table, f"sets {table}.{column} NOT NULL: PostgreSQL scans the whole "
              "table for nulls holding an ACCESS EXCLUSIVE lock",
              f"ALTER TABLE {table} ADD CONSTRAINT {constraint} NOT NULL {column} NOT "
              f"VALID, then in a later migration ALTER TABLE {table} VALIDATE CONSTRAINT "
              f"{constraint}, which lets reads and writes go on", column=column)
    schema.proven.add((table, column))


def _not_null_column(constraint: Any) -> str | None:
    """The column a `NOT NULL col` or `CHECK (col IS NOT NULL)` constraint is about."""
    kind, keys = constraint["contype"], constraint.get("keys")
    if kind == "CONSTR_NOTNULL" and keys:
        return str(_sval(keys[0]))
    test = constraint.get("raw_expr", {}).get("NullTest")
    if kind != "CONSTR_CHECK" or test is None or test.get("nulltesttype") != "IS_NOT_NULL":
        return None
    fields = test.get("arg", {}).get("ColumnRef", {}).get("fields", ())
    if len(fields) == 1 and _sval(fields[0]) is not None:
        return str(_sval(fields[0]))
    return None


def _learn_constraint(constraint: Any, table: str, schema: Schema) -> None:
    column = _not_null_column(constraint)
    if column is None:
        return
    if constraint.get("skip_validation"):
        if constraint.get("conname"):
            schema.checks[constraint["conname"]] = (table, column)
    else:
        schema.proven.add((table, column))


def _add_constraint(constraint: Any, table: str, schema: Schema,
                    column: str | None = None) -> Iterator[Hit]:
    kind, validated = constraint["contype"], not constraint.get("skip_validation")
    # An unnamed constraint is shown with the name PostgreSQL gives it, more or less.
    columns = [str(_sval(k)) for k in constraint.get("fk_attrs") or constraint.get("keys")
               or ()] or [column or ""]
    suffix = {"CONSTR_FOREIGN": "fkey", "CONSTR_CHECK": "check"}.get(kind)
    name = constraint.get("conname") or "_".join([table, *filter(None, columns),
                                                 suffix or "key"])
    if kind == "CONSTR_NOTNULL" and validated:
        key = _not_null_column(constraint)
        if key is not None:
            yield from _set_not_null(table, key, schema)
    _learn_constraint(constraint, table, schema)
    if not validated:
        return
    if kind == "CONSTR_FOREIGN":
        target = _name(constraint.get("pktable"))
        yield Hit("Y515", table, f"adds foreign key {name} and checks every row of {table} "
                  f"holding SHARE ROW EXCLUSIVE locks on {table} and {target}, which block "
                  "their writes", ("add the column without REFERENCES, then " if column
                                   else "") + "add the key NOT VALID, then in a later "
                  f"migration ALTER TABLE {table} VALIDATE CONSTRAINT {name}, which lets "
                  "writes go on", column=column)
    elif kind == "CONSTR_CHECK":
        yield Hit("Y516", table, f"adds check constraint {name} and checks every row of "
                  f"{table} holding an ACCESS EXCLUSIVE lock", "add it NOT VALID, then in a "
                  f"later migration ALTER TABLE {table} VALIDATE CONSTRAINT {name}, which "
                  "lets reads and writes go on", column=column)
    elif kind in ("CONSTR_PRIMARY", "CONSTR_UNIQUE") and not constraint.get("indexname"):
        what = "PRIMARY KEY" if kind == "CONSTR_PRIMARY" else "UNIQUE"
        name = constraint.get("conname") or (f"{table}_pkey" if what == "PRIMARY KEY"
                                             else name)
        yield Hit("Y519", table, f"adds {what} constraint {name}, building its index "
                  f"holding an ACCESS EXCLUSIVE lock on {table}, which blocks reads and "
                  "writes until it is built", f"CREATE UNIQUE INDEX CONCURRENTLY "
                  f"{_NO_TRANSACTION}, then ALTER TABLE {table} ADD CONSTRAINT {name} "
                  f"{what} USING INDEX with that index", column=column)
    elif kind == "CONSTR_EXCLUSION":
        yield Hit("Y520", table, f"adds exclusion constraint {name}, building its index "
                  f"holding an ACCESS EXCLUSIVE lock on {table}; PostgreSQL cannot build "
                  "it concurrently", "declare it when the table is created, or add it in a "
                  "maintenance window")


_RULES: dict[str, Any] = {
    "IndexStmt": _index, "DropStmt": _drop, "ReindexStmt": _reindex,
    "VacuumStmt": _vacuum, "ClusterStmt": _cluster, "LockStmt": _lock,
    "RenameStmt": _rename, "AlterTableStmt": _alter,
}
_LEARNED: dict[str, Any] = {"CreateStmt": _create, "CreateTableAsStmt": _create_as}
