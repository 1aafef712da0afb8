"""The rules a package and the set of packages must follow. No I/O.

Rules collect every `Problem` rather than stopping at the first, so a developer fixes
them all in one pass. Each problem has a stable code (listed in the README):

- Y1xx: one package on its own (checked when it registers);
- Y2xx: the set (dependencies, versions, cycles, ownership of tables and tools, foreign
  keys across packages).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from packaging.version import Version
from sqlalchemy import MetaData, Table
from sqlalchemy.exc import SQLAlchemyError

from runtime.core import ddl, fingerprint, graph, references
from runtime.core.model import (
    Migration,
    Package,
    Tool,
    dependency_graph,
    migration_problems,
    migration_sort_key,
)
from runtime.core.names import INITIAL_SCHEMA
from runtime.core.schema import CORE_PACKAGE, CORE_TABLES, WORKSPACES_TABLE, core_metadata
from runtime.core.versions import Dependency, is_valid_name, parse_dependency, parse_version
from runtime.errors import Problem, shown

__all__ = [
    "INITIAL_SCHEMA",
    "build_package",
    "check_member",
    "check_package",
    "check_set",
    "cycle_problem",
    "derived_migration",
    "merge_problems",
    "policy_problems",
    "table_owners",
    "tool_owners",
]

PREFIX = "ydtb_"
_WORKSPACE_COLUMN = (
    "Column('workspace_id', String(20), ForeignKey('ydtb_workspaces.id', ondelete='CASCADE'), "
    "nullable=False, index=True)"
)
# ydtb_tools.id is String(20); name and icon are String(200). Matched with fullmatch.
_TOOL_ID = re.compile(r"[a-z][a-z0-9_-]{0,19}")
_TOOL_TEXT_LIMIT = 200

def _listed(
    package: str, value: object, argument: str, code: str, example: str
) -> tuple[list[object], list[Problem]]:
    """Return the items of a list argument, or the problem that it is not a list.

    Any iterable but text and mappings counts (a tuple, a generator): a string is
    iterable too, character by character, and a dict only by its keys.
    """
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        return [], [Problem(package, code, f"{argument} is {shown(value)}, not a list",
                            f"write {argument}=[{example}], or leave it out")]
    return list(value), []


def _is_core_reference(table: Table) -> bool:
    # Packages may carry a copy of a core table so their foreign keys resolve; such a
    # copy is a reference, not ownership, as long as it matches the core's columns.
    core = core_metadata.tables.get(table.name)
    return core is not None and set(table.c.keys()) <= set(core.c.keys())


def _table_problems(package: str, table: Table) -> list[Problem]:
    def problem(code: str, message: str, hint: str) -> Problem:
        return Problem(package, code, message, hint, table=table.name)

    found: list[Problem] = []
    if table.name in CORE_TABLES:
        return [problem("Y102", f"table '{table.name}' belongs to the core",
                        "rename it; packages reference core tables, they never define them")]
    if not table.name.startswith(PREFIX):
        found.append(problem("Y101", f"table '{table.name}' must be prefixed '{PREFIX}'",
                             f"rename it to '{PREFIX}{table.name}'"))
    if table.schema is not None:
        found.append(problem("Y108", f"table '{table.name}' is in schema '{table.schema}'",
                             "drop schema=...; package tables live in the default schema"))
    # Not `.columns`: SQLAlchemy keeps what that makes on the key, for every table (#17).
    if not len(table.primary_key):
        found.append(problem("Y103", f"table '{table.name}' has no primary key",
                             "mark a column primary_key=True"))
    column = table.c.get("workspace_id")
    if column is None:
        found.append(problem("Y104", f"table '{table.name}' has no workspace_id column",
                             f"add {_WORKSPACE_COLUMN}, or declare it with "
                             "runtime.kit.workspace_table"))
        return found
    if column.nullable:
        found.append(problem("Y105", f"table '{table.name}' column 'workspace_id' is nullable",
                             "declare it nullable=False: every row belongs to a workspace"))
    if not any(fk.target_fullname == f"{WORKSPACES_TABLE}.id" for fk in column.foreign_keys):
        found.append(problem("Y106", f"table '{table.name}' column 'workspace_id' has no foreign "
                             f"key to '{WORKSPACES_TABLE}.id'",
                             f"add ForeignKey('{WORKSPACES_TABLE}.id', ondelete='CASCADE')"))
    found.extend(references.cascade_problems(package, table))
    return found


def _tool_problems(
    package: str, tools: Sequence[object], row_level_security: object
) -> list[Problem]:
    found: list[Problem] = []
    seen: set[str] = set()
    for tool in tools:
        if not isinstance(tool, Tool):
            found.append(Problem(package, "Y130", f"tool {shown(tool)} is not a Tool",
                                 "wrap it: Tool(id='timer', name='Timer')"))
            continue
        if not isinstance(tool.id, str) or not _TOOL_ID.fullmatch(tool.id):
            found.append(Problem(package, "Y131", f"tool id {shown(tool.id)} is not valid",
                                 "use 1 to 20 lower case letters, digits, '_' or '-', "
                                 "starting with a letter"))
        elif tool.id in seen:
            found.append(Problem(package, "Y132", f"tool id '{tool.id}' is used twice",
                                 "give each tool its own id"))
        else:
            seen.add(tool.id)  # a valid id only: an invalid one may be a list, unhashable
        if not isinstance(tool.name, str) or not tool.name.strip():
            found.append(Problem(package, "Y133", f"tool {shown(tool.id)} has no name",
                                 "give it the name people see, e.g. Tool(..., name='Timer')"))
        for field in ("name", "icon"):
            value = getattr(tool, field)
            if isinstance(value, str) and len(value) > _TOOL_TEXT_LIMIT:
                found.append(Problem(package, "Y133", f"tool {shown(tool.id)} {field} is "
                                     f"{len(value)} characters long",
                                     f"shorten it to {_TOOL_TEXT_LIMIT} at most"))
            elif field == "icon" and not isinstance(value, str):
                found.append(Problem(package, "Y133", f"tool {shown(tool.id)} icon is "
                                     f"{shown(value)}", "give an icon name, or leave it out"))
        if not isinstance(tool.description, str):
            found.append(Problem(package, "Y133", f"tool {shown(tool.id)} description is "
                                 f"{shown(tool.description)}", "give a text, or leave it out"))
    if not isinstance(row_level_security, bool):
        found.append(Problem(package, "Y134", "row_level_security is "
                             f"{shown(row_level_security)}", "set it to True or False"))
    return found


def _definition_lines(tools: Sequence[Tool], row_level_security: bool) -> list[str]:
    # What a run records besides the tables (issue #6): folded into the fingerprint, a
    # change to the tools or to row-level security re-records the package, and that run
    # syncs `ydtb_tools` and the policies, while the no-op run stays one ledger read.
    # Nothing is added for a package without either, so its fingerprint is its tables'.
    lines = [f"TOOL {t.id!r} {t.name!r} {t.description!r} {t.icon!r}"
             for t in sorted(tools, key=lambda t: t.id)]
    if row_level_security:
        lines.append("ROW LEVEL SECURITY")
    return lines


def derived_migration(package: Package) -> Migration | None:
    """The migration derived from `package`'s schema, when it has no migrations of its own."""
    if len(package.migrations) == 1:
        only = package.migrations[0]
        if only.id == INITIAL_SCHEMA and only.source is None and isinstance(only.up, list):
            return only
    return None


