"""Training, resume, DDP, AVD and reconstruction on tiny configs and a tiny synthetic data set (CPU)."""
from __future__ import annotations

import copy
import json
import os

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from conftest import TINY_FOMM, TINY_TPS

import run


def write_config(tmp_path, base: dict, data_root: str, **train_overrides) -> str:
    config = copy.deepcopy(base)
    config['dataset_params'] = {'root_dir': data_root, 'frame_shape': [64, 64, 3], 'id_sampling': False,
                                'augmentation_params': {'flip_param': {'horizontal_flip': True, 'time_flip': True}}}
    config['train_params'].update({'vgg19_weights': 'random', 'dataloader_workers': 0, 'batch_size': 2,
                                   'num_repeats': 1, **train_overrides})
    if 'num_tps' in config['model_params']['common_params']:
        config['train_avd_params'] = {'num_epochs': 1, 'num_repeats': 1, 'batch_size': 2, 'dataloader_workers': 0,
                                      'checkpoint_freq': 1, 'epoch_milestones': [], 'lr': 1e-3, 'lambda_shift': 1,
                                      'random_scale': 0.25}
    config['reconstruction_params'] = {'num_videos': 1, 'format': '.mp4'}
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config))
    return str(path)


def only_run_dir(log_dir) -> str:
    (name,) = os.listdir(log_dir)
    return os.path.join(log_dir, name)


def log_lines(run_dir) -> list[str]:
    with open(os.path.join(run_dir, 'log.txt')) as f:
        return f.read().splitlines()


@pytest.mark.parametrize('base', [TINY_FOMM, TINY_TPS], ids=['fomm', 'tps'])
def test_train_checkpoint_and_resume(tmp_path, data_root, base, recwarn):
    config = write_config(tmp_path, base, data_root, num_epochs=2, epoch_milestones=[1])
    log_dir = tmp_path / 'log'
    assert run.main(['--config', config, '--log_dir', str(log_dir)]) == 0
    # Schedulers of optimizers that wait (TPSMM's background predictor before bg_start) follow the
    # epochs as in the reference; torch's warning about it is expected and kept out of the logs.
    assert not [w for w in recwarn if 'lr_scheduler.step()' in str(w.message)]
    run_dir = only_run_dir(log_dir)
    lines = log_lines(run_dir)
    assert [line[:10] for line in lines] == ['00000000) ', '00000001) ']
    for line in lines:      # every loss finite
        values = [float(part.split(' - ')[1]) for part in line[10:].split('; ')]
        assert values and all(v == v and abs(v) < 1e6 for v in values), line
    for name in ('last.pth.tar', '00000000-checkpoint.pth.tar', '00000001-checkpoint.pth.tar'):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    with open(config) as f:
        first_config = f.read()
    with open(os.path.join(run_dir, 'config.yaml')) as f:     # the config travels with the checkpoints
        assert f.read() == first_config

    last = torch.load(os.path.join(run_dir, 'last.pth.tar'), weights_only=True)
    assert last['epoch'] == 1
    import loading
    import modules
    from loading.checkpoint import load_models
    cfg = loading.load_config(config)
    load_models(os.path.join(run_dir, 'last.pth.tar'), modules.build_models(cfg), cfg)   # strict, official keys
    opt_key = 'optimizer_generator' if 'num_kp' in base['model_params']['common_params'] else 'optimizer'
    steps_before = max(s['step'] for s in last[opt_key]['state'].values())

    # Resume: continues at epoch 2 with the decayed learning rate and the optimizer's state.
    config3 = write_config(tmp_path, base, data_root, num_epochs=3, epoch_milestones=[1])
    assert run.main(['--config', config3, '--log_dir', str(log_dir),
                     '--checkpoint', os.path.join(run_dir, 'last.pth.tar')]) == 0
    lines = log_lines(run_dir)
    assert [line[:10] for line in lines] == ['00000000) ', '00000001) ', '00000002) ']
    resumed = torch.load(os.path.join(run_dir, 'last.pth.tar'), weights_only=True)
    assert resumed['epoch'] == 2
    group = resumed[opt_key]['param_groups'][0]
    assert group['lr'] == pytest.approx(group['initial_lr'] * 0.1)        # past the milestone
    assert max(s['step'] for s in resumed[opt_key]['state'].values()) > steps_before
    with open(os.path.join(run_dir, 'config.yaml')) as f:     # a resume keeps the run's first config
        assert f.read() == first_config


def test_resume_with_zero_learning_rate_keeps_that_network_frozen(tmp_path, data_root):
    """taichi-adv-256 fine-tunes a taichi-256 checkpoint with lr_kp_detector: 0. The saved keypoint
    optimizer carries the old learning rate and must not be restored, or the detector would train."""
    log_dir = tmp_path / 'log'
    config = write_config(tmp_path, TINY_FOMM, data_root, num_epochs=1)
    assert run.main(['--config', config, '--log_dir', str(log_dir)]) == 0
    start = os.path.join(only_run_dir(log_dir), 'last.pth.tar')
    before = torch.load(start, weights_only=True)
    frozen = write_config(tmp_path, TINY_FOMM, data_root, num_epochs=2, lr_kp_detector=0)
    assert run.main(['--config', frozen, '--log_dir', str(log_dir), '--checkpoint', start]) == 0
    after = torch.load(start, weights_only=True)
    assert after['epoch'] == 1
    params = dict(__import__('modules').build_models(TINY_FOMM)['kp_detector'].named_parameters())
    for name in params:
        assert torch.equal(after['kp_detector'][name], before['kp_detector'][name]), name
    assert not torch.equal(after['generator']['final.weight'], before['generator']['final.weight'])


