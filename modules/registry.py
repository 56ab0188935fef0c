"""The registry: model family names to the builders of their networks, read from a config dict.

    models = build_models(config)      # {'kp_detector': ..., 'generator': ..., ...}

Keys are the official checkpoint keys, so `models[k].load_state_dict(checkpoint[k])` works for
checkpoints of the original repositories.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .config import ConfigError, check_known, config_path, kwargs_for, section
from .dense_motion import FommDenseMotionNetwork, TpsDenseMotionNetwork
from .discriminator import MultiScaleDiscriminator
from .generator import FommGenerator, TpsInpaintingNetwork
from .keypoint_detector import FommKeypointDetector, TpsKeypointDetector
from .tps_extras import AVDNetwork, BackgroundMotionPredictor


def build_fomm(config: dict, without: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    common = section(config, 'model_params.common_params')
    check_known(config, 'model_params.common_params', common, {'num_kp', 'num_channels', 'estimate_jacobian'})
    common = {'num_channels': 3, **common}
    gen_params = dict(section(config, 'model_params.generator_params'))
    dense = gen_params.get('dense_motion_params')
    if dense is not None:
        # Validate the nested section now; the generator builds the network itself.
        kwargs_for(FommDenseMotionNetwork, config, 'model_params.generator_params.dense_motion_params', dense,
                   provided={'num_kp': 0, 'num_channels': 0, 'estimate_occlusion_map': False},
                   provided_from={'num_kp': 'model_params.common_params',
                                  'num_channels': 'model_params.common_params',
                                  'estimate_occlusion_map': 'model_params.generator_params'})
    models = {
        'kp_detector': FommKeypointDetector(**kwargs_for(FommKeypointDetector, config, 'model_params.kp_detector_params',
                                                         section(config, 'model_params.kp_detector_params'), common)),
        'generator': FommGenerator(**kwargs_for(FommGenerator, config, 'model_params.generator_params', gen_params, common)),
    }
    disc = section(config, 'model_params.discriminator_params', required=False)
    if disc is not None and 'discriminator' not in without:
        models['discriminator'] = MultiScaleDiscriminator(
            **kwargs_for(MultiScaleDiscriminator, config, 'model_params.discriminator_params', disc, common))
    return models


def build_tps(config: dict, without: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    common = section(config, 'model_params.common_params')
    check_known(config, 'model_params.common_params', common, {'num_tps', 'num_channels', 'bg', 'multi_mask'})
    common = {'num_channels': 3, 'bg': False, 'multi_mask': True, **common}
    avd = section(config, 'model_params.avd_network_params', required=False)
    kp_kwargs = kwargs_for(TpsKeypointDetector, config, 'model_params.kp_detector_params',
                           section(config, 'model_params.kp_detector_params', required=False), common,
                           exclude=('points_per_tps',))   # the dense motion network's TPS needs 5
    try:
        kp_detector = TpsKeypointDetector(**kp_kwargs)
    except ValueError as e:
        raise ConfigError(f'{config_path(config)}: model_params.kp_detector_params.backbone: {e}') from None
    models = {
        'kp_detector': kp_detector,
        'dense_motion_network': TpsDenseMotionNetwork(**kwargs_for(
            TpsDenseMotionNetwork, config, 'model_params.dense_motion_params',
            section(config, 'model_params.dense_motion_params'), common)),
        'inpainting_network': TpsInpaintingNetwork(**kwargs_for(
            TpsInpaintingNetwork, config, 'model_params.generator_params',
            section(config, 'model_params.generator_params'), common)),
        'avd_network': AVDNetwork(**kwargs_for(AVDNetwork, config, 'model_params.avd_network_params', avd,
                                               {'num_tps': common['num_tps']})),
    }
    if common['bg']:
        models['bg_predictor'] = BackgroundMotionPredictor(num_channels=common['num_channels'])
    return models


@dataclass(frozen=True)
class Family:
    name: str
    marker: str                                      # key in model_params.common_params
    build: Callable[[dict, tuple[str, ...]], dict[str, nn.Module]]
    title: str


FAMILIES: dict[str, Family] = {
    'fomm': Family('fomm', 'num_kp', build_fomm, 'First Order Motion Model'),
    'tps': Family('tps', 'num_tps', build_tps, 'Thin-Plate Spline Motion Model'),
}


def family_of_config(config: dict) -> Family:
    common = section(config, 'model_params.common_params')
    if not isinstance(common, dict):
        raise ConfigError(f'{config_path(config)}: model_params.common_params must be a mapping')
    found = [f for f in FAMILIES.values() if f.marker in common]
    if len(found) != 1:
        markers = ' or '.join(f"'{f.marker}' ({f.title})" for f in FAMILIES.values())
        what = 'both' if found else 'neither'
        raise ConfigError(f'{config_path(config)}: unknown model family: model_params.common_params has {what} of '
                          f'{markers}')
    return found[0]


def build_models(config: dict, without: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    """Every network of the config's family under its official checkpoint key (CPU, train mode),
    except those named in `without` (animation needs no discriminator)."""
    models = family_of_config(config).build(config, tuple(without))
    return {k: m for k, m in models.items() if k not in without}
