"""Tracking speed, stated two ways, and the evaluation progress bar.

Two numbers, never mixed up (metrics.json ``speed``, results.md, the console line):

* ``toolkit_fps``: the benchmark toolkits' convention (GOT-10k / pytracking): the mean over all
  frames of ``1 / t`` with ``t`` the per-frame seconds of ``<seq>_time.txt``. The first frame of
  every sequence only crops the template, so its ``t`` is tiny and its ``1/t`` inflates the mean;
  this is the number servers and papers quote. Computed by :func:`grm_jax.evaluate.metrics.speed_fps`.
* ``frames_per_s``: frames tracked (all frames of the tracked sequences, the first ones
  included) divided by the tracking wall time (from the first frame read to the last result
  written) MINUS the time jax spent tracing and compiling (``compile_s``, reported beside it).
  It is what a user waits for, once the program is compiled. With several processes it is
  process 0's own (per-process) speed; the job tracks about ``processes`` times as many.

A resumed evaluation adds one session per run to ``<workdir>/timing.json``; ``frames_per_s`` is
the sum of the frames over the sum of the net wall times of all sessions.

The progress bar (tqdm) counts frames and shows the sequences done and ``frames_per_s`` of this
process so far, from the same clock the summary uses, so the bar and the summary agree.
"""
from __future__ import annotations

import datetime
import json
import math
import time
from pathlib import Path

from grm_jax.compile_timer import CompileTimer
from grm_jax.io_utils import atomic_write_bytes

__all__ = ["CompileTimer", "TrackingClock", "TIMING_FILE", "describe", "read_timing", "record_session",
           "speed_fields"]

TIMING_FILE = "timing.json"

class TrackingClock:
    """Wall clock, compile time and frame / sequence counts of one tracking run, with a tqdm bar.

    total_frames / total_sequences: what this process will track; desc: the bar's label;
    show: draw the bar (tqdm writes to stderr). Use as a context manager around the tracking
    loop; call ``frames(n)`` as frames are tracked and ``sequence_done()`` per finished sequence.
    """

    def __init__(self, total_frames: int, total_sequences: int, desc: str, show: bool = True):
        self.total_sequences = int(total_sequences)
        self.frames_done = 0
        self.sequences_done = 0
        self.compile = CompileTimer()
        self._t0 = None
        self._t1 = None
        self._bar = None
        if show:
            from tqdm import tqdm  # noqa: PLC0415

            self._bar = tqdm(total=int(total_frames), desc=desc, unit="frame", dynamic_ncols=True, mininterval=1.0,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames{postfix} "
                                        "[{elapsed}<{remaining}]")  # tqdm puts ', ' before the postfix
            self._bar.set_postfix_str(self._postfix(), refresh=False)

    def __enter__(self) -> "TrackingClock":
        self.compile.__enter__()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.close()

    def stop(self) -> None:
        """Ends the timed window (idempotent); later frames / waits are not counted."""
        if self._t1 is None and self._t0 is not None:
            self._t1 = time.perf_counter()
            self.compile.__exit__()

    @property
    def wall_s(self) -> float:
        """Seconds since the start (until ``stop``)."""
        if self._t0 is None:
            return 0.0
        return (self._t1 if self._t1 is not None else time.perf_counter()) - self._t0

    @property
    def compile_s(self) -> float:
        return self.compile.seconds

    def frames_per_s(self, frames: int | None = None) -> float:
        """``frames`` (default: this process's frames so far) / (wall - compile); nan before any."""
        net = self.wall_s - self.compile_s
        n = self.frames_done if frames is None else int(frames)
        return n / net if n > 0 and net > 0 else float("nan")

    def _postfix(self) -> str:
        fps = self.frames_per_s()
        rate = "-" if math.isnan(fps) else f"{fps:.1f}"
        return (f"{self.sequences_done}/{self.total_sequences} seq, {rate} frames/s "
                f"(excl. {self.compile_s:.1f} s compile)")

    def frames(self, n: int) -> None:
        self.frames_done += int(n)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(int(n))

    def sequence_done(self) -> None:
        self.sequences_done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)


# ----------------------------------------------------------------------------------------------
# timing.json: the sessions of a (resumed) evaluation
# ----------------------------------------------------------------------------------------------

def read_timing(results_dir) -> list[dict]:
    """The sessions recorded in ``<results_dir>/timing.json`` ([] when absent or unreadable:
    result folders of other tools have none)."""
    path = Path(results_dir) / TIMING_FILE
    try:
        sessions = json.loads(path.read_text()).get("sessions", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [s for s in sessions if isinstance(s, dict)]


def record_session(results_dir, frames: int, wall_s: float, compile_s: float, **extra) -> dict:
    """Appends one session to ``<results_dir>/timing.json`` (atomically) and returns it.
    extra: descriptive fields (processes, devices, batch_sequences)."""
    session = {"frames": int(frames), "wall_s": round(float(wall_s), 4), "compile_s": round(float(compile_s), 4),
               "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), **extra}
    sessions = read_timing(results_dir) + [session]
    atomic_write_bytes(Path(results_dir) / TIMING_FILE,
                        (json.dumps({"sessions": sessions}, indent=2) + "\n").encode())
    return session


def speed_fields(toolkit_fps: float, sessions: list[dict]) -> dict:
    """metrics.json ``speed``: both speeds, labelled (see module doc). Without sessions (result
    files of another tool) only ``toolkit_fps`` is known; the others are None."""
    frames = sum(int(s.get("frames", 0)) for s in sessions)
    wall = sum(float(s.get("wall_s", 0.0)) for s in sessions)
    compile_s = sum(float(s.get("compile_s", 0.0)) for s in sessions)
    net = wall - compile_s
    known = frames > 0 and net > 0
    return {
        "toolkit_fps": toolkit_fps,
        "frames_per_s": frames / net if known else None,
        "frames": frames if known else None,
        "tracking_s": wall if known else None,
        "compile_s": compile_s if known else None,
        "sessions": len(sessions),
        "definitions": {
            "toolkit_fps": "mean over frames of 1/t, t from <seq>_time.txt, first frames included "
                           "(GOT-10k / pytracking convention)",
            "frames_per_s": "frames tracked / (tracking wall time - compile time), summed over sessions",
        },
    }


def _rate(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def describe(sp: dict) -> str:
    """The console's speed line from a ``speed`` dict (:func:`speed_fields`, plus ``this_run``:
    {frames, wall_s, compile_s, frames_per_s} of the run that just tracked), both speeds labelled."""
    parts = []
    run = sp.get("this_run")
    if run:
        parts.append(f"this run {_rate(run['frames_per_s'])} frames/s ({run['frames']} frames in "
                     f"{run['wall_s']:.1f} s wall, less {run['compile_s']:.1f} s compile)")
    if sp.get("sessions", 0) > (1 if run else 0):
        parts.append(f"all {sp['sessions']} recorded session(s) {_rate(sp['frames_per_s'])} frames/s "
                     f"(wall less compile)")
    parts.append(f"toolkit fps {_rate(sp.get('toolkit_fps'))} (mean of 1/t per frame, first frames included)")
    return "speed: " + "; ".join(parts)