def test_resume_edge_cases(tmp_path, data_root, caplog, capsys):
    log_dir = tmp_path / 'log'
    config = write_config(tmp_path, TINY_FOMM, data_root, num_epochs=1)
    assert run.main(['--config', config, '--log_dir', str(log_dir)]) == 0
    run_dir = only_run_dir(log_dir)
    saved = torch.load(os.path.join(run_dir, 'last.pth.tar'), weights_only=True)

    # Already at num_epochs: says so, trains nothing, writes nothing.
    before = sorted(os.listdir(run_dir))
    with caplog.at_level('WARNING', logger='train'):
        assert run.main(['--config', config, '--checkpoint', os.path.join(run_dir, 'last.pth.tar')]) == 0
    assert 'nothing to train' in caplog.text and 'last.pth.tar' in caplog.text
    assert sorted(os.listdir(run_dir)) == before

    # Optimizers saved without `initial_lr` (never attached to a scheduler) still resume.
    for key in ('optimizer_generator', 'optimizer_kp_detector', 'optimizer_discriminator'):
        for group in saved[key]['param_groups']:
            del group['initial_lr']
    bare = str(tmp_path / 'bare' / 'ckpt.pth.tar')
    os.makedirs(os.path.dirname(bare))
    torch.save(saved, bare)
    config2 = write_config(tmp_path, TINY_FOMM, data_root, num_epochs=2)
    assert run.main(['--config', config2, '--checkpoint', bare]) == 0
    assert torch.load(os.path.join(os.path.dirname(bare), 'last.pth.tar'), weights_only=True)['epoch'] == 1

    # An optimizer state that does not fit the networks: one line naming the file.
    saved['optimizer_generator']['param_groups'][0]['params'].pop()
    torch.save(saved, bare)
    capsys.readouterr()
    assert run.main(['--config', config2, '--checkpoint', bare]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and bare in err[0] and 'optimizer_generator' in err[0]


@pytest.mark.parametrize('base,absent', [(TINY_FOMM, ('discriminator', 'optimizer_discriminator')),
                                         (TINY_TPS, ('bg_predictor', 'optimizer_bg_predictor', 'avd_network'))],
                         ids=['fomm', 'tps'])
def test_resume_without_optional_networks(tmp_path, data_root, base, absent, caplog):
    """The references' checkpoints may lack these (TPSMM saves bg_predictor only from bg_start on,
    and its first stage has no AVD network); a resume starts them fresh instead of refusing."""
    log_dir = tmp_path / 'log'
    config = write_config(tmp_path, base, data_root, num_epochs=1)
    assert run.main(['--config', config, '--log_dir', str(log_dir)]) == 0
    saved = torch.load(os.path.join(only_run_dir(log_dir), 'last.pth.tar'), weights_only=True)
    for key in absent:
        saved.pop(key, None)          # TPSMM's epoch 0 (before bg_start) saves neither, as the reference
    partial = str(tmp_path / 'partial' / 'ckpt.pth.tar')
    os.makedirs(os.path.dirname(partial))
    torch.save(saved, partial)
    config2 = write_config(tmp_path, base, data_root, num_epochs=2)
    with caplog.at_level('INFO', logger='train'):
        assert run.main(['--config', config2, '--checkpoint', partial]) == 0
    assert f'has no {absent[0]}; it starts from its initialisation' in caplog.text
    resumed = torch.load(os.path.join(os.path.dirname(partial), 'last.pth.tar'), weights_only=True)
    assert resumed['epoch'] == 1 and absent[0] in resumed

    del saved['kp_detector']              # a network training cannot do without is still refused
    torch.save(saved, partial)
    assert run.main(['--config', config2, '--checkpoint', partial]) == 2


def test_tps_reconstruction_uses_background_motion():
    """TPSMM's reconstruction evaluation adds the background predictor's affine to the motion
    (its demo does not); the Animator's `background=True` must compose the networks exactly so."""
    import modules
    from animate import Animator
    torch.manual_seed(0)
    models = modules.build_models(TINY_TPS)
    with torch.no_grad():      # a background predictor that does not answer the identity
        models['bg_predictor'].bg_encoder.fc.weight.normal_(0, 0.05)
    animator = Animator(TINY_TPS, models, 'cpu')
    frames = torch.rand(3, 3, 64, 64)
    state = animator.prepare(frames[0].permute(1, 2, 0).numpy(), None, 'standard', False)
    with_bg = animator.animate_batch(state, frames, background=True)
    without = animator.animate_batch(state, frames)
    with torch.no_grad():
        source = frames[:1].expand_as(frames)
        kp_s, kp_d = models['kp_detector'](source), models['kp_detector'](frames)
        motion = models['dense_motion_network'](source_image=source, kp_driving=kp_d, kp_source=kp_s,
                                                bg_param=models['bg_predictor'](source, frames), dropout_flag=False)
        expected = models['inpainting_network'](source, motion)['prediction']
    assert (with_bg - expected).abs().max() < 1e-4
    assert (with_bg - without).abs().max() > 1e-3


def test_train_avd_and_reconstruction(tmp_path, data_root):
    config = write_config(tmp_path, TINY_TPS, data_root, num_epochs=1, bg_start=0)     # bg_predictor saved
    log_dir = tmp_path / 'log'
    assert run.main(['--config', config, '--log_dir', str(log_dir)]) == 0
    ckpt = os.path.join(only_run_dir(log_dir), 'last.pth.tar')
    assert 'avd_network' not in torch.load(ckpt, weights_only=True)       # the first stage saves none
    avd_dir = tmp_path / 'avd'
    assert run.main(['--config', config, '--mode', 'train_avd', '--checkpoint', ckpt, '--log_dir', str(avd_dir)]) == 0
    after = torch.load(os.path.join(only_run_dir(avd_dir), 'last.pth.tar'), weights_only=True)
    assert 'avd_network' in after and after['optimizer_avd']['state'][0]['step'] > 0
    assert os.path.isfile(os.path.join(only_run_dir(avd_dir), 'config.yaml'))
    assert os.listdir(os.path.join(only_run_dir(avd_dir), 'train-vis'))      # AVD re-targeting preview

    # A first-stage checkpoint (the reference saves no AVD network before its own stage) evaluates.
    rec_dir = tmp_path / 'rec'
    assert run.main(['--config', config, '--mode', 'reconstruction', '--checkpoint', ckpt,
                     '--log_dir', str(rec_dir)]) == 0
    out = os.path.join(only_run_dir(rec_dir), 'reconstruction')
    metrics = json.load(open(os.path.join(out, 'metrics.json')))
    assert metrics['num_videos'] == 1 and metrics['num_frames'] == 6
    assert metrics['background_motion'] is True         # TPSMM's evaluation uses its background predictor
    assert 0 < metrics['l1'] < 1 and 0 <= metrics['l1_copy_source_baseline'] < 1
    assert os.listdir(os.path.join(out, 'png'))

    anim_dir = tmp_path / 'anim'
    assert run.main(['--config', config, '--mode', 'animate', '--checkpoint', ckpt, '--log_dir', str(anim_dir)]) == 0
    out = os.path.join(only_run_dir(anim_dir), 'animation')
    videos = [name for name in os.listdir(out) if name != 'png']
    # two test videos: all four (driving, source) pairs, as PairedDataset draws without a csv
    pairs = [f'{d}-{s}' for d in ('id002#000', 'id002#001') for s in ('id002#000', 'id002#001')]
    assert sorted(videos) == sorted(f'{p}.mp4' for p in pairs)
    assert sorted(os.listdir(os.path.join(out, 'png'))) == sorted(f'{p}.png' for p in pairs)    # as the reference


def test_train_avd_needs_checkpoint(tmp_path, data_root, capsys):
    config = write_config(tmp_path, TINY_TPS, data_root)
    assert run.main(['--config', config, '--mode', 'train_avd', '--log_dir', str(tmp_path)]) == 2
    assert 'checkpoint' in capsys.readouterr().err


def test_bad_config_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / 'bad.yaml'
    path.write_text('model_params: {common_params: {num_kp: 3}}\n')
    assert run.main(['--config', str(path), '--log_dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]


def test_jacobian_loss_without_jacobians_is_refused_before_training(tmp_path, data_root, capsys):
    base = copy.deepcopy(TINY_FOMM)
    base['model_params']['common_params']['estimate_jacobian'] = False
    base['train_params']['loss_weights']['equivariance_jacobian'] = 10
    config = write_config(tmp_path, base, data_root)
    log_dir = tmp_path / 'log'
    assert run.main(['--config', config, '--log_dir', str(log_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and config in err[0] and 'equivariance_jacobian' in err[0]
    assert not log_dir.exists()          # refused before any output


def _ddp_worker(rank: int, world: int, port: int, config_path: str, out_dir: str):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    import loading
    import modules
    import train
    from frames_dataset import build_dataset
    torch.manual_seed(rank)          # different initial weights per rank: the broadcast must fix it
    config = loading.load_config(config_path)
    models = modules.build_models(config)
    dataset = build_dataset(config['dataset_params'], is_train=True)
    train.train(config, models, dataset, os.path.join(out_dir, 'log'), torch.device('cpu'),
                dist=train.Dist(rank=rank, world_size=world))
    torch.save({k: m.state_dict() for k, m in models.items()}, os.path.join(out_dir, f'rank{rank}.pt'))
    torch.distributed.destroy_process_group()


def test_uneven_batch_split_over_processes_is_said(caplog):
    import train
    data = list(range(20))
    with caplog.at_level('WARNING', logger='train'):
        loader = train.make_loader(data, {'batch_size': 5, 'dataloader_workers': 0}, train.Dist(rank=0, world_size=2))
    assert loader.batch_size == 2 and 'global batch of 4' in caplog.text
    caplog.clear()
    with caplog.at_level('WARNING', logger='train'):
        loader = train.make_loader(data, {'batch_size': 6, 'dataloader_workers': 0}, train.Dist(rank=0, world_size=2))
    assert loader.batch_size == 3 and not caplog.text


@pytest.mark.parametrize('base', [TINY_FOMM, TINY_TPS], ids=['fomm', 'tps'])
def test_ddp_two_processes_keep_identical_weights(tmp_path, data_root, base):
    config = write_config(tmp_path, base, data_root, num_epochs=1, batch_size=4)
    mp.spawn(_ddp_worker, args=(2, run.free_port(), config, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    b = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    initial = __import__('modules').build_models(__import__('loading').load_config(config))
    changed = False
    for net in a:
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f'{net}.{k} differs between ranks'
            if a[net][k].is_floating_point() and not torch.equal(a[net][k], initial[net].state_dict()[k]):
                changed = True
    assert changed, 'training did not change the weights'
    assert os.path.isfile(tmp_path / 'log' / 'last.pth.tar')     # rank 0 wrote it


def test_device_ids_start_one_process_per_device(tmp_path, data_root, capfd):
    """`--device_ids 0,1` trains as `torchrun --nproc_per_node 2` would (here on the CPU, with gloo)."""
    config = write_config(tmp_path, TINY_FOMM, data_root, num_epochs=1, batch_size=4)
    log_dir = tmp_path / 'log'
    args = run.parse_args(['--config', config, '--log_dir', str(log_dir), '--device_ids', '0,1', '--cpu'])
    assert run.launch(args, args.device_ids) == 0
    err = capfd.readouterr().err
    assert '2 processes' in err, err[-2000:]
    run_dir = only_run_dir(log_dir)           # rank 0 alone writes a run folder
    assert os.path.isfile(os.path.join(run_dir, 'last.pth.tar'))
    assert len(log_lines(run_dir)) == 1


def test_device_ids_bad_config_is_one_message(tmp_path, capfd):
    config = tmp_path / 'config.yaml'
    config.write_text('model_params: [unclosed')
    args = run.parse_args(['--config', str(config), '--log_dir', str(tmp_path / 'log'), '--device_ids', '0,1',
                           '--cpu'])
    assert run.launch(args, args.device_ids) == 2
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith('error:')]
    assert len(err) == 1 and str(config) in err[0]
    assert not (tmp_path / 'log').exists()


def test_device_ids_launch_only_for_several_gpus(monkeypatch):
    args = run.parse_args(['--config', 'c.yaml', '--device_ids', '0,1'])
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    assert run.launches_per_device(args)
    assert not run.launches_per_device(run.parse_args(['--config', 'c.yaml', '--device_ids', '0']))
    assert not run.launches_per_device(run.parse_args(['--config', 'c.yaml', '--device_ids', '0,1', '--cpu']))
    assert not run.launches_per_device(run.parse_args(['--config', 'c.yaml', '--device_ids', '0,1',
                                                       '--mode', 'reconstruction']))
    monkeypatch.setenv('WORLD_SIZE', '2')     # already a torchrun rank
    assert not run.launches_per_device(args)


def test_device_ids_naming_a_missing_gpu_is_one_message(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    assert run.main(['--config', 'c.yaml', '--device_ids', '0,1,2,3', '--log_dir', str(tmp_path / 'log')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'no CUDA device 2,3' in err[0] and 'shows 2' in err[0]
    assert run.missing_gpus(run.parse_args(['--config', 'c.yaml', '--device_ids', '1,0'])) is None
    assert run.missing_gpus(run.parse_args(['--config', 'c.yaml', '--device_ids', '0,1,2', '--cpu'])) is None
    assert not (tmp_path / 'log').exists()


def test_discriminator_step_uses_only_the_discriminator_loss(torch_one_thread):
    """The generator phase leaves gradients on the discriminator (GAN and feature-matching terms);
    the discriminator's step must see only its own loss's gradients, as in the reference."""
    from conftest import tiny_config
    from modules import build_models
    from train import Dist, build_optimizers, build_phases, step_phase
    config = tiny_config('tiny/fomm')
    train_params = config['train_params']
    train_params['vgg19_weights'] = 'random'
    torch.manual_seed(0)
    models = build_models(config)
    optimizers = build_optimizers(models, train_params)
    generator_phase, discriminator_phase = build_phases(models, train_params, optimizers, 0, torch.device('cpu'),
                                                        Dist())
    models['discriminator'].eval()    # no spectral-norm power iteration: repeated calls agree
    batch = {'source': torch.rand(2, 3, 64, 64), 'driving': torch.rand(2, 3, 64, 64)}
    _, generated = step_phase(generator_phase, batch, 0, models, train_params)
    params = list(models['discriminator'].parameters())
    left_over = [p.grad for p in params]
    assert any(g is not None and g.abs().sum() > 0 for g in left_over)   # else this test proves nothing

    for p in params:
        p.grad = None
    sum(v.mean() for v in discriminator_phase.model(batch, generated).values()).backward()
    expected = [p.grad.clone() for p in params]
    for p, g in zip(params, left_over):
        p.grad = g

    seen = []
    discriminator_phase.optimizers['optimizer_discriminator'].step = \
        lambda: seen.extend(p.grad.clone() for p in params)
    step_phase(discriminator_phase, batch, 0, models, train_params, generated)
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize('base', [TINY_FOMM, TINY_TPS], ids=['fomm', 'tps'])
def test_channels_last_training_step_equals_nchw(base):
    # train.py runs CPU training channels-last for speed; it must be the same step as in NCHW
    import modules
    import train
    config = copy.deepcopy(base)
    config['train_params']['vgg19_weights'] = 'random'
    params = config['train_params']
    torch.manual_seed(0)
    batch = {'source': torch.rand(2, 3, 64, 64), 'driving': torch.rand(2, 3, 64, 64)}
    results = []
    for channels_last in (False, True):
        torch.manual_seed(1)
        models = {k: m.train() for k, m in modules.build_models(config).items()}
        phases = train.build_phases(models, params, train.build_optimizers(models, params), 0,
                                    torch.device('cpu'), train.Dist())
        if channels_last:
            assert train.use_channels_last(models, phases, torch.device('cpu'), train.Dist())
            conv_weight = next(p for p in models['kp_detector'].parameters() if p.dim() == 4)
            assert conv_weight.is_contiguous(memory_format=torch.channels_last)
        torch.manual_seed(2)        # the same random equivariance transform for both
        values, generated = {}, None
        for phase in phases:
            phase_values, generated = train.step_phase(phase, train.to_device(batch, 'cpu', channels_last), 0,
                                                       models, params, generated)
            values.update(phase_values)
        # gradients, not updated weights: Adam's first step moves a weight by +-lr whatever the size
        # of its gradient, so float noise on a zero gradient (a bias ahead of a BatchNorm) would
        # show as a 2*lr difference
        results.append((values, {k: {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
                                 for k, m in models.items()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a.keys() == loss_b.keys()
    for k in loss_a:
        assert abs(loss_a[k] - loss_b[k]) <= 1e-4 * max(abs(loss_a[k]), 1e-3), (k, loss_a[k], loss_b[k])
    for net in grads_a:
        assert grads_a[net].keys() == grads_b[net].keys(), net
        if not grads_a[net]:
            continue
        scale = max(g.abs().max().item() for g in grads_a[net].values())
        worst = max((grads_a[net][n] - grads_b[net][n]).abs().max().item() for n in grads_a[net])
        assert worst <= 1e-4 * scale, (net, worst, scale)


def load_script(name: str):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('base', [TINY_FOMM, TINY_TPS], ids=['fomm', 'tps'])
def test_diagnose_model_measures_without_changing_the_model(data_root, base):
    diagnose_model = load_script('diagnose_model')
    from frames_dataset import build_dataset
    from modules import build_models
    config = copy.deepcopy(base)
    config['dataset_params'] = {'root_dir': data_root, 'frame_shape': [64, 64, 3]}
    dataset = build_dataset(config['dataset_params'], is_train=False)
    torch.manual_seed(0)
    models = build_models(config)
    before = {k: copy.deepcopy(m.state_dict()) for k, m in models.items()}
    r = diagnose_model.diagnose(models, dataset, num_videos=5, trials=3, batch=2)
    assert r['videos'] == len(dataset) == 2
    video = torch.from_numpy(dataset[0]['video']).permute(1, 0, 2, 3)
    other = torch.from_numpy(dataset[1]['video']).permute(1, 0, 2, 3)
    copy_l1 = ((video - video[:1]).abs().mean() + (other - other[:1]).abs().mean()) / 2
    assert r['copy_l1'] == pytest.approx(copy_l1.item(), rel=1e-5)
    assert 0 < r['identity_l1'] < 1 and 0 < r['l1'] < 1 and r['keypoint_spread'] > 0
    for k, m in models.items():
        assert not m.training
        for name, t in m.state_dict().items():
            assert torch.equal(t, before[k][name]), f'{k}.{name} changed'
    # Without trials the batch-dependence pass is skipped and the other figures are unchanged.
    quick = diagnose_model.diagnose(models, dataset, num_videos=5, trials=0, batch=2)
    assert 'batch_shift_std' not in quick and 'batch_shift_std' in r
    assert quick['l1'] == r['l1'] and quick['identity_l1'] == r['identity_l1']
    # The warped source is the motion's alone: a different last generator layer changes the
    # prediction but not it.
    assert 0 < r['warped_l1'] < 1
    generator = models.get('generator') or models['inpainting_network']
    with torch.no_grad():
        generator.final.bias.add_(1.0)
    redrawn = diagnose_model.diagnose(models, dataset, num_videos=5, trials=0, batch=2)
    assert redrawn['l1'] != r['l1'] and redrawn['warped_l1'] == r['warped_l1']


@pytest.mark.parametrize('base', [TINY_FOMM], ids=['fomm'])
def test_diagnose_model_reports_each_checkpoint(tmp_path, data_root, base, capsys):
    diagnose_model = load_script('diagnose_model')
    from modules import build_models
    config = write_config(tmp_path, base, data_root)
    paths = []
    for seed in (0, 1):     # two different networks: their reports must differ
        torch.manual_seed(seed)
        models = build_models(yaml.safe_load(open(config)))
        paths.append(str(tmp_path / f'{seed}.pth.tar'))
        torch.save({k: m.state_dict() for k, m in models.items()}, paths[-1])
    assert diagnose_model.main(['--config', config, '--checkpoint', *paths, '--trials', '0']) == 0
    out = capsys.readouterr().out
    sections = out.split('== ')[1:]
    assert [s.splitlines()[0] for s in sections] == paths
    l1 = [s.split('reconstruction    L1 ')[1].split()[0] for s in sections]
    assert l1[0] != l1[1] and 'batch dependence' not in out
    # A missing checkpoint among them: one message naming it, exit 2, and nothing measured.
    missing = str(tmp_path / 'missing.pth.tar')
    assert diagnose_model.main(['--config', config, '--checkpoint', paths[0], missing, '--trials', '0']) == 2
    captured = capsys.readouterr()
    assert missing in captured.err and captured.out == ''


@pytest.mark.parametrize('base', [TINY_FOMM, TINY_TPS], ids=['fomm', 'tps'])
def test_precise_bn_replaces_only_batchnorm_statistics(tmp_path, data_root, base, capsys):
    precise_bn = load_script('precise_bn')
    from modules import build_models
    config = write_config(tmp_path, base, data_root)
    torch.manual_seed(0)
    models = build_models(yaml.safe_load(open(config)))
    generator = 'generator' if 'generator' in models else 'inpainting_network'

    def checkpoint(stats_seed: int) -> str:
        """The same weights with other (random) running statistics; the generator stored as fp16."""
        g = torch.Generator().manual_seed(stats_seed)
        ckpt = {'epoch': 7}
        for key, m in models.items():
            state = {n: t.clone() for n, t in m.state_dict().items()}
            for n, t in state.items():
                if n.endswith('running_mean') or n.endswith('running_var'):
                    state[n] = torch.rand(t.shape, generator=g) + 0.5
            ckpt[key] = {n: t.half() if key == generator and t.is_floating_point() else t for n, t in state.items()}
        path = str(tmp_path / f'in{stats_seed}.pth.tar')
        torch.save(ckpt, path)
        return path

    outs = []
    for seed in (0, 1):
        src, out = checkpoint(seed), str(tmp_path / f'out{seed}.pth.tar')
        assert precise_bn.main(['--config', config, '--checkpoint', src, '--out', out, '--batches', '3',
                                '--batch_size', '2']) == 0
        before, after = torch.load(src, weights_only=True), torch.load(out, weights_only=True)
        assert after['epoch'] == 7 and set(after) == set(before)
        changed = 0
        for key in before:
            if key == 'epoch':
                continue
            assert list(after[key]) == list(before[key])
            for n, t in before[key].items():
                assert after[key][n].dtype == t.dtype, (key, n)
                is_stat = n.rsplit('.', 1)[-1] in precise_bn.BN_BUFFERS
                recalibrated = is_stat and key in ('kp_detector', 'generator', 'dense_motion_network',
                                                   'inpainting_network', 'bg_predictor')
                if recalibrated and n.endswith('running_mean'):
                    changed += not torch.equal(after[key][n], t)
                elif not recalibrated:
                    assert torch.equal(after[key][n], t), (key, n)
        assert changed > 0
        outs.append(after)
    # Recomputed from the data alone: the old statistics leave no trace (an EMA update would).
    for key in ('kp_detector', generator):
        for n, t in outs[0][key].items():
            if n.endswith('running_mean') or n.endswith('running_var'):
                assert torch.allclose(t.float(), outs[1][key][n].float(), rtol=1e-3, atol=1e-5), (key, n)
    missing, out = str(tmp_path / 'missing.pth.tar'), str(tmp_path / 'never.pth.tar')
    assert precise_bn.main(['--config', config, '--checkpoint', missing, '--out', out]) == 2
    assert missing in capsys.readouterr().err and not os.path.exists(out)


@pytest.mark.parametrize('base', [TINY_FOMM, TINY_TPS], ids=['fomm', 'tps'])
def test_distill_keypoints_starts_a_smaller_model(tmp_path, data_root, base, capsys):
    distill_keypoints = load_script('distill_keypoints')
    import train
    from frames_dataset import build_dataset
    from modules import build_models
    teacher_dir, student_dir = tmp_path / 'teacher', tmp_path / 'student'
    teacher_dir.mkdir(), student_dir.mkdir()
    teacher_config = write_config(teacher_dir, base, data_root)
    small = copy.deepcopy(base)
    small['model_params']['generator_params']['block_expansion'] = 4     # another generator size
    if 'num_tps' in small['model_params']['common_params']:
        small['model_params']['kp_detector_params'] = {'backbone': 'shufflenet_v2_x0_5'}
        downstream = 'dense_motion_network'          # TPSMM: same size in both, so it is copied
    else:
        small['model_params']['kp_detector_params']['block_expansion'] = 4
        downstream = 'discriminator'
    config = write_config(student_dir, small, data_root)
    torch.manual_seed(0)
    teacher = build_models(yaml.safe_load(open(teacher_config)))
    teacher_path = str(tmp_path / 'teacher.pth.tar')
    torch.save({k: m.state_dict() for k, m in teacher.items()}, teacher_path)

    # The fit itself: on one repeated batch the student's keypoints come close to the teacher's.
    student = build_models(yaml.safe_load(open(config)))
    dataset = build_dataset(yaml.safe_load(open(config))['dataset_params'], is_train=True)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    frames = torch.cat([batch['source'], batch['driving']])
    teacher['kp_detector'].eval()
    student['kp_detector'].train()

    def gap():
        with torch.no_grad():
            return distill_keypoints.keypoint_distance(student['kp_detector'](frames),
                                                       teacher['kp_detector'](frames)).item()
    before = gap()
    distill_keypoints.distill(student['kp_detector'], teacher['kp_detector'], [batch] * 40, steps=40, lr=1e-3)
    assert gap() < 0.5 * before

    out = str(tmp_path / 'init.pth.tar')
    assert distill_keypoints.main(['--config', config, '--teacher_config', teacher_config, '--teacher', teacher_path,
                                   '--out', out, '--steps', '3', '--batch_size', '2']) == 0
    assert f'copied from the teacher: {downstream}' in capsys.readouterr().out
    ckpt = torch.load(out, weights_only=True)
    assert ckpt['epoch'] == -1 and set(ckpt) - {'epoch'} == set(student)
    for n, t in teacher[downstream].state_dict().items():
        assert torch.equal(ckpt[downstream][n], t), n
    # run.py --mode train --checkpoint on it starts at epoch 0 with the distilled networks.
    fresh = build_models(yaml.safe_load(open(config)))
    optimizers = train.build_optimizers(fresh, yaml.safe_load(open(config))['train_params'])
    assert train.load_training_state(out, fresh, optimizers, yaml.safe_load(open(config))).start_epoch == 0
    for n, t in fresh['kp_detector'].state_dict().items():
        assert torch.equal(ckpt['kp_detector'][n], t), n

    # A teacher of the other family, or none: one message, exit 2, nothing written.
    other = write_config(tmp_path, TINY_TPS if base is TINY_FOMM else TINY_FOMM, data_root)
    never = str(tmp_path / 'never.pth.tar')
    assert distill_keypoints.main(['--config', config, '--teacher_config', other, '--teacher', teacher_path,
                                   '--out', never, '--steps', '1']) == 2
    assert 'one family' in capsys.readouterr().err and not os.path.exists(never)
    common = small['model_params']['common_params']
    common.update({k: v + 1 for k, v in common.items() if k in ('num_kp', 'num_tps')})
    (tmp_path / 'more').mkdir()
    more_keypoints = write_config(tmp_path / 'more', small, data_root)
    assert distill_keypoints.main(['--config', more_keypoints, '--teacher_config', teacher_config, '--teacher',
                                   teacher_path, '--out', never, '--steps', '1', '--batch_size', '2']) == 2
    assert 'same number of keypoints' in capsys.readouterr().err and not os.path.exists(never)
    missing = str(tmp_path / 'missing.pth.tar')
    assert distill_keypoints.main(['--config', config, '--teacher_config', teacher_config, '--teacher', missing,
                                   '--out', never, '--steps', '1']) == 2
    assert missing in capsys.readouterr().err and not os.path.exists(never)


def test_adv_fine_tune_refits_the_discriminator(tmp_path, data_root, caplog):
    """An -adv config (use_kp: the discriminator also sees keypoint heatmaps, so its first layer has
    more input channels) started from a base checkpoint: the reference loads everything else and
    the discriminator's fitting tensors, its first layer starting afresh; so must we, saying so."""
    base = copy.deepcopy(TINY_FOMM)
    base['model_params']['discriminator_params']['use_kp'] = False
    base['train_params']['loss_weights'].update(generator_gan=0, feature_matching=[0, 0, 0])
    log_dir = tmp_path / 'log'
    assert run.main(['--config', write_config(tmp_path, base, data_root, num_epochs=1), '--log_dir', str(log_dir)]) == 0
    start = os.path.join(only_run_dir(log_dir), 'last.pth.tar')
    before = torch.load(start, weights_only=True)
    adv = write_config(tmp_path, TINY_FOMM, data_root, num_epochs=2)          # use_kp: true, GAN on
    with caplog.at_level('WARNING', logger='train'):
        assert run.main(['--config', adv, '--checkpoint', start]) == 0
    assert 'discriminator does not fit' in caplog.text and 'start from their initialisation' in caplog.text
    after = torch.load(start, weights_only=True)
    assert after['epoch'] == 1
    first = 'discs.1.down_blocks.0.conv.weight_orig'
    assert before['discriminator'][first].shape[1] == 3 and after['discriminator'][first].shape[1] == 3 + 4
    assert after['optimizer_discriminator']['state']             # the fresh discriminator trained

    broken = dict(before, generator={k: v[..., :1] if v.dim() == 4 else v for k, v in before['generator'].items()})
    bad = str(tmp_path / 'bad.pth.tar')
    torch.save(broken, bad)
    assert run.main(['--config', adv, '--checkpoint', bad]) == 2     # a generator that does not fit is refused


def test_avd_learning_rate_decays_one_epoch_after_each_milestone():
    import train_avd
    factors = [train_avd.avd_lr_factor([3, 5], e - 1) if e else 1.0 for e in range(7)]
    assert factors == pytest.approx([1, 1, 1, 1, .1, .1, .01])


@pytest.fixture(scope='module')
def first_stage(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp('first-stage')
    config = write_config(tmp, TINY_TPS, data_root, num_epochs=1)
    assert run.main(['--config', config, '--log_dir', str(tmp / 'log')]) == 0
    return config, os.path.join(only_run_dir(tmp / 'log'), 'last.pth.tar')


def _run_avd(tmp_path, first_stage, monkeypatch, num_epochs=1, **avd_params):
    """train_avd on the tiny TPSMM checkpoint; returns (saved checkpoint, learning rate per epoch)."""
    import logger as logger_module
    config_path, ckpt = first_stage
    config = yaml.safe_load(open(config_path))
    config['train_avd_params'].update(num_epochs=num_epochs, **avd_params)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / 'avd.yaml'
    path.write_text(yaml.safe_dump(config))
    rates, log_epoch = [], logger_module.Logger.log_epoch

    def recording(self, epoch, *args, extra_scalars=None, **kwargs):
        rates.append(extra_scalars['lr/optimizer_avd'])
        return log_epoch(self, epoch, *args, extra_scalars=extra_scalars, **kwargs)
    monkeypatch.setattr(logger_module.Logger, 'log_epoch', recording)
    out = tmp_path / 'avd-log'
    assert run.main(['--config', str(path), '--mode', 'train_avd', '--checkpoint', ckpt, '--log_dir', str(out)]) == 0
    return torch.load(os.path.join(only_run_dir(out), 'last.pth.tar'), weights_only=True), rates


def test_train_avd_schedule_and_first_stage_as_the_reference(tmp_path, first_stage, monkeypatch):
    saved, rates = _run_avd(tmp_path, first_stage, monkeypatch, num_epochs=7, lr=1.0, epoch_milestones=[3, 5])
    assert rates == pytest.approx([1, 1, 1, 1, .1, .1, .01])
    before = torch.load(first_stage[1], weights_only=True)['kp_detector']
    stats = [k for k in before if k.endswith('running_mean')]
    assert stats and all(not torch.equal(before[k], saved['kp_detector'][k]) for k in stats)   # BN kept updating
    for k, v in before.items():
        if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')):
            assert torch.equal(v, saved['kp_detector'][k]), k                                   # no weight moved


def test_train_avd_first_stage_eval_option(tmp_path, first_stage, monkeypatch):
    saved, _ = _run_avd(tmp_path, first_stage, monkeypatch, first_stage_mode='eval')
    before = torch.load(first_stage[1], weights_only=True)['kp_detector']
    assert all(torch.equal(v, saved['kp_detector'][k]) for k, v in before.items())


def test_train_avd_resume_restores_its_optimizer(tmp_path, first_stage, monkeypatch):
    first, _ = _run_avd(tmp_path / 'a', first_stage, monkeypatch, lr=0.01)
    steps = first['optimizer_avd']['state'][0]['step']
    resumed_from = str(tmp_path / 'avd-stage.pth.tar')
    torch.save(first, resumed_from)
    second, rates = _run_avd(tmp_path / 'b', (first_stage[0], resumed_from), monkeypatch, lr=0.5)
    assert second['optimizer_avd']['state'][0]['step'] == 2 * steps     # Adam's moments carried on
    assert rates == [0.01]                                              # and its rate, as the reference


def test_checkpoints_hold_what_the_references_save(tmp_path, data_root, capsys):
    """TPSMM's first stage saves no AVD network, and the background predictor with its optimizer
    only from bg_start on (TINY_TPS: bg_start 1)."""
    log_dir = tmp_path / 'log'
    config = write_config(tmp_path, TINY_TPS, data_root, num_epochs=2)
    assert run.main(['--config', config, '--log_dir', str(log_dir)]) == 0
    run_dir = only_run_dir(log_dir)
    first = torch.load(os.path.join(run_dir, '00000000-checkpoint.pth.tar'), weights_only=True)
    second = torch.load(os.path.join(run_dir, '00000001-checkpoint.pth.tar'), weights_only=True)
    networks = {'kp_detector', 'dense_motion_network', 'inpainting_network'}
    assert networks | {'optimizer'} <= set(first)
    assert not {'avd_network', 'bg_predictor', 'optimizer_bg_predictor'} & set(first)
    assert networks | {'bg_predictor', 'optimizer', 'optimizer_bg_predictor'} <= set(second)
    assert 'avd_network' not in second
    err = capsys.readouterr().err      # the progress bar counts epochs from 1 to num_epochs
    assert 'epoch 2/2' in err and 'epoch 0/' not in err
