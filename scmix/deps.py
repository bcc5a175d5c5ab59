"""Which package files a rule script can execute: a static walk of its ``scmix`` imports.

The workflow makes every rule depend on these files (an edit reruns exactly the rules whose scripts can run the
edited code), and ``tests/workflow/test_envs.py`` uses the same walk to check each rule's conda env. Standard library
only: this module is imported while the DAG is built.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "scmix"


def imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (function-level imports included);
    ``from scmix import x`` names ``scmix.x`` too, since x may be a module."""
    st = os.stat(path)
    return set(_imports_of(str(path), st.st_mtime_ns, st.st_size))


@functools.cache
def _imports_of(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    """``imported_modules`` of one version of a file (its modification time and size): the workflow asks for the
    same files once per rule, and parsing them was a third of a dry run's time."""
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=path)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module.split(".")[0] == PACKAGE:
                names |= {f"{node.module}.{a.name}" for a in node.names}
    return frozenset(names)


def module_file(module: str, root: Path) -> Path | None:
    """The file of a package module under ``root`` (the folder holding ``scmix/``), or None if it is no module."""
    base = Path(root, *module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def walk(start: Iterable[Path], root: Path) -> tuple[set[Path], set[str]]:
    """From these files, every package file reachable through imports (importing ``scmix.a.b`` runs
    ``scmix/__init__.py`` and ``scmix/a/__init__.py`` too), and the top-level names of every other import."""
    seen: set[Path] = set()
    todo = [Path(p) for p in start]
    others: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] != PACKAGE:
                others.add(parts[0])
                continue
            for i in range(1, len(parts) + 1):
                f = module_file(".".join(parts[:i]), root)
                if f is not None:
                    todo.append(f)
    return seen, others


def package_files(script: Path, root: Path, extra_modules: Iterable[str] = ()) -> list[str]:
    """The package files ``script`` can execute, sorted; ``extra_modules`` adds modules it loads by name
    (``importlib``), such as a dataset's source module."""
    start = [Path(script)] + [f for m in extra_modules if (f := module_file(m, root)) is not None]
    files, _ = walk(start, root)
    pkg = Path(root, PACKAGE)
    return sorted(str(f) for f in files if f.is_relative_to(pkg))


def third_party_imports(script: Path, root: Path) -> set[str]:
    """Top-level non-standard-library packages ``script`` needs, through the package modules it imports."""
    _, others = walk([Path(script)], root)
    return {m for m in others if m not in sys.stdlib_module_names and m != "__future__"}
