"""Tracking: the official single-sequence procedure and a batched multi-sequence tracker."""
from grm_jax.track.batched import BatchedTracker
from grm_jax.track.tracker import Tracker

__all__ = ["BatchedTracker", "Tracker"]
