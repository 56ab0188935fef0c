"""Export a model of either family as ONNX graphs that ONNX Runtime runs without PyTorch.

    python scripts/export_onnx.py --config config/fomm/vox-256.yaml --checkpoint vox-cpk.pth.tar --out onnx/
    python scripts/export_onnx.py --config config/tps/vox-256.yaml --checkpoint vox.pth.tar --out onnx/ [--verify]

Writes into --out (batch dimension dynamic, frame size fixed to --img_shape, default the config's):
  kp_detector.onnx   image (B, 3, H, W) in [0, 1] -> keypoints (FOMM kp_value[, kp_jacobian]; TPSMM fg_kp)
  encoder.onnx       source (B, 3, H, W) -> features (FOMM) / features_0..n (TPSMM), once per source
  generator.onnx     source, features, kp_source_*, kp_driving_* [TPSMM: bg_param, tps_affine,
                     tps_weights] -> prediction (B, 3, H, W) in [0, 1]
  avd.onnx           TPSMM with an AVD network: kp_source, kp_driving -> fg_kp
  model.json         family, frame size, keypoint counts and every graph's input and output names
The TPS solve and relative motion stay outside the graphs: `deploy/onnx_steps.py` (NumPy only) has
them; docs/cpu-inference.md shows the whole animation loop with ONNX Runtime alone.
`--verify` runs every graph in ONNX Runtime on random inputs and prints its largest difference
from PyTorch. Exit status 2, one line, on a bad config or checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from animate import frame_shape_of  # noqa: E402
from modules import build_models  # noqa: E402
from loading import load_config  # noqa: E402
from loading.checkpoint import CheckpointError, ConfigError, load_models  # noqa: E402
from modules.model import family_of  # noqa: E402
from deploy.onnx_export import export_graph, graph_specs  # noqa: E402


def load(config_path: str, checkpoint_path: str) -> tuple[dict, dict]:
    """(config, networks in eval mode); TPSMM's AVD network only when the checkpoint has one."""
    config = load_config(config_path)
    models = {k: m for k, m in build_models(config).items() if k not in ('discriminator', 'bg_predictor')}
    required = ('kp_detector', 'generator') if 'generator' in models else \
        ('kp_detector', 'dense_motion_network', 'inpainting_network')
    checkpoint = load_models(checkpoint_path, models, config, required)
    if 'avd_network' in models and 'avd_network' not in checkpoint:
        models.pop('avd_network')
    return config, {k: m.eval() for k, m in models.items()}


def describe(models: dict, frame_size: tuple[int, int], specs) -> dict:
    info = {'family': family_of(models), 'frame_size': list(frame_size), 'graphs': {}}
    detector = models['kp_detector']
    if info['family'] == 'tps':
        info.update(num_tps=detector.num_tps, points_per_tps=detector.points_per_tps)
    else:
        info['num_kp'] = detector.kp.out_channels
    for spec in specs:
        info['graphs'][spec.name] = {'inputs': list(spec.inputs), 'outputs': spec.outputs}
    return info


def verify(specs, out_dir: str) -> float:
    """Largest |ONNX Runtime - PyTorch| over every graph's outputs on its example inputs (batch 2
    and, to check the dynamic batch, 1)."""
    import onnxruntime as ort
    worst = 0.0
    for spec in specs:
        sess = ort.InferenceSession(os.path.join(out_dir, f'{spec.name}.onnx'), providers=['CPUExecutionProvider'])
        for batch in (2, 1):
            inputs = {k: v[:batch] for k, v in spec.inputs.items()}
            with torch.no_grad():
                want = spec.module(*inputs.values())
            want = want if isinstance(want, tuple) else (want,)
            got = sess.run(None, {k: v.numpy() for k, v in inputs.items()})
            err = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
            print(f'  {spec.name:12s} batch {batch}: max |ONNX Runtime - PyTorch| {err:.2e}')
            worst = max(worst, err)
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True)
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--img_shape', default=None, metavar='H,W', help="frame size (default: the config's)")
    p.add_argument('--verify', action='store_true', help='compare ONNX Runtime with PyTorch on random inputs')
    args = p.parse_args(argv)
    try:
        config, models = load(args.config, args.checkpoint)
    except (ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f'error: {" ".join(str(err).split())}', file=sys.stderr)
        return 2
    if args.img_shape:
        from demo import DemoError, parse_shape
        try:
            frame_size = parse_shape(args.img_shape)
        except DemoError as err:
            print(f'error: {err}', file=sys.stderr)
            return 2
    else:
        frame_size = frame_shape_of(config)
    specs = graph_specs(models, frame_size)
    os.makedirs(args.out, exist_ok=True)
    for spec in specs:
        path = os.path.join(args.out, f'{spec.name}.onnx')
        export_graph(spec, path)
        print(f'wrote {path} (inputs {", ".join(spec.inputs)}; outputs {", ".join(spec.outputs)})')
    from media.files import atomic_path
    with atomic_path(os.path.join(args.out, 'model.json')) as tmp, open(tmp, 'w') as f:
        json.dump(describe(models, frame_size, specs), f, indent=1)
    if args.verify:
        verify(specs, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
