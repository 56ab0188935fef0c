"""`crop_video.py --preset fomm` keeps exactly the clips FOMM's crop-video.py keeps (issue 24,
item 5). The reference's rules are written out again below, independently of faces/tubes.py, and
applied to the same per-frame detections as the tool; the clips must match in range and box.

The raw video (made from the real sample clip) has a tube long enough to keep, a gap of two
frames without a face, a shot cut with the face at about the same place (the reference does not
see cuts: its tube goes on), a tube too short to keep, and a fast pan at the end that moves the
face away from its tube's first box."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / 'shared' / 'samples' / 'face-driving.mp4'

pytest.importorskip('dlib', reason='the dlib backend needs dlib-bin (requirements.txt)')
if not CLIP.is_file():
    pytest.skip(f'the real sample clip is not at {CLIP}', allow_module_level=True)

from media import VideoReader, VideoWriter, resize_frame  # noqa: E402

W, H, FACE = 320, 240, 168        # frame and placed face sides (dlib's face box: ~90 px)
CUT = 200                         # first frame of the second shot
GAP = (160, 161)                  # frames without a face
PAN = 370                         # from here the camera pans 3 px a frame
LENGTH = 400


def face_at(t: int, faces: list[np.ndarray]) -> np.ndarray:
    """The clip played forwards and backwards, so the face never jumps."""
    period = 2 * (len(faces) - 1)
    k = t % period
    return faces[k if k < len(faces) else period - k]


def write_raw(path: Path) -> None:
    faces = [np.rint(resize_frame(f, (FACE, FACE)) * 255).astype(np.uint8) for f in VideoReader(str(CLIP))]
    rng = np.random.default_rng(0)
    backgrounds = [(rng.integers(0, 30, (H + 40, W + 200, 3)) + colour).astype(np.uint8)   # a cut in every channel
                   for colour in ((30, 110, 30), (170, 20, 170))]
    with VideoWriter(str(path), fps=25, crf=12) as writer:
        for t in range(LENGTH):
            shot = int(t >= CUT)
            frame = backgrounds[shot].copy()
            x = 20 + t // 10 if t < CUT else 36 + (t - CUT) // 20        # a slow drift; the same place after the cut
            if t not in GAP:
                frame[:FACE, x:x + FACE] = face_at(t, faces)     # its top 20 rows above the frame
            ox = 3 * max(0, t - PAN)                                     # the pan
            writer.write(frame[20:20 + H, ox:ox + W])


def reference_clips(detections: dict[int, list[np.ndarray]], width: int, height: int,
                    min_frames: int = 150, increase: float = 0.1, iou_with_initial: float = 0.25) -> list[tuple]:
    """crop-video.py's rules on per-frame detections: [(start, end, (left, top, right, bottom))]
    for every tube it prints a command for (frames start..end-1 are what its ffmpeg cuts)."""
    def overlap(a, b):                               # its IoU: boxes as inclusive pixel ranges
        iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)     # noqa: E731
        return iw * ih / float(area(a) + area(b) - iw * ih)

    def command(tube):
        first, union, start, end = tube
        left, top, right, bottom = union
        w, h = right - left, bottom - top
        wi = max(increase, ((1 + 2 * increase) * h - w) / (2 * w))
        hi = max(increase, ((1 + 2 * increase) * w - h) / (2 * h))
        box = (max(0, int(left - wi * w)), max(0, int(top - hi * h)),
               min(int(right + wi * w), width), min(int(bottom + hi * h), height))
        return start, end, box

    out, open_tubes = [], []
    for frame in range(max(detections) + 1):
        boxes = detections.get(frame, [])
        alive = []
        for tube in open_tubes:
            best = 0
            for box in boxes:
                best = max(best, overlap(tube[0], box))
            if best > iou_with_initial:
                alive.append(tube)
            elif tube[3] - tube[2] > min_frames:
                out.append(command(tube))
        open_tubes = alive
        for box in boxes:
            best, chosen = 0, None
            for tube in open_tubes:
                o = overlap(tube[0], box)
                if best < o and o > iou_with_initial:
                    best, chosen = o, tube
            if chosen is None:
                open_tubes.append([box, tuple(box), frame, frame])
            else:
                chosen[3] = frame
                u = chosen[1]
                chosen[1] = (min(u[0], box[0]), min(u[1], box[1]), max(u[2], box[2]), max(u[3], box[3]))
    out += [command(t) for t in open_tubes if t[3] - t[2] > min_frames]
    return sorted(out)


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp('raw')
    write_raw(folder / 'dave#talk.mp4')
    return folder


def test_preset_fomm_keeps_the_reference_tubes(raw, tmp_path, monkeypatch, capsys):
    import crop_video
    scans = []
    real_scan = crop_video.scan_video

    def recording_scan(*args, **kwargs):
        scans.append(real_scan(*args, **kwargs))
        return scans[-1]
    monkeypatch.setattr(crop_video, 'scan_video', recording_scan)
    out = tmp_path / 'out'
    code = crop_video.main(['--inp', str(raw), '--out', str(out), '--preset', 'fomm', '--face_backend', 'dlib',
                            '--image_shape', '64,64', '--test_fraction', '0', '--quiet'])
    err = capsys.readouterr().err
    assert code == 0, err
    (scan,) = scans
    assert len(scan.detections) == LENGTH                  # every frame looked at
    assert scan.cuts == [CUT]
    expected = reference_clips(scan.detections, scan.width, scan.height)
    with open(out / 'manifest.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    got = sorted((int(r['start_frame']), int(r['end_frame']) + 1, tuple(int(r[k]) for k in ('x0', 'y0', 'x1', 'y1')))
                 for r in rows)
    assert got == expected, err
    # the scene did what it was made for: two tubes kept (before the gap; after it, across the cut,
    # ended by the pan), a short one dropped
    assert len(expected) == 2, expected
    (_, end0, _), (start1, end1, _) = expected
    assert end0 <= GAP[0] <= start1 < CUT < end1 < PAN + 40, expected
    assert 'frames < --min_frames 151' in err
    assert any(box[1] == 0 for _, _, box in expected)       # a box cut at the frame's top
    # the clips have what ffmpeg's -ss start/fps -t (end - start)/fps would cut
    for (start, end, _), row in zip(expected, sorted(rows, key=lambda r: int(r['start_frame']))):
        with VideoReader(str(out / 'train' / row['name'])) as clip:
            assert sum(1 for _ in clip) == end - start


def test_preset_fomm_refuses_rules_it_does_not_have(raw, tmp_path, capsys):
    import crop_video
    assert crop_video.main(['--inp', str(raw), '--out', str(tmp_path / 'o'), '--preset', 'fomm',
                            '--track', 'smooth', '--quiet']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and '--preset fomm' in err
