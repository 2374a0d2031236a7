"""The one-way layers hold, and the contracts that say so can fail.

``[tool.importlinter]`` in ``pyproject.toml`` holds three contracts: ``policy`` imports
neither MLflow nor Flask, the workflow imports neither the store nor anything above it,
and nothing in the package imports in a circle. The first test runs ``lint-imports`` on
the package as it is. The others prove each contract bites: they copy the package into a
temporary folder, break one rule in the copy, and run ``lint-imports`` on the copy (found
first through ``PYTHONPATH``), which must report that contract broken and name the import.

import-linter's ``acyclic_siblings`` contract compares the children of each package with
one another, so it does not see a package's ``__init__`` and one of its own modules
importing each other. The last tests close that gap with grimp (the graph library
import-linter is built on): no module of the package may reach itself through imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # import-linter brings tomli along on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mlflow_governance"

# The interpreter running the tests has import-linter (the dev extra); running its command
# through that interpreter finds it without relying on PATH or on the script's location.
_LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` in ``root``, which reads the contracts of its pyproject.toml.

    Args:
        root: A folder holding ``mlflow_governance/`` and ``pyproject.toml``.
        contracts: Contract ids to limit the check to (all of them when none).
    """
    # No cache: the run takes about a second, and a cache folder would litter the tree.
    args = [sys.executable, "-c", _LINT_IMPORTS, "--no-cache", "--no-logo"]
    args += [f"--contract={contract}" for contract in contracts]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        args, cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package and its pyproject.toml, free to break."""
    shutil.copytree(
        ROOT / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_package_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, _report(result)
    assert "BROKEN" not in result.stdout, _report(result)


def test_policy_importing_flask_breaks_its_contract(copy: Path) -> None:
    before = lint_imports(copy, "policy-pure")
    assert before.returncode == 0, _report(before)

    _add_line(copy / PACKAGE / "policy" / "__init__.py", "import flask  # noqa: F401")

    after = lint_imports(copy, "policy-pure")
    assert after.returncode != 0, _report(after)
    assert "policy imports neither MLflow nor Flask BROKEN" in after.stdout, _report(after)
    assert "mlflow_governance.policy -> flask" in after.stdout, _report(after)


def test_workflow_importing_the_store_breaks_its_contract(copy: Path) -> None:
    before = lint_imports(copy, "workflow-below-store")
    assert before.returncode == 0, _report(before)

    probe = copy / PACKAGE / "workflow" / "_layers_probe.py"
    probe.write_text('"""Breaks the layers on purpose."""\n\nfrom mlflow_governance import store\n')

    after = lint_imports(copy, "workflow-below-store")
    assert after.returncode != 0, _report(after)
    broken = "workflow imports neither the store nor the layers above it BROKEN"
    assert broken in after.stdout, _report(after)
    # The copy, not the installed package, was read: the probe is named.
    assert "mlflow_governance.workflow._layers_probe -> mlflow_governance.store" in after.stdout


def test_a_type_only_import_of_the_store_counts(copy: Path) -> None:
    # The workflow used to name the write path under TYPE_CHECKING, which is what made the
    # store and the workflow import each other; that must not come back unnoticed.
    _add_line(
        copy / PACKAGE / "workflow" / "registry.py",
        "if TYPE_CHECKING:\n    from mlflow_governance.write_path import GovernedWritePath",
    )

    result = lint_imports(copy, "workflow-below-store")
    assert result.returncode != 0, _report(result)
    assert "mlflow_governance.workflow.registry -> mlflow_governance.write_path" in result.stdout


def test_an_import_cycle_breaks_the_acyclic_contract(copy: Path) -> None:
    # The audit writer takes its time from the clock; the clock reaching back closes a
    # circle between two top-level parts of the package, even as a lazy import.
    root_cycle = "No cycles are allowed in mlflow_governance.\n"
    before = lint_imports(copy, "no-cycles")
    assert root_cycle not in before.stdout, _report(before)

    _add_line(
        copy / PACKAGE / "clock.py",
        "def _probe() -> None:\n    from mlflow_governance.audit import writer  # noqa: F401",
    )

    after = lint_imports(copy, "no-cycles")
    assert after.returncode != 0, _report(after)
    assert "no import cycles anywhere in the package BROKEN" in after.stdout, _report(after)
    assert root_cycle in after.stdout, _report(after)
    block = after.stdout.split(root_cycle, 1)[1].split("No cycles are allowed in", 1)[0]
    assert ".clock" in block, _report(after)
    assert ".audit" in block, _report(after)


# ---------------------------------------------------------------------- module cycles


def _ignored_imports() -> set[tuple[str, str]]:
    """The imports the no-cycles contract ignores (each with its reason in pyproject.toml)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(
        c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "no-cycles"
    )
    pairs = (line.split("->") for line in contract.get("ignore_imports", []))
    return {(importer.strip(), imported.strip()) for importer, imported in pairs}


def module_cycles(graph: grimp.ImportGraph, ignored: set[tuple[str, str]]) -> list[list[str]]:
    """One import cycle per group of modules that reach each other, as module names.

    Every import counts: lazy ones inside functions and type-only ones alike.

    Args:
        graph: The package's import graph (its own modules only).
        ignored: ``(importer, imported)`` pairs to leave out.

    Returns:
        Each cycle as ``[a, b, ..., a]``; empty when there is none.
    """
    imports = {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if (module, imported) not in ignored
        }
        for module in graph.modules
    }
    cycles = []
    for group in _strongly_connected(imports):
        if len(group) < 2:
            continue
        # Show one concrete circle through the group: an import into it, and the
        # shortest way from there back to where it started.
        start = min(group)
        step = min(m for m in imports[start] if m in group)
        back = graph.find_shortest_chain(importer=step, imported=start)
        cycles.append([start, *(back or (step, "...", start))])
    return cycles


def _strongly_connected(imports: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative so a deep import chain cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            pushed = False
            for succ in successors:
                if succ not in imports:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(imports[succ]))))
                    pushed = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if pushed:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=False, cache_dir=None)


def test_no_module_reaches_itself_through_imports() -> None:
    cycles = module_cycles(_graph(), _ignored_imports())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_a_package_and_its_own_module_importing_each_other_is_a_cycle() -> None:
    # The package's __init__ imports exceptions; exceptions importing the package back is
    # the cycle acyclic_siblings cannot see, and the one this check is here for.
    graph = _graph()
    assert graph.direct_import_exists(importer=PACKAGE, imported=f"{PACKAGE}.exceptions")
    graph.add_import(importer=f"{PACKAGE}.exceptions", imported=PACKAGE)

    cycles = module_cycles(graph, _ignored_imports())

    assert [PACKAGE, f"{PACKAGE}.exceptions", PACKAGE] in cycles


def test_the_ignored_type_only_import_is_still_there() -> None:
    # An ignore that no longer matches anything should go (lint-imports says so too).
    graph = _graph()
    for importer, imported in _ignored_imports():
        assert graph.direct_import_exists(importer=importer, imported=imported)