def _filed_under(package_name: object) -> str:
    """Return the name a package's problems are filed under: as given, if it prints as itself."""
    if isinstance(package_name, str) and package_name.strip() and package_name.isprintable():
        return package_name
    return shown(package_name)  # blank, with a newline, or not a string


def _parsed_dependencies(
    package: str, dependencies: object
) -> tuple[list[Dependency], list[Problem]]:
    """Parse the `dependencies` argument: a list of strings like `@ydtb/core>=1.0`."""
    if isinstance(dependencies, str):
        # A string is iterable too: each character would be reported as a dependency.
        return [], [Problem(package, "Y122", f"dependencies is the string {dependencies!r}, "
                            "not a list", f"write dependencies=[{dependencies!r}]")]
    texts, found = _listed(package, dependencies, "dependencies", "Y122", "'@ydtb/core>=1.0'")
    deps: list[Dependency] = []
    for text in texts:
        if not isinstance(text, str):
            found.append(Problem(package, "Y122", f"dependency {shown(text)} is not a string",
                                 "list dependencies as strings like '@ydtb/core>=1.0'"))
            continue
        try:
            deps.append(parse_dependency(text))
        except ValueError as exc:
            found.append(Problem(package, "Y122", str(exc)))
    dep_names = [d.name for d in deps]
    for dup in sorted({n for n in dep_names if dep_names.count(n) > 1}):
        found.append(Problem(package, "Y125", f"dependency '{dup}' is listed twice",
                             "merge the specifiers into one entry"))
    return deps, found


