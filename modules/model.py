"""Training-time models: VGG-19 features, image pyramid, random equivariance warps, and the
generator-/discriminator-side "full models" that turn a batch into a dict of named losses.

The trainer sums the returned losses (detectron2 style); every equation lives in `losses.py`.
`train_params` is read once, in the constructors, into plain attributes.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import losses as L
from .blocks import AntiAliasInterpolation2d
from .config import ConfigError
from .discriminator import scale_key
from .geometry import make_coordinate_grid, random_tps_kernel_fomm, random_tps_kernel_tpsmm
from .precision import full_precision

log = logging.getLogger(__name__)


class VggWeightsUnavailable(ConfigError):
    """No ImageNet VGG-19 for the perceptual loss; the way out is a config setting or a file."""


VGG_HELP = ("VGG-19 ImageNet weights (for the perceptual loss) could not be obtained from torchvision{why}. "
            "Three ways out: put torchvision's file vgg19-dcbb9e9d.pth in {cache} (where torchvision looks "
            "first; $TORCH_HOME moves it), set `train_params.vgg19_weights: /path/to/vgg19-dcbb9e9d.pth`, or "
            "`vgg19_weights: random` to train with untrained VGG features (a much weaker perceptual loss; results "
            "will not match the papers).")


def vgg_help(why: str) -> str:
    return VGG_HELP.format(why=why, cache=os.path.join(torch.hub.get_dir(), 'checkpoints'))


def host_reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the URL's host opens: checked before a download, so an offline
    machine gets one clear message instead of torch.hub's "Downloading: ..." and a traceback."""
    import socket
    import urllib.parse
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def imagenet_vgg19_features() -> nn.Module:
    """torchvision's ImageNet VGG-19 `features[:30]`, from its cache or downloaded."""
    import torchvision      # here, not at the top: animation never needs it (1.5 s of start-up)
    weights = torchvision.models.VGG19_Weights.IMAGENET1K_V1
    cached = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(weights.url))
    if not os.path.isfile(cached) and not host_reachable(weights.url):
        raise VggWeightsUnavailable(vgg_help(f' (not in its cache, and {weights.url} cannot be reached: offline?)'))
    try:
        return torchvision.models.vgg19(weights=weights).features[:30]
    except Exception as e:  # proxy, corrupt cache, interrupted download...
        raise VggWeightsUnavailable(vgg_help(f' ({type(e).__name__}: {e})')) from None


