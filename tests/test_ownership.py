"""One owner per shared state, checked statically: a business folder's tables (hkops/<folder>/tables.py)
are written (insert, update, delete, bulk writes) only by modules of that folder.

Every module under hkops/ is parsed with ``ast``; a write is a call such as ``t.insert()``,
``t.update()``, ``t.delete()``, ``insert(t)``, ``update(t)``, ``delete(t)``, any ``bulk.*(..., t, ...)``
or SQL text starting ``INSERT INTO t`` / ``UPDATE t`` / ``DELETE FROM t``, where ``t`` is a table of
another folder (imported by name, or through the tables module).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hkops

ROOT = Path(hkops.__file__).parent
#: Paths (relative to hkops/) that may write any table: the schema's own machinery.
EXEMPT = ("store/",)
#: Writes outside the owner still to be moved to the owner's service, as (module, table): owner to fix.
ALLOWED: dict[tuple[str, str], str] = {
    # The demo backdates what it made through the services (orders, shipments, payments, stock moves);
    # each owner should offer the backdating, or the demo should place things at their time.
    ("demo_distribution.py", "orders"): "orders",
    ("demo_distribution.py", "shipments"): "orders",
    ("demo_distribution.py", "payments"): "payments",
    ("demo_distribution.py", "stock_moves"): "stock",
}

_WRITE_METHODS = {"insert", "update", "delete"}
_WRITE_FUNCTIONS = {"insert", "update", "delete", "pg_insert", "sqlite_insert"}


def _owned_tables() -> dict[str, str]:
    """Table variable names of every folder's tables.py and the table names they create: name -> folder."""
    owners: dict[str, str] = {}
    for path in sorted(ROOT.glob("*/tables.py")):
        folder = path.parent.name
        if folder == "store":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, "id", None) == "Table":
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        owners[f"hkops.{folder}.tables.{target.id}"] = folder
                sql_name = node.value.args[0]
                if isinstance(sql_name, ast.Constant):
                    owners[f"sql:{sql_name.value}"] = folder
    return owners


def _aliases(tree: ast.AST, owners: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Names bound to tables (name -> qualified table) and to tables modules (name -> module)."""
    tables, modules = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                qualified = f"{node.module}.{alias.name}"
                if qualified in owners:
                    tables[alias.asname or alias.name] = qualified
                elif qualified.endswith(".tables") and f"hkops.{qualified.split('.')[-2]}" == node.module:
                    modules[alias.asname or alias.name] = qualified
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.endswith(".tables") and alias.asname:
                    modules[alias.asname] = alias.name
    return tables, modules


def _table_of(node: ast.AST, tables: dict[str, str], modules: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return tables.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
        return f"{modules[node.value.id]}.{node.attr}"
    return None


_SQL_WRITE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)")


def writes(path: Path, owners: dict[str, str]) -> list[tuple[int, str]]:
    """(line, qualified table or sql:name) of each write to a table in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    tables, modules = _aliases(tree, owners)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _SQL_WRITE.match(node.value)
            if match and f"sql:{match.group(1)}" in owners:
                found.append((node.lineno, f"sql:{match.group(1)}"))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _WRITE_METHODS:
            table = _table_of(func.value, tables, modules)
            if table:
                found.append((node.lineno, table))
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        in_bulk = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "bulk"
        if called in _WRITE_FUNCTIONS or in_bulk:
            for arg in list(node.args) + [k.value for k in node.keywords]:
                table = _table_of(arg, tables, modules)
                if table:
                    found.append((node.lineno, table))
    return found


def foreign_writes() -> list[str]:
    """Every write by a module to a table of another folder, not allowed explicitly."""
    owners = _owned_tables()
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(EXEMPT):
            continue
        folder = relative.split("/")[0] if "/" in relative else None
        for line, table in writes(path, owners):
            owner = owners[table]
            name = table.split(".")[-1].removeprefix("sql:")
            if owner != folder and (relative, name) not in ALLOWED:
                problems.append(f"hkops/{relative}:{line} writes {name}, a table of hkops/{owner}/")
    return problems


def test_the_checker_sees_each_kind_of_write(tmp_path):
    owners = _owned_tables()
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from sqlalchemy import update, delete\n"
        "from hkops.numbers.tables import numbers as pool\n"
        "from hkops.cards import tables as card_tables\n"
        "from hkops.store import bulk\n"
        "pool.insert()\n"
        "update(pool)\n"
        "delete(card_tables.sims)\n"
        "bulk.insert_rows(conn, pool, cols, rows)\n"
        "text('UPDATE subscriber_numbers SET until = 1')\n"
        "pool.select()\n")
    assert [line for line, _ in writes(sample, owners)] == [5, 6, 7, 8, 9]


def test_only_a_folder_writes_its_own_tables():
    assert foreign_writes() == []


def test_the_allow_list_holds_no_stale_entry():
    owners = _owned_tables()
    still = set()
    for relative, name in ALLOWED:
        for _, table in writes(ROOT / relative, owners):
            if table.split(".")[-1].removeprefix("sql:") == name:
                still.add((relative, name))
    assert still == set(ALLOWED)


def test_consoles_and_the_command_line_import_no_tables():
    """hkops/ui/ and hkops/cli/ go through the folders' service and read functions."""
    found = []
    for path in sorted([*(ROOT / "ui").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names] \
                if isinstance(node, ast.ImportFrom) else [a.name for a in node.names] if isinstance(node, ast.Import) \
                else []
            if any(name.split(".")[-1] == "tables" for name in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


#: Modules that still move numbers with the raw ``move_many`` instead of a use case of hkops/numbers:
#: module -> what should replace it.
RAW_NUMBER_MOVES = {
    # The demo world's number histories (item 8 replaces them by real sales).
    "demo.py": "demo",
}


def test_other_folders_move_numbers_through_the_numbers_use_cases():
    """``move_many`` (any from-state, any values) is the numbers folder's own tool; other folders call
    the use cases (hold_for_orders, assign_to_orders, release_for_orders, release, terminate ...)."""
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("numbers/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "move_many":
                found.add(relative)
    assert found == set(RAW_NUMBER_MOVES)
