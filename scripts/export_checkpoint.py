"""Shrink a training checkpoint to what animation needs, in the official layout.

    python scripts/export_checkpoint.py log/<run>/last.pth.tar checkpoints/model.pth.tar [--half] [--drop avd_network]

Keeps the networks demo.py loads (FOMM: kp_detector, generator; TPSMM: kp_detector,
dense_motion_network, inpainting_network, avd_network) and the epoch; drops optimizers,
schedulers and the discriminator. --drop leaves out named networks too (e.g. an untrained AVD
network, which relative and standard animation never use). --half stores float tensors as
float16 (they load back into float32 networks; the rounding is far below 1/255 on the output).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from media.files import atomic_path  # noqa: E402
from loading.checkpoint import read_checkpoint  # noqa: E402

KEEP = ('kp_detector', 'generator', 'dense_motion_network', 'inpainting_network', 'avd_network')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('source')
    p.add_argument('destination')
    p.add_argument('--half', action='store_true')
    p.add_argument('--drop', action='append', default=[], choices=KEEP, help='leave this network out (repeatable)')
    args = p.parse_args(argv)
    ckpt = read_checkpoint(args.source)
    out = {k: ckpt[k] for k in KEEP if k in ckpt and k not in args.drop}
    if args.half:
        out = {k: {n: t.half() if t.is_floating_point() else t for n, t in sd.items()} for k, sd in out.items()}
    out['epoch'] = ckpt.get('epoch', -1)
    with atomic_path(args.destination) as tmp:
        torch.save(out, tmp)
    print(f'{args.destination}: {", ".join(k for k in out if k != "epoch")} (epoch {out["epoch"]}), '
          f'{os.path.getsize(args.destination) / 2**20:.1f} MiB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
