"""The package's layers: imports only point down, and a few facts live in one place each.

Layers, lowest first (docs/development.md, "Layers"):

    core -> data, models -> tracking -> training -> evaluation, prediction -> benchmarks -> cli

A module may import its own sub-package and any lower layer, never a layer above it nor a
peer (data and models do not know each other; neither do evaluation and prediction). Nothing
imports ``tdpcr.cli``, and only modules under ``tdpcr.tracking`` import MLflow. No two modules
import each other, directly or around a longer circle, and no module grows past
:data:`MAX_MODULE_LINES` lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PACKAGE = REPO / "tdpcr"

#: Longest module, in lines: past it a module holds more than one job (split it by stage).
MAX_MODULE_LINES = 700

#: Layer of each top-level sub-package (or module) of tdpcr.
LAYERS: dict[str, int] = {
    "core": 0,
    "data": 1,
    "models": 1,
    "tracking": 2,
    "training": 3,
    "evaluation": 4,
    "prediction": 4,
    "benchmarks": 5,
    "cli": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import in ``path``, lazy ones inside functions too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def _package_of(module: str) -> str | None:
    """``tdpcr.data.store`` -> ``data``; None for ``tdpcr`` itself and non-tdpcr modules."""
    parts = module.split(".")
    return parts[1] if parts[0] == "tdpcr" and len(parts) > 1 else None


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _tdpcr_imports(path: Path, modules: set[str]) -> set[str]:
    """The tdpcr modules ``path`` imports (lazy and ``TYPE_CHECKING`` imports included).

    ``from tdpcr.a import b`` is an import of the module ``tdpcr.a.b`` when that is a module,
    else of ``tdpcr.a`` (a name from its ``__init__``). The parent packages Python runs first
    are not counted: a package re-exporting its own modules is no circle.
    """
    me = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                found.add(name)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = me if path.name == "__init__.py" else me.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{module}".rstrip(".")
            for alias in node.names:
                name = f"{module}.{alias.name}"
                found.add(name if name in modules else module)
    return {m for m in found if m in modules and m != me}


def _import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of two or more modules that reach each other through imports (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circle_between_tdpcr_modules() -> None:
    modules = {_module_name(path): path for path in _modules()}
    graph = {name: _tdpcr_imports(path, set(modules)) for name, path in modules.items()}
    assert _import_circles(graph) == []


def test_the_circle_check_sees_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _import_circles(graph) == [["a", "b", "c"]]


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_every_package_has_a_layer() -> None:
    tops = {_package_of(_module_name(path)) for path in _modules()} - {None}
    assert tops == set(LAYERS)


def test_imports_point_down() -> None:
    wrong = []
    for path in _modules():
        importer = _package_of(_module_name(path))
        if importer is None:
            continue
        for module, line in _imports(path):
            target = _package_of(module)
            if target is None or target == importer:
                continue
            if LAYERS[target] >= LAYERS[importer]:
                wrong.append(f"{path.relative_to(REPO)}:{line} ({importer}) imports {module}")
    assert wrong == []


def test_nothing_imports_the_cli() -> None:
    importers = [
        f"{path.relative_to(REPO)}:{line}"
        for path in [*_modules(), *(REPO / "tests").glob("*.py")]
        for module, line in _imports(path)
        if module == "tdpcr.cli" and path.name != "cli.py" and "tests" not in path.parts
    ]
    assert importers == []


def test_mlflow_is_imported_only_under_tdpcr_tracking() -> None:
    importers = {
        _module_name(path)
        for path in _modules()
        for module, _ in _imports(path)
        if module.split(".")[0] == "mlflow"
    }
    assert importers and all(m.split(".")[:2] == ["tdpcr", "tracking"] for m in importers)


def test_the_shared_layer_imports_no_stage() -> None:
    for path in (PACKAGE / "core").glob("*.py"):
        stages = {_package_of(m) for m, _ in _imports(path)} - {None, "core"}
        assert stages == set(), path.name


@pytest.mark.parametrize("path", ["workflow/rules", "Snakefile", "workflow/Snakefile"])
def test_rules_hold_no_config_defaults(path: str) -> None:
    """The schema carries every default; rules read config[...] directly."""
    files = [REPO / path] if (REPO / path).is_file() else sorted((REPO / path).glob("*.smk"))
    offending = [
        f"{f.relative_to(REPO)}:{n}"
        for f in files
        for n, text in enumerate(f.read_text().splitlines(), start=1)
        if "config" in text and ".get(" in text
    ]
    assert offending == []


def test_schema_source_enum_is_the_source_registry() -> None:
    from tdpcr.data.sources import SOURCES

    schema = yaml.safe_load((PACKAGE / "schemas" / "config.schema.yaml").read_text())
    entry = schema["properties"]["datasets"]["additionalProperties"]
    assert sorted(entry["properties"]["source"]["enum"]) == sorted(SOURCES)
    for name, cls in SOURCES.items():
        assert cls.name == name


def test_tables_use_metric_names_and_known_methods() -> None:
    from tdpcr.core.specs import CLASS_IOU, CR_METRICS, SEG_METRICS
    from tdpcr.evaluation.methods import METHODS
    from tdpcr.evaluation.tables import TABLES

    for spec in TABLES.values():
        assert set(spec.metrics) <= set(CR_METRICS) | set(SEG_METRICS) | set(CLASS_IOU)
        assert set(spec.methods) <= set(METHODS)


def test_shipped_configs_hold_the_model_sizes_benchmarks_use() -> None:
    """Benchmarks read model sizes from config/paper.yaml and config/config.yaml, not copies."""
    from tdpcr.benchmarks.complexity import paper_sizes
    from tdpcr.core.config import shipped_config

    assert paper_sizes() == shipped_config("paper")["models"]
    assert paper_sizes()["tdpcr"]["width"] == 32  # the paper's [32, 64, 128, 256] channels
