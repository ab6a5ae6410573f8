"""Benchmark evaluation over all local devices and over several processes (hosts).

* Devices: each process runs one :class:`grm_jax.track.batched.BatchedTracker` whose slots are
  sharded over its local devices (batch axis of a 1-D mesh).
* Processes: launched like multi-host training (the same command on every host with
  ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, SLURM / Open MPI, or
  ``GRM_DISTRIBUTED=1`` on a Cloud TPU pod slice; see :mod:`grm_jax.distributed`). Every process
  takes its own share of the benchmark (:func:`split_sequences`, deterministic, computed from the
  full sequence list so that it does not depend on which result files already exist), tracks the
  sequences of its share not yet complete, and writes their result files atomically into the
  shared workdir. All processes then meet at a barrier, and process 0 scores.

No cross-process collective is used for tracking itself (sequences are independent), so a process
only needs its own devices; the barrier is the one collective.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

__all__ = ["Topology", "topology", "split_sequences", "wait_for_all_processes", "summary_fields"]


@dataclasses.dataclass(frozen=True)
class Topology:
    """This process's place in the evaluation: its index, the process count, the local devices it
    tracks on and the devices of all processes together."""

    process_index: int
    process_count: int
    local_devices: tuple
    devices: int


def topology(max_local_devices: int | None = None) -> Topology:
    """Joins the other processes when launched as several (``initialize_distributed``; must run before
    anything touches the devices) and describes the topology. max_local_devices: use only the first
    N local devices of every process (None = all)."""
    from grm_jax.distributed import initialize_distributed  # noqa: PLC0415

    initialize_distributed()
    import jax  # noqa: PLC0415

    local = jax.local_devices()
    if max_local_devices is not None:
        if int(max_local_devices) < 1:
            raise ValueError(f"max_local_devices must be >= 1, got {max_local_devices}")
        local = local[:int(max_local_devices)]
    return Topology(jax.process_index(), jax.process_count(), tuple(local), len(local) * jax.process_count())


def split_sequences(sequences: Sequence, num_processes: int) -> list[list[str]]:
    """Deterministic shares of a benchmark: names per process (in benchmark order).

    Longest sequence first (ties: by name), each to the process with the fewest frames so far
    (ties: the lower process index), so the shares have about equal frame counts.
    """
    if int(num_processes) < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    frames = [0] * int(num_processes)
    owner: dict[str, int] = {}
    for seq in sorted(sequences, key=lambda s: (-len(s), str(s.name))):
        p = min(range(len(frames)), key=lambda i: (frames[i], i))
        owner[str(seq.name)] = p
        frames[p] += len(seq)
    return [[str(s.name) for s in sequences if owner[str(s.name)] == p] for p in range(len(frames))]


def wait_for_all_processes(topo: Topology, tag: str) -> None:
    """Barrier over all processes (no-op for one); a crashed process ends the job through the
    distributed runtime's heartbeat instead of leaving the others waiting."""
    if topo.process_count > 1:
        from jax.experimental import multihost_utils  # noqa: PLC0415

        multihost_utils.sync_global_devices(tag)


def summary_fields(topo: Topology, shares: Sequence[Sequence[str]]) -> dict:
    """The summary.json entries describing how the work was split."""
    return {"devices": int(topo.devices), "processes": int(topo.process_count),
            "sequences_by_process": {str(i): list(names) for i, names in enumerate(shares)}}
