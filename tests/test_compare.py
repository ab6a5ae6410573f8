"""Comparison reports (grm_jax/evaluate/compare.py) and LaSOT per-attribute scores
(grm_jax/evaluate/attributes.py) on hand-made LaSOT-like sequences (no images needed)."""
import json

import numpy as np
import pytest

from grm_jax.datasets import Sequence
from grm_jax.errors import DataError, MissingFileError
from grm_jax.evaluate import attributes as A
from grm_jax.evaluate import compare, report
from grm_jax.evaluate.results import write_results

NAMES = ("cat-1", "cat-2", "dog-1")
FLAGS = {"cat-1": ("IV", "POC"), "cat-2": ("IV",), "dog-1": ("FM", "IV")}


def _flags_line(abbrevs) -> str:
    return ",".join("1" if a in abbrevs else "0" for a, _ in A.LASOT_ATTRIBUTES) + "\n"


@pytest.fixture()
def lasot(tmp_path):
    """(LaSOT root with attribute files in three of the supported places, sequences)."""
    root = tmp_path / "LaSOT"
    places = {"cat-1": root / "cat" / "cat-1" / "att" / "cat-1.txt", "cat-2": root / "att" / "cat-2.txt",
              "dog-1": root / "annos" / "att" / "dog-1.txt"}
    for name, path in places.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_flags_line(FLAGS[name]))
    rng = np.random.default_rng(0)
    seqs = []
    for k, name in enumerate(NAMES):
        n = 12 + 3 * k
        xy = 50 + np.cumsum(rng.normal(0, 3, (n, 2)), axis=0)
        gt = np.concatenate([xy, np.full((n, 2), 30.0 + 5 * k)], axis=1)
        visible = np.ones(n, bool)
        visible[5] = False
        seqs.append(Sequence(name, [f"{name}/{i:08d}.jpg" for i in range(n)], gt, "lasot", visible=visible))
    return root, seqs


def _results(tmp_path, seqs, name, noise, seed):
    rng = np.random.default_rng(seed)
    for s in seqs:
        pred = s.ground_truth + np.concatenate([rng.normal(0, noise, (len(s), 2)), np.zeros((len(s), 2))], axis=1)
        write_results(tmp_path / name, s.name, pred, times=np.full(len(s), 0.01), fmt="float")
    return tmp_path / name


def test_parse_results_spec(tmp_path):
    a, b = tmp_path / "runA", tmp_path / "runB"
    a.mkdir()
    b.mkdir()
    assert compare.parse_results_spec(str(a)) == {"runA": a}
    assert compare.parse_results_spec(str(a), tracker_name="grm") == {"grm": a}
    assert compare.parse_results_spec(f"x={a}, y={b}") == {"x": a, "y": b}
    assert compare.parse_results_spec(f"{a},{b}") == {"runA": a, "runB": b}
    with pytest.raises(DataError, match="'x' is given twice"):
        compare.parse_results_spec(f"x={a},x={b}")
    with pytest.raises(MissingFileError, match="nope"):
        compare.parse_results_spec(f"x={tmp_path / 'nope'}")


def test_attribute_files(lasot, tmp_path):
    root, seqs = lasot
    flags = A.load_lasot_attributes(root, NAMES)
    assert [a for (a, _), f in zip(A.LASOT_ATTRIBUTES, flags["cat-1"]) if f] == ["IV", "POC"]
    # an explicit folder (the toolkit's annos/att) works too
    assert A.load_lasot_attributes(tmp_path, NAMES[2:], attributes_dir=root / "annos" / "att") is not None
    assert A.load_lasot_attributes(tmp_path / "elsewhere", NAMES) is None  # none found: no attribute report
    (root / "att" / "cat-2.txt").unlink()
    with pytest.raises(DataError, match="1 of 3 sequences have no attribute file, e.g. 'cat-2'"):
        A.load_lasot_attributes(root, NAMES)
    (root / "att" / "cat-2.txt").write_text("1,0,1\n")
    with pytest.raises(DataError, match=r"cat-2\.txt: expected 14 comma-separated 0/1"):
        A.load_lasot_attributes(root, NAMES)


def test_compare_with_attributes(lasot, tmp_path):
    root, seqs = lasot
    folders = {"good": _results(tmp_path, seqs, "good", 1.0, 1), "poor": _results(tmp_path, seqs, "poor", 8.0, 2)}
    alone = {n: report.score_tracker(seqs, d, n) for n, d in folders.items()}
    out = tmp_path / "report"
    res = compare.compare_trackers(seqs, folders, out, attribute_flags=A.load_lasot_attributes(root, NAMES))

    by_name = {m["tracker"]: m for m in res["trackers"]}
    for name, m in alone.items():
        for key in ("auc", "precision", "norm_precision", "op50", "op75"):
            assert by_name[name][key] == pytest.approx(m[key], abs=1e-12)
    rows = {r["abbrev"]: r for r in res["attributes"]}
    assert [r["abbrev"] for r in res["attributes"]] == [a for a, _ in A.LASOT_ATTRIBUTES]
    per = {n: {s: v["auc"] for s, v in m["per_sequence"].items()} for n, m in alone.items()}
    for name in folders:
        assert rows["IV"][name] == pytest.approx(alone[name]["auc"], abs=1e-9)  # all three sequences
        assert rows["POC"][name] == pytest.approx(per[name]["cat-1"], abs=1e-9)
        assert rows["FM"][name] == pytest.approx(per[name]["dog-1"], abs=1e-9)
        assert np.isnan(rows["DEF"][name])
        assert (out / f"attributes_{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (rows["IV"]["sequences"], rows["POC"]["sequences"], rows["DEF"]["sequences"]) == (3, 1, 0)
    csv_rows = (out / "attributes.csv").read_text().splitlines()
    assert csv_rows[0] == "abbrev,attribute,sequences,good,poor" and csv_rows[1].startswith("IV,Illumination Variation,3,")
    md = (out / "results.md").read_text()
    assert md.startswith("# lasot (3 sequences, protocol grm)") and "## Per-attribute AUC" in md and "(attributes_poor.png)" in md
    assert md.index("| good |") < md.index("| poor |")  # sorted by AUC
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["trackers"]) == {"good", "poor"} and len(saved["attributes"]) == 14
    table = compare.console_table(res["trackers"], res["attributes"])
    assert "AUC per attribute" in table and "| Illumination Variation | 3 |" in table
