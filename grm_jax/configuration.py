"""Loading run configs at the edge: a config file path or bundled name, plus ``a.b=value``
overrides, become ONE typed :class:`grm_jax.run_config.RunConfig`.

    run = load_run_config("grm_got", ["train.max_steps=10", "data.datasets=got10k_train_full,lasot_train"])

Override values are Python literals when they parse as one (``10``, ``True``, ``None``,
``[1, 2]``, ``'x'``) and plain strings otherwise (``/data/LaSOT``); a comma-separated string
is accepted wherever a list is expected. Errors are :class:`grm_jax.errors.ConfigError`,
naming the key (and the closest valid keys for a typo).
"""
from __future__ import annotations

import ast
import difflib
import importlib.resources
import importlib.util
import pathlib
import traceback
from typing import Iterable

from grm_jax.errors import ConfigError, ConfigFileError, GrmError
from grm_jax.run_config import RunConfig

__all__ = ["BUNDLED_CONFIGS", "bundled_config_for", "bundled_config_path", "load_config_tree", "load_run_config", "resolve_config_path"]

BUNDLED_CONFIGS = ("grm_got", "grm", "grm_l320", "grm_tiny_cpu", "grm_sample_cpu", "grm_sample_accelerator")


def bundled_config_path(name: str) -> pathlib.Path:
    """Path of bundled config ``name`` (installed as ``grm_jax.configs``)."""
    return pathlib.Path(str(importlib.resources.files("grm_jax.configs") / f"{name}.py"))


def resolve_config_path(spec: str) -> pathlib.Path:
    """``spec`` is a config file path or a bundled config name (``grm_got``, ``grm.py``...)."""
    path = pathlib.Path(spec)
    if path.is_file():
        return path
    name = path.name.removesuffix(".py")
    if name in BUNDLED_CONFIGS and len(path.parts) <= 2:
        return bundled_config_path(name)
    close = difflib.get_close_matches(name, BUNDLED_CONFIGS, n=2)
    raise ConfigError(f"--config={spec!r}: no such config file or bundled config",
                      hint=f"bundled configs: {', '.join(BUNDLED_CONFIGS)}"
                      + (f" (did you mean {close[0]}?)" if close else ""))


MAX_OVERRIDE_CHARS = 4096  # a longer --config.a.b=value is a pasted file or an attack, not a setting


def _run_config_file(path: pathlib.Path):
    """Executes the config file ``path`` and returns what its ``get_config()`` returns. The file is
    the user's code: an exception in it becomes a ConfigFileError carrying its traceback (printed
    above the one-line message); sys.exit() in it is reported as such."""
    module_spec = importlib.util.spec_from_file_location(f"_grm_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        get_config = getattr(module, "get_config", None)
        if not callable(get_config):
            raise ConfigError(f"{path}: defines no get_config() function",
                              hint="a config file defines get_config() returning an ml_collections.ConfigDict")
        config = get_config()
    except SystemExit as err:
        raise ConfigError(f"{path}: called sys.exit({err.code!r}) while being loaded; nothing was run",
                          hint="a config file only defines get_config(); remove the exit call") from None
    except GrmError:
        raise
    except Exception as err:  # noqa: BLE001  (the user's code: any error is reported with its traceback)
        frames = traceback.extract_tb(err.__traceback__)
        own = [f for f in frames if f.filename == str(path)] or frames
        details = "".join(["Traceback of the config file (most recent call last):\n",
                           *traceback.format_list(own[:1] + frames[frames.index(own[0]) + 1:])])
        raise ConfigFileError(f"{path}: loading the config raised {type(err).__name__}: {err}", details=details,
                              hint="the traceback above is in your config file") from None
    if not (isinstance(config, dict) or hasattr(config, "to_dict")):
        raise ConfigError(f"{path}: get_config() returned {type(config).__name__}, not an ml_collections.ConfigDict",
                          hint="end get_config() with 'return c' (start from default_configdict())")
    return config


def load_config_tree(spec: str, overrides: Iterable[str] = ()) -> tuple[dict, str]:
    """Runs ``get_config()`` of the config ``spec`` and applies ``a.b=value`` overrides.
    Returns ``(nested dict, config name)``."""
    path = resolve_config_path(spec)
    config = _run_config_file(path)
    tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for item in overrides:
        item = str(item)
        if len(item) > MAX_OVERRIDE_CHARS:
            raise ConfigError(f"override {item[:60]!r}... is {len(item)} characters long (limit {MAX_OVERRIDE_CHARS})")
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        set_by_path(tree, key.strip().removeprefix("--").removeprefix("config."), raw)
    return tree, path.stem


def load_run_config(spec: str, overrides: Iterable[str] = ()) -> RunConfig:
    """The typed run config of ``spec`` with ``overrides`` applied (see module doc). The keys the
    overrides set are recorded in ``RunConfig.overridden`` (they win over a model's own settings)."""
    overrides = list(overrides)
    tree, name = load_config_tree(spec, overrides)
    keys = {str(o).partition("=")[0].strip().removeprefix("--").removeprefix("config.") for o in overrides}
    sources = _fill_local_roots(tree, keys)
    return RunConfig.from_configdict(tree, name=name, overridden=keys, root_sources=sources)


def _fill_local_roots(tree: dict, keys: set[str]) -> dict[str, str]:
    """Fills the dataset roots the config leaves unset from the machine-local settings
    (grm_jax.datasets.roots: datasets.json, GRM_DATA_ROOT); returns where each set root came from."""
    from grm_jax.datasets.roots import COMMAND_LINE, CONFIG_FILE, local_roots  # noqa: PLC0415

    data = tree.get("data")
    roots = data.get("roots") if isinstance(data, dict) else None
    if not isinstance(roots, dict):
        return {}  # a malformed config: RunConfig.from_configdict names the key
    sources = {k: COMMAND_LINE if f"data.roots.{k}" in keys else CONFIG_FILE for k, v in roots.items() if v is not None}
    for key, (folder, origin) in local_roots().items():
        if roots.get(key) is None:
            roots[key], sources[key] = folder, origin
    return sources


def set_by_path(tree: dict, key: str, raw: str) -> None:
    """Sets ``tree[a][b]...`` for the dotted ``key`` to the literal parsed from ``raw``; unknown
    keys name the closest valid ones. (Types are checked by RunConfig.from_configdict.)"""
    node, parts = tree, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            valid = sorted(node) if isinstance(node, dict) else []
            prefix = ".".join(parts[:i])
            close = difflib.get_close_matches(part, valid, n=3, cutoff=0.5)
            hint = (f"did you mean {', '.join((prefix + '.' if prefix else '') + c for c in close)}?" if close
                    else f"valid keys of {prefix or 'the config'}: {', '.join(valid)}")
            raise ConfigError(f"unknown config key {'.'.join(parts[:i + 1])!r}", hint=hint)
        if i < len(parts) - 1:
            node = node[part]
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = raw.strip()
    node[parts[-1]] = value


ARCHITECTURE_FIELDS = ("embed_dim", "depth", "patch_size", "template_size", "search_size")


def bundled_config_for(model) -> str | None:
    """The first bundled config whose network has ``model``'s shapes (ARCHITECTURE_FIELDS), e.g.
    'grm_l320' for a ViT-L/16 with search 320; None when none matches. A converter records that
    config's track section (crop factors) with the weights."""
    for name in BUNDLED_CONFIGS:
        candidate = load_run_config(name).model
        if all(getattr(candidate, f) == getattr(model, f) for f in ARCHITECTURE_FIELDS):
            return name
    return None
