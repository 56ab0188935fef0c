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
