"""Reading and checking configs: the one place where config files are interpreted.

Official config files work unchanged: the model family follows from
`model_params.common_params` (`num_kp` -> FOMM, `num_tps` -> TPSMM), and each section's keys
are checked against the typed constructor that consumes it, so a misspelt key is reported with
the file, the section and the closest valid name instead of failing deep inside a network.
"""
from __future__ import annotations

import difflib
import inspect
import os
from typing import Any, Callable, Iterable

import yaml


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class Config(dict):
    """A parsed config that remembers the file it came from (for error messages)."""

    path: str = '<config dict>'


def config_path(config: dict) -> str:
    return getattr(config, 'path', '<config dict>')


# The repository's own configs (config/fomm/vox-256.yaml, ...): README's commands name them
# relative to the repository root, and they are found from any folder.
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_DIR = os.path.join(REPOSITORY, 'config')
_said: set[str] = set()


def bundled_config(path: str) -> str:
    """`path` itself when it exists; else, for a relative path such as 'config/fomm/vox-256.yaml'
    that is one of the repository's configs, that file (said once per path on stderr)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    candidate = os.path.normpath(os.path.join(REPOSITORY, path))
    if not (candidate.startswith(BUNDLED_DIR + os.sep) and os.path.isfile(candidate)):
        return path
    if path not in _said:
        _said.add(path)
        import sys
        print(f'note: {path} is not in the current folder; using the bundled {candidate}', file=sys.stderr)
    return candidate


def load_config(path: str) -> Config:
    """Parse a YAML config and check its model section. Raises ConfigError with one clear line.
    A relative path naming one of the repository's configs works from any folder (`bundled_config`)."""
    path = bundled_config(path)
    if not os.path.isfile(path):
        raise ConfigError(f'{path}: config file not found')
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        detail = str(e).replace('\n', ' ')
        raise ConfigError(f'{path}: not a readable YAML config ({detail})') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: expected a YAML mapping with model_params, dataset_params, ...; got {type(data).__name__}')
    config = Config(data)
    config.path = path
    from . import family_of_config  # the registry validates the model section it knows how to build
    family_of_config(config)
    return config


def section(config: dict, dotted: str, required: bool = True) -> Any:
    """config['a']['b'] for 'a.b', with a clear error when a level is missing."""
    node: Any = config
    walked = []
    for key in dotted.split('.'):
        walked.append(key)
        if not isinstance(node, dict) or key not in node:
            if not required:
                return None
            where = '.'.join(walked[:-1]) or 'the top level'
            have = sorted(node) if isinstance(node, dict) else []
            hint = _suggest(key, have)
            raise ConfigError(f"{config_path(config)}: missing key '{'.'.join(walked)}' (in {where}{hint})")
        node = node[key]
    return node


def _suggest(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ''


def constructor_keys(ctor: Callable) -> tuple[set[str], set[str]]:
    """(all keyword names, required names) of a constructor's signature."""
    params = [p for p in inspect.signature(ctor).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return {p.name for p in params}, {p.name for p in params if p.default is p.empty}


def kwargs_for(ctor: Callable, config: dict, where: str, values: dict | None, provided: dict | None = None,
               exclude: Iterable[str] = (), provided_from: str | dict = 'model_params.common_params') -> dict:
    """Check one config section against `ctor` and return the keyword arguments to call it with.

    `values` is the section; `provided` holds values coming from elsewhere (e.g. common_params),
    passed on only where `ctor` accepts them. Unknown or missing keys raise ConfigError naming the
    file, the section and the key.
    """
    values = dict(values or {})
    provided = dict(provided or {})
    allowed, required = constructor_keys(ctor)
    allowed -= set(exclude)
    path = config_path(config)
    for key in values:
        if key in provided and key in allowed:
            origin = provided_from.get(key, '') if isinstance(provided_from, dict) else provided_from
            raise ConfigError(f"{path}: '{where}.{key}' is also set in {origin}; set it in one place")
        if key not in allowed:
            raise ConfigError(f"{path}: unknown key '{where}.{key}'{_suggest(key, allowed - set(provided))}")
    kwargs = {k: v for k, v in provided.items() if k in allowed}
    kwargs.update(values)
    missing = sorted((required & allowed) - set(kwargs))
    if missing:
        raise ConfigError(f"{path}: missing key '{where}.{missing[0]}'")
    return kwargs


def check_known(config: dict, where: str, values: dict | None, known: Iterable[str]) -> None:
    """Unknown keys in a section consumed by several constructors (e.g. common_params)."""
    known = set(known)
    for key in values or {}:
        if key not in known:
            raise ConfigError(f"{config_path(config)}: unknown key '{where}.{key}'{_suggest(key, known)}")
