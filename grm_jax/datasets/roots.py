"""Machine-local dataset folders, set once per machine (like pytracking's local settings).

Each root key of the registry (``got10k``, ``lasot``, ``coco``, ...; :data:`ROOT_KEYS`) gets its
folder from the first of:

1. the command line: ``--config.data.roots.<key>=PATH``;
2. the run config file (``c.data.roots.<key> = PATH`` in its ``get_config()``);
3. the user file ``~/.config/grm_jax/datasets.json`` (another path: ``GRM_DATASETS_FILE``), a JSON
   object ``{"<key>": "PATH", ...}``;
4. ``$GRM_DATA_ROOT/<key>`` when that folder exists (one parent folder holding every dataset
   under its root key's name: ``$GRM_DATA_ROOT/got10k``, ``$GRM_DATA_ROOT/lasot``, ...);
5. nothing (the generated sample data then uses its cache folder).

:func:`local_roots` reads 3 and 4; ``grm_jax.configuration.load_run_config`` applies the order
once, and ``RunConfig.root_sources`` records where each root came from (shown by the training
banner and by ``grm-jax --mode=datasets``). ``grm_jax.datasets.dataset_root`` then reads the
folder of a dataset name from ``run.data.roots``: the one dataset-root function.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Mapping

from grm_jax.datasets.registry import ROOT_KEYS
from grm_jax.errors import ConfigError

__all__ = ["DATA_ROOT_ENV", "LOCAL_FILE_ENV", "describe_roots", "local_file", "local_roots"]

LOCAL_FILE_ENV = "GRM_DATASETS_FILE"
DATA_ROOT_ENV = "GRM_DATA_ROOT"
COMMAND_LINE, CONFIG_FILE = "command line", "run config file"


def local_file(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """The user's dataset file: ``$GRM_DATASETS_FILE``, else ``~/.config/grm_jax/datasets.json``."""
    environ = os.environ if environ is None else environ
    if environ.get(LOCAL_FILE_ENV):
        return pathlib.Path(environ[LOCAL_FILE_ENV]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return pathlib.Path(base) / "grm_jax" / "datasets.json"


def _read_file(path: pathlib.Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ConfigError(f"{path}: not a readable JSON object of dataset folders ({err})",
                          hint='write e.g. {"got10k": "/data/GOT10k", "lasot": "/data/LaSOT"}') from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object {{root key: folder}}, got {type(data).__name__}")
    for key, value in data.items():
        if key not in ROOT_KEYS:
            raise ConfigError(f"{path}: unknown dataset root {key!r}", hint=f"root keys: {', '.join(ROOT_KEYS)}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: {key}={value!r} is not a folder path")
    return {k: os.path.expanduser(v) for k, v in data.items()}


def local_roots(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """{root key: (folder, where it came from)} from the user file and ``$GRM_DATA_ROOT`` (see
    module doc; the file wins). ConfigError naming the file for a malformed one."""
    environ = os.environ if environ is None else environ
    found: dict[str, tuple[str, str]] = {}
    parent = environ.get(DATA_ROOT_ENV)
    if parent:
        for key in ROOT_KEYS:
            folder = os.path.join(os.path.expanduser(parent), key)
            if os.path.isdir(folder):
                found[key] = (folder, f"{DATA_ROOT_ENV}={parent}")
    path = local_file(environ)
    if path.is_file():
        found.update({k: (v, str(path)) for k, v in _read_file(path).items()})
    return found


def describe_roots(roots: Mapping[str, str | None], sources: Mapping[str, str]) -> list[str]:
    """One line per root key: folder, where it came from, and whether it exists."""
    lines = []
    for key in ROOT_KEYS:
        folder = roots.get(key)
        if folder is None:
            default = " (the generated sample data uses its cache folder)" if key == "sample" else ""
            lines.append(f"  {key:<12} not set{default}")
            continue
        state = "" if os.path.isdir(folder) else "  [MISSING]"
        lines.append(f"  {key:<12} {folder}  (from {sources.get(key, CONFIG_FILE)}){state}")
    return lines
