"""The import structure of ``src/bastion`` and the addon map in docs/architecture.md stay true.

Every import counts, function-level ones included: an import hidden in a function still ties the
modules together, it only hides the tie.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from bastion import approval_config
from bastion.proxy.addons import default_addons
from bastion.proxy.config import GatewayConfig
from bastion.proxy.control import Control
from bastion.proxy.metrics import ProxyMetrics
from bastion.proxy.outbox import Outbox
from bastion.proxy.policy import PolicyEngine
from factories.proxy import keystore, policies_dir, route

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# Folders whose every module has its own test file: (modules, their tests).
MIRRORED = [
    (SRC / "bastion" / "proxy" / "addons", ROOT / "tests" / "proxy" / "addons"),
    (SRC / "bastion" / "proxy" / "formats", ROOT / "tests" / "proxy" / "formats"),
]
ADDONS = "bastion.proxy.addons"

Graph = dict[str, set[str]]


def module_files(src: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under ``src/bastion``: dotted name -> (file, is a package)."""
    found = {}
    for path in sorted((src / "bastion").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def imported(name: str, path: Path, package: bool, modules: set[str]) -> Iterator[str]:
    """The project modules ``name`` imports, anywhere in its file (a name imported from a package
    counts as the submodule when it is one, else as the package)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".") if package else name.split(".")[:-1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph(src: Path) -> Graph:
    modules = module_files(src)
    return {name: set(imported(name, path, package, set(modules))) for name, (path, package) in modules.items()}


def cycle(graph: Graph) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as e:
        found: list[str] = e.args[1]
        return found
    return None


def is_addon(module: str) -> bool:
    return module.startswith(ADDONS + ".")


def addon_violations(graph: Graph) -> list[str]:
    """Imports of an addon module by anything but the addons package, which composes them."""
    return sorted(
        f"{importer} imports {target}"
        for importer, targets in graph.items()
        for target in targets
        if is_addon(target) and importer != ADDONS
    )


def write(src: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


def test_the_source_has_no_import_cycle() -> None:
    assert cycle(import_graph(SRC)) is None


def test_no_addon_is_imported_but_by_the_addons_package() -> None:
    assert addon_violations(import_graph(SRC)) == []


def test_the_graph_sees_every_import_the_rules_are_about(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        {
            "bastion/__init__.py": "",
            "bastion/a.py": "def f():\n    from bastion import b\n",
            "bastion/b.py": "from . import a\n",
            "bastion/proxy/__init__.py": "",
            "bastion/proxy/state.py": "",
            "bastion/proxy/pure.py": "def f():\n    from bastion.proxy.addons.one import X\n",
            "bastion/proxy/addons/__init__.py": "from bastion.proxy.addons.one import X\n",
            "bastion/proxy/addons/one.py": "from bastion.proxy.state import *\nX = 1\n",
            "bastion/proxy/addons/two.py": "from .one import X\n",
        },
    )
    graph = import_graph(src)
    found = cycle(graph)
    assert found is not None and set(found) == {"bastion.a", "bastion.b"}
    assert addon_violations(graph) == [
        "bastion.proxy.addons.two imports bastion.proxy.addons.one",
        "bastion.proxy.pure imports bastion.proxy.addons.one",
    ]


def documented_addons(text: str) -> list[str]:
    """The addon classes in the architecture's step table, in order."""
    head = text.index("| Step | Addon (module) |")
    names: list[str] = []
    for line in text[head:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = line.split("|")
        names += re.findall(r"`([A-Z]\w*)`", cells[2])
    return names


def test_the_architecture_table_lists_the_addons_in_order(tmp_path: Path) -> None:
    policies = policies_dir(tmp_path)
    config = GatewayConfig(routes=(route("openai"),), keys_file=tmp_path / "keys.yaml")
    keys, _ = keystore(tmp_path)
    # Every optional addon on: approvals and interventions, the outbox hold, metrics.
    addons = default_addons(
        config,
        keys,
        PolicyEngine(policies),
        TracerProvider().get_tracer("t"),
        1024,
        control=Control("http://127.0.0.1:9", approval_config.load(policies)),
        outbox=Outbox(tmp_path / "outbox"),
        metrics=ProxyMetrics(),
    )
    assert documented_addons(ARCHITECTURE.read_text()) == [type(addon).__name__ for addon in addons]


def untested_modules(modules: Path, tests: Path) -> list[str]:
    """The modules in ``modules`` without a ``test_<module>.py`` in ``tests`` that holds a test."""

    def has_tests(path: Path) -> bool:
        tree = ast.parse(path.read_text(), str(path))
        return any(isinstance(n, ast.FunctionDef) and n.name.startswith("test_") for n in tree.body)

    return sorted(
        module.name
        for module in modules.glob("*.py")
        if module.name != "__init__.py" and not ((test := tests / f"test_{module.name}").is_file() and has_tests(test))
    )


@pytest.mark.parametrize(("modules", "tests"), MIRRORED, ids=[str(m.relative_to(SRC)) for m, _ in MIRRORED])
def test_every_addon_module_has_its_own_test_file(modules: Path, tests: Path) -> None:
    assert untested_modules(modules, tests) == []


def test_an_addon_module_without_a_test_file_is_found(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "addons/__init__.py": "",
            "addons/tested.py": "",
            "addons/untested.py": "",
            "addons/empty.py": "",
            "tests/test_tested.py": "def test_it() -> None:\n    pass\n",
            "tests/test_empty.py": "def helper() -> None:\n    pass\n",
        },
    )
    assert untested_modules(tmp_path / "addons", tmp_path / "tests") == ["empty.py", "untested.py"]
