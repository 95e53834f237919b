"""Commands start fast: the ``hkops`` entry point and a command of each group import none of
the heavy libraries (pandas, plotly, numpy, phonenumbers' geocoder, the PostgreSQL driver on
SQLite, Alembic on a current database); they load in the functions that use them. Checked on sys.modules in a fresh
interpreter, not timed (the timing is ``python -m bench cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hkops.cli import LAZY_GROUPS

HEAVY = ("pandas", "plotly", "numpy", "phonenumbers.geocoder", "phonenumbers.geodata", "phonenumbers.carrier",
         "pyarrow", "duckdb", "ibis", "pyspark", "psycopg", "sqlalchemy.orm", "sqlalchemy.dialects.postgresql", "pydantic")
# hkops uses SQLAlchemy Core (the ORM costs 40 ms); the PostgreSQL dialect loads only on PostgreSQL (17 ms);
# typer 0.29 imports pydantic at start (16 ms), hence the pin below 0.29 in pyproject.toml.

_PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_after(body: str, env: dict | None = None) -> list[str]:
    code = _PROBE.format(body=body, heavy=HEAVY + ("alembic",))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_heavy_library():
    assert _heavy_after("import hkops.cli") == []


@pytest.mark.parametrize("group", sorted(LAZY_GROUPS))
def test_each_command_group_loads_without_heavy_libraries(group):
    body = ("import hkops.cli, typer\n"
            f"typer.main.get_command(hkops.cli.app).get_command(None, {group!r})")
    assert _heavy_after(body) == [], f"hkops {group} imports heavy libraries at start"


#: The modules behind the commands of the business folders (not ``hkops usage``, whose commands
#: are the pandas/DuckDB work, nor the consoles).
SERVICES = ("hkops.lookup", "hkops.orders.service", "hkops.orders.intake", "hkops.cards.service",
            "hkops.cards.batches", "hkops.stock.service", "hkops.subscribers.service", "hkops.payments.service",
            "hkops.procurement.service", "hkops.agents.service", "hkops.catalogue.service", "hkops.numbers.search",
            "hkops.demo", "hkops.store.engine")


def test_the_services_commands_call_import_no_heavy_library():
    assert _heavy_after("\n".join(f"import {module}" for module in SERVICES)) == []


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_showing_a_number_imports_no_heavy_library_and_no_alembic(world):
    body = ("from hkops.cli import main\n"
            "try:\n    main(['numbers', 'show', '13800130127'])\nexcept SystemExit as stop:\n"
            "    assert stop.code == 0, stop.code")
    assert _heavy_after(body, {"HKOPS_DATABASE_URL": world.url}) == []


def test_sub_command_groups_are_listed_and_run_from_the_top_level_help():
    done = subprocess.run([sys.executable, "-m", "hkops", "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert all(f" {group} " in done.stdout for group in LAZY_GROUPS)
    assert "Number resources" in done.stdout and "Sales orders" in done.stdout
    mistyped = subprocess.run([sys.executable, "-m", "hkops", "numbrs", "show"], capture_output=True, text=True,
                              timeout=120)
    assert mistyped.returncode == 2 and "Did you mean 'numbers'?" in mistyped.stderr
