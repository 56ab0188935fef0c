"""Person re-identification embedding for body AED, from a model file the user gives.

The protocol (pose-evaluation, ``extract.py --type body_id``) embeds every whole frame with the
ResNet-50 ``ft_net`` of layumi/Person_reID_baseline_pytorch (code MIT; weights trained on
Market-1501, 751 identities), its bottleneck and classifier removed, so the embedding is the
2048-d average-pooled ResNet-50 feature; frames are resized to 288x144 (H x W) and normalised with
ImageNet's mean and std. The protocol's weights file is the ``reid_model.pth`` linked from
pose-evaluation's README; a ``net_last.pth`` trained with that repository's ``train.py`` for
ft_ResNet50 has the same layout. No such weights are on PyPI, so body AED is computed only when a
file is given (``evaluate.py --reid_model``, ``reconstruction_params.reid_model``).

The file must be a state dict (loaded with ``weights_only=True``) whose ResNet-50 keys start with
``model.`` (ft_net's layout); other keys (``classifier.*``, ``model.fc.*``) are ignored.
"""
from __future__ import annotations

import os

import numpy as np

from .backend import BodyModelError

REID_SIZE = (288, 144)                      # (H, W), as the protocol's transform
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ReidEmbedder:
    """frames (T, H, W, 3) -> (T, 2048) embeddings with ft_net's ResNet-50 trunk."""

    def __init__(self, path: str, device: str = 'cpu'):
        import torch
        import torchvision
        self.description = f're-ID ResNet-50 ft_net ({os.path.basename(path)})'
        state = load_state(path)
        trunk = {k[len('model.'):]: v for k, v in state.items()
                 if k.startswith('model.') and not k.startswith('model.fc.')}
        net = torchvision.models.resnet50(weights=None)
        net.fc = torch.nn.Identity()
        expected = set(net.state_dict())
        missing = sorted(expected - set(trunk))
        if missing:
            raise BodyModelError(f'{path}: not an ft_net ResNet-50 state dict ({len(missing)} of its '
                                 f'{len(expected)} weights missing, e.g. model.{missing[0]})')
        try:
            net.load_state_dict({k: trunk[k] for k in expected})
        except RuntimeError as err:
            raise BodyModelError(f'{path}: weights of the wrong shape for ResNet-50 '
                                 f'({str(err).splitlines()[-1].strip()[:160]})') from None
        self.net = net.eval().to(device)
        self.device = device

    def embed(self, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """uint8 or float [0, 1] (T, H, W, 3) -> float (T, 2048), `batch_size` frames at a time."""
        frames = np.asarray(frames)
        return np.concatenate([self._embed(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)])

    def _embed(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        x = F.interpolate(x.permute(0, 3, 1, 2), size=REID_SIZE, mode='bicubic', align_corners=False,
                          antialias=True).clamp(0, 1)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        with torch.no_grad():
            return self.net((x - mean) / std).double().cpu().numpy()


def load_state(path: str) -> dict:
    import torch
    if not os.path.isfile(path):
        raise BodyModelError(f'--reid_model {path}: no such file')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt or foreign file fails in many ways
        reason = ' '.join(str(err).split())[:120] or type(err).__name__
        raise BodyModelError(f'{path}: not a loadable PyTorch state dict ({type(err).__name__}: {reason})') from None
    if isinstance(state, dict) and 'state_dict' in state and isinstance(state['state_dict'], dict):
        state = state['state_dict']
    if not isinstance(state, dict):
        raise BodyModelError(f'{path}: holds a {type(state).__name__}, not a state dict')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
