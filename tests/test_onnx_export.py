"""scripts/export_onnx.py: ONNX Runtime (fp32, CPU) reproduces PyTorch and the reference fixtures.

Each parity fixture's model is exported once (kp_detector, encoder, generator, and AVD for
TPSMM) and fed the fixture's inputs: keypoints from its images, the generator with its keypoints
(TPSMM: with and without background motion, relative and AVD keypoints), at batch 2 and 1.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import NO_PARITY, PARITY_DIR, PARITY_FIXTURES

ort = pytest.importorskip('onnxruntime')
TOL = 1e-4


def load_fixture(name: str) -> dict:
    return torch.load(PARITY_DIR / f'{name}.fixture.pt', map_location='cpu', weights_only=True)


# One model of each family (an export takes 10-20 s; the zero-order FOMM fixture adds only the
# no-jacobian input names, which test_int8 covers through the Animator).
EXPORTED = [name for name in PARITY_FIXTURES if 'zero_order' not in name]


EXPORT_DIRS: dict = {}     # parity model name -> the folder export_onnx.py wrote


@pytest.fixture(scope='module', params=EXPORTED or [pytest.param(None, marks=pytest.mark.skip(reason=NO_PARITY))])
def exported(request, tmp_path_factory):
    """(fixture, models, {graph: ONNX Runtime session}, model.json) for one parity model."""
    from scripts.export_onnx import main, load
    name = request.param
    out = tmp_path_factory.mktemp(name)
    assert main(['--config', str(PARITY_DIR / f'{name}.yaml'), '--checkpoint', str(PARITY_DIR / f'{name}.pth.tar'),
                 '--out', str(out), '--img_shape', '64,64']) == 0
    _, models = load(str(PARITY_DIR / f'{name}.yaml'), str(PARITY_DIR / f'{name}.pth.tar'))
    EXPORT_DIRS[name] = out
    sessions = {p.stem: ort.InferenceSession(str(p), providers=['CPUExecutionProvider']) for p in out.glob('*.onnx')}
    return load_fixture(name), models, sessions, json.loads((out / 'model.json').read_text())


def run(session, **feeds) -> list[np.ndarray]:
    return session.run(None, {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in feeds.items()})


def err(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def generator_feeds(info: dict, source, features, kp_source: dict, kp_driving: dict, bg_param=None) -> dict:
    """The generator graph's inputs, TPS solved by onnx_steps (NumPy), as a user without torch would."""
    from deploy.onnx_steps import fit_tps
    feeds = {'source': source}
    if info['family'] == 'fomm':
        feeds['features'] = features[0]
        for prefix, kp in (('kp_source', kp_source), ('kp_driving', kp_driving)):
            feeds.update({f'{prefix}_{k}': v for k, v in kp.items()})
    else:
        feeds.update({f'features_{i}': f for i, f in enumerate(features)})
        feeds.update(kp_source=kp_source['fg_kp'], kp_driving=kp_driving['fg_kp'])
        b = source.shape[0]
        feeds['bg_param'] = np.broadcast_to(np.eye(3, dtype=np.float32), (b, 3, 3)) if bg_param is None else bg_param
        feeds['tps_affine'], feeds['tps_weights'] = fit_tps(np.asarray(kp_driving['fg_kp']), np.asarray(kp_source['fg_kp']),
                                                            info['points_per_tps'])
    return {k: np.asarray(v) for k, v in feeds.items()}


def numpy_kp(kp: dict) -> dict:
    return {k: v.numpy() for k, v in kp.items()}


def torch_prediction(models: dict, source, kp_source: dict, kp_driving: dict, bg_param=None,
                     dtype=torch.float32) -> np.ndarray:
    if dtype != torch.float32:
        import copy
        models = {k: copy.deepcopy(m).to(dtype) for k, m in models.items()}
        source, bg_param = source.to(dtype), None if bg_param is None else bg_param.to(dtype)
        kp_source, kp_driving = ({k: v.to(dtype) for k, v in kp.items()} for kp in (kp_source, kp_driving))
    with torch.no_grad():
        if 'generator' in models:
            return models['generator'](source, kp_driving=kp_driving, kp_source=kp_source)['prediction'].numpy()
        motion = models['dense_motion_network'](source_image=source, kp_driving=kp_driving, kp_source=kp_source,
                                                bg_param=bg_param)
        return models['inpainting_network'](source, motion)['prediction'].numpy()


def test_keypoints_match_pytorch_and_the_reference(exported):
    fixture, models, sessions, info = exported
    expected = fixture['expected_eval']
    keys = list(expected['kp_source'])
    for image, want in ((fixture['inputs']['source'], expected['kp_source']),
                        (fixture['inputs']['driving'], expected['kp_driving'])):
        got = run(sessions['kp_detector'], image=image.numpy())
        with torch.no_grad():
            mine = models['kp_detector'](image)
        for k, g in zip(keys, got):
            assert err(g, mine[k]) <= TOL and err(g, want[k]) <= TOL, k


def prediction_cases(fixture: dict) -> list[tuple[str, dict, dict, object, object]]:
    """(name, kp_source, kp_driving, bg_param, expected prediction) that the fixture holds."""
    e = fixture['expected_eval']
    if 'generator' in e:
        return [('absolute', e['kp_source'], e['kp_driving'], None, e['generator']['prediction']),
                ('relative', e['kp_source'], e['kp_norm_relative_adapt'], None, e['prediction_relative_adapt'])]
    return [('absolute with background', e['kp_source'], e['kp_driving'], e['bg_param'], e['inpainting']['prediction']),
            ('relative', e['kp_source'], e['kp_norm_relative'], None, e['prediction_relative']),
            ('avd', e['kp_source'], e['kp_norm_avd'], None, e['prediction_avd'])]


