"""ONNX graphs of both families for inference, with flat tensor inputs and a dynamic batch.

Animation splits into work done once per source and work done per driving frame (see
animate.py); the exported graphs follow that split so ONNX Runtime alone can animate:

  graph           inputs (all float32, batch B dynamic)                         outputs
  kp_detector     image (B, 3, H, W)                                            FOMM: kp_value (B, K, 2)
                                                                                [, kp_jacobian (B, K, 2, 2)];
                                                                                TPSMM: fg_kp (B, 5T, 2)
  encoder         source (B, 3, H, W)                                           features (FOMM) or
                                                                                features_0..features_n (TPSMM)
  generator       source, features..., kp_source_*, kp_driving_*                prediction (B, 3, H, W)
                  [TPSMM also bg_param (B, 3, 3); identity = no background motion]
  avd (TPSMM)     kp_source (B, 5T, 2), kp_driving (B, 5T, 2)                    fg_kp (B, 5T, 2)

`generator` is the dense motion network plus the generator (FOMM) or inpainting network
(TPSMM): the keypoint heatmaps, the candidate motions, grid_sample and the decoder all run in
the graph. The small matrix inverses (FOMM's 2x2 jacobians, TPSMM's 8x8 TPS systems, a few
hundred numbers per frame) are ONNX Runtime's `com.microsoft.Inverse` operator, since the ONNX
standard has no inverse. Relative motion (`modules.motion_transfer.normalize_kp`, a convex hull per
video) stays outside, in NumPy/torch, as it needs SciPy once per video.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from modules.geometry import fit_keypoint_tps

OPSET = 18


def _fomm_kp(value: torch.Tensor, jacobian: torch.Tensor | None) -> dict:
    return {'value': value} if jacobian is None else {'value': value, 'jacobian': jacobian}


class KeypointGraph(nn.Module):
    """Keypoint detector with tuple outputs (ONNX graphs have no dicts)."""

    def __init__(self, kp_detector: nn.Module):
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: torch.Tensor):
        kp = self.kp_detector(image)
        return tuple(kp[k] for k in keypoint_keys(self.kp_detector))


class EncoderGraph(nn.Module):
    """The generator's source encoder (computed once per source image)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, source: torch.Tensor):
        out = self.generator.encode(source)
        return tuple(out) if isinstance(out, list) else (out,)


class FommGeneratorGraph(nn.Module):
    """(source, features, kp_source value[, jacobian], kp_driving value[, jacobian]) -> prediction."""

    def __init__(self, generator: nn.Module, jacobian: bool):
        super().__init__()
        self.generator = generator
        self.jacobian = jacobian

    def forward(self, *inputs):
        source, features, *kp = inputs
        if self.jacobian:
            kp_source, kp_driving = _fomm_kp(kp[0], kp[1]), _fomm_kp(kp[2], kp[3])
        else:
            kp_source, kp_driving = _fomm_kp(kp[0], None), _fomm_kp(kp[1], None)
        out = self.generator(source, kp_driving=kp_driving, kp_source=kp_source, source_features=features)
        return out['prediction']


class TpsGeneratorGraph(nn.Module):
    """(source, features_0..n, kp_source, kp_driving, bg_param, tps_affine, tps_weights) -> prediction."""

    def __init__(self, dense_motion: nn.Module, inpainting: nn.Module):
        super().__init__()
        self.dense_motion = dense_motion
        self.inpainting = inpainting

    def forward(self, *inputs):
        source, *features, kp_source, kp_driving, bg_param, tps_affine, tps_weights = inputs
        motion = self.dense_motion(source_image=source, kp_driving={'fg_kp': kp_driving},
                                   kp_source={'fg_kp': kp_source}, bg_param=bg_param, dropout_flag=False,
                                   tps=(tps_affine, tps_weights))
        return self.inpainting(source, motion, encoder_maps=list(features))['prediction']


class AvdGraph(nn.Module):
    def __init__(self, avd: nn.Module):
        super().__init__()
        self.avd = avd

    def forward(self, kp_source, kp_driving):
        return self.avd({'fg_kp': kp_source}, {'fg_kp': kp_driving})['fg_kp']


def keypoint_keys(kp_detector: nn.Module) -> tuple[str, ...]:
    """The keypoint dict's keys, in the graph's output order."""
    if hasattr(kp_detector, 'num_tps'):
        return ('fg_kp',)
    return ('value', 'jacobian') if getattr(kp_detector, 'jacobian', None) is not None else ('value',)


def kp_names(prefix: str, keys: Sequence[str]) -> list[str]:
    """Graph input names of a keypoint dict: 'kp_source_value', 'kp_source_jacobian', 'kp_source'."""
    return [prefix if key == 'fg_kp' else f'{prefix}_{key}' for key in keys]


class GraphSpec:
    """One graph to export: the module, example inputs and the input/output names."""

    def __init__(self, name: str, module: nn.Module, inputs: dict[str, torch.Tensor], outputs: list[str]):
        self.name, self.module, self.inputs, self.outputs = name, module.eval(), inputs, outputs


