"""Processes and devices: joining a multi-host job, and sharding a batch over the local devices.

Multi-host launch (training and evaluation alike; one process per host, or per GPU):
  * set ``JAX_COORDINATOR_ADDRESS=host:port``, ``JAX_NUM_PROCESSES=N``, ``JAX_PROCESS_ID=i``
    (optionally ``JAX_LOCAL_DEVICE_IDS=0,1``) on every process; or
  * run under SLURM (``srun``, more than one task) or Open MPI (``mpirun``), detected from the
    environment; or set ``GRM_DISTRIBUTED=1`` to call ``jax.distributed.initialize()`` with JAX's own
    cluster auto-detection (Cloud TPU pod slices, GKE, ...). ``GRM_DISTRIBUTED=0`` disables all of this.
On CPU (``JAX_PLATFORMS=cpu``) the processes use gloo collectives.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

__all__ = ["BATCH_AXIS", "initialize_distributed", "batch_mesh", "batch_sharding", "replicated_sharding",
           "round_up"]

BATCH_AXIS = "batch"


def _cluster_detected() -> bool:
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in os.environ:
        return True
    return int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1


def initialize_distributed() -> bool:
    """Calls ``jax.distributed.initialize`` when this process is one of several (see module doc).
    Must run before anything touches the JAX devices. Returns True when distributed."""
    import jax  # noqa: PLC0415

    if jax.distributed.is_initialized():
        return True
    mode = os.environ.get("GRM_DISTRIBUTED", "auto").strip().lower()
    if mode in ("0", "false", "off", "no"):
        return False
    kwargs: dict[str, Any] = {}
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if addr:
        kwargs["coordinator_address"] = addr
        if os.environ.get("JAX_NUM_PROCESSES"):
            kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
        if os.environ.get("JAX_PROCESS_ID"):
            kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
        if os.environ.get("JAX_LOCAL_DEVICE_IDS"):
            kwargs["local_device_ids"] = [int(i) for i in os.environ["JAX_LOCAL_DEVICE_IDS"].split(",")]
    elif not (mode in ("1", "true", "on", "yes") or _cluster_detected()):
        return False
    if os.environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= n (n >= 1)."""
    return -(-max(int(n), 1) // multiple) * multiple


def batch_mesh(devices: Sequence | None = None):
    """THE mesh helper (tracking and training): 1-D ``Mesh`` over ``devices`` (default: this
    process's local devices; training passes ``jax.devices()``, all processes) with axis ``batch``."""
    import jax  # noqa: PLC0415
    from jax.sharding import Mesh  # noqa: PLC0415

    devices = list(devices) if devices is not None else jax.local_devices()
    if not devices:
        raise ValueError("batch_mesh: no devices")
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


def batch_sharding(mesh):
    """Leading (batch) axis split over the mesh; the batch must be a multiple of the mesh size."""
    from jax.sharding import NamedSharding, PartitionSpec  # noqa: PLC0415

    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def replicated_sharding(mesh):
    """A full copy on every device of the mesh (network variables)."""
    from jax.sharding import NamedSharding, PartitionSpec  # noqa: PLC0415

    return NamedSharding(mesh, PartitionSpec())
