"""The packages hold no dead or test-only code (issue 15.5): every module-level function, class and
constant, and every method, of grm_jax, data_pipelines and convert_weights is used by the packages,
launch.py, the configs, the benchmarks or the notebooks, or is a documented API named in the README.
Helpers only the tests need live under tests/ (helpers.py, train_utils.py, ...)."""
import ast
import json
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("grm_jax", "data_pipelines", "convert_weights")
# Methods called by a library through its protocol, never by name in our code.
PROTOCOL_METHODS = {"filter",  # logging.Filter
                    "readable",  # io.RawIOBase
                    "find_class", "persistent_load",  # pickle.Unpickler
                    "get_state"}  # grain's checkpoint handler reads the iterator position


def _references(tree: ast.AST, imports: bool) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):  # assigning is no use
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif imports and isinstance(node, ast.alias):
            names.add(node.name.split(".")[-1])
    return names


def _notebook_code(path: pathlib.Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = [ln for c in cells if c["cell_type"] == "code" for ln in "".join(c["source"]).splitlines()]
    return "\n".join(ln for ln in lines if not ln.lstrip().startswith(("!", "%")))


def _definitions(tree: ast.Module):
    """(name, lineno) of module-level functions, classes and constants, and of methods."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name, node.lineno
        elif isinstance(node, ast.Assign):
            yield from ((t.id, node.lineno) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id, node.lineno
        if isinstance(node, ast.ClassDef):
            yield from ((s.name, s.lineno) for s in node.body
                        if isinstance(s, ast.FunctionDef) and s.name not in PROTOCOL_METHODS)


def test_every_package_name_is_used_outside_the_tests():
    package_files = sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))
    trees = {p: ast.parse(p.read_text(encoding="utf-8")) for p in package_files}
    used = set()
    for tree in trees.values():  # imports alone (re-exports in __init__.py) do not count as a use
        used |= _references(tree, imports=False)
    others = [REPO / "launch.py", *sorted((REPO / "configs").glob("*.py")), *sorted((REPO / "benchmarks").glob("*.py"))]
    for path in others:
        used |= _references(ast.parse(path.read_text(encoding="utf-8")), imports=True)
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        used |= _references(ast.parse(_notebook_code(path)), imports=True)
    documented = set(re.findall(r"`(?:[\w.]+\.)?(\w+)(?:\(\))?`", (REPO / "README.md").read_text(encoding="utf-8")))
    unused = [f"{path.relative_to(REPO)}:{line} {name}" for path, tree in trees.items()
              for name, line in _definitions(tree)
              if not name.startswith("__") and name not in used and name not in documented]
    assert unused == [], "used only by tests (move to tests/) or by nothing (delete):\n" + "\n".join(unused)