def graph_specs(models: dict, frame_size: tuple[int, int], batch: int = 2) -> list[GraphSpec]:
    """The graphs of a family (see the module docstring), with example inputs of `batch` frames."""
    from modules.model import family_of
    h, w = frame_size
    image = torch.rand(batch, 3, h, w)
    kp_detector = models['kp_detector'].eval()
    keys = keypoint_keys(kp_detector)
    with torch.no_grad():
        kp = kp_detector(image)
    # Driving keypoints: the batch reversed, so source and driving differ.
    kp_inputs = {**{name: kp[k] for name, k in zip(kp_names('kp_source', keys), keys)},
                 **{name: kp[k].flip(0) for name, k in zip(kp_names('kp_driving', keys), keys)}}
    specs = [GraphSpec('kp_detector', KeypointGraph(kp_detector), {'image': image}, kp_names('kp', keys))]
    if family_of(models) == 'fomm':
        generator = models['generator']
        encoder = EncoderGraph(generator)
        with torch.no_grad():
            features = encoder(image)
        specs.append(GraphSpec('encoder', encoder, {'source': image}, ['features']))
        specs.append(GraphSpec('generator', FommGeneratorGraph(generator, 'jacobian' in keys),
                               {'source': image, 'features': features[0], **kp_inputs}, ['prediction']))
    else:
        inpainting = models['inpainting_network']
        encoder = EncoderGraph(inpainting)
        with torch.no_grad():
            features = encoder(image)
        names = [f'features_{i}' for i in range(len(features))]
        specs.append(GraphSpec('encoder', encoder, {'source': image}, names))
        bg_param = torch.eye(3).expand(batch, 3, 3).contiguous()
        dense_motion = models['dense_motion_network']
        tps_affine, tps_weights = fit_keypoint_tps(kp['fg_kp'].flip(0), kp['fg_kp'], dense_motion.points_per_tps)
        specs.append(GraphSpec('generator', TpsGeneratorGraph(dense_motion, inpainting),
                               {'source': image, **dict(zip(names, features)), **kp_inputs, 'bg_param': bg_param,
                                'tps_affine': tps_affine, 'tps_weights': tps_weights}, ['prediction']))
        if 'avd_network' in models:
            specs.append(GraphSpec('avd', AvdGraph(models['avd_network']),
                                   {'kp_source': kp['fg_kp'], 'kp_driving': kp['fg_kp'].flip(0)}, ['fg_kp']))
    return specs


def _takes_varargs(module: nn.Module) -> bool:
    import inspect
    return any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values())


def export_graph(spec: GraphSpec, path: str) -> None:
    """Write one graph to `path` (atomically) with the batch dimension dynamic."""
    from media.files import atomic_path
    batch = torch.export.Dim('batch', min=1)
    args = tuple(spec.inputs.values())
    # Every wrapper's forward is `forward(self, *inputs)`, so one tuple describes all inputs.
    dynamic = (tuple({0: batch} for _ in args),) if _takes_varargs(spec.module) else tuple({0: batch} for _ in args)
    with torch.no_grad(), atomic_path(path) as tmp:
        program = torch.onnx.export(spec.module, args, input_names=list(spec.inputs), output_names=spec.outputs,
                                    dynamic_shapes=dynamic, opset_version=OPSET, dynamo=True,
                                    optimize=False, verbose=False)   # onnxscript's optimizer drops the TPS kernel's `+ 1e-9` (log(0) = -inf)
        program.save(tmp, external_data=False)
        name_nodes_by_module(tmp)


def name_nodes_by_module(path: str) -> None:
    """Rename the graph's nodes after the modules that made them ('generator.final/conv2d'
    instead of 'node_conv2d_41'), from the exporter's name-scope metadata, so that a layer can
    be found by name in the graph (e.g. by a quantization tool that should leave it in fp32)."""
    import onnx
    model = onnx.load(path)
    used = set()
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == 'pkg.torch.onnx.name_scopes'), None)
        if not scopes:
            continue
        parts = [part for part in eval_list(scopes) if part]
        name = '/'.join(parts[-2:]) if len(parts) > 1 else node.name
        candidate, i = name, 1
        while candidate in used:
            candidate, i = f'{name}_{i}', i + 1
        used.add(candidate)
        node.name = candidate
    onnx.save(model, path)


def eval_list(text: str) -> list[str]:
    """The exporter writes name scopes as a Python list literal."""
    import ast
    value = ast.literal_eval(text)
    return [str(v) for v in value] if isinstance(value, list) else []


def export_models(models: dict, frame_size: tuple[int, int], out_dir: str,
                  names: Sequence[str] | None = None) -> dict[str, str]:
    """Export the family's graphs into `out_dir` as <name>.onnx; returns {name: path}."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for spec in graph_specs(models, frame_size):
        if names is not None and spec.name not in names:
            continue
        paths[spec.name] = os.path.join(out_dir, f'{spec.name}.onnx')
        export_graph(spec, paths[spec.name])
    return paths
