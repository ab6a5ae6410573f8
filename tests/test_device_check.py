"""benchmarks/device_check.py in its CPU smoke mode, in a Python where grain and ml_collections cannot be
imported (the lent GPU machines have neither): every stage runs and the JSON + markdown are written."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import timeout_s

REPO = pathlib.Path(__file__).resolve().parents[1]

BLOCKER = """
import importlib.abc, runpy, sys
class NoSuchPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('grain', 'ml_collections'):
            raise ModuleNotFoundError(f'No module named {name!r} (blocked: not on the GPU machine)')
sys.meta_path.insert(0, NoSuchPackage())
sys.argv = ['device_check.py'] + sys.argv[1:]
runpy.run_path('benchmarks/device_check.py', run_name='__main__')
assert not any(m.split('.')[0] in ('grain', 'ml_collections') for m in sys.modules)
"""


@pytest.mark.slow  # about 40 s of CPU: compiles a micro train step and tracks real frames
def test_device_check_smoke_without_grain(tmp_path, real_sequences):
    out = tmp_path / "dc"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", BLOCKER, "--smoke", "--out", str(out), "--sequences",
                           str(real_sequences), "--stages", "roofline,agreement"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s(150))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "device_check.json").read_text())
    assert report["smoke"] and report["environment"]["backend"] == "cpu"
    stages = report["stages"]
    assert [stages[s]["status"] for s in ("roofline", "agreement")] == ["ok", "ok"], stages
    assert {r["step"] for r in stages["roofline"]["result"]["rows"]} == {"forward", "train"}
    assert stages["agreement"]["result"][0]["variant"] == "float32/fused"
    md = (out / "device_check.md").read_text()
    assert "## roofline: ok" in md and "| step | dtype | batch |" in md and "## agreement: ok" in md


def test_missing_sequences_reported(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import device_check  # noqa: PLC0415

    report = device_check.main(["--smoke", "--out", str(tmp_path), "--sequences", str(tmp_path / "none"),
                                "--stages", "agreement"])
    assert report["stages"]["agreement"]["status"] == "not run"
    assert "no real sequences at" in (tmp_path / "device_check.md").read_text()
