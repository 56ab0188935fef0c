"""int8 inference on the CPU: the per-frame generator graph quantized with ONNX Runtime.

`Animator(precision='int8')` (animate.py) runs the keypoint detector, the source encoder, the
keypoint maths (relative motion, TPS solve) and the AVD network in fp32 PyTorch, and hands
every driving frame's dense motion + generator to ONNX Runtime: the graph of
deploy/onnx_export.py with its convolutions quantized to int8 (QDQ format, post-training static
quantization, per-channel symmetric int8 weights, asymmetric uint8 activations). Everything that
is not a convolution (grid_sample, softmax, normalisation, the TPS evaluation, sigmoid) stays
fp32 inside the graph. Activation ranges come from calibration: the generator's inputs for the
source and the first driving frames (or any frames the caller gives).

Why ONNX Runtime rather than PyTorch's PT2E flow with the x86 Inductor quantizer: measured on
the same host (docs/cpu-inference.md), their int8 convolutions ran at the same speed, but the
PT2E model must be recompiled by Inductor in every new process (minutes on two cores), while an
ONNX Runtime model is a file: exported once per checkpoint, quantized once per calibration set,
both cached on disk (`cache_dir()`), and loaded in about a second afterwards.

Cache: <cache_dir>/<model fingerprint>/generator.onnx (fp32 export) and
generator-int8-<calibration hash>.onnx. The fingerprint covers the weights, the model config,
the frame size and the library versions; the calibration hash covers the calibration inputs and
the quantization settings, so a second run on the same inputs pays neither export nor calibration;
another source or driving video reuses the export and is calibrated anew (a graph of 45 MB for a
vox-256 model). The cache is bounded: after each build the least recently used graphs go until it
holds at most $KEYPOINT_ANIMATION_CACHE_MB megabytes (default CACHE_LIMIT_MB), never the graphs
in use.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Iterable, Sequence

import numpy as np
import torch

FORMAT_VERSION = 1            # bump when the graphs or the quantization recipe change
CALIBRATION_FRAMES = 8        # default number of driving frames calibration sees
# Convolutions kept in fp32 (ONNX node-name substrings; see `quantized_nodes`). None by default:
# measured on the bundled model and vox-256 (docs/cpu-inference.md) no single layer broke quality.
KEEP_FP32: tuple[str, ...] = ()
# The networks inside the generator graph: its cache key covers their weights alone.
GRAPH_NETWORKS = {'fomm': ('generator',), 'tps': ('dense_motion_network', 'inpainting_network')}


CACHE_LIMIT_MB = 1024         # default bound of the cache: an fp32 export and its int8 graphs are ~45-180 MB
                              # for vox-256 models, so a few models and several calibrations fit


def cache_limit_bytes() -> int:
    """The cache's bound in bytes: $KEYPOINT_ANIMATION_CACHE_MB megabytes, else CACHE_LIMIT_MB."""
    text = os.environ.get('KEYPOINT_ANIMATION_CACHE_MB')
    try:
        megabytes = float(text) if text else CACHE_LIMIT_MB
    except ValueError:
        import warnings
        warnings.warn(f'KEYPOINT_ANIMATION_CACHE_MB={text!r} is not a number of megabytes; the int8 cache keeps '
                      f'the default {CACHE_LIMIT_MB} MB')
        megabytes = CACHE_LIMIT_MB
    return int(max(0.0, megabytes) * 2 ** 20)


