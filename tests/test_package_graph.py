"""The top-level packages depend one way (docs/PACKAGES.md): data_pipelines -> grm_jax and
convert_weights -> grm_jax; grm_jax (its bundled configs included) imports neither, not even inside
a function; launch.py is the one module that imports all three. Read from the source with ``ast``,
so imports inside functions, ``importlib.import_module("...")`` and ``__import__("...")`` with a
literal name count too."""
import ast
import pathlib
import subprocess
import sys

import pytest

from conftest import timeout_s

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("grm_jax", "data_pipelines", "convert_weights")
# The folders of each package's code (configs/ is installed as grm_jax.configs).
FOLDERS = {"grm_jax": ("grm_jax", "configs"), "data_pipelines": ("data_pipelines",),
           "convert_weights": ("convert_weights",)}
ALLOWED = {"grm_jax": set(), "data_pipelines": {"grm_jax"}, "convert_weights": {"grm_jax"}}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "configs":
        parts = ["grm_jax", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: pathlib.Path):
    """(line, absolute module name) of every import in the file, at any depth."""
    return _imports_in(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")


def _imports_in(source: str, module: str, is_package: bool):
    """(line, absolute module name) of every import in ``source``, the code of ``module``."""
    here = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here if is_package else here[:-1]
                base = base[:len(base) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def _edges(package: str) -> list[tuple[str, str]]:
    """(package, 'file:line imports module') for every import of another top-level package of ours."""
    found = []
    for folder in FOLDERS[package]:
        for path in sorted((REPO / folder).rglob("*.py")):
            for line, module in _imported(path):
                top = module.split(".")[0]
                if top in PACKAGES and top != package:
                    found.append((top, f"{path.relative_to(REPO)}:{line} imports {module}"))
    return found


def test_packages_depend_one_way():
    wrong = [where for package in PACKAGES for top, where in _edges(package) if top not in ALLOWED[package]]
    assert not wrong, "imports against the package graph of docs/PACKAGES.md:\n" + "\n".join(wrong)


def test_the_scan_sees_every_kind_of_import():
    """The scanner itself finds module-level, function-local, relative and importlib imports."""
    source = ("import os\nfrom . import errors\nfrom .model import GRM\n"
              "def f():\n    from data_pipelines.pipeline import make_train_iterator\n"
              "    import importlib\n    importlib.import_module('convert_weights.mae')\n")
    found = sorted(_imports_in(source, "grm_jax.cli", is_package=False))
    assert found == [(1, "os"), (2, "grm_jax"), (3, "grm_jax.model"), (5, "data_pipelines.pipeline"),
                     (6, "importlib"), (7, "convert_weights.mae")]


def test_launch_is_the_composition_root():
    """launch.py imports all three packages; importing it loads neither grain nor the pipeline
    (evaluate / track / score do not need them)."""
    launch = {module.split(".")[0] for _, module in _imported(REPO / "launch.py")}
    assert set(PACKAGES) <= launch
    code = ("import sys, launch; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grain', 'data_pipelines')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout_s(60))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"


def test_training_without_parts_is_refused(tmp_path, capsys):
    """grm_jax alone cannot train: cli.main without train_parts says so in one line (the other
    modes need no parts), and run_train refuses anything but TrainParts before touching the workdir."""
    from grm_jax import cli
    from grm_jax.configuration import load_run_config
    from grm_jax.train.loop import run_train

    assert cli.main(["--config", "grm_tiny_cpu", f"--workdir={tmp_path / 'w'}"]) == 2
    err = capsys.readouterr().err
    assert "--mode=train needs the data pipeline and the MAE reader" in err and "launch.py" in err
    assert "Traceback" not in err
    with pytest.raises(TypeError, match="TrainParts"):
        run_train(load_run_config("grm_tiny_cpu"), tmp_path / "w", None)
    assert not (tmp_path / "w").exists()
