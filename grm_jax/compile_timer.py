"""Seconds jax spends tracing, lowering and compiling: kept apart from tracking time by the
batched tracker (per-frame times) and by the evaluation's speed report."""
from __future__ import annotations

import threading

__all__ = ["CompileTimer"]

# jax.monitoring duration events of jit tracing, lowering and XLA compilation (jax/_src/dispatch.py).
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


class CompileTimer:
    """Sums the seconds jax spends tracing, lowering and compiling while active (a context
    manager; reads jax.monitoring duration events, so every jitted call in the process counts)."""

    def __init__(self):
        self.seconds = 0.0
        self._lock = threading.Lock()

    def _listener(self, event: str, duration_secs: float, **_) -> None:
        if event in _COMPILE_EVENTS:
            with self._lock:
                self.seconds += float(duration_secs)

    def __enter__(self) -> "CompileTimer":
        from jax import monitoring  # noqa: PLC0415

        monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc) -> None:
        from jax import monitoring  # noqa: PLC0415

        monitoring.unregister_event_duration_listener(self._listener)
