import glob
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from logger import Logger, Visualizer, get_colormap  # noqa: E402

B, K, H, W = 2, 3, 32, 32


def _fomm_out(transformed=True, occlusion=True, jacobian=True):
    g = torch.Generator().manual_seed(0)

    def kp():
        d = {'value': torch.rand(B, K, 2, generator=g) * 2 - 1}
        if jacobian:
            d['jacobian'] = torch.eye(2).expand(B, K, 2, 2).clone()
        return d

    out = {
        'kp_source': kp(), 'kp_driving': kp(),
        'prediction': torch.rand(B, 3, H, W, generator=g),
        'deformed': torch.rand(B, 3, H, W, generator=g),
        'sparse_deformed': torch.rand(B, K + 1, 3, H // 4, W // 4, generator=g),
        'mask': torch.softmax(torch.rand(B, K + 1, H // 4, W // 4, generator=g), dim=1),
    }
    if occlusion:
        out['occlusion_map'] = torch.rand(B, 1, H // 4, W // 4, generator=g)
    if transformed:
        out['transformed_frame'] = torch.rand(B, 3, H, W, generator=g)
        out['transformed_kp'] = kp()
    return out


def _tpsmm_out(transformed=False, num_tps=K):
    g = torch.Generator().manual_seed(1)
    out = {
        'kp_source': {'fg_kp': torch.rand(B, 5 * num_tps, 2, generator=g) * 2 - 1},
        'kp_driving': {'fg_kp': torch.rand(B, 5 * num_tps, 2, generator=g) * 2 - 1},
        'prediction': torch.rand(B, 3, H, W, generator=g),
        'deformed': torch.rand(B, 3, H, W, generator=g),
        'occlusion_map': [torch.rand(B, 1, s, s, generator=g) for s in (4, 8, 16)],
        'contribution_maps': torch.softmax(torch.rand(B, num_tps + 1, 8, 8, generator=g), dim=1),
        'deformed_source': torch.rand(B, num_tps + 1, 3, 8, 8, generator=g),
    }
    if transformed:
        out['transformed_frame'] = torch.rand(B, 3, H, W, generator=g)
        out['transformed_kp'] = {'fg_kp': torch.rand(B, 5 * num_tps, 2, generator=g) * 2 - 1}
    return out


def _inp():
    g = torch.Generator().manual_seed(2)
    return {'source': torch.rand(B, 3, H, W, generator=g), 'driving': torch.rand(B, 3, H, W, generator=g)}


# ----------------------------------------------------------------------------- visualizer

@pytest.mark.parametrize('transformed', [False, True])
def test_visualize_fomm_shape(transformed):
    inp = _inp()
    img = Visualizer(kp_size=2).visualize(inp['driving'], inp['source'], _fomm_out(transformed))
    # source, [transformed], driving, deformed, prediction, occlusion, 2*(K+1) region cols, combined
    cols = 5 + int(transformed) + 2 * (K + 1) + 1
    assert img.dtype == np.uint8
    assert img.shape == (B * H, cols * W, 3)


@pytest.mark.parametrize('transformed', [False, True])
def test_visualize_tpsmm_shape(transformed):
    inp = _inp()
    img = Visualizer(kp_size=1, draw_border=True).visualize(
        inp['driving'], inp['source'], _tpsmm_out(transformed))
    cols = 5 + int(transformed) + 2 * (K + 1) + 1
    assert img.dtype == np.uint8
    assert img.shape == (B * H, cols * W, 3)
    # border is white
    assert (img[0, :W] == 255).all() and (img[:, 0] == 255).all()


def test_visualize_minimal_and_max_samples():
    inp = _inp()
    out = _fomm_out(transformed=False, occlusion=False)
    del out['sparse_deformed'], out['mask']
    img = Visualizer().visualize(inp['driving'], inp['source'], out, max_samples=1)
    assert img.shape == (H, 4 * W, 3)
    # single-element occlusion list (TPSMM with one resolution)
    out = _tpsmm_out()
    out['occlusion_map'] = out['occlusion_map'][:1]
    img = Visualizer().visualize(inp['driving'], inp['source'], out)
    assert img.shape[1] == (5 + 2 * (K + 1) + 1) * W


def test_visualize_occlusion_column_uses_finest_map():
    inp = _inp()
    out = _tpsmm_out()
    out['occlusion_map'] = [torch.zeros(B, 1, 4, 4), torch.ones(B, 1, 16, 16), torch.zeros(B, 1, 8, 8)]
    img = Visualizer().visualize(inp['driving'], inp['source'], out)
    occ = img[:, 4 * W:5 * W]  # source, driving, deformed, prediction, occlusion
    assert (occ == 255).all()


def test_draw_keypoints_colour_at_pixel():
    vis = Visualizer(kp_size=1, colormap='gist_rainbow')
    image = np.zeros((H, W, 3))
    kp = np.array([[-1.0, -1.0], [1.0, 0.0]])  # (x, y)
    drawn = vis.draw_keypoints(image, kp)
    assert image.sum() == 0  # input untouched
    cmap = get_colormap('gist_rainbow')
    np.testing.assert_allclose(drawn[0, 0], cmap(0 / 2))
    # x = 1 -> last column, y = 0 -> row (H - 1) / 2 = 15.5 -> disk covers rows 15 and 16
    np.testing.assert_allclose(drawn[16, W - 1], cmap(1 / 2))
    np.testing.assert_allclose(drawn[15, W - 1], cmap(1 / 2))
    assert drawn[16, 0].sum() == 0 and drawn[0, W - 1].sum() == 0
    # gist_rainbow: red-ish at 0, green at 0.4, blue at 0.77
    np.testing.assert_allclose(cmap(0.4), [0, 1, 0])
    np.testing.assert_allclose(cmap(0.77), [0, 0, 1])


def test_colormaps():
    for name in ('gist_rainbow', 'hsv', 'rainbow', 'jet'):
        cmap = get_colormap(name)
        for x in (0.0, 0.3, 1.0):
            c = cmap(x)
            assert c.shape == (3,) and (c >= 0).all() and (c <= 1).all()
    with pytest.raises(ValueError):
        get_colormap('no_such_colormap_xyz')


# ----------------------------------------------------------------------------- logger

def test_log_file_format_and_visualisation(tmp_path):
    inp, out = _inp(), _fomm_out()
    with Logger(str(tmp_path), visualizer_params={'kp_size': 1}) as log:
        log.log_iter({'perceptual': 1.0, 'equivariance_value': torch.tensor([0.5, 1.5])}, step=0)
        log.log_iter({'perceptual': 2.0, 'equivariance_value': torch.tensor(0.25)}, step=1)
        means = log.log_epoch(0, None, inp, out, extra_scalars={'lr/generator': 2e-4})
        assert means == pytest.approx({'perceptual': 1.5, 'equivariance_value': 0.625})
        log.log_iter({'perceptual': 0.123456, 'equivariance_value': 3}, step=2)
        log.log_epoch(1, None, inp, out)
    with open(tmp_path / 'log.txt') as f:
        text = f.read()
    assert text == ('00000000) perceptual - 1.50000; equivariance_value - 0.62500\n'
                    '00000001) perceptual - 0.12346; equivariance_value - 3.00000\n')
    for e in (0, 1):
        png = tmp_path / 'train-vis' / f'0000000{e}-rec.png'
        assert png.exists()
        import imageio.v2 as imageio
        assert imageio.imread(png).shape == (B * H, (6 + 2 * (K + 1) + 1) * W, 3)
    assert glob.glob(str(tmp_path / 'tensorboard' / 'events.out.tfevents.*'))
    assert not glob.glob(str(tmp_path / '**' / '*.part*'), recursive=True)


def _tiny():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.1)
    return net, opt, sched


def _train_step(net, opt):
    loss = net(torch.randn(5, 3)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_checkpoint_frequency(tmp_path):
    net, opt, sched = _tiny()
    with Logger(str(tmp_path), checkpoint_freq=2, tensorboard=False) as log:
        for epoch in range(4):
            log.log_iter({'l': 1.0}, step=epoch)
            log.log_epoch(epoch, {'generator': net, 'optimizer_generator': opt})
        final = log.save_final({'generator': net}, 3)
    names = sorted(os.listdir(tmp_path))
    assert names == ['00000001-checkpoint.pth.tar', '00000003-checkpoint.pth.tar',
                     'last.pth.tar', 'log.txt', 'train-vis']
    assert torch.load(tmp_path / 'last.pth.tar', weights_only=True)['epoch'] == 3
    assert torch.load(tmp_path / '00000001-checkpoint.pth.tar', weights_only=True)['epoch'] == 1
    # save_final did not overwrite the existing epoch-3 checkpoint (it still has the optimizer)
    assert final == str(tmp_path / '00000003-checkpoint.pth.tar')
    assert 'optimizer_generator' in torch.load(final, weights_only=True)
    # save_final writes when missing
    log2 = Logger(str(tmp_path / 'b'), checkpoint_freq=10, tensorboard=False)
    p = log2.save_final({'generator': net}, 4)
    assert os.path.basename(p) == '00000004-checkpoint.pth.tar' and os.path.exists(p)


def test_save_is_atomic(tmp_path, monkeypatch):
    net, _, _ = _tiny()
    log = Logger(str(tmp_path), tensorboard=False)
    good = log.save_checkpoint({'generator': net}, 0, path=str(tmp_path / 'last.pth.tar'))
    before = open(good, 'rb').read()

    def broken_save(obj, f, *args, **kwargs):
        with open(f, 'wb') as fh:
            fh.write(b'partial garbage')
        raise RuntimeError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(RuntimeError):
        log.save_checkpoint({'generator': net}, 5)
    with pytest.raises(RuntimeError):
        log.save_checkpoint({'generator': net}, 6, path=good)
    assert not (tmp_path / '00000005-checkpoint.pth.tar').exists()
    assert open(good, 'rb').read() == before  # previous file intact
    leftovers = [n for n in os.listdir(tmp_path) if n not in ('last.pth.tar', 'train-vis')]
    assert leftovers == []


def test_round_trip(tmp_path):
    net, opt, sched = _tiny()
    for _ in range(3):
        _train_step(net, opt)
        sched.step()
    log = Logger(str(tmp_path), tensorboard=False)
    path = log.save_checkpoint({'generator': net, 'optimizer_generator': opt,
                                'scheduler_generator': sched, 'note': 'hello'}, 7)

    net2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-2)
    sched2 = torch.optim.lr_scheduler.MultiStepLR(opt2, milestones=[1, 3], gamma=0.1)
    with pytest.warns(UserWarning, match='kp_detector'):
        epoch = Logger.load_checkpoint(path, {'generator': net2, 'optimizer_generator': opt2,
                                              'scheduler_generator': sched2,
                                              'kp_detector': torch.nn.Linear(1, 1),
                                              'discriminator': None})
    assert epoch == 7
    for (k1, v1), (k2, v2) in zip(net.state_dict().items(), net2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert sched2.last_epoch == sched.last_epoch
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert opt2.param_groups[0]['lr'] == opt.param_groups[0]['lr']
    s1, s2 = opt.state_dict()['state'], opt2.state_dict()['state']
    assert s1.keys() == s2.keys()
    for i in s1:
        assert torch.equal(s1[i]['exp_avg'], s2[i]['exp_avg'])
    assert torch.load(path, weights_only=True)['note'] == 'hello'


def test_module_prefix_unwrapping(tmp_path):
    net, _, _ = _tiny()
    wrapped = torch.nn.DataParallel(net)
    log = Logger(str(tmp_path), tensorboard=False)
    path = log.save_checkpoint({'generator': wrapped}, 0)
    saved = torch.load(path, weights_only=True)['generator']
    assert saved and not any(k.startswith('module.') for k in saved)
    assert set(saved) == set(net.state_dict())

    # loading into a wrapped module works too
    net2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    Logger.load_checkpoint(path, {'generator': torch.nn.DataParallel(net2)})
    assert torch.equal(net2[0].weight, net[0].weight)

    # a legacy checkpoint whose keys carry 'module.' loads into a plain module
    legacy = str(tmp_path / 'legacy.pth.tar')
    torch.save({'generator': wrapped.state_dict(), 'epoch': 3}, legacy)
    assert all(k.startswith('module.') for k in torch.load(legacy, weights_only=True)['generator'])
    net3 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    assert Logger.load_checkpoint(legacy, {'generator': net3}) == 3
    assert torch.equal(net3[0].weight, net[0].weight)


def test_disabled_writes_nothing(tmp_path):
    target = tmp_path / 'logs'
    net, _, _ = _tiny()
    with Logger(str(target), enabled=False) as log:
        log.log_iter({'a': 1.0}, step=0)
        log.log_epoch(0, {'generator': net}, _inp(), _fomm_out())
        p = log.save_checkpoint({'generator': net}, 0)
        log.save_final({'generator': net}, 0)
    assert not target.exists()
    assert not os.path.exists(p)
    assert os.listdir(tmp_path) == []


def test_exit_on_exception_closes_and_keeps_last(tmp_path):
    net, _, _ = _tiny()
    with pytest.raises(KeyboardInterrupt):
        with Logger(str(tmp_path)) as log:
            log.log_iter({'a': 1.0}, step=0)
            log.log_epoch(0, {'generator': net})
            raise KeyboardInterrupt
    assert log._writer is None
    assert torch.load(tmp_path / 'last.pth.tar', weights_only=True)['epoch'] == 0


def test_visualisation_failure_does_not_stop_training(tmp_path):
    log = Logger(str(tmp_path), tensorboard=False)
    log.log_iter({'a': 1.0}, step=0)
    with pytest.warns(UserWarning, match='visualisation failed'):
        log.log_epoch(0, {'epoch_note': 1}, _inp(), {'kp_source': {'value': 'not a tensor'}})
    assert (tmp_path / 'last.pth.tar').exists()
    assert (tmp_path / 'log.txt').read_text() == '00000000) a - 1.00000\n'


def test_numbered_checkpoint_shares_last_and_keep_last_prunes(tmp_path):
    """The numbered checkpoint of the epoch last.pth.tar holds is the same file on disk (a hard
    link); keep_last N keeps the newest N numbered ones; 0 writes none."""
    net, opt, _ = _tiny()
    with Logger(str(tmp_path / 'all'), checkpoint_freq=1, tensorboard=False) as log:
        for epoch in range(3):
            log.log_epoch(epoch, {'generator': net, 'optimizer_generator': opt})
        log.save_final({'generator': net}, 2)
    last = os.stat(tmp_path / 'all' / 'last.pth.tar')
    assert os.path.samefile(tmp_path / 'all' / 'last.pth.tar', tmp_path / 'all' / '00000002-checkpoint.pth.tar')
    assert last.st_nlink == 2
    assert len(glob.glob(str(tmp_path / 'all' / '*-checkpoint.pth.tar'))) == 3       # the references' default
    with Logger(str(tmp_path / 'all'), checkpoint_freq=1, tensorboard=False) as log:  # a resume writes last anew
        log.log_epoch(3, {'generator': net})
    assert torch.load(tmp_path / 'all' / '00000002-checkpoint.pth.tar', weights_only=True)['epoch'] == 2

    with Logger(str(tmp_path / 'two'), checkpoint_freq=1, tensorboard=False, keep_last=2) as log:
        for epoch in range(4):
            log.log_epoch(epoch, {'generator': net})
        log.save_final({'generator': net}, 3)
    assert sorted(n for n in os.listdir(tmp_path / 'two') if n.endswith('.tar')) == [
        '00000002-checkpoint.pth.tar', '00000003-checkpoint.pth.tar', 'last.pth.tar']

    with Logger(str(tmp_path / 'none'), checkpoint_freq=1, tensorboard=False, keep_last=0) as log:
        for epoch in range(2):
            log.log_epoch(epoch, {'generator': net})
        log.save_final({'generator': net}, 1)
    assert sorted(n for n in os.listdir(tmp_path / 'none') if n.endswith('.tar')) == ['last.pth.tar']
