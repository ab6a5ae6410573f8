"""Agreement of tracking variants (attention implementation, compute dtype) with the reference
(float32, 'masked' = the official formula) on the real sequences.

    python benchmarks/agreement.py                                   # tiny fixture model, all frames
    python benchmarks/agreement.py --model vit_b --frames 30         # random-weight ViT-B/16 256
    python benchmarks/agreement.py --variants float32/fused,bfloat16/fused --json agreement.json

Per variant and sequence (single Tracker, batch 1, every frame decoded once and given to all):
* free-running: the variant tracks the sequence on its own; fraction of frames whose box is within
  0.5 px and 1 px of the reference's (largest |difference| of x, y, w, h) and the largest difference;
* same inputs: the variant crops every frame around the reference's previous box (teacher forcing),
  so it sees the reference's inputs; fraction of frames whose token decisions are identical in
  every dividing block, fraction of identical token decisions, fraction of boxes within 1 px.
Random weights (vit_b / vit_l) make meaningless but valid trackers: the division and the boxes
still depend on the arithmetic, so the numbers measure agreement, not accuracy.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import speed  # noqa: E402  (model building and sequence reading shared with the speed benchmark)

from grm_jax.track.tracker import Tracker  # noqa: E402
from grm_jax.track.frames import read_image  # noqa: E402

REFERENCE = ("float32", "masked")


def compare_sequence(model, variables, seq, variants, threshold: float, track_cfg) -> dict:
    """{variant: stats} for one sequence (see module doc)."""
    def tracker(dtype, attention):
        return Tracker(model, variables, track_cfg, threshold, dtype=dtype, attention=attention)

    ref = tracker(*REFERENCE)
    free = {v: tracker(*v) for v in variants}
    forced = {v: tracker(*v) for v in variants}
    first = read_image(seq.frames[0])
    for t in (ref, *free.values(), *forced.values()):
        t.initialize(first, seq.init_box)
    diff_free = {v: [] for v in variants}
    diff_forced = {v: [] for v in variants}
    same_frames = {v: [] for v in variants}
    same_tokens = {v: [] for v in variants}
    for path in seq.frames[1:]:
        frame = read_image(path)
        prev = ref.state.copy()
        box = ref.track(frame)
        for v in variants:
            diff_free[v].append(np.abs(free[v].track(frame) - box).max())
            diff_forced[v].append(np.abs(forced[v].track(frame, state=prev) - box).max())
            same = forced[v].last_decisions == ref.last_decisions
            same_frames[v].append(bool(same.all()))
            same_tokens[v].append(float(same.mean()) if same.size else 1.0)
    return {v: {"frames": len(seq.frames) - 1,
                "free_within_0.5px": float(np.mean(np.asarray(diff_free[v]) <= 0.5)),
                "free_within_1px": float(np.mean(np.asarray(diff_free[v]) <= 1.0)),
                "free_max_px": float(np.max(diff_free[v])),
                "same_input_identical_decision_frames": float(np.mean(same_frames[v])),
                "same_input_identical_tokens": float(np.mean(same_tokens[v])),
                "same_input_within_1px": float(np.mean(np.asarray(diff_forced[v]) <= 1.0))} for v in variants}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "vit_b", "vit_l"], default="tiny")
    p.add_argument("--variants", default="float32/fused,float32/separate,bfloat16/fused",
                   help="comma list of dtype/attention compared with float32/masked")
    p.add_argument("--sequences", default=str(speed.SEQUENCES))
    p.add_argument("--frames", type=int, default=0, help="frames per sequence (0 = all)")
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    model, variables = speed.build_model(args.model)
    variants = [tuple(v.split("/")) for v in args.variants.split(",")]
    track_cfg = speed._track_cfg(model.config, "highest")
    rows = []
    for seq in speed.real_sequences(args.sequences, args.frames):
        stats = compare_sequence(model, variables, seq, variants, args.threshold, track_cfg)
        rows += [{"variant": "/".join(v), "sequence": seq.name, **s} for v, s in stats.items()]
        print(f"done {seq.name}", file=sys.stderr, flush=True)
    keys = [k for k in rows[0] if k not in ("variant", "sequence", "frames")]
    lines = [f"model {args.model} ({'converted test fixture' if args.model == 'tiny' else 'random'} weights), "
             f"reference {'/'.join(REFERENCE)}, threshold {args.threshold}", "",
             "| variant | sequence | frames | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 3)]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['sequence']} | {r['frames']} | "
                     + " | ".join(f"{r[k]:.4g}" for k in keys) + " |")
    print("\n".join(lines))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
