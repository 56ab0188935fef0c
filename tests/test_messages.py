"""Bad input and missing downloads are one clear line and exit status 2, never a traceback."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import demo
import run
from loading.checkpoint import CheckpointError, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / 'checkpoints' / 'synthetic-tps-64-small.pth.tar'
BUNDLED_CONFIG = REPO / 'config' / 'synthetic' / 'tps-64-small.yaml'


def _damaged(tmp_path, kind: str) -> str:
    path = tmp_path / f'{kind}.pth.tar'
    data = BUNDLED.read_bytes()
    legacy = REPO.parent / 'shared' / 'parity' / 'fomm-public-legacy-format.pth.tar'
    content = {'text': b'version https://git-lfs.github.com/spec/v1\noid sha256:4f1d\nsize 731156208\n',
               'html': b'<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>',
               'truncated-zip': data[:len(data) // 3], 'header-only-zip': data[:100], 'empty': b''}
    if kind == 'truncated-legacy':
        if not legacy.is_file():
            pytest.skip(f'{legacy} not found (../shared is absent)')
        content[kind] = legacy.read_bytes()[:300_000]
    path.write_bytes(content[kind])
    return str(path)


@pytest.mark.parametrize('kind, says', [
    ('text', "a text file, not a checkpoint (it starts with 'version https://git-lfs"),
    ('html', 'an HTML page, not a checkpoint'),
    ('truncated-zip', 'the file is truncated'),
    ('header-only-zip', 'the file is truncated'),
    ('truncated-legacy', 'the file is truncated or damaged'),
    ('empty', 'an empty file'),
])
def test_unreadable_checkpoint_says_what_the_file_is(tmp_path, kind, says):
    path = _damaged(tmp_path, kind)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f'{path}: ') and says in message
    assert '\n' not in message and 'KeyError' not in message and not message.rstrip().endswith(('is)', 'is'))


def test_avd_mode_without_an_avd_network_says_why(tmp_path, capsys):
    frames = tmp_path / 'frames'
    frames.mkdir()
    from PIL import Image
    import numpy as np
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(frames / f'{i:03d}.png')
    code = demo.main(['--config', str(BUNDLED_CONFIG), '--checkpoint', str(BUNDLED), '--source_image',
                      str(frames / '000.png'), '--driving_video', str(frames), '--result_video',
                      str(tmp_path / 'r.mp4'), '--mode', 'avd', '--quiet'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert 'no AVD network' in err[0] and '--mode train_avd' in err[0]
    assert 'does not fit' not in err[0] and 'Configs that fit' not in err[0]
    assert not (tmp_path / 'r.mp4').exists()


@pytest.mark.parametrize('config, size, multiple', [('fomm/vox-256', '384,320', 128), ('tps/vox-256', '320,320', 128),
                                                    ('fomm/vox-256', '255', 128)])
def test_img_shape_the_networks_cannot_take(tmp_path, capsys, config, size, multiple):
    code = demo.main(['--config', str(REPO / 'config' / f'{config}.yaml'), '--checkpoint', str(tmp_path / 'k.pth.tar'),
                      '--source_image', 'x.png', '--driving_video', 'x.mp4', '--result_video',
                      str(tmp_path / 'r.mp4'), '--img_shape', size])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f'--img_shape {size if "," in size else size + "," + size}' in err[0]
    assert f'multiples of {multiple}' in err[0]


def test_training_without_vgg_weights_is_one_line(tmp_path, capsys, monkeypatch):
    """Offline, torchvision cannot fetch the ImageNet VGG-19: the message naming the ways out is
    the whole output (no "Downloading: ..." line, no traceback), before any run folder is written."""
    from synthetic import data as synthetic_data
    import modules.model as model
    data = tmp_path / 'data'
    synthetic_data.generate_dataset(str(data), size=64, num_ids=3, videos_per_id=1, frames=3, test_ids=1, seed=0,
                                    progress=False)
    config = yaml.safe_load(BUNDLED_CONFIG.read_text())
    config['dataset_params']['root_dir'] = str(data)
    config['train_params'].pop('vgg19_weights', None)
    (tmp_path / 'c.yaml').write_text(yaml.safe_dump(config))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))     # nothing cached
    monkeypatch.setattr(model, 'host_reachable', lambda url, timeout=5.0: False)
    capsys.readouterr()
    assert run.main(['--config', str(tmp_path / 'c.yaml'), '--log_dir', str(tmp_path / 'log')]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: VGG-19 ImageNet weights')
    assert str(tmp_path / 'hub' / 'checkpoints') in lines[0] and 'vgg19_weights: random' in lines[0]
    assert 'Downloading' not in out.out + out.err
    assert not (tmp_path / 'log').exists()


def test_bf16_on_a_cpu_without_it_says_so(tmp_path, capsys, monkeypatch):
    from PIL import Image
    import numpy as np
    frames = tmp_path / 'frames'
    frames.mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 60 + 40 * i, np.uint8)).save(frames / f'{i:03d}.png')
    args = ['--config', str(BUNDLED_CONFIG), '--checkpoint', str(BUNDLED), '--source_image', str(frames / '000.png'),
            '--driving_video', str(frames), '--result_video', str(tmp_path / 'r.gif'), '--cpu', '--quiet']
    for native, expected in ((False, True), (True, False)):
        monkeypatch.setattr(demo, 'cpu_has_native_bf16', lambda native=native: native)
        assert demo.main(args + ['--precision', 'bf16']) == 0
        assert ('no native bf16' in capsys.readouterr().err) is expected
