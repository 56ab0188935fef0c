"""The commented configs in config/ must carry exactly the official values.

Each file in config/fomm and config/tps is a re-typeset copy of an official config: block style
plus explanatory comments. These tests make sure the re-typesetting changed nothing that
`yaml.safe_load` can see: same keys, in the same order, same values, same types (``0`` stays an
int, ``0.0`` stays a float, ``null`` stays None).

The official files live outside the repository, in ``../shared/reference-configs/{fomm,tps}``;
where that folder is absent the comparison tests are skipped. The comment checks only need this
repository.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / 'config'
REFERENCE_DIR = REPO_ROOT.parent / 'shared' / 'reference-configs'
FAMILIES = ('fomm', 'tps')

# Official pretrained checkpoint that goes with each config (named in the file's header comment).
CHECKPOINTS = {
    'fomm/bair-256.yaml': 'bair-cpk.pth.tar',
    'fomm/fashion-256.yaml': 'fashion.pth.tar',
    'fomm/mgif-256.yaml': 'mgif-cpk.pth.tar',
    'fomm/nemo-256.yaml': 'nemo-cpk.pth.tar',
    'fomm/taichi-256.yaml': 'taichi-cpk.pth.tar',
    'fomm/taichi-adv-256.yaml': 'taichi-adv-cpk.pth.tar',
    'fomm/vox-256.yaml': 'vox-cpk.pth.tar',
    'fomm/vox-adv-256.yaml': 'vox-adv-cpk.pth.tar',
    'tps/mgif-256.yaml': 'mgif.pth.tar',
    'tps/taichi-256.yaml': 'taichi.pth.tar',
    'tps/ted-384.yaml': 'ted.pth.tar',
    'tps/vox-256.yaml': 'vox.pth.tar',
}

NO_REFERENCE = f'official reference configs not found at {REFERENCE_DIR}'


def _relative_names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for family in FAMILIES
                  for p in (root / family).glob('*.yaml'))


REFERENCE_FILES = _relative_names(REFERENCE_DIR)
OUR_FILES = _relative_names(CONFIG_DIR)


def _load(path: Path):
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


def _differences(ours, theirs, where='<root>'):
    """List every difference, including key order and int/float/bool type, between two trees."""
    if type(ours) is not type(theirs):
        return [f'{where}: type {type(ours).__name__} ({ours!r}) != '
                f'{type(theirs).__name__} ({theirs!r})']
    if isinstance(ours, dict):
        if list(ours) != list(theirs):
            return [f'{where}: keys {list(ours)} != {list(theirs)} (names or order differ)']
        found = []
        for key in ours:
            found += _differences(ours[key], theirs[key], f'{where}.{key}')
        return found
    if isinstance(ours, list):
        if len(ours) != len(theirs):
            return [f'{where}: length {len(ours)} != {len(theirs)}']
        found = []
        for i, (a, b) in enumerate(zip(ours, theirs)):
            found += _differences(a, b, f'{where}[{i}]')
        return found
    return [] if ours == theirs else [f'{where}: {ours!r} != {theirs!r}']


@pytest.mark.parametrize(
    'name',
    REFERENCE_FILES or [pytest.param(None, marks=pytest.mark.skip(reason=NO_REFERENCE))])
def test_config_matches_reference(name):
    ours_path = CONFIG_DIR / name
    assert ours_path.is_file(), f'config/{name} is missing (the official {name} has no counterpart)'
    ours, theirs = _load(ours_path), _load(REFERENCE_DIR / name)
    assert ours == theirs, f'config/{name} parses to different values than the official file'
    diffs = _differences(ours, theirs)
    assert not diffs, f'config/{name} differs from the official file:\n' + '\n'.join(diffs)


def test_no_config_without_reference():
    if not REFERENCE_FILES:
        pytest.skip(NO_REFERENCE)
    extra = sorted(set(OUR_FILES) - set(REFERENCE_FILES))
    assert not extra, f'configs with no official counterpart: {extra}'


def test_every_config_is_listed():
    assert sorted(CHECKPOINTS) == OUR_FILES


_TOP_LEVEL_KEY = re.compile(r'^[A-Za-z_][\w-]*\s*:')


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith('#')


def _section_comment_counts(text: str) -> dict[str, int]:
    """Comment lines per top-level section.

    A section is its key line, the lines below it up to the next top-level key, and the block of
    comment lines directly above its key (blank lines allowed in between). Comment lines right
    above the next key count for the next section, not this one.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _TOP_LEVEL_KEY.match(line)]
    counts = {}
    for n, start in enumerate(starts):
        key = lines[start].split(':', 1)[0].strip()
        above = 0
        i = start - 1
        while i >= 0 and (_is_comment(lines[i]) or not lines[i].strip()):
            above += _is_comment(lines[i])
            i -= 1
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        # The comment block directly above the next key belongs to that key.
        while end > start + 1 and (_is_comment(lines[end - 1]) or not lines[end - 1].strip()):
            end -= 1
        inside = sum(_is_comment(line) for line in lines[start + 1:end])
        counts[key] = above + inside
    return counts


@pytest.mark.parametrize('name', OUR_FILES)
def test_every_top_level_section_is_commented(name):
    text = (CONFIG_DIR / name).read_text(encoding='utf-8')
    counts = _section_comment_counts(text)
    assert list(counts) == list(_load(CONFIG_DIR / name)), 'top-level keys not found as expected'
    bare = [key for key, count in counts.items() if count == 0]
    assert not bare, f'config/{name}: top-level sections without a comment line: {bare}'


@pytest.mark.parametrize('name', OUR_FILES)
def test_header_names_checkpoint_and_family(name):
    text = (CONFIG_DIR / name).read_text(encoding='utf-8')
    header = []
    for line in text.splitlines():
        if _TOP_LEVEL_KEY.match(line):
            break
        header.append(line)
    header = '\n'.join(header)
    assert CHECKPOINTS[name] in header, f'config/{name}: header does not name {CHECKPOINTS[name]}'
    assert 'root_dir' in header, f'config/{name}: header does not say where the data set root is'

    common = _load(CONFIG_DIR / name)['model_params']['common_params']
    family_key = 'num_kp' if name.startswith('fomm/') else 'num_tps'
    other_key = 'num_tps' if family_key == 'num_kp' else 'num_kp'
    assert family_key in common and other_key not in common, (
        f'config/{name}: common_params must have {family_key} (and not {other_key}) '
        f'so that the family is inferred correctly')
