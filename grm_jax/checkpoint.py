"""Model directories on disk: the only module that knows their layout.

A model directory (written by the converters and at the end of training):
    <dir>/model_config.json     ModelConfig as JSON (every field checked for type and range on load)
    <dir>/track_config.json     the track settings the model was made with (grm_jax.track_settings.ModelTrack)
    <dir>/variables/            orbax checkpoint of {'params', 'batch_stats'}
    <dir>/weights.sha256        sha256 of the two JSON files and of every file under variables/
                                (``sha256sum -c`` format)
``load_model`` verifies a model directory against ``weights.sha256`` before reading anything
else, and refuses a directory without one, a changed or missing file, or an unlisted file.
Only regular files inside ``variables/`` are ever opened: a symlink, FIFO or device there is refused.
``save_model`` writes a new directory beside the target and swaps it in atomically.
A training work directory (written by ``grm_jax.train``):
    <workdir>/model_config.json         ModelConfig as JSON (a workdir is also a model directory)
    <workdir>/track_config.json         the run's track settings (crop factors, clip margin)
    <workdir>/config.json               the run config (RunConfig.to_dict())
    <workdir>/train.lock                host and pid of the run training into it
    <workdir>/tensorboard/              TensorBoard event files
    <workdir>/checkpoints/<step>/       orbax CheckpointManager step with the items
        variables/                      {'params', 'batch_stats'} (what load_model reads)
        train_state/                    {'opt_state', 'step', 'rng'}
        data_iter/                      grain iterator position, one JSON file per process
    <workdir>/corrupt_checkpoints/<step>/  steps that failed to restore, moved aside on resume
`load_model(workdir)` takes the latest step. Training checkpoints carry no manifest and are
restored without a checksum (written and read on the training machines); to hand weights on,
write a model directory with ``save_model``.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import stat

import jax
import numpy as np
import orbax.checkpoint as ocp

from grm_jax.errors import CheckpointError, ConfigError, MissingFileError
from grm_jax.io_utils import atomic_write_bytes, replaced_directory
from grm_jax.model.config import ModelConfig
from grm_jax.model.grm import GRM, abstract_variables
from grm_jax.track_settings import ModelTrack

CONFIG_FILE = "model_config.json"
TRACK_FILE = "track_config.json"
VARIABLES_DIR = "variables"
MANIFEST_FILE = "weights.sha256"
MODEL_DIR_ENTRIES = frozenset({CONFIG_FILE, TRACK_FILE, VARIABLES_DIR, MANIFEST_FILE})
MAX_MANIFEST_BYTES = 16 << 20  # ~170,000 lines; an orbax model directory has a few dozen files
# Training work directory (see module doc): every file, folder and orbax item name.
CHECKPOINTS_DIR = "checkpoints"
CORRUPT_CHECKPOINTS_DIR = "corrupt_checkpoints"
RUN_CONFIG_FILE = "config.json"
TENSORBOARD_DIR = "tensorboard"
ITEM_VARIABLES = VARIABLES_DIR
ITEM_TRAIN_STATE = "train_state"
ITEM_DATA_ITER = "data_iter"


def checkpoints_dir(workdir: str | os.PathLike) -> pathlib.Path:
    """``<workdir>/checkpoints``: the orbax CheckpointManager root of a training run."""
    return pathlib.Path(workdir) / CHECKPOINTS_DIR


def step_dir(workdir: str | os.PathLike, step: int) -> pathlib.Path:
    """``<workdir>/checkpoints/<step>``: one saved training step."""
    return checkpoints_dir(workdir) / str(int(step))


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """Saved steps of a training workdir, ascending (orbax's unfinished ``*.orbax-checkpoint-tmp*``
    folders are not steps); [] when there are none."""
    root = checkpoints_dir(workdir)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir())


def write_model_config(directory: str | os.PathLike, config: ModelConfig, track=None) -> None:
    """Writes ``model_config.json`` and ``track_config.json`` (``track``: a TrackConfig or ModelTrack;
    None = the built-in track defaults)."""
    directory = pathlib.Path(directory)
    atomic_write_bytes(directory / CONFIG_FILE, config.to_json().encode())
    if not isinstance(track, ModelTrack):
        track = ModelTrack() if track is None else ModelTrack.of(track)
    atomic_write_bytes(directory / TRACK_FILE, (json.dumps(track.to_dict(), indent=2, sort_keys=True) + "\n").encode())


def _read_json(path: pathlib.Path, limit: int = 1 << 20):
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; not a grm-jax model or training directory")
    if path.stat().st_size > limit:
        raise CheckpointError(f"{path}: {path.stat().st_size} bytes, larger than any config ({limit})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None


def read_model_config(directory: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of a model directory or workdir; CheckpointError naming the file and the
    first bad key (type and range of every field are checked before anything is allocated)."""
    path = pathlib.Path(directory) / CONFIG_FILE
    try:
        return ModelConfig.from_dict(_read_json(path), complete=True)
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