def _parsed_version(package: str, version: object) -> tuple[Version | None, list[Problem]]:
    if not isinstance(version, str):
        # A number would parse (1.10 as "1.1"): only the text the author wrote is a version.
        return None, [Problem(package, "Y121", f"version {shown(version)} is not a string",
                              "write it as text, like '1.0.0'")]
    try:
        return parse_version(version), []
    except ValueError as exc:
        return None, [Problem(package, "Y121", str(exc))]


def build_package(
    *,
    package_name: object,
    schema: object,
    migrations: object,
    dependencies: object,
    version: object,
    tools: object = (),
    row_level_security: object = False,
    source: object = None,
) -> tuple[Package | None, list[Problem]]:
    """Check one package's own rules and build it; returns the package or its problems.

    Any value is checked, whatever its type: a wrong type is a problem naming the
    argument, like a wrong value.

    A package with no migrations gets one derived from its schema, `0001_initial_schema`,
    that creates its tables and indexes if they do not exist. The fingerprint hashes
    `fingerprint.describe` of its tables (every declared attribute their PostgreSQL DDL
    depends on: columns, types, defaults, constraints, indexes, names, comments, dialect
    options), its tools and whether it asks for row-level security. A table part that
    does not compile to PostgreSQL (a column type, a default, an expression) is Y107.
    """
    name = _filed_under(package_name)
    found: list[Problem] = []
    if not isinstance(package_name, str) or not is_valid_name(package_name):
        found.append(Problem(name, "Y120", f"package name {shown(package_name)} is not valid",
                             "use lower case 'name' or '@scope/name'"))
    parsed_version, problems = _parsed_version(name, version)
    found.extend(problems)
    deps, problems = _parsed_dependencies(name, dependencies)
    found.extend(problems)
    if source is not None and not isinstance(source, str):
        found.append(Problem(name, "Y126", f"source is {shown(source)}, not a string",
                             "give the file the package is defined in, or leave it out"))
    if not isinstance(schema, MetaData):
        found.append(Problem(name, "Y123", f"schema is {shown(schema)}, not a "
                             "sqlalchemy MetaData", "pass MetaData() or a declarative "
                             "Base.metadata"))
        return None, found
    tables = tuple(t for _, t in sorted(schema.tables.items()) if not _is_core_reference(t))
    for table in tables:
        found.extend(_table_problems(name, table))
    given: list[object] = []
    if migrations is not None:  # None: derive the migration from the schema
        given, problems = _listed(name, migrations, "migrations", "Y113",
                                  "Migration('0001_name', up=...)")
        found.extend(problems)
    described: dict[str, list[str]] = {}
    statements: list[str] = []
    try:
        described = {table.name: fingerprint.describe([table]) for table in tables}
        # The DDL only for a derived migration: compiling it for every package, only to
        # hash it, was 45% of loading 300 packages (issue #7).
        statements = [] if given else ddl.create_statements(tables)
    except (SQLAlchemyError, TypeError, ValueError) as exc:
        found.append(Problem(name, "Y107", f"schema does not compile to PostgreSQL: {exc}",
                             "fix the table definition SQLAlchemy complains about"))
    found.extend(migration_problems(name, given))
    listed_tools, problems = _listed(name, tools, "tools", "Y130",
                                     "Tool(id='timer', name='Timer')")
    found.extend(problems)
    found.extend(_tool_problems(name, listed_tools, row_level_security))
    if found or parsed_version is None:
        return None, found
    # No problem: every value has its documented type; the filters below say so to mypy.
    checked = [m for m in given if isinstance(m, Migration)]
    if not checked and statements:
        checked = [Migration(INITIAL_SCHEMA, up=statements)]
    checked_tools = tuple(t for t in listed_tools if isinstance(t, Tool))
    package = Package(
        name=name,
        version=parsed_version,
        schema=schema,
        migrations=tuple(sorted(checked, key=lambda m: migration_sort_key(m.id))),
        dependencies=tuple(deps),
        tables=tables,
        fingerprint=ddl.fingerprint([*(line for lines in described.values() for line in lines),
                                     *_definition_lines(checked_tools,
                                                        row_level_security is True)]),
        tools=checked_tools,
        row_level_security=row_level_security is True,
        source=source if isinstance(source, str) else None,
    )
    # Described above already: `Package.table_keys` need not describe the tables again.
    package.__dict__["table_keys"] = {name: ddl.fingerprint(lines)
                                      for name, lines in described.items()}
    return package, []