class Vgg19(nn.Module):
    """VGG-19 relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 features of ImageNet-normalised input.

    `features` is laid out as torchvision's `vgg19().features` (layers 0-29), so its state dict
    loads directly. Weights are frozen; the module is a fixed feature extractor.
    """

    slice_ends = (2, 7, 12, 21, 30)   # after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    untrained_seed = 0                # `vgg19_weights: random` always means this one draw

    def __init__(self, pretrained: bool = True, weights_path: str | None = None):
        super().__init__()
        import torchvision
        self.features = torchvision.models.vgg19(weights=None).features[:30]
        if weights_path is not None:
            self.load_weights(weights_path)
        elif pretrained:
            self.features.load_state_dict(imagenet_vgg19_features().state_dict())
        self.register_buffer('mean', torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, path: str) -> None:
        if not os.path.isfile(path):
            raise VggWeightsUnavailable(vgg_help(f' (no file {path})'))
        state = torch.load(path, map_location='cpu', weights_only=True)
        state = {k.removeprefix('features.'): v for k, v in state.items() if not k.startswith('classifier')}
        state = {k: v for k, v in state.items() if int(k.split('.')[0]) < 30}
        self.features.load_state_dict(state)

    @classmethod
    def untrained(cls) -> 'Vgg19':
        """torchvision's initialisation drawn from a fixed seed, without touching the global RNG.

        The untrained features define the loss, so they must not depend on what drew random
        numbers before (model family, `--seed`, the rank under torchrun): otherwise every rank of
        a distributed run, and every run, would optimise a different objective."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cls.untrained_seed)
            return cls(pretrained=False)

    @classmethod
    def from_setting(cls, setting: str | None) -> 'Vgg19':
        """`train_params.vgg19_weights`: None -> torchvision's pretrained download, 'random' ->
        untrained features (logged), anything else -> a local weights file."""
        if setting == 'random':
            log.warning('perceptual loss uses RANDOM (untrained) VGG-19 features (vgg19_weights: random)')
            return cls.untrained()
        if setting:
            return cls(pretrained=False, weights_path=setting)
        return cls(pretrained=True)

    def train(self, mode: bool = True):
        return super().train(False)   # always a fixed feature extractor

    def forward(self, x: torch.Tensor, depth: int = 5) -> list[torch.Tensor]:
        """The first `depth` feature maps (a loss that weights deeper layers 0 need not pay for them)."""
        out = (x - self.mean) / self.std
        feats, start = [], 0
        for end in self.slice_ends[:depth]:
            for layer in self.features[start:end]:
                out = layer(out)
            feats.append(out)
            start = end
        return feats


class ImagePyramide(nn.Module):
    """Anti-aliased image pyramid: x -> {'prediction_<scale>': x downscaled by scale}."""

    def __init__(self, scales, num_channels: int, nearest_resize: bool = False):
        super().__init__()
        self.downs = nn.ModuleDict({scale_key(s): AntiAliasInterpolation2d(num_channels, s, nearest_resize)
                                    for s in scales})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {'prediction_' + key.replace('-', '.'): down(x) for key, down in self.downs.items()}


class RandomTps:
    """Random affine + thin-plate-spline warp used by the equivariance losses.

    theta (B, 2, 3); control_points (P, 2) on a regular grid; control_params (B, 1, P). As in
    both references, one scalar TPS weight per control point is added to x and y alike. The two
    families differ only in the radial kernel (`random_tps_kernel_fomm` / `_tpsmm`).
    """

    def __init__(self, theta: torch.Tensor, control_points: torch.Tensor, control_params: torch.Tensor,
                 kernel: Callable[[torch.Tensor], torch.Tensor]):
        self.theta = theta
        self.control_points = control_points.reshape(-1, 2)
        self.control_params = control_params
        self.kernel = kernel
        self.bs = theta.shape[0]

    @classmethod
    def sample(cls, batch_size: int, sigma_affine: float, sigma_tps: float, points_tps: int,
               kernel: Callable, device=None) -> 'RandomTps':
        theta = torch.normal(mean=0, std=sigma_affine * torch.ones(batch_size, 2, 3)) + torch.eye(2, 3).view(1, 2, 3)
        control_points = make_coordinate_grid((points_tps, points_tps))
        control_params = torch.normal(mean=0, std=sigma_tps * torch.ones(batch_size, 1, points_tps ** 2))
        return cls(theta.to(device), control_points.to(device), control_params.to(device), kernel)

    @classmethod
    def from_dict(cls, d: dict, kernel: Callable, device=None) -> 'RandomTps':
        return cls(d['theta'].to(device), d['control_points'].to(device), d['control_params'].to(device), kernel)

    @full_precision
    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """(B or 1, N, 2) -> (B, N, 2)."""
        theta = self.theta.to(coords.dtype).unsqueeze(1)                                # (B, 1, 2, 3)
        out = (theta[..., :2] @ coords.unsqueeze(-1) + theta[..., 2:]).squeeze(-1)      # (B, N, 2)
        diff = coords.unsqueeze(2) - self.control_points.to(coords.dtype).view(1, 1, -1, 2)  # (b, N, P, 2)
        radial = (self.kernel(diff) * self.control_params.to(coords.dtype)).sum(dim=2)  # (B, N)
        return out + radial.view(self.bs, coords.shape[1], 1)

    @full_precision
    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """d warp / d coords at each point, (B, N, 2) -> (B, N, 2, 2), differentiable (create_graph)."""
        warped = self.warp_coordinates(coords)
        grad_x = torch.autograd.grad(warped[..., 0].sum(), coords, create_graph=True)[0]
        grad_y = torch.autograd.grad(warped[..., 1].sum(), coords, create_graph=True)[0]
        return torch.stack([grad_x, grad_y], dim=-2)

    @full_precision
    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """Warp a batch of frames (B, C, H, W) with reflection padding."""
        h, w = frame.shape[2:]
        grid = make_coordinate_grid((h, w), frame.dtype, frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(self.bs, h, w, 2)
        return F.grid_sample(frame, grid, padding_mode='reflection', align_corners=True)


def detach_kp(kp: dict) -> dict:
    return {k: v.detach() for k, v in kp.items()}


@dataclass
class TransformParams:
    sigma_affine: float
    sigma_tps: float
    points_tps: int


@dataclass
class LossWeights:
    perceptual: list = field(default_factory=list)
    equivariance_value: float = 0
    equivariance_jacobian: float = 0
    generator_gan: float = 0
    discriminator_gan: float = 0
    feature_matching: list = field(default_factory=list)
    warp_loss: float = 0
    bg: float = 0


def family_of(models: dict) -> str:
    if 'generator' in models:
        return 'fomm'
    if 'inpainting_network' in models:
        return 'tps'
    raise ValueError(f'cannot tell the model family from networks {sorted(models)}')


class GeneratorFullModel(nn.Module):
    """Generator side of one training step: batch {'source', 'driving'} (B, 3, H, W) ->
    (dict of named, weighted losses, generated outputs).

    `GeneratorFullModel(models, train_params)` returns the subclass for the family of `models`.
    `vgg=None` builds VGG-19 from `train_params.vgg19_weights` (see `Vgg19.from_setting`).
    """

    tps_kernel: Callable = staticmethod(random_tps_kernel_fomm)
    nearest_resize = False     # FOMM's pyramid slices; TPSMM's rounds sizes down like nearest interpolate

    def __new__(cls, models=None, *args, **kwargs):
        if cls is GeneratorFullModel:
            cls = FommGeneratorFullModel if family_of(models) == 'fomm' else TpsGeneratorFullModel
        return super().__new__(cls)

    def __init__(self, models: dict, train_params: dict, vgg: nn.Module | None = None):
        super().__init__()
        self.kp_extractor = models['kp_detector']
        self.scales = list(train_params['scales'])
        self.weights = LossWeights(**train_params['loss_weights'])
        self.transform_params = TransformParams(**train_params['transform_params'])
        self.pyramid = ImagePyramide(self.scales, self.num_channels(models), self.nearest_resize)
        self.vgg = None
        if sum(self.weights.perceptual) != 0:
            self.vgg = vgg if vgg is not None else Vgg19.from_setting(train_params.get('vgg19_weights'))
            # VGG layers past the deepest non-zero weight are not computed (the loss is the same)
            self.vgg_depth = max(i + 1 for i, w in enumerate(self.weights.perceptual) if w != 0)

    @staticmethod
    def num_channels(models: dict) -> int:
        return (models.get('generator') or models['inpainting_network']).num_channels

    def random_transform(self, batch_size: int, device, transform: dict | None) -> RandomTps:
        if transform is not None:
            return RandomTps.from_dict(transform, self.tps_kernel, device)
        p = self.transform_params
        return RandomTps.sample(batch_size, p.sigma_affine, p.sigma_tps, p.points_tps, self.tps_kernel, device)

    def perceptual(self, real: torch.Tensor, generated: torch.Tensor) -> tuple[dict, dict, dict]:
        """Pyramids of both images and, when weighted, the perceptual loss."""
        pyr_real, pyr_gen = self.pyramid(real), self.pyramid(generated)
        losses = {}
        if self.vgg is not None:
            features = functools.partial(self.vgg, depth=self.vgg_depth)
            losses['perceptual'] = L.perceptual_pyramid_loss(features, pyr_real, pyr_gen, self.scales,
                                                             self.weights.perceptual)
        return losses, pyr_real, pyr_gen


class FommGeneratorFullModel(GeneratorFullModel):
    tps_kernel = staticmethod(random_tps_kernel_fomm)

    def __init__(self, models: dict, train_params: dict, vgg: nn.Module | None = None):
        super().__init__(models, train_params, vgg)
        self.generator = models['generator']
        self.discriminator = models.get('discriminator')
        self.disc_scales = self.discriminator.scales if self.discriminator is not None else []

    def forward(self, x: dict, epoch: int = 0, transform: dict | None = None):
        kp_source = self.kp_extractor(x['source'])
        kp_driving = self.kp_extractor(x['driving'])
        generated = self.generator(x['source'], kp_source=kp_source, kp_driving=kp_driving)
        generated.update(kp_source=kp_source, kp_driving=kp_driving)
        losses, pyr_real, pyr_gen = self.perceptual(x['driving'], generated['prediction'])
        w = self.weights

        if w.generator_gan != 0:
            kp = detach_kp(kp_driving)
            fake_maps = self.discriminator(pyr_gen, kp=kp)   # order matters: spectral norm iterates per call
            real_maps = self.discriminator(pyr_real, kp=kp)
            losses['gen_gan'] = L.lsgan_generator_loss(fake_maps, self.disc_scales, w.generator_gan)
            if sum(w.feature_matching) != 0:
                losses['feature_matching'] = L.feature_matching_loss(real_maps, fake_maps, self.disc_scales,
                                                                     w.feature_matching)

        if w.equivariance_value + w.equivariance_jacobian != 0:
            warp = self.random_transform(x['driving'].shape[0], x['driving'].device, transform)
            transformed_frame = warp.transform_frame(x['driving'])
            transformed_kp = self.kp_extractor(transformed_frame)
            generated.update(transformed_frame=transformed_frame, transformed_kp=transformed_kp)
            if w.equivariance_value != 0:
                back = warp.warp_coordinates(transformed_kp['value'])
                losses['equivariance_value'] = w.equivariance_value * L.equivariance_value_loss(kp_driving['value'], back)
            if w.equivariance_jacobian != 0:
                jacobian_back = warp.jacobian(transformed_kp['value']) @ transformed_kp['jacobian']
                losses['equivariance_jacobian'] = w.equivariance_jacobian * L.equivariance_jacobian_loss(
                    kp_driving['jacobian'], jacobian_back)
        return losses, generated


@dataclass
class TpsSchedule:
    """TPS dropout (TPSMM sec. 3.2) and background-predictor start, by epoch."""
    dropout_epoch: int
    dropout_maxp: float
    dropout_startp: float
    dropout_inc_epoch: int
    bg_start: int = 0

    def dropout(self, epoch: int) -> tuple[bool, float]:
        if epoch >= self.dropout_epoch:
            return False, 0.0
        return True, min(epoch / self.dropout_inc_epoch * self.dropout_maxp + self.dropout_startp, self.dropout_maxp)


class TpsGeneratorFullModel(GeneratorFullModel):
    tps_kernel = staticmethod(random_tps_kernel_tpsmm)
    nearest_resize = True

    def __init__(self, models: dict, train_params: dict, vgg: nn.Module | None = None):
        super().__init__(models, train_params, vgg)
        self.dense_motion_network = models['dense_motion_network']
        self.inpainting_network = models['inpainting_network']
        self.bg_predictor = models.get('bg_predictor')
        self.schedule = TpsSchedule(**{k: train_params[k] for k in ('dropout_epoch', 'dropout_maxp', 'dropout_startp',
                                                                   'dropout_inc_epoch')},
                                    bg_start=train_params.get('bg_start', 0))

    def forward(self, x: dict, epoch: int = 0, transform: dict | None = None):
        kp_source = self.kp_extractor(x['source'])
        kp_driving = self.kp_extractor(x['driving'])
        use_bg = self.bg_predictor is not None and epoch >= self.schedule.bg_start
        bg_param = self.bg_predictor(x['source'], x['driving']) if use_bg else None
        dropout_flag, dropout_p = self.schedule.dropout(epoch)
        motion = self.dense_motion_network(source_image=x['source'], kp_driving=kp_driving, kp_source=kp_source,
                                           bg_param=bg_param, dropout_flag=dropout_flag, dropout_p=dropout_p)
        generated = self.inpainting_network(x['source'], motion)
        generated.update(kp_source=kp_source, kp_driving=kp_driving)
        losses, _, _ = self.perceptual(x['driving'], generated['prediction'])
        w = self.weights

        if w.equivariance_value != 0:
            warp = self.random_transform(x['driving'].shape[0], x['driving'].device, transform)
            transformed_frame = warp.transform_frame(x['driving'])
            transformed_kp = self.kp_extractor(transformed_frame)
            generated.update(transformed_frame=transformed_frame, transformed_kp=transformed_kp)
            back = warp.warp_coordinates(transformed_kp['fg_kp'])
            losses['equivariance_value'] = w.equivariance_value * L.equivariance_value_loss(kp_driving['fg_kp'], back)

        if w.warp_loss != 0:
            driving_maps = self.inpainting_network.encode_driving(x['driving'], generated['occlusion_map'])
            losses['warp_loss'] = w.warp_loss * L.warp_consistency_loss(driving_maps, generated['warped_encoder_maps'])

        if use_bg and w.bg != 0:
            bg_reverse = self.bg_predictor(x['driving'], x['source'])
            losses['bg'] = w.bg * L.background_cycle_loss(bg_param, bg_reverse)
        return losses, generated


class DiscriminatorFullModel(nn.Module):
    """FOMM discriminator side: (batch, generated) -> {'disc_gan': LSGAN loss} on the detached
    prediction, over the discriminator's own scales."""

    def __init__(self, models: dict, train_params: dict):
        super().__init__()
        self.discriminator = models['discriminator']
        self.scales = self.discriminator.scales
        self.pyramid = ImagePyramide(self.scales, models['generator'].num_channels)
        self.weight = train_params['loss_weights']['discriminator_gan']

    def forward(self, x: dict, generated: dict) -> dict:
        kp = detach_kp(generated['kp_driving'])
        fake_maps = self.discriminator(self.pyramid(generated['prediction'].detach()), kp=kp)
        real_maps = self.discriminator(self.pyramid(x['driving']), kp=kp)
        return {'disc_gan': L.lsgan_discriminator_loss(real_maps, fake_maps, self.scales, self.weight)}
