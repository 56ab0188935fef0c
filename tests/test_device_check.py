"""benchmarks/device_check.py's logic on the CPU (--dry_run): every non-CUDA check runs and passes,
the CUDA ones are reported as skipped, and the table has every row."""
from __future__ import annotations

import pytest

from conftest import NO_PARITY, PARITY_DIR, REPO_ROOT

CLIP = REPO_ROOT.parent / 'shared' / 'samples' / 'face-driving.mp4'


@pytest.mark.skipif(not PARITY_DIR.is_dir() or not CLIP.is_file(), reason=NO_PARITY + ' (or the sample clip)')
def test_dry_run_runs_every_check_but_the_cuda_ones(capsys, monkeypatch):
    import sys
    monkeypatch.syspath_prepend(str(REPO_ROOT / 'benchmarks'))
    import device_check
    device_check.ROWS.clear()
    assert device_check.main(['--dry_run']) == 0
    rows = {name: result for name, result, _, _ in device_check.ROWS}
    assert rows['train step fomm-public (cpu)'] == rows['train step tps-public (cpu)'] == 'ok'
    assert [r for n, r in rows.items() if n.startswith('demo ../shared') or n.startswith('demo ')].count('ok') == 4
    assert rows['train fp16 / compiled on CUDA'] == rows['demo bf16/fp16/compile on CUDA'] == 'skipped'
    # the training table: our iteration in fp32 and bf16 per family; the reference without a checkout
    for label in ('synthetic/fomm-64.yaml', 'synthetic/tps-64-small.yaml'):
        assert rows[f'train {label} fp32'] == rows[f'train {label} bf16'] == 'ok'
        assert rows[f'train {label} reference fp32'] == 'skipped'
    assert rows['tests/test_cuda.py'] in ('skipped', 'ok')
    out = capsys.readouterr().out
    assert 'check' in out and 'result' in out and 'PSNR vs CPU fp32' in out
    assert 'device_check' in sys.modules
