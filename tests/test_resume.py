"""Resume and fine-tuning: learning rates as an uninterrupted run has them, the -adv discriminator."""
from __future__ import annotations

import copy
import os

import pytest
import torch
import yaml

from conftest import CONFIG_DIR, TINY_FOMM

import run


def small_tps_config(data_root: str, **train_params) -> dict:
    """config/synthetic/tps-64-small.yaml on the tiny data set: 2 iterations an epoch."""
    with open(CONFIG_DIR / 'synthetic' / 'tps-64-small.yaml') as f:
        config = yaml.safe_load(f)
    config['dataset_params']['root_dir'] = data_root
    config['train_params'].update({'num_repeats': 1, 'batch_size': 2, 'dataloader_workers': 0, **train_params})
    return config


class Interrupted(Exception):
    pass


def train_recording(config: dict, log_dir: str, monkeypatch, checkpoint=None, stop_at_step=None):
    """Run train.train on `config`; return {epoch: {optimizer: the learning rate that epoch ran with}}.
    `stop_at_step`: raise Interrupted before that training step (counted from 1 in this call), with a
    rolling mid-epoch checkpoint written after every step before it."""
    import modules
    import train
    from frames_dataset import build_dataset
    rates, calls = {}, [0]

    def recording(phase, batch, epoch, *args, **kwargs):
        # The schedule does not depend on the losses: the networks are not run (seconds, not minutes).
        calls[0] += 1
        if stop_at_step is not None and calls[0] >= stop_at_step:
            raise Interrupted
        rates[epoch] = {k: o.param_groups[0]['lr'] for k, o in phase.optimizers.items()}
        return {}, None
    monkeypatch.setattr(train, 'step_phase', recording)
    torch.manual_seed(0)
    models = modules.build_models(config)
    dataset = build_dataset(config['dataset_params'], is_train=True)
    minutes = 0.0 if stop_at_step is not None else 15.0
    try:
        train.train(config, models, dataset, log_dir, torch.device('cpu'), checkpoint, last_checkpoint_minutes=minutes)
    except Interrupted:
        pass
    return rates


def test_resume_keeps_every_learning_rate_of_an_uninterrupted_run(tmp_path, data_root, monkeypatch):
    """tps-64-small with its learning rate cut at epoch 2: 4 epochs straight, 2 + resume + 2, and a
    stop inside epoch 2 resumed from the rolling mid-epoch checkpoint run every epoch at one rate."""
    straight = train_recording(small_tps_config(data_root, num_epochs=4, epoch_milestones=[2]),
                               str(tmp_path / 'straight'), monkeypatch)
    assert straight[3]['optimizer'] == pytest.approx(2e-5) and set(straight) == {0, 1, 2, 3}
    assert straight[3]['optimizer_bg_predictor'] == pytest.approx(2e-5)

    two = str(tmp_path / 'two')
    first = train_recording(small_tps_config(data_root, num_epochs=2, epoch_milestones=[2]), two, monkeypatch)
    second = train_recording(small_tps_config(data_root, num_epochs=4, epoch_milestones=[2]), two, monkeypatch,
                             checkpoint=os.path.join(two, 'last.pth.tar'))
    assert {**first, **second} == straight

    rolling = str(tmp_path / 'rolling')
    config = small_tps_config(data_root, num_epochs=4, epoch_milestones=[2])
    train_recording(config, rolling, monkeypatch, stop_at_step=6)      # stops after one step of epoch 2
    assert torch.load(os.path.join(rolling, 'last.pth.tar'), weights_only=True)['epoch'] == 1
    resumed = train_recording(config, rolling, monkeypatch, checkpoint=os.path.join(rolling, 'last.pth.tar'))
    assert resumed == {2: straight[2], 3: straight[3]}


