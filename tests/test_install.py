"""The project installs (`pip install -e .`, done by `make venv`): importable from any folder, with
its commands on the environment's PATH."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
HINT = 'the project is not installed in this environment: run `make venv` or `pip install -e .`'


def test_importable_from_any_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    done = subprocess.run([sys.executable, '-c', 'from animate import Animator; import demo, faces, modules, media; '
                           'print(demo.ROOT)'], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f'{HINT}\n{done.stderr}'
    assert Path(done.stdout.strip()) == Path(__file__).resolve().parents[1]     # this checkout, editable


def test_commands_are_installed(tmp_path):
    for command in ('kpanim-demo', 'kpanim-app', 'kpanim-run', 'kpanim-crop-video', 'kpanim-evaluate',
                    'kpanim-synthetic-data', 'kpanim-prepare-dataset'):
        assert (BIN / command).is_file(), f'{command}: {HINT}'
    done = subprocess.run([str(BIN / 'kpanim-demo'), '--help'], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and 'usage' in done.stdout.lower(), done.stderr


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of the modules `path` imports, anywhere in it (inside functions too), but
    not those it imports inside `try: ... except ImportError` (optional: matplotlib in logger.py)."""
    import ast
    tree = ast.parse(path.read_text(), str(path))
    optional = set()
    def catches_import_error(handler_type) -> bool:
        types = handler_type.elts if isinstance(handler_type, ast.Tuple) else [handler_type]
        return any(isinstance(t, ast.Name) and t.id in ('ImportError', 'ModuleNotFoundError') for t in types)

    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(h.type is not None and catches_import_error(h.type)
                                             for h in node.handlers):
            optional |= {id(n) for part in node.body for n in ast.walk(part)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names


def test_every_imported_package_is_a_declared_dependency():
    """`pip install .` must bring every third-party package the code imports (PyAV was missing:
    every video path imports it)."""
    import re
    import tomllib
    from importlib.metadata import packages_distributions
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / 'pyproject.toml').read_text())['project']
    extras = project.get('optional-dependencies', {}).values()
    declared = project['dependencies'] + [d for extra in extras for d in extra]
    normal = lambda name: re.sub(r'[-_.]+', '-', name).lower()          # noqa: E731 (PEP 503 names)
    declared = {normal(re.match(r'[A-Za-z0-9_.-]+', d).group(0)) for d in declared}
    sources = [p for p in root.rglob('*.py') if '.venv' not in p.parts and 'tests' not in p.parts]
    local = {p.stem for p in root.rglob('*.py')} | {p.name for p in root.iterdir() if p.is_dir()}
    distributions = packages_distributions()
    distributions.setdefault('dlib', ['dlib-bin'])      # dlib-bin's metadata does not list its module
    missing = {}
    for path in sources:
        for name in _imported_modules(path) - local - set(sys.stdlib_module_names):
            dists = {normal(d) for d in distributions.get(name, [name])}
            if not dists & declared:
                missing.setdefault(name, []).append(str(path.relative_to(root)))
    assert not missing, f'imported but not in pyproject.toml dependencies: {missing}'