def test_generator_matches_pytorch_and_the_reference_with_a_dynamic_batch(exported):
    fixture, models, sessions, info = exported
    source = fixture['inputs']['source']
    features = run(sessions['encoder'], source=source.numpy())
    for name, kp_source, kp_driving, bg_param, want in prediction_cases(fixture):
        mine = torch_prediction(models, source, kp_source, kp_driving, bg_param)
        for b in (2, 1):
            feeds = generator_feeds(info, source.numpy()[:b], [f[:b] for f in features],
                                    {k: v[:b] for k, v in numpy_kp(kp_source).items()},
                                    {k: v[:b] for k, v in numpy_kp(kp_driving).items()},
                                    None if bg_param is None else bg_param.numpy()[:b])
            (got,) = run(sessions['generator'], **feeds)
            assert got.shape == (b, 3, 64, 64)
            if name == 'avd':
                # The AVD keypoints of these random weights make a motion whose float32 result is
                # only good to 2.4e-4 (PyTorch float32 vs float64), so 1e-4 between two float32
                # implementations is luck: ONNX Runtime must be no further from float64 than
                # PyTorch's float32 is (it is closer: 1.1e-4).
                exact = torch_prediction(models, source, kp_source, kp_driving, bg_param, torch.float64)[:b]
                assert err(got, exact) <= max(TOL, err(mine[:b], exact)), f'{name}, batch {b}'
                continue
            assert err(got, mine[:b]) <= TOL, f'{name}, batch {b}: ONNX Runtime vs PyTorch'
            assert err(got, want.numpy()[:b]) <= TOL, f'{name}, batch {b}: ONNX Runtime vs the reference'


def test_avd_graph_matches_the_reference(exported):
    fixture, models, sessions, info = exported
    if info['family'] != 'tps':
        pytest.skip('AVD is TPSMM only')
    e = fixture['expected_eval']
    (got,) = run(sessions['avd'], kp_source=e['kp_source']['fg_kp'].numpy(), kp_driving=e['kp_driving']['fg_kp'].numpy())
    assert err(got, e['kp_norm_avd']['fg_kp']) <= TOL
    assert info['graphs']['avd']['inputs'] == ['kp_source', 'kp_driving']


def test_numpy_tps_solve_matches_torch():
    from modules.geometry import fit_keypoint_tps
    from deploy.onnx_steps import fit_tps
    kp_d, kp_s = torch.rand(3, 50, 2) * 2 - 1, torch.rand(3, 50, 2) * 2 - 1
    want = fit_keypoint_tps(kp_d, kp_s)
    got = fit_tps(kp_d.numpy(), kp_s.numpy())
    for g, w in zip(got, want):
        assert g.shape == tuple(w.shape) and g.dtype == np.float32
        assert err(g, w) <= 1e-4 * max(1.0, float(w.abs().max()))


def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    from scripts.export_onnx import main
    bad = tmp_path / 'bad.pth.tar'
    bad.write_bytes(b'not a checkpoint')
    assert main(['--config', 'config/synthetic/tps-64-small.yaml', '--checkpoint', str(bad), '--out', str(tmp_path / 'o')]) == 2
    message = capsys.readouterr().err
    assert message.startswith('error:') and message.count('\n') == 1 and 'bad.pth.tar' in message
    assert not (tmp_path / 'o').exists()


def readme_onnx_example() -> str:
    """The README's "ONNX Runtime alone" code block, as printed there."""
    from conftest import REPO_ROOT
    text = (REPO_ROOT / 'README.md').read_text()
    after = text.split('ONNX Runtime alone animates with them', 1)[1]
    return after.split('```python\n', 1)[1].split('```', 1)[0]


def test_readme_onnx_example_runs_and_equals_pytorch(exported, request, tmp_path, monkeypatch):
    """The README's dozen lines, run as printed (only the frame size set to the export's), give
    PyTorch's prediction for the same 8-bit inputs."""
    from PIL import Image
    fixture, models, sessions, info = exported
    if info['family'] != 'fomm':
        pytest.skip('the README example is FOMM\'s (TPSMM adds the TPS solve, documented in docs/cpu-inference.md)')
    folder = EXPORT_DIRS[request.node.callspec.params['exported']]
    (tmp_path / 'onnx').symlink_to(folder, target_is_directory=True)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    for image, file in zip(images, ('source.png', 'driving-frame.png')):
        Image.fromarray(image).save(tmp_path / file)
    code = readme_onnx_example()
    assert '(256, 256)' in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('(256, 256)', '(64, 64)'), 'README.md', 'exec'), {})
    out = np.asarray(Image.open(tmp_path / 'out.png'), np.float32) / 255

    source, driving = (torch.from_numpy(i).permute(2, 0, 1)[None].float() / 255 for i in images)
    with torch.no_grad():
        kp_s, kp_d = models['kp_detector'](source), models['kp_detector'](driving)
    expected = torch_prediction(models, source, kp_s, kp_d)[0].transpose(1, 2, 0)
    assert err(out, expected) <= 1 / 255 + 1e-4          # the PNG's 8-bit rounding
