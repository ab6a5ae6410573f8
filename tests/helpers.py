"""Helpers only the tests use (moved out of the package, issue 15.5): compositions of package
functions that the tests call in many places, the inverse weight mapping used to check the
converter round trip, and the held-subprocess plumbing of the interruption tests."""
from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Callable, Iterator

import numpy as np


@contextlib.contextmanager
def held_process(cmd: list[str], **popen) -> Iterator[subprocess.Popen]:
    """``Popen(cmd)`` with text stdout / stderr pipes, killed on leaving the block if it still runs."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float, poll: float = 0.05) -> None:
    """Polls ``ready()`` until it holds; fails with the process's output if it exits first or
    ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(poll)


def sequence_names(source) -> list[str]:
    """Every sequence name of a ``grm_jax.datasets.Source``, in index order."""
    return [source.sequence_name(i) for i in range(source.num_sequences)]


def score_results(benchmark_sequences, results_dir, out_dir, tracker_name: str, plots: bool = True, **options) -> dict:
    """``report.score_tracker`` then ``report.write_report`` for this one tracker (the evaluate /
    score modes do the same through ``grm_jax.evaluate.compare``); returns the metrics, also in
    ``out_dir/metrics.json``. options: those of ``score_tracker``."""
    from grm_jax.evaluate import report  # noqa: PLC0415

    metrics = report.score_tracker(benchmark_sequences, results_dir, tracker_name, **options)
    report.write_report([metrics], out_dir, plots=plots)
    return metrics


def track_sequences(model, variables, sequences, track_config=None, threshold: float = 0.0, batch_size: int = 8,
                    **kwargs) -> dict:
    """Tracks all ``sequences`` with a ``BatchedTracker`` -> {name: SequenceResult} in input order."""
    from grm_jax.track.batched import BatchedTracker  # noqa: PLC0415

    sequences = list(sequences)
    tracker = BatchedTracker(model, variables, track_config, threshold, batch_size, **kwargs)
    results = {r.name: r for r in tracker.track(sequences)}
    return {str(s.name): results[str(s.name)] for s in sequences}


def to_torch(array: np.ndarray, layout: str) -> np.ndarray:
    """A Flax weight in the official PyTorch layout (``convert_weights.mapping.to_flax`` inverted)."""
    if layout == "linear":
        return np.ascontiguousarray(np.asarray(array).T)
    if layout == "conv":
        return np.ascontiguousarray(np.asarray(array).transpose(3, 2, 0, 1))
    return np.asarray(array)


def variables_to_state_dict(variables: dict, config) -> dict[str, np.ndarray]:
    """Flax variables -> the official PyTorch state dict (the converter's inverse mapping)."""
    from flax import traverse_util  # noqa: PLC0415

    from convert_weights.mapping import grm_entries  # noqa: PLC0415

    flat = traverse_util.flatten_dict(variables)
    state = {e.torch_key: to_torch(np.asarray(flat[(e.collection, *e.path)]), e.layout) for e in grm_entries(config)}
    for name in ("z", "x"):
        state[f"backbone.pos_embed_{name}"] = np.asarray(variables["params"]["backbone"][f"pos_embed_{name}"])
    return state