def prune_cache(keep: Iterable[str] = (), limit: int | None = None, folder: str | None = None) -> list[str]:
    """Remove the least recently used graphs (oldest access time: `Int8Generator.build` marks
    the graphs it uses) until the cache holds at most `limit` bytes (default
    `cache_limit_bytes()`); the `keep` paths stay whatever their size. Folders left empty go too.
    Returns the removed paths. Another process removing a file at the same time is fine."""
    folder = folder or cache_dir()
    limit = cache_limit_bytes() if limit is None else limit
    kept = {os.path.realpath(p) for p in keep}
    files = []
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue
            files.append((info.st_atime, info.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, path in sorted(files):          # oldest first
        if total <= limit:
            break
        if os.path.realpath(path) in kept:
            continue
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        total -= size
        removed.append(path)
    for parent in {os.path.dirname(p) for p in removed}:
        if parent != folder:
            try:
                os.rmdir(parent)          # only when empty
            except OSError:
                pass
    return removed


def _touch(path: str) -> None:
    """Mark a cached graph as just used: its access time (set here whatever the mount's atime
    policy) orders `prune_cache`; the modification time stays that of its making."""
    try:
        os.utime(path, ns=(time.time_ns(), os.stat(path).st_mtime_ns))
    except OSError:
        pass


def cache_dir() -> str:
    """Where exported and quantized graphs are kept: $KEYPOINT_ANIMATION_CACHE, else
    $XDG_CACHE_HOME/keypoint-animation, else ~/.cache/keypoint-animation."""
    explicit = os.environ.get('KEYPOINT_ANIMATION_CACHE')
    if explicit:
        return explicit
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'keypoint-animation')


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI)."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line for line in f if line.startswith('flags')), '')
    except OSError:
        return False
    return any(flag in flags.split() for flag in ('avx512_vnni', 'avx_vnni'))


def model_fingerprint(config: dict, models: dict, frame_size: tuple[int, int]) -> str:
    """A short hash of everything the exported graph of `models` (those inside it) depends on."""
    import onnxruntime
    digest = hashlib.sha256()
    meta = {'format': FORMAT_VERSION, 'torch': torch.__version__, 'onnxruntime': onnxruntime.__version__,
            'model_params': config.get('model_params'), 'frame_size': list(frame_size)}
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name in sorted(models):
        for key, value in sorted(models[name].state_dict().items()):
            digest.update(f'{name}.{key}{tuple(value.shape)}'.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def feeds_hash(feeds: Sequence[dict[str, np.ndarray]], settings: dict) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for feed in feeds:
        for name in sorted(feed):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(feed[name]).tobytes())
    return digest.hexdigest()[:20]


def export_generator(models: dict, frame_size: tuple[int, int], path: str) -> None:
    """Export the generator graph (deploy/onnx_export.py) to `path` unless it is there."""
    from .onnx_export import export_graph, graph_specs
    if os.path.exists(path):
        return
    spec = next(s for s in graph_specs(models, frame_size) if s.name == 'generator')
    export_graph(spec, path)


def quantized_nodes(model_path: str, keep_fp32: Iterable[str] = KEEP_FP32) -> list[str]:
    """Names of the Conv nodes to quantize: all but those whose name contains a `keep_fp32` entry."""
    import onnx
    graph = onnx.load(model_path, load_external_data=False).graph
    keep = tuple(keep_fp32)
    return [n.name for n in graph.node if n.op_type == 'Conv' and not any(k in n.name for k in keep)]