def check_package(package: Package) -> list[Problem]:
    """Re-check one built package's own rules (for packages built without `build_package`)."""
    found: list[Problem] = []
    for table in package.tables:
        found.extend(_table_problems(package.name, table))
    found.extend(migration_problems(package.name, package.migrations))
    found.extend(_tool_problems(package.name, package.tools, package.row_level_security))
    return found


def table_owners(packages: Iterable[Package]) -> dict[str, list[str]]:
    """Map each table name to the packages that declare it (more than one is a problem)."""
    owners: dict[str, list[str]] = {}
    for package in packages:
        for table in package.table_names:
            owners.setdefault(table, []).append(package.name)
    return owners


def tool_owners(packages: Iterable[Package]) -> dict[str, list[str]]:
    """Map each tool id to the packages that provide it (more than one is a problem)."""
    owners: dict[str, list[str]] = {}
    for package in packages:
        for tool in package.tools:
            owners.setdefault(tool.id, []).append(package.name)
    return owners


def _dependency_problems(packages: Mapping[str, Package], package: Package) -> list[Problem]:
    found = []
    for dep in package.dependencies:
        target = packages.get(dep.name)
        if target is None:
            found.append(Problem(package.name, "Y201", f"depends on '{dep.name}', which is not "
                                 "registered", f"register {dep.name}, or remove it from "
                                 "dependencies", dependency=dep.name))
        elif not dep.allows(target.version):
            found.append(Problem(package.name, "Y202", f"requires {dep}, but {dep.name} "
                                 f"{target.version} is registered", f"upgrade {dep.name}, or "
                                 f"relax the specifier '{dep.specifier}'"))
    return found


def _foreign_key_problems(
    packages: Mapping[str, Package],
    package: Package,
    owners: Mapping[str, Sequence[str]],
    deps_graph: Mapping[str, Sequence[str]],
) -> list[Problem]:
    found = []
    allowed = {package.name} | graph.reachable(deps_graph, [package.name])

    def resolve(target: str) -> tuple[str, Table] | None:
        owner = next(iter(owners.get(target, ())), None)
        if owner is None or owner not in packages or owner not in allowed:
            return None  # Y205 or Y206 says what is wrong first
        tables = packages[owner].schema.tables
        return (owner, tables[target]) if target in tables else None

    for table in package.tables:
        found.extend(references.key_problems(package.name, table, resolve))
        said: set[tuple[str, str]] = set()  # a composite key is reported once, by its column
        # Sorted by column too: a table's keys are a set, and which of two columns into
        # one missing table is named must not depend on the process (#17).
        targets = sorted(ddl.foreign_key_targets(table),
                         key=lambda t: (t[2].name == references.WORKSPACE_ID, t[2].name, t[0]))
        for target, column, local in targets:
            where = f"table '{table.name}' column '{local.name}' references '{target}.{column}'"
            if target in CORE_TABLES:
                if column not in core_metadata.tables[target].c:
                    found.append(Problem(package.name, "Y207", f"{where}, but {CORE_PACKAGE} "
                                         f"table '{target}' has no column '{column}'",
                                         "fix the column name", table=table.name))
                continue
            target_owners = owners.get(target, [])
            if (target, "owner") in said:
                continue
            if not target_owners:
                said.add((target, "owner"))
                found.append(Problem(package.name, "Y206", f"{where}, which no registered "
                                     "package owns", "fix the name, or register and depend "
                                     "on the package that owns it", table=table.name))
                continue
            owner = target_owners[0]
            if owner not in allowed:
                said.add((target, "owner"))
                found.append(Problem(package.name, "Y205", f"{where}, owned by {owner}, which "
                                     "is not a dependency", f"add '{owner}' to dependencies",
                                     table=table.name))
            elif column not in packages[owner].schema.tables[target].c:
                found.append(Problem(package.name, "Y207", f"{where}, but {owner} table "
                                     f"'{target}' has no column '{column}'",
                                     "fix the column name", table=table.name))
    return found


