"""The package's import graph: no cycles, lower layers never import upper ones, library
code never imports the user-facing re-export modules (checked statically, every import
statement including those inside functions)."""

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "stylejax"
LOWER = {"pipeline", "losses", "models", "metrics", "data"}
UPPER = {"train", "methods", "tune", "commands", "evaluation", "cli"}
REEXPORTS = {"stylejax.lap", "stylejax.io", "stylejax.phantom", "stylejax.stylex",
             "stylejax.blackbox"}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.startswith("stylejax"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    graph[name].add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
    return graph


def _layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_lower_layers_do_not_import_upper_ones():
    bad = [(m, t) for m, targets in _graph().items() for t in targets
           if _layer(m) in LOWER and _layer(t) in UPPER]
    assert not bad, bad


def test_library_code_does_not_import_reexport_modules():
    bad = [(m, t) for m, targets in _graph().items() for t in targets
           if t in REEXPORTS and m not in REEXPORTS and _layer(m) != "commands"]
    assert not bad, bad


def test_no_import_cycles():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, cycles


def test_the_checker_sees_a_cycle_and_a_layer_violation(tmp_path, monkeypatch):
    """The checks can fail: a fake package with a cycle and an upward import."""
    pkg = tmp_path / "stylejax"
    (pkg / "metrics").mkdir(parents=True)
    (pkg / "train").mkdir()
    for d in (pkg, pkg / "metrics", pkg / "train"):
        (d / "__init__.py").write_text("")
    (pkg / "metrics" / "a.py").write_text("from stylejax.train import b\n")
    (pkg / "train" / "b.py").write_text("def f():\n    from stylejax.metrics import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    import pytest

    with pytest.raises(AssertionError):
        test_lower_layers_do_not_import_upper_ones()
    with pytest.raises(AssertionError):
        test_no_import_cycles()