def quantize(fp32_path: str, out_path: str, feeds: Sequence[dict[str, np.ndarray]],
             keep_fp32: Iterable[str] = KEEP_FP32, reduce_range: bool | None = None) -> None:
    """Post-training static quantization of the convolutions of `fp32_path` (QDQ), calibrated
    (min/max) on `feeds`, written atomically to `out_path`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from media.files import atomic_path

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    if reduce_range is None:
        # Without VNNI, x86 int8 kernels add pairs of u8*s8 products in 16 bits, which can
        # saturate; 7-bit weights avoid that (ONNX Runtime's advice for such CPUs).
        reduce_range = not cpu_has_vnni()
    with atomic_path(out_path) as tmp:
        # ONNX Runtime's pre-processing folds constants and shape arithmetic (and FOMM's BatchNorm
        # into its convolutions) first, so the quantizer sees plain Conv nodes with constant weights.
        # Symbolic shape inference is skipped: it does not know com.microsoft.Inverse.
        quant_pre_process(fp32_path, tmp, skip_symbolic_shape=True)
        quantize_static(tmp, tmp, Reader(), quant_format=QuantFormat.QDQ,
                        nodes_to_quantize=quantized_nodes(tmp, keep_fp32), op_types_to_quantize=['Conv'],
                        per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        extra_options={'WeightSymmetric': True, 'ActivationSymmetric': False})


def session(path: str, threads: int | None = None):
    """An ONNX Runtime CPU session with all graph optimisations, `threads` intra-op threads
    (default: torch's thread count, so --threads governs both)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def generator_feeds(family: str, source: torch.Tensor, features, kp_source: dict, kp_driving: dict,
                    bg_param: torch.Tensor | None = None, points_per_tps: int = 5) -> dict[str, np.ndarray]:
    """The generator graph's inputs (names as in deploy/onnx_export.py) for one batch; every
    tensor is (B, ...) with the same B. TPSMM's TPS systems are solved here, in fp32 torch."""
    from modules.geometry import fit_keypoint_tps
    from .onnx_export import kp_names

    def arr(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().float().cpu().numpy())

    b = source.shape[0]
    feeds = {'source': arr(source)}
    if family == 'fomm':
        feeds['features'] = arr(features)
        keys = [k for k in ('value', 'jacobian') if k in kp_source]
    else:
        feeds.update({f'features_{i}': arr(f) for i, f in enumerate(features)})
        keys = ['fg_kp']
    for prefix, kp in (('kp_source', kp_source), ('kp_driving', kp_driving)):
        feeds.update({name: arr(kp[k]) for name, k in zip(kp_names(prefix, keys), keys)})
    if family == 'tps':
        if bg_param is None:
            bg_param = torch.eye(3).expand(b, 3, 3)
        feeds['bg_param'] = arr(bg_param)
        affine, weights = fit_keypoint_tps(kp_driving['fg_kp'], kp_source['fg_kp'], points_per_tps)
        feeds['tps_affine'], feeds['tps_weights'] = arr(affine), arr(weights)
    return feeds


class Int8Generator:
    """The quantized generator graph of one model: build (export + calibrate, cached), then run."""

    def __init__(self, config: dict, models: dict, family: str, keep_fp32: Iterable[str] = KEEP_FP32):
        self.config, self.models, self.family = config, models, family
        self.keep_fp32 = tuple(keep_fp32)
        self.session = None
        self.path = None
        self.timings: dict = {}     # seconds spent exporting / calibrating / loading, and the cache folder

    def _settings(self) -> dict:
        return {'reduce_range': not cpu_has_vnni(), 'keep_fp32': list(self.keep_fp32), 'format': FORMAT_VERSION}

    def build(self, calibration_feeds: Sequence[dict[str, np.ndarray]]) -> str:
        """Export (once per model) and quantize (once per calibration set), then load the session.
        Returns the int8 model's path."""
        networks = {k: self.models[k] for k in GRAPH_NETWORKS[self.family]}
        frame_size = tuple(calibration_feeds[0]['source'].shape[2:])    # the graph's fixed (H, W)
        folder = os.path.join(cache_dir(), model_fingerprint(self.config, networks, frame_size))
        self.timings['folder'] = folder
        fp32_path = os.path.join(folder, 'generator.onnx')
        start = time.perf_counter()
        export_generator(self.models, frame_size, fp32_path)
        self.timings['export_s'] = time.perf_counter() - start
        settings = self._settings()
        self.path = os.path.join(folder, f'generator-int8-{feeds_hash(calibration_feeds, settings)}.onnx')
        start = time.perf_counter()
        if not os.path.exists(self.path):
            quantize(fp32_path, self.path, calibration_feeds, self.keep_fp32, settings['reduce_range'])
        self.timings['calibrate_s'] = time.perf_counter() - start
        start = time.perf_counter()
        self.session = session(self.path)
        self.timings['load_s'] = time.perf_counter() - start
        for used in (fp32_path, self.path):
            _touch(used)
        self.timings['pruned'] = prune_cache(keep=(fp32_path, self.path))
        return self.path

    def __call__(self, feeds: dict[str, np.ndarray]) -> torch.Tensor:
        (prediction,) = self.session.run(['prediction'], feeds)
        return torch.from_numpy(prediction)