def check_set(
    packages: Mapping[str, Package],
    names: Collection[str] | None = None,
    owners: Mapping[str, Sequence[str]] | None = None,
) -> list[Problem]:
    """Check the rules across packages, for `names` only (all packages when None).

    Reports missing dependencies, unsatisfied versions, cycles, tables owned twice, tools
    provided twice, and foreign keys into packages that are not (transitive) dependencies.
    A cycle is reported once, however many of its members are checked.
    """
    owners = owners if owners is not None else table_owners(packages.values())
    providers = tool_owners(packages.values())
    deps_graph = dependency_graph(packages.values())
    checked = [check_member(packages, name, owners, providers, deps_graph)
               for name in sorted(packages if names is None else names)]
    return merge_problems(checked)


def policy_problems(packages: Iterable[Package]) -> list[Problem]:
    """Y135: under the platform's policy, every package opts in to row-level security."""
    return [Problem(p.name, "Y135", "row-level security is required by the platform "
                    "(--require-rls, RUNTIME_REQUIRE_RLS), and the package does not opt in",
                    "register it with row_level_security=True")
            for p in packages if p.name != CORE_PACKAGE and not p.row_level_security]


def cycle_problem(cycle: list[str]) -> Problem:
    """The Y203 problem of a dependency cycle (`graph.CycleError.cycle`)."""
    return Problem(cycle[0], "Y203", f"dependency cycle {graph.format_cycle(cycle)}",
                   "remove one of these dependencies")


def merge_problems(checked: Iterable[Iterable[Problem]]) -> list[Problem]:
    """Join the problems `check_member` found for several members, each cycle once."""
    found: list[Problem] = []
    cycles: set[Problem] = set()
    for problems in checked:
        for problem in problems:
            if problem.code == "Y203":
                if problem in cycles:
                    continue
                cycles.add(problem)
            found.append(problem)
    return found


def check_member(
    packages: Mapping[str, Package],
    name: str,
    owners: Mapping[str, Sequence[str]],
    providers: Mapping[str, Sequence[str]],
    deps_graph: Mapping[str, Sequence[str]],
) -> list[Problem]:
    """Check the rules across packages for one member of the set, given the set's indexes.

    What `check_set` checks for each name, with the table owners, tool providers and
    dependency graph supplied by the caller: the registry keeps them between changes
    rather than rebuilding them for each check (issue #7). A cycle through `name` is
    reported from its least member, like `check_set` does.
    """
    package = packages.get(name)
    if package is None:
        return []
    found = _dependency_problems(packages, package)
    cycle = graph.find_cycle(deps_graph, name)
    if cycle:
        found.append(cycle_problem(cycle))
    for table in package.table_names:
        others = [o for o in owners.get(table, ()) if o != name]
        if others:
            found.append(Problem(name, "Y204", f"table '{table}' is also declared by "
                                 f"{', '.join(others)}", "a table has one owner: rename "
                                 "one of them", table=table))
    for tool in package.tools:
        others = [o for o in providers.get(tool.id, ()) if o != name]
        if others:
            found.append(Problem(name, "Y208", f"tool '{tool.id}' is also provided by "
                                 f"{', '.join(others)}", "a tool has one provider: "
                                 "change one of the ids"))
    found.extend(_foreign_key_problems(packages, package, owners, deps_graph))
    return found
