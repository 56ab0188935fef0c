"""Mixed-precision training (modules/precision.py) and CPU threads (modules/cpu_threads.py)."""
from __future__ import annotations

import copy
import os

import pytest
import torch

import logger as logger_module
import run
import train
from loading import load_config
from modules import build_models, cpu_threads
from modules import precision as P
from modules.geometry import fit_tps, local_affine_motions, make_coordinate_grid, warp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC = {'fomm': os.path.join(REPO, 'config', 'synthetic', 'fomm-64.yaml'),
             'tps': os.path.join(REPO, 'config', 'synthetic', 'tps-64-small.yaml')}


# ---- float32 islands under autocast ----------------------------------------------------------

def test_delicate_geometry_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    kp = {'value': torch.rand(2, 5, 2) * 2 - 1, 'jacobian': torch.eye(2) + 0.3 * torch.randn(2, 5, 2, 2)}
    kp_s = {'value': torch.rand(2, 5, 2) * 2 - 1, 'jacobian': torch.eye(2) + 0.3 * torch.randn(2, 5, 2, 2)}
    grid = make_coordinate_grid((16, 16))
    tps_from, tps_to = torch.rand(2, 3, 5, 2) * 2 - 1, torch.rand(2, 3, 5, 2) * 2 - 1
    expected = local_affine_motions(grid, kp, kp_s), fit_tps(tps_from, tps_to)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        motions = local_affine_motions(grid, kp, kp_s)
        affine, weights = fit_tps(tps_from, tps_to)
        warped = warp(torch.rand(2, 3, 16, 16).bfloat16(), motions[:, 0])
    assert motions.dtype == affine.dtype == weights.dtype == warped.dtype == torch.float32
    # the same float32 arithmetic as without autocast: bf16 would be off by ~1e-2 here
    torch.testing.assert_close(motions, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(affine, expected[1][0], rtol=0, atol=0)


@pytest.mark.parametrize('family', ['fomm', 'tps'])
def test_keypoints_come_out_float32_under_autocast(family):
    config = load_config(SYNTHETIC[family])
    torch.manual_seed(0)
    detector = build_models(config)['kp_detector'].eval()
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = detector(image)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            kp = detector(image)
    assert kp and all(v.dtype == torch.float32 for v in kp.values())
    torch.testing.assert_close(kp, expected, rtol=0, atol=0)      # the whole detector ran in float32


def test_full_precision_is_a_plain_call_without_autocast():
    seen = []
    guarded = P.full_precision(lambda x: seen.append(x) or x)
    x = torch.ones(2, dtype=torch.bfloat16)
    assert guarded(x) is x and seen == [x]                  # no cast outside autocast
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert guarded(x).dtype == torch.float32


# ---- choosing the precision ------------------------------------------------------------------

def test_flag_wins_over_config_and_default_is_fp32():
    cpu = torch.device('cpu')
    assert P.resolve(None, {}, cpu) == 'fp32'
    assert P.resolve(None, {'precision': 'bf16'}, cpu) == 'bf16'
    assert P.resolve('fp32', {'precision': 'bf16'}, cpu) == 'fp32'
    with pytest.raises(P.PrecisionError, match='precision must be one of fp32, bf16, fp16'):
        P.resolve(None, {'precision': 'int8'}, cpu)


def test_cpu_without_bf16_is_said(monkeypatch, caplog):
    monkeypatch.setattr(P, 'cpu_has_native_bf16', lambda: False)
    with caplog.at_level('WARNING'):
        assert P.resolve('bf16', None, torch.device('cpu')) == 'bf16'
    assert 'no native bf16' in caplog.text


# ---- training --------------------------------------------------------------------------------

def logged_training(config: dict, log_dir: str, **train_kwargs) -> tuple[list, dict]:
    """Train `config` on the CPU from seed 0 (weights, batches: the data set's generator starts from
    torch's seed, warps); returns the loss dicts of every iteration and the models."""
    from frames_dataset import build_dataset
    torch.manual_seed(0)
    models = build_models(config)
    dataset = build_dataset(config['dataset_params'], is_train=True)
    values, log_iter = [], logger_module.Logger.log_iter
    logger_module.Logger.log_iter = lambda self, v, step: values.append(v)
    try:
        train.train(config, models, dataset, log_dir, torch.device('cpu'), **train_kwargs)
    finally:
        logger_module.Logger.log_iter = log_iter
    return values, models


def train_losses(family: str, data_root: str, log_dir: str, precision: str, epochs: int) -> tuple[list, dict]:
    """Train the synthetic config of `family` (batch 2 on the tiny data set) from seed 0; returns
    the loss dicts of every iteration and the models."""
    config = load_config(SYNTHETIC[family])
    config['dataset_params']['root_dir'] = data_root
    config['train_params'].update(batch_size=2, num_repeats=1, dataloader_workers=0, checkpoint_freq=100)
    return logged_training(config, log_dir, max_epochs=epochs, precision=precision)


@pytest.mark.parametrize('family', ['fomm', 'tps'])
def test_bf16_training_follows_fp32(family, data_root, tmp_path):
    """Three epochs (6 iterations, batch 2; about a minute on a quiet 2-core host) of each synthetic
    config from one seed: the same
    batches and random warps, so the runs differ only by bf16 rounding.

    Tolerances. First iteration (same weights): each loss within 1% of fp32's. bf16 rounds each
    op's result by at most 2^-9 relative and the losses are means over thousands of elements;
    measured: 0.2% (perceptual), 0.03% or less (the float32-kept equivariance and warp losses).
    Over the 3 epochs: the mean of the summed loss within 10%. After the first step the runs
    follow different paths: Adam's first updates are +-lr per weight whatever the gradient's
    size, so weights whose gradient is near zero move either way under any rounding change.
    Measured: FOMM 1% (each iteration within 3%), TPSMM 4% (the background predictor, which joins
    at the second epoch, differs most). Before the keypoint detectors were kept in float32 the
    first iteration already differed by 10% (TPSMM), which this test catches."""
    fp32, _ = train_losses(family, data_root, str(tmp_path / 'fp32'), 'fp32', 3)
    bf16, models = train_losses(family, data_root, str(tmp_path / 'bf16'), 'bf16', 3)
    assert len(fp32) == len(bf16) == 6 and fp32[0].keys() == bf16[0].keys()
    for key in fp32[0]:
        assert bf16[0][key] == pytest.approx(fp32[0][key], rel=0.01), key
    mean_total = [sum(sum(v.values()) for v in run_) / len(run_) for run_ in (fp32, bf16)]
    assert mean_total[1] == pytest.approx(mean_total[0], rel=0.10)
    assert all(p.dtype == torch.float32 for m in models.values() for p in m.state_dict().values()
               if p.is_floating_point())
    saved = torch.load(os.path.join(str(tmp_path / 'bf16'), 'last.pth.tar'), weights_only=True)
    networks = [k for k in models if k in saved]            # TPSMM's trainer saves no AVD network
    assert 'kp_detector' in networks
    assert all(v.dtype == torch.float32 for k in networks for v in saved[k].values() if v.is_floating_point())
    fresh = build_models(load_config(SYNTHETIC[family]))
    for key in networks:
        fresh[key].load_state_dict(saved[key])              # a bf16 run's checkpoint loads into fp32


def test_fp16_on_the_cpu_is_refused_in_one_line():
    with pytest.raises(P.PrecisionError, match='fp16 needs a CUDA GPU.*use bf16 on the CPU'):
        P.resolve('fp16', None, torch.device('cpu'))


def test_fp16_scaler_scales_unscales_before_clipping_and_skips_overflowing_steps():
    """MixedPrecision('fp16') on a toy model (GradScaler works on the CPU too): the backward pass
    sees the scaled loss, `unscale` gives true gradients for clipping, an inf gradient skips the
    step and halves the scale."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    amp = P.MixedPrecision('fp16', 'cpu')
    assert amp.scaler.is_enabled() and amp.scaler.get_scale() == 2.0 ** 16
    amp.scaler = torch.amp.GradScaler('cpu', init_scale=1024.0)     # 2^16 itself overflows fp16 grads here
    x = torch.ones(4, 3)
    with amp.autocast():
        loss = net(x).float().mean()
    amp.backward(loss)
    assert net.bias.grad.item() == pytest.approx(1024.0)               # d mean / d bias = 1, scaled
    amp.unscale([opt])
    assert net.bias.grad.item() == pytest.approx(1.0)
    before = net.bias.detach().clone()
    amp.step(opt)
    amp.update()
    assert net.bias.item() == pytest.approx(before.item() - 0.1)
    opt.zero_grad()
    amp.backward(net(x).mean() * float('inf'))
    kept = net.weight.detach().clone()
    amp.step(opt)
    amp.update()
    assert torch.equal(net.weight, kept) and amp.scaler.get_scale() == 512.0
    fp32 = P.MixedPrecision('fp32', 'cpu')
    assert not fp32.scaler.is_enabled()


def test_run_precision_flag_reaches_training_and_fp16_reconstruction_on_cpu_is_one_line(data_root, tmp_path,
                                                                                     monkeypatch, capsys):
    got = {}
    monkeypatch.setattr(train, 'train', lambda *a, **k: got.update(k) or 0)
    import yaml
    settings = yaml.safe_load(open(SYNTHETIC['fomm']))
    settings['dataset_params']['root_dir'] = data_root
    config = str(tmp_path / 'fomm.yaml')
    with open(config, 'w') as f:
        yaml.safe_dump(settings, f)
    assert run.main(['--config', config, '--precision', 'bf16', '--compile', '--channels_last', 'off',
                     '--log_dir', str(tmp_path), '--threads', '1']) == 0
    assert got['precision'] == 'bf16' and got['compile'] is True and got['channels_last'] is False
    assert torch.get_num_threads() == 1
    # fp16 needs CUDA: one line, exit 2 (training and reconstruction)
    monkeypatch.undo()
    for mode in ('train', 'reconstruction'):
        capsys.readouterr()
        assert run.main(['--config', config, '--mode', mode, '--checkpoint', 'none.pth.tar', '--precision', 'fp16',
                         '--log_dir', str(tmp_path), '--cpu']) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and 'fp16' in err[0], (mode, err)


# ---- threads ---------------------------------------------------------------------------------

def test_threads_follow_the_cores_left_idle(monkeypatch):
    assert cpu_threads.idle_cores(2, 0.1) == 2
    assert cpu_threads.idle_cores(2, 1.7) == 1
    assert cpu_threads.idle_cores(2, 17.0) == 1
    assert cpu_threads.idle_cores(16, 4.2) == 12
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(cpu_threads, 'usable_cores', lambda: 2)
        monkeypatch.setattr(cpu_threads, 'busy_cores', lambda: 1.6)
        assert cpu_threads.configure(None) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(cpu_threads, 'busy_cores', lambda: None)       # no /proc/stat: the load average
        monkeypatch.setattr(os, 'getloadavg', lambda: (5.0, 5.0, 5.0))
        assert cpu_threads.configure(None) == 1 and torch.get_num_threads() == 1
        assert cpu_threads.configure(2) == 2 and torch.get_num_threads() == 2    # --threads wins
        with pytest.raises(ValueError, match='--threads 0'):
            cpu_threads.configure(0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not os.path.exists('/proc/stat'), reason='busy_cores reads /proc/stat (Linux)')
def test_busy_cores_counts_a_process_that_is_running_now():
    """The default thread count follows the cores busy now: a busy-looping child counts as about
    one core (the 1-minute load average would have counted it a minute after it ended)."""
    import subprocess
    import sys
    import time
    child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        time.sleep(0.3)
        busy = cpu_threads.busy_cores(0.5)
    finally:
        child.kill()
        child.wait()
    assert busy is not None and busy >= 0.6


def test_entry_points_make_openmp_threads_wait_passively():
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    code = 'import os, sys; sys.argv = ["x"]; import {m}; print(os.environ["OMP_WAIT_POLICY"])'
    for module in ('run', 'demo'):
        out = subprocess.run([sys.executable, '-c', code.format(m=module)], cwd=REPO, env=env, capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == 'PASSIVE', module


@pytest.mark.skipif(not os.environ.get('KPANIM_COMPILE_TEST'),
                    reason='compiling a family\'s networks takes minutes on a 2-core CPU; set KPANIM_COMPILE_TEST=1')
@pytest.mark.parametrize('family', ['fomm', 'tps'])
def test_compiled_training_follows_eager_and_keeps_checkpoint_keys(family, data_root, tmp_path):
    """One epoch (2 iterations, batch 2) of the tiny config (FOMM with the spectrally normalised
    discriminator), eager, then compiled, from one seed: same weights, batches, warps and TPS
    dropout (Inductor draws random numbers as eager does with `fallback_random`). The compiled
    run must not fall back to eager on the recompile limit, and its checkpoint must load into
    uncompiled networks (no `_orig_mod.` prefixes).

    Tolerance, relative, per loss: 1e-4 at the first iteration (same weights: float32 rounding
    of Inductor's kernels; measured, largest over the losses: FOMM 3.3e-6, TPSMM 2.1e-6), 5e-3 at
    the second (Adam's first step moves each weight by about lr whatever its gradient's size, so
    weights whose gradient is rounding noise may move either way; measured: FOMM 4.4e-4, TPSMM
    9.9e-4). Before the discriminator's spectral norm ran its power iteration outside the graph,
    the FOMM run failed in the first backward ("modified by an inplace operation")."""
    from conftest import TINY_FOMM, TINY_TPS
    config = copy.deepcopy({'fomm': TINY_FOMM, 'tps': TINY_TPS}[family])
    config['dataset_params'] = {'root_dir': data_root, 'frame_shape': [64, 64, 3], 'id_sampling': False}
    config['train_params'].update(vgg19_weights='random', dataloader_workers=0, batch_size=2, num_repeats=1,
                                  num_epochs=1, checkpoint_freq=100)
    eager, _ = logged_training(copy.deepcopy(config), str(tmp_path / 'eager'))
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), \
            torch._inductor.config.patch(fallback_random=True):
        compiled, models = logged_training(copy.deepcopy(config), str(tmp_path / 'compiled'), compile=True)
    assert len(eager) == len(compiled) == 2 and eager[0].keys() == compiled[0].keys()
    assert family == 'tps' or {'gen_gan', 'disc_gan'} <= eager[0].keys()
    for iteration, rel in enumerate((1e-4, 5e-3)):
        for key, value in eager[iteration].items():
            assert compiled[iteration][key] == pytest.approx(value, rel=rel), (iteration, key)
    saved = torch.load(os.path.join(str(tmp_path / 'compiled'), 'last.pth.tar'), weights_only=True)
    networks = [k for k in models if k in saved]
    assert 'kp_detector' in networks and (family == 'tps' or 'discriminator' in networks)
    assert not [key for k in networks for key in saved[k] if '_orig_mod' in key]
    fresh = build_models(config)
    for key in networks:
        fresh[key].load_state_dict(saved[key])
