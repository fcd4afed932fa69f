"""
The package's layering, read from its source (no import runs): the transport-neutral layers
(formats, normalizer, intake) never reach into a transport (web, syslog) or a sink's
implementation, and no module imports itself round a circle. See README "Development".
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aisoc_inboxd"
NEUTRAL = ("aisoc_inboxd.formats", "aisoc_inboxd.normalizer", "aisoc_inboxd.intake")
#: the transports, which the neutral layers may not import
TRANSPORTS = ("aisoc_inboxd.web", "aisoc_inboxd.syslog")
#: the sinks' package, whose interface (C{EventSink}, C{SinkUnavailable}) they may import, but not
#: its implementations (C{sinks.kafka}, …)
SINKS = "aisoc_inboxd.sinks"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, importer: str, package: bool) -> set[str]:
    """
    The package's modules C{importer} imports: at module level, in functions and under
    C{TYPE_CHECKING} alike (a module that needs another's types depends on it as much).
    """
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = importer.split(".") if package else importer.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            # `from package import module` imports the module
            names.update(f"{source}.{alias.name}" for alias in node.names if is_module(f"{source}.{alias.name}"))
    return {name for name in names if name == "aisoc_inboxd" or name.startswith("aisoc_inboxd.")}


def is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def with_parents(name: str) -> set[str]:
    """
    A module and the packages importing it runs first (C{a.b.c}: C{a}, C{a.b}, C{a.b.c}).
    """
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        edges = set().union(*(with_parents(m) for m in imported(tree, name, path.name == "__init__.py")))
        graph[name] = {m for m in edges if is_module(m) and m != name and not name.startswith(m + ".")}
    return graph


GRAPH = import_graph()


def test_the_graph_is_read() -> None:
    """The walk finds the modules and their imports (so the rules below cannot pass on an empty graph)."""
    assert "aisoc_inboxd.intake.intake" in GRAPH["aisoc_inboxd.web.token_route"]
    assert "aisoc_inboxd.intake.refusals" in GRAPH["aisoc_inboxd.intake.idempotency"]
    assert "aisoc_inboxd.formats" in GRAPH["aisoc_inboxd.web.cef"]  # importing a module runs its package


def forbidden(target: str) -> bool:
    return any(target == t or target.startswith(t + ".") for t in TRANSPORTS) or target.startswith(SINKS + ".")


@pytest.mark.parametrize("layer", NEUTRAL)
def test_neutral_layers_do_not_import_transports_or_sink_internals(layer: str) -> None:
    """formats/, normalizer/ and intake/ import no web/ or syslog/ module and no sink implementation."""
    offences = sorted(f"{importer} imports {target}" for importer, targets in GRAPH.items()
                      if importer == layer or importer.startswith(layer + ".")
                      for target in targets if forbidden(target))
    assert offences == []


def test_no_import_cycle() -> None:
    """No module imports itself through others (a cycle makes import order matter and layers blur)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH.get(name, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert [" → ".join(cycle) for cycle in cycles] == []
