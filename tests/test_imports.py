"""The import graph: no module cycles (function-local imports counted), and the layers of
docs/architecture.md hold: a lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("chat", "feedback", "retrieval", "training")
# lowest first; a module belongs to the layer of its longest matching prefix
LAYERS = [
    ("base", ("chat.config", "chat.errors", "chat.sanitize", "chat.prompt", "chat.focus",
              "chat.citations",
              "chat.engine.loading", "feedback", "retrieval", "training.registry")),
    ("engine", ("chat.engine", "chat.profiles", "chat.auth", "chat.limits")),
    ("training", ("training",)),
    ("serving", ("chat", "launch", "feedback.cli", "feedback.bench", "retrieval.cli",
                 "retrieval.bench", "training.cli", "training.bench")),
]
HEAVY = {"torch", "transformers", "trl", "peft", "gradio", "datasets", "accelerate"}


def _modules() -> dict[str, Path]:
    found = {"launch": ROOT / "launch.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path] | None, top_only: bool = False) -> set[str]:
    """Modules `path` imports (project ones only when `modules` is given), at any depth: a
    function-local import still binds. `top_only`: only those run when it is imported."""
    out = set()
    tree = ast.parse(path.read_text())
    for node in (tree.body if top_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        out |= {n for n in names if modules is None or n in modules}
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {m: _imports(p, modules) for m, p in modules.items()}
    for m in graph:  # "from chat.web import admin" names chat.web.admin, not the package
        graph[m] = {d for d in graph[m] if not (modules[d].name == "__init__.py"
                                                and any(x.startswith(d + ".") for x in graph[m]))}
        graph[m].discard(m)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> int:
    matches = [(len(p), rank) for rank, (_, prefixes) in enumerate(LAYERS) for p in prefixes
               if module == p or module.startswith(p + ".")]
    assert matches, f"{module} is in no layer"
    return max(matches)[1]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_check_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_layers_never_import_higher_ones():
    upward = [f"{m} -> {d}" for m, deps in _graph().items() for d in deps
              if _layer(d) > _layer(m)]
    assert upward == []


def _heavy(modules: dict[str, Path]) -> set[str]:
    """Project modules whose import loads torch, transformers, TRL, Gradio... (transitively)."""
    top = {m: _imports(p, None, top_only=True) for m, p in modules.items()}
    heavy = {m for m, names in top.items() if {n.split(".")[0] for n in names} & HEAVY}
    while True:
        more = {m for m, names in top.items() if m not in heavy and names & heavy}
        if not more:
            return heavy
        heavy |= more


def test_function_local_imports_are_only_for_heavy_libraries():
    """A project import inside a function hides a dependency (and often a cycle); it is
    kept only where the module it loads pulls in a heavy library (so a quick command such as
    `users add` does not load torch)."""
    modules, local = _modules(), []
    heavy = _heavy(modules)
    for name, path in modules.items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    targets = [f"{node.module}.{a.name}" for a in node.names]
                    targets = [t for t in targets if t in modules] or [node.module]
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                else:
                    continue
                light = [t for t in targets if t in modules and t not in heavy]
                local += [f"{name}.{fn.name} imports {t}" for t in light]
    assert local == []