def read_model_track(path: str | os.PathLike) -> ModelTrack | None:
    """The track settings recorded with the model at ``path`` (a model directory or training
    workdir); None when it records none (written before grm-jax 0.3, or not a model directory)."""
    try:
        config_dir, _ = resolve_variables_dir(path)
    except FileNotFoundError:
        return None
    file = config_dir / TRACK_FILE
    if not file.exists():
        return None
    try:
        return ModelTrack.from_dict(_read_json(file))
    except ConfigError as err:
        raise CheckpointError(f"{file}: {err}") from None


def save_model(directory: str | os.PathLike, config: ModelConfig, variables: dict, track=None) -> pathlib.Path:
    """Writes a model directory (configs, orbax weights, then their sha256 manifest). track: the
    track settings the model is meant for (a run config's TrackConfig or a ModelTrack; None = the
    built-in defaults, the ViT-B 256 recipe).

    Everything is written into a new folder beside ``directory`` that is then swapped in
    atomically (``grm_jax.io_utils.replaced_directory``): an existing model directory is replaced
    whole, and a kill at any moment leaves either the old or the new model, never a broken one.
    An existing folder holding anything besides a model directory's files is refused
    (WorkdirError) before any work."""
    directory = pathlib.Path(directory).absolute()
    variables = {k: jax.tree_util.tree_map(np.asarray, dict(variables[k])) for k in ("params", "batch_stats")}
    with replaced_directory(directory, allowed=MODEL_DIR_ENTRIES) as new:
        write_model_config(new, config, track)
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(new / VARIABLES_DIR, variables, force=True)
        _write_manifest(new)
    return directory


