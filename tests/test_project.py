"""The project's own files agree with each other: dependencies, commands, schema, notebooks."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from packaging.requirements import Requirement

from hkops.store import migrate
from hkops.store.tables import metadata

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


#: conda-forge names that differ from the PyPI names.
CONDA_TO_PYPI = {"python-duckdb": "duckdb"}


def _name(requirement: str) -> str:
    name = Requirement(requirement).name.lower().replace("_", "-")
    return CONDA_TO_PYPI.get(name, name)


def test_environment_yml_lists_exactly_the_dependencies_of_pyproject():
    project = _pyproject()["project"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    conda_specs = {_name(re.split(r"[<>=]", d)[0]): d for d in conda}
    python = conda_specs.pop("python")
    conda_specs.pop("pip")
    wanted = {_name(d): str(Requirement(d).specifier) for d in project["dependencies"]}
    assert set(conda_specs) == set(wanted), "environment.yml and pyproject.toml list different packages"
    for name, spec in wanted.items():
        assert conda_specs[name].replace(" ", "").endswith(spec), f"{name}: {conda_specs[name]} != {spec}"
    assert python.replace("python", "") == project["requires-python"]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert pip == ["-e .[test]"]


def test_readme_opens_with_the_serve_and_test_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```(?:bash|sh)?\n(.*?)\n```", readme, re.S)
    assert len(commands) >= 2
    serve, test = commands[0].strip(), commands[1].strip()
    assert serve.endswith("hkops serve")
    assert test.endswith("pytest")
    assert readme.index(serve) < readme.index("##"), "the two commands come before the first section"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == test


def test_migrations_build_exactly_the_schema_the_code_describes(db):
    with db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []
    assert migrate.current_revision(db) == migrate.head_revision()


def test_notebooks_are_committed_without_outputs():
    notebooks = sorted((ROOT / "notebooks").rglob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        if ".ipynb_checkpoints" in path.parts:
            continue
        cells = json.loads(path.read_text())["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name} has outputs"
