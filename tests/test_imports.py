"""The package's modules import one another in one direction only.

`test_the_import_graph_has_no_cycles` reads every `import` of
`keras_vit/` and `export/` (also those inside functions, which only hide a
cycle until the function runs) and lists the graph's strongly connected
components; `test_each_module_imports_first_in_a_fresh_interpreter` imports each
module with none of the package loaded before it, where a cycle would
surface as an `ImportError` or a half-initialized module.
"""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("keras_vit", "export", "keras_vit_cli")


def _modules():
    found = {}
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                if module.endswith(".__init__"):
                    module = module[: -len(".__init__")]
                found[module] = path
    return found


def _imported(module, path, modules):
    """The package modules `module`'s imports name, anywhere in it."""
    package = (
        module if path.endswith("__init__.py") else module.rpartition(".")[0]
    )
    targets = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    filter(None, [package.rsplit(".", node.level - 1)[0], base])
                )
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            if name in modules and name != module:
                targets.add(name)
                break
    return targets


def import_graph():
    """`{module: {modules it imports}}` over `keras_vit` and `export`."""
    modules = _modules()
    return {m: _imported(m, p, modules) for m, p in modules.items()}


def cycles(graph):
    """The strongly connected components of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 40 and "keras_vit.commands.train" in graph
    assert "keras_vit.saving" in graph["keras_vit.model"]
    assert cycles(graph) == []


# Imports each module first, with no module of the package loaded before
# it: the package's modules are dropped from `sys.modules` between imports
# (third-party libraries stay loaded: TensorFlow loads once, not sixty
# times). `__main__` modules are programs, not imported.
_ALONE = """
import importlib, json, sys, traceback
failed = {}
for module in json.loads(sys.argv[1]):
    for name in [n for n in sys.modules if n.split(".")[0] in PACKAGES]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except Exception:
        failed[module] = traceback.format_exc()[-1500:]
print(json.dumps(failed))
"""


def test_each_module_imports_first_in_a_fresh_interpreter():
    import json

    modules = sorted(m for m in _modules() if not m.endswith("__main__"))
    script = f"PACKAGES = {PACKAGES!r}\n" + _ALONE
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}