def _open_regular(path: pathlib.Path):
    """Opens ``path`` for reading only if it is a regular file (not a symlink, FIFO or device:
    O_NOFOLLOW and O_NONBLOCK, then fstat), so hashing never follows a link out of the directory,
    blocks on a FIFO or reads /dev/zero forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be opened as a regular file ({err.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with _open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "not a regular file"


def _weight_files(directory: pathlib.Path) -> list[str]:
    """Paths (relative to the model directory, '/'-separated) of every file under variables/.

    CheckpointError when variables/ or anything under it is a symlink, FIFO, socket or device
    (a model directory holds only folders and regular files), or when it holds no file at all."""
    root = directory / VARIABLES_DIR
    found, pending = [], [root]
    while pending:
        folder = pending.pop()
        mode = os.lstat(folder).st_mode
        if not stat.S_ISDIR(mode):
            rel = folder.relative_to(directory).as_posix()
            raise CheckpointError(f"{directory}: {rel} is {_file_kind(mode)}; a model directory holds only "
                                  "folders and regular files", hint="copy the model directory without links")
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                pending.append(pathlib.Path(entry.path))
            elif stat.S_ISREG(mode):
                found.append(pathlib.Path(entry.path).relative_to(directory).as_posix())
            else:
                rel = pathlib.Path(entry.path).relative_to(directory).as_posix()
                target = f" pointing to {os.readlink(entry.path)}" if stat.S_ISLNK(mode) else ""
                raise CheckpointError(f"{directory}: {rel} is {_file_kind(mode)}{target}; a model directory holds "
                                      "only folders and regular files", hint="copy the model directory without links")
    if not found:
        raise CheckpointError(f"{directory}: {VARIABLES_DIR}/ holds no weight files", hint="re-convert the weights")
    return sorted(found)


def _manifest_name_ok(name: str) -> bool:
    """'variables/<a>/<b>': plain components only (no '', '.', '..', backslash or NUL)."""
    parts = name.split("/")
    return (len(parts) >= 2 and parts[0] == VARIABLES_DIR and "\\" not in name and "\0" not in name
            and all(p not in ("", ".", "..") for p in parts))


def _covered_files(directory: pathlib.Path) -> list[str]:
    """What the manifest covers: the two JSON configs (those present, regular files only) and
    every weight file."""
    configs = []
    for name in (CONFIG_FILE, TRACK_FILE):
        try:
            mode = os.lstat(directory / name).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            raise CheckpointError(f"{directory}: {name} is {_file_kind(mode)}; a model directory holds only "
                                  "folders and regular files", hint="copy the model directory without links")
        configs.append(name)
    return configs + _weight_files(directory)


def _write_manifest(directory: pathlib.Path) -> None:
    lines = [f"{_sha256(directory / name)}  {name}\n" for name in _covered_files(directory)]
    atomic_write_bytes(directory / MANIFEST_FILE, "".join(lines).encode())


def _read_manifest(directory: pathlib.Path) -> dict[str, str]:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no weights manifest ({MANIFEST_FILE}; written by grm-jax >= 0.2)",
                              hint="re-convert the weights (python -m convert_weights) or re-save the model "
                                   "with grm_jax.save_model")
    entries: dict[str, str] = {}
    with _open_regular(path) as f:
        text = f.read(MAX_MANIFEST_BYTES + 1).decode("utf-8", errors="replace")
    if len(text) > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes; not a weights manifest")
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if sep and len(digest) == 64 and not (name in (CONFIG_FILE, TRACK_FILE) or _manifest_name_ok(name)):
            raise CheckpointError(f"{path}: line {number} names {name[:100]!r}, which is not a file under "
                                  f"{VARIABLES_DIR}/ (a '..', absolute or empty path component)")
        if not sep or len(digest) != 64 or name in entries:
            raise CheckpointError(f"{path}: line {number} is not '<sha256>  {VARIABLES_DIR}/<file>'")
        entries[name] = digest.lower()
    if CONFIG_FILE not in entries:
        raise CheckpointError(f"{path}: does not cover {CONFIG_FILE} (written by grm-jax < 0.3)",
                              hint="re-convert the weights (python -m convert_weights) or re-save the model "
                                   "with grm_jax.save_model")
    return entries


def verify_weights(directory: str | os.PathLike) -> None:
    """Checks model_config.json, track_config.json and every file under ``<directory>/variables``
    against ``<directory>/weights.sha256``.

    Raises CheckpointError naming the directory and the first file that is missing,
    changed (e.g. one flipped bit) or not listed; or saying that the manifest is missing.
    """
    directory = pathlib.Path(directory).absolute()
    present = set(_covered_files(directory))  # links, FIFOs, an empty variables/ refused first
    expected = _read_manifest(directory)
    for name in sorted(present - set(expected)):
        raise CheckpointError(f"{directory}: {name} is not listed in {MANIFEST_FILE} (modified model directory)",
                              hint="re-convert the weights or re-save the model")
    for name, digest in sorted(expected.items()):
        if name not in present:
            raise CheckpointError(f"{directory}: weight file {name} listed in {MANIFEST_FILE} is missing")
        if _sha256(directory / name) != digest:
            raise CheckpointError(f"{directory}: weight file {name} does not match its sha256 in "
                                  f"{MANIFEST_FILE} (corrupted or modified)",
                                  hint="re-convert the weights or copy the model directory again")


def _latest_step_dir(workdir: pathlib.Path) -> pathlib.Path:
    steps = checkpoint_steps(workdir)
    if not steps:
        raise MissingFileError(f"{checkpoints_dir(workdir)}: no checkpoint steps")
    return step_dir(workdir, steps[-1])


def resolve_variables_dir(path: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """Returns (directory holding model_config.json, orbax variables directory)."""
    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise MissingFileError(f"{path}: no such checkpoint directory")
    if (path / VARIABLES_DIR).is_dir():
        return path, path / VARIABLES_DIR
    if checkpoints_dir(path).is_dir():
        return path, _latest_step_dir(path) / ITEM_VARIABLES
    raise MissingFileError(f"{path}: neither a model directory (variables/) nor a training "
                            f"workdir (checkpoints/)")


def _restore(variables_dir: pathlib.Path, config: ModelConfig) -> dict:
    # Restore onto one local device, whatever topology wrote it (e.g. a 2-host training run).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = abstract_variables(GRM(config))
    target = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                                    {k: target[k] for k in ("params", "batch_stats")})
    with ocp.StandardCheckpointer() as ckptr:
        try:
            restored = ckptr.restore(variables_dir, target)
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{variables_dir}: weights do not match {CONFIG_FILE} ({err})") from err
    _check_like(restored, target, variables_dir)
    return restored


def _check_like(restored, target, where) -> None:
    """Orbax may hand back saved shapes that differ from the target: reject them, naming the leaf."""
    got = jax.tree_util.tree_flatten_with_path(restored)[0]
    want = jax.tree_util.tree_flatten_with_path(target)[0]
    if [p for p, _ in got] != [p for p, _ in want]:
        raise CheckpointError(f"{where}: weights do not match {CONFIG_FILE} (different variable names)")
    for (path, a), (_, b) in zip(got, want):
        if tuple(a.shape) != tuple(b.shape):
            raise CheckpointError(f"{where}: weights do not match {CONFIG_FILE}: "
                             f"{jax.tree_util.keystr(path)} is {tuple(a.shape)}, config needs {tuple(b.shape)}")


def load_model(path: str | os.PathLike, dtype=None) -> tuple[GRM, dict]:
    """(model, variables) from a converted model directory or a training workdir.

    `model.apply(variables, template, search, threshold=0.0)`; see `grm_jax.model.GRM`.
    dtype: compute dtype (e.g. jnp.bfloat16); parameters stay float32.
    """
    config_dir, variables_dir = resolve_variables_dir(path)
    if _is_model_dir(config_dir, variables_dir):
        verify_weights(config_dir)  # before model_config.json is trusted (one flipped bit moves boxes)
    config = read_model_config(config_dir)
    model = GRM(config) if dtype is None else GRM(config, dtype=dtype)
    return model, _restore(variables_dir, config)


def _is_model_dir(config_dir: pathlib.Path, variables_dir: pathlib.Path) -> bool:
    """A model directory (checksummed), not a training workdir (restored without a manifest)."""
    return variables_dir == config_dir / VARIABLES_DIR
