"""Functions of the package fit on a screen: none in `keras_vit/` or
`export/` runs over 80 lines past its docstring."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOST_LINES = 80


def _function_lengths():
    for package in ("keras_vit", "export"):
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in sorted(n for n in names if n.endswith(".py")):
                path = os.path.join(folder, name)
                with open(path) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(
                        node, (ast.FunctionDef, ast.AsyncFunctionDef)
                    ):
                        first = node.body[0]
                        has_doc = isinstance(first, ast.Expr) and isinstance(
                            getattr(first, "value", None), ast.Constant
                        )
                        start = (
                            first.end_lineno + 1 if has_doc else first.lineno
                        )
                        where = f"{os.path.relpath(path, ROOT)}::{node.name}"
                        yield where, node.end_lineno - start + 1


def test_no_function_runs_over_eighty_lines():
    lengths = dict(_function_lengths())
    assert len(lengths) > 300
    longer = {k: v for k, v in lengths.items() if v > MOST_LINES}
    assert longer == {}
