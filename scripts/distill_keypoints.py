"""Start a small model from a trained larger one: its keypoint detector learns to give the larger
model's keypoints, and every other network whose shapes match is copied.

    python scripts/distill_keypoints.py --config config/synthetic/tps-64-small.yaml \\
        --teacher_config config/synthetic/tps-64.yaml --teacher checkpoints/teacher.pth.tar \\
        --out runs/small/init.pth.tar [--steps 3000]
    python run.py --config config/synthetic/tps-64-small.yaml --mode train --checkpoint runs/small/init.pth.tar

Why: trained end to end from scratch, a small keypoint detector (tps-64-small's ShuffleNet V2)
learns the motion far more slowly than the paper's ResNet-18, and the whole model lags behind
(its equivariance and warp losses plateau higher). Regressing a trained detector's keypoints is
a plain supervised problem that a small network learns in minutes; the networks downstream of
the keypoints (TPSMM's dense motion network and background predictor, when the student's config
builds them at the teacher's size) then start already matched to them. Networks of another size
(a narrower inpainting network or generator) keep their fresh initialisation and learn in the
training run that follows.

The loss is the L1 distance between the student's and the teacher's keypoint outputs (every
output both have: TPSMM's `fg_kp`; FOMM's `value` and `jacobian`) on the source and driving
frames of augmented training pairs, teacher in eval mode. The output is a checkpoint of every
network of --config, in the official layout, at epoch -1: `run.py --mode train --checkpoint`
on it starts at epoch 0 with fresh optimizers.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from media.files import atomic_path  # noqa: E402
from frames_dataset import build_dataset  # noqa: E402
from modules import build_models  # noqa: E402
from loading import load_config  # noqa: E402
from loading.checkpoint import CheckpointError, ConfigError, _strip_prefix, state_dict_mismatch  # noqa: E402
from modules.model import family_of  # noqa: E402
from diagnose_model import load_reconstruction_models  # noqa: E402
from precise_bn import training_batches  # noqa: E402


def keypoint_distance(student: dict, teacher: dict) -> torch.Tensor:
    """Mean L1 over every keypoint output the two detectors share ({'fg_kp'} or {'value', 'jacobian'})."""
    shared = [k for k in student if k in teacher]
    for k in shared:
        if student[k].shape != teacher[k].shape:
            raise ValueError(f"the student's keypoints '{k}' have shape {tuple(student[k].shape)}, the teacher's "
                             f"{tuple(teacher[k].shape)}: both configs need the same number of keypoints")
    return sum(F.l1_loss(student[k], teacher[k]) for k in shared) / len(shared)


def copy_matching(student: dict, teacher_ckpt: dict) -> list[str]:
    """Load into each student network except the keypoint detector the teacher's weights, where the
    teacher has that network at exactly the same shapes. Returns the names copied."""
    copied = []
    for name, net in student.items():
        if name == 'kp_detector' or name not in teacher_ckpt:
            continue
        state = _strip_prefix(teacher_ckpt[name])
        if not state_dict_mismatch(net, state):
            net.load_state_dict(state)      # copies into the network's own dtype (fp16 exports too)
            copied.append(name)
    return copied


def distill(student_kp: torch.nn.Module, teacher_kp: torch.nn.Module, batches, steps: int, lr: float) -> float:
    """Fit `student_kp` to `teacher_kp` on `steps` batches; returns the mean loss of the last tenth."""
    teacher_kp.eval()
    student_kp.train()
    optimizer = torch.optim.Adam(student_kp.parameters(), lr=lr)
    # Cosine decay to zero: the last steps average out the batch noise of the regression.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    tail = []
    bar = tqdm(batches, total=steps, desc='distilling keypoints', dynamic_ncols=True)
    for step, batch in enumerate(bar):
        frames = torch.cat([batch['source'], batch['driving']])            # (2B, 3, H, W)
        with torch.no_grad():
            target = teacher_kp(frames)
        loss = keypoint_distance(student_kp(frames), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(l1=f'{loss.item():.4f}', refresh=False)
        if step >= steps - max(1, steps // 10):
            tail.append(loss.item())
    return sum(tail) / len(tail)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True, help="the student's config (the small model to make)")
    p.add_argument('--teacher_config', required=True)
    p.add_argument('--teacher', required=True, help='trained checkpoint of --teacher_config')
    p.add_argument('--out', required=True)
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--batch_size', type=int, default=32)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    try:
        config, teacher_config = load_config(args.config), load_config(args.teacher_config)
        torch.manual_seed(args.seed)
        student = build_models(config)
        teacher = build_models(teacher_config)
        if family_of(student) != family_of(teacher):
            raise ConfigError(f'{args.config} builds {family_of(student)} networks but {args.teacher_config} '
                              f'builds {family_of(teacher)}; distil within one family')
        # The animation networks (an exported checkpoint may lack the training-only ones).
        teacher, teacher_ckpt = load_reconstruction_models(args.teacher, teacher_config, teacher)
        dataset = build_dataset(config['dataset_params'], is_train=True)
        batches = training_batches(dataset, args.batch_size, args.steps, args.seed)
        final = distill(student['kp_detector'], teacher['kp_detector'], batches, args.steps, args.lr)
        copied = copy_matching(student, teacher_ckpt)
        out = {name: net.state_dict() for name, net in student.items()}
        out['epoch'] = -1
        with atomic_path(args.out) as tmp:
            torch.save(out, tmp)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    fresh = [n for n in student if n != 'kp_detector' and n not in copied]
    print(f'{args.out}: kp_detector distilled over {args.steps} batches of {args.batch_size} '
          f'(keypoint L1 {final:.4f} over the last tenth); copied from the teacher: {", ".join(copied) or "none"}; '
          f'freshly initialised: {", ".join(fresh) or "none"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
