"""LaSOT per-attribute scores (the 14 attributes of the official LaSOT evaluation toolkit).

grm-jax does not ship the per-sequence attribute flags; they are read from the user's copy:
one text file per sequence, ``<sequence>.txt``, holding one line of 14 comma-separated 0/1 flags
in the order of :data:`LASOT_ATTRIBUTES` (the toolkit's ``annos/att/`` files). For sequence
``<class>-<k>`` of the LaSOT root ``<root>``, the first of these that exists is used:

    <root>/<class>/<class>-<k>/att/<class>-<k>.txt    (inside the sequence folder)
    <root>/<class>/<class>-<k>/att.txt
    <root>/att/<class>-<k>.txt                        (the toolkit's folder copied or linked
    <root>/annos/att/<class>-<k>.txt                   into the LaSOT root)
    <attributes_dir>/<class>-<k>.txt                  (an explicit folder, e.g. the toolkit's annos/att)

When no sequence has a file, the attribute report is skipped (with a note); when only some
have one, :class:`grm_jax.errors.DataError` names the first missing sequence.

The AUC of an attribute is the mean success curve (hence the mean per-sequence AUC) over the
sequences that have it, with the same per-sequence curves as the overall score (pytracking's
conventions; the MATLAB toolkit additionally drops sequences whose whole curve is 0).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from grm_jax.annotations import read_label_file
from grm_jax.errors import DataError

__all__ = ["LASOT_ATTRIBUTES", "attribute_candidates", "attribute_table", "load_lasot_attributes",
           "read_attribute_flags"]

# (abbreviation, name) in the order of the flags in every attribute file.
LASOT_ATTRIBUTES = (
    ("IV", "Illumination Variation"), ("POC", "Partial Occlusion"), ("DEF", "Deformation"),
    ("MB", "Motion Blur"), ("CM", "Camera Motion"), ("ROT", "Rotation"), ("BC", "Background Clutter"),
    ("VC", "Viewpoint Change"), ("SV", "Scale Variation"), ("FOC", "Full Occlusion"), ("FM", "Fast Motion"),
    ("OV", "Out-of-View"), ("LR", "Low Resolution"), ("ARC", "Aspect Ratio Change"),
)


def attribute_candidates(root, name: str, attributes_dir=None) -> list[Path]:
    """The paths searched for sequence ``name``'s flags, in order (see module doc)."""
    root = Path(os.fspath(root))
    seq_dir = root / name.rsplit("-", 1)[0] / name
    paths = [seq_dir / "att" / f"{name}.txt", seq_dir / "att.txt", root / "att" / f"{name}.txt",
             root / "annos" / "att" / f"{name}.txt"]
    if attributes_dir is not None:
        paths.append(Path(os.fspath(attributes_dir)) / f"{name}.txt")
    return paths


def read_attribute_flags(path) -> np.ndarray:
    """(14,) bool flags of one attribute file; DataError naming the file unless it holds exactly
    14 values, each 0 or 1."""
    values = read_label_file(path)
    if values.shape[0] != len(LASOT_ATTRIBUTES) or not np.isin(values, (0.0, 1.0)).all():
        raise DataError(f"{path}: expected {len(LASOT_ATTRIBUTES)} comma-separated 0/1 attribute flags "
                        f"({', '.join(a for a, _ in LASOT_ATTRIBUTES)}), got {values.tolist()[:20]}")
    return values.astype(bool)


def load_lasot_attributes(root, names: Iterable[str], attributes_dir=None) -> dict[str, np.ndarray] | None:
    """{sequence: (14,) bool} for every sequence of ``names``, or None when no file is found."""
    names = list(names)
    found: dict[str, np.ndarray] = {}
    missing = []
    for name in names:
        path = next((p for p in attribute_candidates(root, name, attributes_dir) if p.is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found[name] = read_attribute_flags(path)
    if not found:
        return None
    if missing:
        tried = ", ".join(str(p) for p in attribute_candidates(root, missing[0], attributes_dir))
        raise DataError(f"LaSOT attributes: {len(missing)} of {len(names)} sequences have no attribute file, "
                        f"e.g. {missing[0]!r} (looked for {tried})",
                        hint="copy the toolkit's annos/att folder into the LaSOT root as att/")
    return found


def attribute_table(per_sequence_auc: Mapping[str, Mapping[str, float]], flags: Mapping[str, np.ndarray]) -> list[dict]:
    """Rows {'attribute', 'abbrev', 'sequences', <tracker>: AUC %} for the 14 attributes.

    per_sequence_auc: tracker -> {sequence: AUC in %} (the scored sequences; a sequence without a
    result for a tracker is left out of that tracker's mean). flags: sequence -> (14,) bool.
    An attribute no scored sequence has gets AUC nan.
    """
    rows = []
    for i, (abbrev, name) in enumerate(LASOT_ATTRIBUTES):
        members = [s for s, f in flags.items() if f[i]]
        row = {"attribute": name, "abbrev": abbrev, "sequences": len(members)}
        for tracker, aucs in per_sequence_auc.items():
            values = [aucs[s] for s in members if s in aucs]
            row[tracker] = float(np.mean(values)) if values else float("nan")
        rows.append(row)
    return rows
