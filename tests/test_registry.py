"""The one registry table and the one dataset-root function (issue 15.4): each dataset name's
facts, reader included, live in its registry row; no other module keeps a table keyed by dataset
names; every entry point reports an unset root with the same error."""
import ast
import os
import pathlib

import numpy as np
import pytest

from grm_jax import datasets as ds
from grm_jax.configuration import load_run_config
from grm_jax.datasets import files, registry
from grm_jax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("grm_jax", "data_pipelines", "convert_weights")


def _package_files():
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_every_row_has_the_reader_its_use_needs():
    for spec in ds.DATASETS.values():
        if spec.use == registry.TRAIN:
            assert callable(spec.read) and spec.load is None and spec.table is None, spec.name
        else:
            assert spec.use == registry.EVAL and callable(spec.load) and spec.read is None, spec.name
        assert spec.denominator in ("valid", "all", "lasot_protocol") and spec.scoring in (
            "pytracking", "got10k", *registry.SERVER_SCORING), spec.name
    # every shipped sequence table belongs to exactly one row, and every row's table is shipped
    tables = [s.table for s in ds.DATASETS.values() if s.table is not None]
    assert sorted(tables) == sorted(os.listdir(files.TABLES_DIR))
    assert ds.benchmark_sequence_names("uav") == files.table_sequence_names("uav123.json")


def _name_keyed_tables(path: pathlib.Path, spellings: set[str]) -> list[str]:
    """Dict literals of ``path`` with two or more dataset names (or aliases) as keys."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            if len(keys & spellings) >= 2:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_no_other_table_keyed_by_dataset_names():
    spellings = set(ds.DATASETS) | {a for s in ds.DATASETS.values() for a in s.aliases}
    found = [hit for p in _package_files() for hit in _name_keyed_tables(p, spellings)]
    assert found == []
    # the registry's name views are derived from its rows, not written out
    assert list(ds.DATASETS) == [s.name for s in registry._SPECS]


def _reads_of_roots(path: pathlib.Path) -> list[str]:
    """``<x>.roots[...]`` and ``<x>.roots.get(...)`` in the code of ``path`` (docstrings aside)."""
    def is_roots(node):
        return (isinstance(node, ast.Attribute) and node.attr == "roots") or (
            isinstance(node, ast.Name) and node.id == "roots")
    hits = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        subscript = isinstance(node, ast.Subscript) and is_roots(node.value)
        get = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
               and is_roots(node.func.value))
        if subscript or get:
            hits.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return hits


def test_only_the_dataset_root_function_reads_roots():
    """Outside grm_jax/datasets (and the config loader that fills the roots in), no code picks a
    folder out of ``data.roots`` itself: it asks ``dataset_root`` / ``require_dataset_root``."""
    allowed = {REPO / "grm_jax" / "configuration.py"}
    offenders = [hit for p in _package_files() if p.parent != REPO / "grm_jax" / "datasets" and p not in allowed
                 for hit in _reads_of_roots(p)]
    assert offenders == []


def test_one_error_for_an_unset_root_from_train_evaluate_and_pack():
    from data_pipelines.pipeline import build_sources
    from grm_jax.evaluate.runner import resolve_benchmark

    run = load_run_config("grm", ["data.datasets=lasot_train", "data.ratios=1.0,"])
    assert run.data.roots["lasot"] is None
    errors = {}
    for where, call in {"train": lambda: build_sources(run.data),
                        "evaluate": lambda: resolve_benchmark(run, "lasot_test"),
                        "pack": lambda: ds.training_source("lasot_train", None),
                        "load_benchmark": lambda: ds.load_benchmark("lasot", None)}.items():
        with pytest.raises(ConfigError) as info:
            call()
        errors[where] = info.value
    with pytest.raises(ConfigError) as info:
        ds.require_dataset_root("lasot", run.data.roots)
    one = info.value
    assert str(one) == "dataset 'lasot' needs config.data.roots.lasot (a folder), which is not set"
    for where, err in errors.items():
        assert str(err) in (str(one), str(one).replace("'lasot'", "'lasot_train'")), where
        assert err.hint == one.hint, where
    assert "--config.data.roots.lasot=" in one.hint and "GRM_DATA_ROOT/lasot" in one.hint
    # the inline folder form is offered where it exists
    with pytest.raises(ConfigError, match="roots.folder") as info:
        resolve_benchmark(run, "folder")
    assert info.value.hint.startswith(one.hint.split(";")[0].replace("lasot", "folder"))
    assert "--dataset=folder:" in info.value.hint


def test_dataset_root_defaults():
    assert ds.dataset_root("sample_val", {}) == ds.DEFAULT_SAMPLE_ROOT
    assert ds.dataset_root("sample_val", {}, default="/x") == "/x"
    assert ds.dataset_root("sample_val", {"sample": "/y"}, default="/x") == "/y"
    assert ds.dataset_root("lasot", {}) is None and ds.dataset_root("lasot", {"lasot": "/l"}) == "/l"


@pytest.mark.parametrize("bench,protocol,want", [("avist", "grm", ("all", None)), ("lasot", "grm", ("valid", "grm")),
                                                  ("lasot", "official", ("all", "official")),
                                                  ("uav123", "official", ("valid", None))])
def test_scoring_denominator_comes_from_the_row(tmp_path, bench, protocol, want):
    """The success denominator of a benchmark is its row's ``denominator`` (AVisT every frame,
    LaSOT as eval.lasot_protocol says, the others the valid frames)."""
    from grm_jax.evaluate.report import score_tracker
    from grm_jax.evaluate.results import write_results

    gt = np.tile([10.0, 10.0, 20.0, 20.0], (4, 1))
    seq = ds.Sequence("s", [str(tmp_path / f"{i}.jpg") for i in range(4)], gt, bench,
                      visible=np.array([True, True, False, True]))
    write_results(tmp_path, "s", gt)
    metrics = score_tracker([seq], tmp_path, "t", lasot_protocol=protocol)
    assert (metrics["denominator"], metrics["protocol"]) == want