def test_adv_fine_tune_keeps_the_loaded_discriminator_rate(tmp_path, data_root, caplog):
    """The reference's load_cpk: a discriminator that does not fit (use_kp adds input channels) keeps
    every tensor that fits, and optimizer_discriminator loads whole, so its decayed learning rate
    (2e-6 for taichi-adv-256 from taichi-256) carries over instead of the config's."""
    from test_training import only_run_dir, write_config
    base = copy.deepcopy(TINY_FOMM)
    base['model_params']['discriminator_params']['use_kp'] = False
    base['train_params']['loss_weights'].update(generator_gan=0, feature_matching=[0, 0, 0])
    log_dir = tmp_path / 'log'
    config = write_config(tmp_path, base, data_root, num_epochs=2, epoch_milestones=[1])
    assert run.main(['--config', config, '--log_dir', str(log_dir)]) == 0
    start = os.path.join(only_run_dir(log_dir), 'last.pth.tar')
    before = torch.load(start, weights_only=True)
    assert before['optimizer_discriminator']['param_groups'][0]['lr'] == pytest.approx(2e-5)   # decayed once
    adv = write_config(tmp_path, TINY_FOMM, data_root, num_epochs=3, epoch_milestones=[])   # use_kp, GAN on
    with caplog.at_level('INFO', logger='train'):
        assert run.main(['--config', adv, '--checkpoint', start]) == 0
    assert 'discriminator does not fit' in caplog.text
    after = torch.load(start, weights_only=True)
    assert after['epoch'] == 2
    assert after['optimizer_discriminator']['param_groups'][0]['lr'] == pytest.approx(2e-5)
    assert after['optimizer_discriminator']['state']                       # it trained, at the loaded rate
    first = 'discs.1.down_blocks.0.conv.weight_orig'
    assert after['discriminator'][first].shape[1] == 3 + 4
    assert 'discs.1.down_blocks.0.conv.weight_orig' in caplog.text         # named as left at initialisation


    # Straight after loading the base checkpoint: the fitting tensors are its own, the refitted
    # first layer keeps the new network's initialisation.
    import loading
    import modules
    import train
    base_copy = str(tmp_path / 'base.pth.tar')
    torch.save(before, base_copy)
    cfg = loading.load_config(adv)
    models = modules.build_models(cfg)
    init = {k: v.clone() for k, v in models['discriminator'].state_dict().items()}
    optimizers = train.build_optimizers(models, cfg['train_params'])
    resume = train.load_training_state(base_copy, models, optimizers, cfg)
    loaded = models['discriminator'].state_dict()
    assert torch.equal(loaded[first], init[first])
    fitting = [k for k in loaded if k in before['discriminator'] and loaded[k].shape == before['discriminator'][k].shape]
    assert len(fitting) > len(loaded) // 2
    assert all(torch.equal(loaded[k], before['discriminator'][k]) for k in fitting)
    assert 'optimizer_discriminator' in resume.restored
    assert optimizers['optimizer_discriminator'].param_groups[0]['lr'] == pytest.approx(2e-5)


def test_train_messages_progress_lines_and_keep_last(tmp_path, data_root, caplog, capsys):
    """stderr not a terminal: progress as whole lines (no carriage-return bar); the end names
    last.pth.tar; --keep_last 1 leaves one numbered checkpoint; a TPSMM resume does not say the AVD
    network (a later stage) is missing."""
    from conftest import TINY_TPS
    from test_training import only_run_dir, write_config
    log_dir = tmp_path / 'log'
    config = write_config(tmp_path, TINY_TPS, data_root, num_epochs=2, checkpoint_freq=1)
    with caplog.at_level('INFO'):
        assert run.main(['--config', config, '--log_dir', str(log_dir), '--keep_last', '1']) == 0
    run_dir = only_run_dir(log_dir)
    last = os.path.join(run_dir, 'last.pth.tar')
    assert f'checkpoint: {last}' in caplog.text
    err = capsys.readouterr().err
    assert '\r' not in err
    ends = [line for line in err.splitlines() if 'iterations in' in line]
    assert len(ends) == 2 and 'epoch 1/2: 2/2 iterations in' in ends[0] and 'epoch 2/2: 2/2 iterations in' in ends[1]
    assert sorted(n for n in os.listdir(run_dir) if n.endswith('.tar')) == ['00000001-checkpoint.pth.tar',
                                                                             'last.pth.tar']
    caplog.clear()
    config3 = write_config(tmp_path, TINY_TPS, data_root, num_epochs=3, checkpoint_freq=1)
    with caplog.at_level('INFO'):
        assert run.main(['--config', config3, '--checkpoint', last]) == 0
    assert 'avd_network' not in caplog.text
    assert torch.load(last, weights_only=True)['epoch'] == 2


def test_keep_last_must_be_a_whole_number(tmp_path, data_root, capsys):
    from conftest import TINY_TPS
    from test_training import write_config
    config = write_config(tmp_path, TINY_TPS, data_root, num_epochs=1, keep_last=-2)
    assert run.main(['--config', config, '--log_dir', str(tmp_path / 'log')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'keep_last' in err[0] and config in err[0]
    assert not os.path.exists(tmp_path / 'log')
    with pytest.raises(SystemExit) as stop:
        run.parse_args(['--config', config, '--keep_last', 'two'])
    assert stop.value.code == 2


def test_progress_lines_come_at_a_steady_interval():
    import io

    import train
    ticks = iter(range(0, 10_000, 25))          # 25 s an iteration
    out = io.StringIO()
    bar = train.TimedProgress(range(10), 'epoch 3/9', interval=60, stream=out, clock=lambda: next(ticks))
    for i in bar:
        bar.set_postfix({'perceptual': f'{i:.3f}'})
    lines = [line.split(' ', 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ['epoch 3/9: 3/10 iterations, 25.00 s each, about 2.9 min left in this epoch; perceptual 2.000',
                     'epoch 3/9: 6/10 iterations, 25.00 s each, about 1.7 min left in this epoch; perceptual 5.000',
                     'epoch 3/9: 9/10 iterations, 25.00 s each, about 0.4 min left in this epoch; perceptual 8.000',
                     'epoch 3/9: 10/10 iterations in 4.6 min; perceptual 9.000']
