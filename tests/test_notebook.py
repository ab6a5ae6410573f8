"""The Colab demo notebook runs top to bottom in OFFLINE mode (CPU, no network, random tiny model)."""
import pathlib
import re

import ipykernel  # noqa: F401  (the kernel nbclient starts; the [test] extra installs all three)
import nbclient
import nbformat
import pytest

from conftest import timeout_s

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "demo_colab.ipynb"


def test_demo_notebook_offline(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src, n = re.subn(r"^OFFLINE = \w+", "OFFLINE = True", params[0].source, flags=re.M)
    assert n == 1
    params[0].source = src
    monkeypatch.setenv("GRM_JAX_CHECKOUT", str(REPO))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=int(timeout_s(300)), kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "RANDOM WEIGHTS" in outputs
    assert "30 frames" in outputs
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images >= 3
    assert (tmp_path / "demo_out" / "tracked.mp4").stat().st_size > 0
