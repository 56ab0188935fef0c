"""Checking config dicts: each section's keys against the typed constructor that consumes it.

Official config files work unchanged: the model family follows from
`model_params.common_params` (`num_kp` -> FOMM, `num_tps` -> TPSMM), and each section's keys
are checked against the typed constructor that consumes it, so a misspelt key is reported with
the file, the section and the closest valid name instead of failing deep inside a network.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterable


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class Config(dict):
    """A parsed config that remembers the file it came from (for error messages)."""

    path: str = '<config dict>'


def config_path(config: dict) -> str:
    return getattr(config, 'path', '<config dict>')


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
