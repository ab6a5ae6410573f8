"""Refuses a training batch that cannot fit in memory, before anything is allocated.

An absurd ``train.batch_size`` (100000) used to run for minutes and then die with a bare
MemoryError. :func:`check_batch_fits` compares a LOWER BOUND of what one step needs with the
memory there is, and raises a ConfigError naming ``config.train.batch_size`` when the bound
alone does not fit. The bound counts only what no implementation can avoid:

* host, per process: the batch's crops as float32 (template and search images, 3 channels, the
  form ``put_batch`` hands to the devices) against ``MemAvailable`` of /proc/meminfo;
* device, per device: the same float32 crops plus the attention scores of ONE block, a
  (heads, N, N) array per pair (N = template + search tokens; 2 bytes in bf16, 4 in fp32; the
  training attention materializes them), against the device's ``bytes_limit`` (accelerators);
  on CPU host and device memory are one, and the sum is compared with ``MemAvailable``.

A batch that passes may still not fit (activations, optimizer state, XLA's buffers are not
counted); one that fails can never fit.
"""
from __future__ import annotations

from grm_jax.errors import ConfigError

__all__ = ["available_host_bytes", "batch_lower_bounds", "check_batch_fits"]


def available_host_bytes() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def batch_lower_bounds(model, per_process: int, per_device: int, bf16: bool) -> tuple[int, int]:
    """(host bytes per process, bytes per device) that a step surely needs (see module doc).
    model: the ModelConfig; per_process / per_device: pairs per process / per device."""
    pixels = 3 * (model.template_size ** 2 + model.search_size ** 2)
    tokens = (model.template_size // model.patch_size) ** 2 + (model.search_size // model.patch_size) ** 2
    attention = model.num_heads * tokens * tokens * (2 if bf16 else 4)
    return per_process * pixels * 4, per_device * (pixels * 4 + attention)


def _device_limit(device) -> int | None:
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001  (backends without memory statistics)
        stats = {}
    return stats.get("bytes_limit")


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:,.1f} GiB"


def check_batch_fits(run, num_devices: int, num_processes: int, device) -> None:
    """ConfigError naming config.train.batch_size when a step of ``run`` surely does not fit in
    host or device memory (``device``: one local device, for its memory limit; on CPU host and
    device memory are one, so both needs are added up)."""
    batch = int(run.train.batch_size)
    host, per_device = batch_lower_bounds(run.model, batch // num_processes, batch // num_devices, run.train.bf16)
    if device.platform == "cpu":
        checks = [(host + per_device * (num_devices // num_processes), available_host_bytes(), "memory")]
    else:
        checks = [(host, available_host_bytes(), "host memory"),
                  (per_device, _device_limit(device), f"memory on each {device.platform} device")]
    for need, have, what in checks:
        if have is not None and need > have:
            raise ConfigError(
                f"config.train.batch_size={batch}: one training step needs at least {_gib(need)} of {what} "
                f"(input crops and attention maps alone), but {_gib(have)} are available",
                hint="lower --config.train.batch_size (the paper uses 32 per GPU) or use more devices")
