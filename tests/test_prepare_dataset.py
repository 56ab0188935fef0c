"""prepare_dataset.py: the papers' data sets from metadata CSVs, as video-preprocessing's load_videos.py.

The rules are pinned with frame ranges and boxes worked out by hand; the output is compared frame
by frame with an independent computation that follows load_videos.py (imageio's ffmpeg reader,
skimage's resize, img_as_ubyte) on a short clip made from ../shared/samples/face-driving.mp4 and
re-timed to 30 fps, while the metadata says 25 fps and gives boxes for another frame size.
"""
from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, ffmpeg_exe

import prepare_dataset
from dataprep import rules
from dataprep.metadata import MetadataError, clip_name, read_metadata
from dataprep.worker import Options, process_video

SAMPLE = SHARED / 'samples' / 'face-driving.mp4'
needs_sample = pytest.mark.skipif(not SAMPLE.is_file(), reason=f'the real sample clip is not at {SAMPLE}')

SOURCE_ID = 'abcDEF_1234'
FILE_FPS = 30          # the source file's rate; the metadata rows say 25
FILE_FRAMES = 90
FILE_SIZE = (410, 412)  # (width, height) of face-driving.mp4

VOX_HEADER = 'video_id,start,end,bbox,fps,width,height,partition,person_id'
# Boxes at a 640x854 frame (not the file's 410x412); top 427 of 854 lands on row 205 of 412
# (427 / (854 / 412) = 205.99999999999997, truncated), where 427 * 412 / 854 would give 206.
VOX_ROWS = [
    f'{SOURCE_ID},7,13,100-427-500-854,25,640,854,train,id10001',
    f'{SOURCE_ID},10,60,60-40-600-800,25,640,854,test,id10002',
    f'{SOURCE_ID},30,70,0-0-640-854,25,640,854,train,id10001',
]


def write_csv(path: Path, header: str, rows: list[str]) -> str:
    path.write_text('\n'.join([header] + rows) + '\n')
    return str(path)


@pytest.fixture(scope='module')
def videos(tmp_path_factory) -> Path:
    """A folder with <SOURCE_ID>.mp4: the sample's first 90 frames re-timed to 30 fps (made by ffmpeg)."""
    if not SAMPLE.is_file():
        pytest.skip(f'the real sample clip is not at {SAMPLE}')
    folder = tmp_path_factory.mktemp('videos')
    subprocess.run([ffmpeg_exe(), '-loglevel', 'error', '-i', str(SAMPLE), '-vf', f'setpts=N/({FILE_FPS}*TB)',
                    '-r', str(FILE_FPS), '-frames:v', str(FILE_FRAMES), '-c:v', 'libx264', '-crf', '10',
                    '-pix_fmt', 'yuv420p', str(folder / f'{SOURCE_ID}.mp4')], check=True)
    return folder


def prepare(*args: str) -> int:
    return prepare_dataset.main([*args, '--quiet'])


def read_clip(path: str) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a clip (a .mp4 file or a folder of PNG frames)."""
    import imageio.v2 as imageio
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        return np.stack([imageio.imread(os.path.join(path, n)) for n in names])
    import av     # not imageio: it takes the '#' of clip names for a URL fragment
    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)])


def reference_clips(video: str, rows: list[dict], image_shape) -> dict[int, list[np.ndarray]]:
    """Crops per row, computed the way load_videos.py does (imageio ffmpeg reader, skimage resize)."""
    import imageio.v2 as imageio
    from skimage import img_as_ubyte
    from skimage.transform import resize

    reader = imageio.get_reader(video, 'ffmpeg')
    fps = reader.get_meta_data()['fps']
    out = {k: [] for k in range(len(rows))}
    for i, frame in enumerate(reader):
        for k, row in enumerate(rows):
            meta_fps, start, end = float(row['fps']), int(row['start']), int(row['end'])
            if i * meta_fps >= start * fps and i * meta_fps < end * fps:
                left, top, right, bot = map(int, row['bbox'].split('-'))
                width, height = int(row['width']), int(row['height'])
                left, right = int(left / (width / frame.shape[1])), int(right / (width / frame.shape[1]))
                top, bot = int(top / (height / frame.shape[0])), int(bot / (height / frame.shape[0]))
                crop = frame[top:bot, left:right]
                if image_shape is not None:
                    crop = img_as_ubyte(resize(crop, image_shape, anti_aliasing=True))
                out[k].append(crop)
    reader.close()
    return out


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*'))


# ------------------------------------------------------------------------------------------------
# The rules, by hand


def test_frame_range_with_a_metadata_rate_other_than_the_files():
    # metadata at 25 fps, file at 30: frame i is in [start, end) when i*25 >= start*30 and i*25 < end*30
    assert rules.frame_range(7, 13, 25, 30) == range(9, 16)      # 8.4 -> 9 ; 15.6 -> frames up to 15
    assert rules.frame_range(5, 10, 25, 30) == range(6, 12)      # 6 exactly is in, 12 exactly is out
    assert rules.frame_range(10, 60, 25, 30) == range(12, 72)
    assert rules.frame_range(30, 70, 25, 30) == range(36, 84)


def test_file_rate_is_the_one_ffmpeg_prints():
    assert rules.file_fps(Fraction(30000, 1001)) == 29.97
    assert rules.file_fps(Fraction(24000, 1001)) == 23.98
    assert rules.file_fps(Fraction(25)) == 25.0
    # Why it matters: a Tai-Chi row at 29.97 fps on an NTSC file starts on its own frame number, as in
    # the reference; the exact rate 30000/1001 would start one frame later.
    assert rules.frame_range(300, 310, 29.97, rules.file_fps(Fraction(30000, 1001))) == range(300, 310)
    assert rules.frame_range(300, 310, 29.97, float(Fraction(30000, 1001))) == range(301, 311)


def test_box_given_at_another_resolution_is_scaled_and_truncated():
    # 1280x720 metadata, 410x412 file: 300/(1280/410) = 96.09 -> 96, 100/(720/412) = 57.2 -> 57,
    # 900/(1280/410) = 288.3 -> 288, 700/(720/412) = 400.6 -> 400
    assert rules.scale_box((300, 100, 900, 700), (1280, 720), (410, 412)) == (96, 57, 288, 400)
    # the reference's division order: 427 / (854 / 412) is 205.99999999999997 -> 205, not 206
    assert rules.scale_box((427, 427, 854, 854), (854, 854), (412, 412)) == (205, 205, 411, 411)


def test_box_past_the_frame_is_cut_as_slicing_and_a_box_outside_is_refused():
    # VoxCeleb boxes reach below a 720-pixel frame: the part inside is kept, as frame[top:bot] does
    rows, cols = rules.crop_window((370, 0, 1008, 791), (1280, 720))
    assert (rows, cols) == (slice(0, 720), slice(370, 1008))
    assert rules.crop_window((500, 100, 600, 200), (410, 412)) is None     # right of the frame
    assert rules.crop_window((10, 412, 100, 500), (410, 412)) is None      # below it


# ------------------------------------------------------------------------------------------------
# The three metadata formats


def test_vox_rows_name_clips_with_the_person_id(tmp_path):
    meta = read_metadata(write_csv(tmp_path / 'vox.csv', VOX_HEADER, VOX_ROWS))
    assert [s.name for s in meta.segments] == [f'id10001#{SOURCE_ID}#000007#000013.mp4',
                                               f'id10002#{SOURCE_ID}#000010#000060.mp4',
                                               f'id10001#{SOURCE_ID}#000030#000070.mp4']
    assert [s.partition for s in meta.segments] == ['train', 'test', 'train']
    assert meta.segments[0].box == (100, 427, 500, 854) and meta.segments[0].fps == 25.0
    assert list(meta.by_source()) == [SOURCE_ID] and not meta.notes


def test_taichi_rows_without_person_and_without_partition(tmp_path):
    with_partition = read_metadata(write_csv(tmp_path / 'a.csv', 'video_id,start,end,bbox,fps,width,height,partition',
                                             [f'{SOURCE_ID},80,300,118-82-508-472,29.97,640,480,test']))
    assert with_partition.segments[0].name == f'{SOURCE_ID}#000080#000300.mp4'
    assert with_partition.segments[0].partition == 'test'
    # a copy of taichi-metadata.csv without the partition column: everything to train/, said once
    without = read_metadata(write_csv(tmp_path / 'b.csv', 'video_id,start,end,bbox,fps,width,height',
                                      [f'{SOURCE_ID},80,300,118-82-508-472,29.97,640,480']))
    assert without.segments[0].partition == 'train'
    assert len(without.notes) == 1 and 'no partition column' in without.notes[0]


def test_ted_rows_take_the_range_from_the_id(tmp_path):
    meta = read_metadata(write_csv(tmp_path / 'ted.csv', 'video_id,start,end,bbox,fps,width,height,partition',
                                   [f'{SOURCE_ID}#000010#000060,0,0,60-40-600-800,25.0,640,854,train']))
    (segment,) = meta.segments
    assert (segment.source, segment.start, segment.end) == (SOURCE_ID, 10, 60)
    # named "<talk>#<start>#<end>.mp4" so that id_sampling groups a talk's clips
    assert segment.name == f'{SOURCE_ID}#000010#000060.mp4'
    # load_videos.py's own name for ids with '#' (parts reversed), kept for rows with a real range
    assert clip_name('a#b', 1, 2, None) == 'b#a#000001#000002.mp4'


@pytest.mark.parametrize('header, rows, expected', [
    ('video_id,start,end,fps,width,height,partition', [f'{SOURCE_ID},1,5,25,640,480,train'],
     'missing column(s) bbox'),
    (VOX_HEADER, [f'{SOURCE_ID},1,5,10-20-30,25,640,480,train,id1'], 'line 2: bbox'),
    (VOX_HEADER, [f'{SOURCE_ID},9,5,10-20-30-40,25,640,480,train,id1'], 'line 2: segment start 9'),
    (VOX_HEADER, [f'{SOURCE_ID},1,5,10-20-30-40,25,640,480,valid,id1'], "partition 'valid'"),
    (VOX_HEADER, [f'{SOURCE_ID},1,5,10-20-30-40,0,640,480,train,id1'], 'fps'),
    (VOX_HEADER, [f'{SOURCE_ID},1,5,10-20-30-40,25,640,480,train,../id1'], "person_id '../id1' cannot"),
])
def test_bad_metadata_is_one_line_and_nothing_written(tmp_path, capsys, header, rows, expected):
    csv_path = write_csv(tmp_path / 'bad.csv', header, rows)
    with pytest.raises(MetadataError, match='bad.csv'):
        read_metadata(csv_path)
    (tmp_path / 'videos').mkdir()
    assert prepare('--metadata', csv_path, '--video_folder', str(tmp_path / 'videos'),
                   '--out_folder', str(tmp_path / 'out')) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and expected in err[0], err
    assert not (tmp_path / 'out').exists()


# ------------------------------------------------------------------------------------------------
# Against load_videos.py's computation


@needs_sample
def test_png_clips_equal_load_videos_frame_by_frame(tmp_path, videos):
    csv_path = write_csv(tmp_path / 'vox.csv', VOX_HEADER, VOX_ROWS)
    out = tmp_path / 'out'
    assert prepare('--metadata', csv_path, '--video_folder', str(videos), '--out_folder', str(out),
                   '--format', '.png') == 0
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    expected = reference_clips(str(videos / f'{SOURCE_ID}.mp4'), rows, (256, 256))
    assert [len(expected[k]) for k in range(3)] == [7, 60, 48]       # ranges 9..15, 12..71, 36..83
    for k, row in enumerate(rows):
        name = clip_name(row['video_id'], int(row['start']), int(row['end']), row['person_id'])
        folder = out / row['partition'] / name
        assert sorted(os.listdir(folder))[:2] == ['0000000.png', '0000001.png']
        ours = read_clip(str(folder))
        ref = np.stack(expected[k])
        assert ours.shape == ref.shape == (len(ref), 256, 256, 3)
        mean_diff = np.abs(ours.astype(np.float64) - ref).mean() / 255
        assert mean_diff <= 1 / 255, (name, mean_diff * 255)


@needs_sample
def test_ntsc_source_with_rows_at_29_97_fps_matches_load_videos(tmp_path, videos):
    """An NTSC file (30000/1001 fps) with rows at 29.97: segments start on their own frame numbers,
    because the reference compares against the rate ffmpeg prints (29.97), not the exact one."""
    folder = tmp_path / 'videos'
    folder.mkdir()
    subprocess.run([ffmpeg_exe(), '-loglevel', 'error', '-i', str(videos / f'{SOURCE_ID}.mp4'), '-vf',
                    'setpts=N/(30000/1001*TB)', '-r', '30000/1001', '-c:v', 'libx264', '-crf', '10',
                    '-pix_fmt', 'yuv420p', str(folder / 'ntsc_vid_01.mp4')], check=True)
    rows = ['ntsc_vid_01,30,41,0-0-410-412,29.97,410,412,train,id1', 'ntsc_vid_01,41,80,0-0-410-412,29.97,410,412,test,id2']
    csv_path = write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows)
    out = tmp_path / 'out'
    assert prepare('--metadata', csv_path, '--video_folder', str(folder), '--out_folder', str(out),
                   '--format', '.png', '--image_shape', '32,32') == 0
    with open(csv_path) as f:
        expected = reference_clips(str(folder / 'ntsc_vid_01.mp4'), list(csv.DictReader(f)), (32, 32))
    assert [len(expected[0]), len(expected[1])] == [11, 39]          # frames 30..40 and 41..79
    for k, (part, name) in enumerate((('train', 'id1#ntsc_vid_01#000030#000041.mp4'),
                                      ('test', 'id2#ntsc_vid_01#000041#000080.mp4'))):
        ours = read_clip(str(out / part / name))
        assert ours.shape == np.stack(expected[k]).shape
        assert np.abs(ours.astype(np.float64) - np.stack(expected[k])).mean() <= 1 / 255


@needs_sample
def test_no_resize_keeps_the_crop_exactly(tmp_path, videos):
    rows = [f'{SOURCE_ID},7,13,100-427-500-854,25,640,854,train,id10001']
    csv_path = write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows)
    out = tmp_path / 'out'
    assert prepare('--metadata', csv_path, '--video_folder', str(videos), '--out_folder', str(out),
                   '--format', '.png', '--image_shape', 'none') == 0
    ours = read_clip(str(out / 'train' / f'id10001#{SOURCE_ID}#000007#000013.mp4'))
    # box (100, 427, 500, 854) of 640x854 -> columns 64..319 (100/(640/410) = 64.06, 500/... = 320.3),
    # rows 205..410 (see above), frames 9..15 of the file
    assert ours.shape == (7, 411 - 205, 320 - 64, 3)
    with open(csv_path) as f:
        ref = np.stack(reference_clips(str(videos / f'{SOURCE_ID}.mp4'), list(csv.DictReader(f)), None)[0])
    assert np.abs(ours.astype(np.float64) - ref).mean() <= 1.0


@needs_sample
def test_mp4_clips_have_the_frames_and_a_keyframe_every_second(tmp_path, videos):
    import av
    csv_path = write_csv(tmp_path / 'vox.csv', VOX_HEADER, VOX_ROWS[1:2])
    out = tmp_path / 'out'
    assert prepare('--metadata', csv_path, '--video_folder', str(videos), '--out_folder', str(out),
                   '--format', '.mp4') == 0
    clip = out / 'test' / f'id10002#{SOURCE_ID}#000010#000060.mp4'
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == FILE_FPS            # the source's rate, so it plays at true speed
        keys = [i for i, packet in enumerate(p for p in container.demux(stream) if p.size) if packet.is_keyframe]
    assert keys == list(range(0, 60, FILE_FPS))
    with open(csv_path) as f:
        ref = np.stack(reference_clips(str(videos / f'{SOURCE_ID}.mp4'), list(csv.DictReader(f)), (256, 256))[0])
    ours = read_clip(str(clip))
    assert ours.shape == ref.shape
    assert np.abs(ours.astype(np.float64) - ref).mean() <= 3.0     # H.264 at crf 18 (the reference's mp4 is lossy too)


@needs_sample
def test_ted_and_taichi_formats_cut_the_same_frames(tmp_path, videos):
    ted = write_csv(tmp_path / 'ted.csv', 'video_id,start,end,bbox,fps,width,height,partition',
                    [f'{SOURCE_ID}#000010#000060,0,0,60-40-600-800,25.0,640,854,train'])
    taichi = write_csv(tmp_path / 'taichi.csv', 'video_id,start,end,bbox,fps,width,height',
                       [f'{SOURCE_ID},10,60,60-40-600-800,25.0,640,854'])
    for path, out in ((ted, tmp_path / 'ted'), (taichi, tmp_path / 'taichi')):
        assert prepare('--metadata', path, '--video_folder', str(videos), '--out_folder', str(out),
                       '--format', '.png', '--image_shape', '64,64') == 0
    a = read_clip(str(tmp_path / 'ted' / 'train' / f'{SOURCE_ID}#000010#000060.mp4'))
    b = read_clip(str(tmp_path / 'taichi' / 'train' / f'{SOURCE_ID}#000010#000060.mp4'))
    assert a.shape == (60, 64, 64, 3) and np.array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# At scale: streaming, resuming, the pool


@needs_sample
def test_decoding_stops_after_the_last_frame_a_segment_needs(tmp_path, videos):
    meta = read_metadata(write_csv(tmp_path / 'vox.csv', VOX_HEADER, VOX_ROWS[:1]))
    options = Options(str(videos), str(tmp_path / 'out'), '.png', (32, 32))
    calls = []
    result = process_video(SOURCE_ID, meta.segments, options, report=calls.append)
    assert (result.written, result.frames, result.decoded) == (1, 7, 16)    # frames 0..15, not all 90
    assert sum(calls) == 1


@needs_sample
def test_every_segment_is_reported_once_to_the_progress_bar(tmp_path, videos):
    rows = VOX_ROWS + [f'{SOURCE_ID},60,100,0-0-640-854,25,640,854,train,id1',      # past the end
                       f'{SOURCE_ID},7,13,700-100-800-200,25,640,854,train,id1']      # box outside
    meta = read_metadata(write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows))
    for folder in (videos, tmp_path / 'empty'):       # the video there, then missing
        calls = []
        options = Options(str(folder), str(tmp_path / f'out-{folder.name}'), '.mp4', (32, 32))
        result = process_video(SOURCE_ID, meta.segments, options, report=calls.append)
        assert sum(calls) == 5 and all(n > 0 for n in calls)
        assert (result.written, len(result.failed)) == ((3, 2) if folder == videos else (0, 0))


@needs_sample
def test_a_clip_that_cannot_be_written_is_not_called_a_decoding_problem(tmp_path, videos, monkeypatch):
    import dataprep.worker as worker
    from media import MediaError

    class FullDisk:
        def __init__(self, path, fmt, fps):
            self.aborted = False

        def write(self, frame):
            raise MediaError('cannot write clip.mp4: No space left on device')

        def abort(self):
            self.aborted = True

    monkeypatch.setattr(worker, 'open_clip', FullDisk)
    meta = read_metadata(write_csv(tmp_path / 'vox.csv', VOX_HEADER, VOX_ROWS))
    calls = []
    result = process_video(SOURCE_ID, meta.segments, Options(str(videos), str(tmp_path / 'out'), '.mp4', (32, 32)),
                           report=calls.append)
    assert len(result.failed) == 1 and 'No space left on device' in result.failed[0], result.failed
    assert '3 clip(s) not written' in result.failed[0] and 'decoding' not in result.failed[0]
    assert sum(calls) == 3 and result.written == 0


@needs_sample
def test_rerun_skips_finished_clips_and_resumes(tmp_path, videos, capsys):
    csv_path = write_csv(tmp_path / 'vox.csv', VOX_HEADER, VOX_ROWS)
    out = tmp_path / 'out'
    args = ('--metadata', csv_path, '--video_folder', str(videos), '--out_folder', str(out), '--format', '.mp4',
            '--image_shape', '64,64')
    assert prepare(*args) == 0
    assert '3 segment(s) written, 0 skipped as done, 0 failed; no video missing' in capsys.readouterr().err
    clips = sorted(out.rglob('*.mp4'))
    times = {p: p.stat().st_mtime_ns for p in clips}
    clips[0].unlink()
    (out / 'train' / f'.{clips[1].name}.x1y2.part.mp4').write_bytes(b'half')   # a killed run's temporary
    assert prepare(*args) == 0
    assert '1 segment(s) written, 2 skipped as done, 0 failed' in capsys.readouterr().err
    assert all(p.stat().st_mtime_ns == times[p] for p in clips[1:]) and clips[0].is_file()
    assert not [p for p in out.rglob('.*')]


@needs_sample
def test_two_workers_write_what_one_writes(tmp_path, videos):
    second = tmp_path / 'videos'
    second.mkdir()
    for name in (SOURCE_ID, 'second_vid1'):
        os.symlink(videos / f'{SOURCE_ID}.mp4', second / f'{name}.mp4')
    rows = VOX_ROWS + [row.replace(SOURCE_ID, 'second_vid1') for row in VOX_ROWS]
    csv_path = write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows)
    for workers in ('1', '2'):
        assert prepare('--metadata', csv_path, '--video_folder', str(second), '--out_folder',
                       str(tmp_path / f'out{workers}'), '--format', '.png', '--image_shape', '32,32',
                       '--workers', workers) == 0
    assert listing(tmp_path / 'out1') == listing(tmp_path / 'out2')
    assert len([p for p in listing(tmp_path / 'out2') if p.endswith('.mp4')]) == 6
    for clip in (tmp_path / 'out1').rglob('*#*.mp4'):
        twin = tmp_path / 'out2' / clip.relative_to(tmp_path / 'out1')
        assert np.array_equal(read_clip(str(clip)), read_clip(str(twin)))


# ------------------------------------------------------------------------------------------------
# Bad input: one line each, nothing half-written


@needs_sample
def test_box_outside_the_frame_and_segment_past_the_end(tmp_path, videos, capsys):
    rows = [f'{SOURCE_ID},7,13,700-100-800-200,25,640,854,train,id10001',      # right of a 410-wide frame
            f'{SOURCE_ID},60,100,0-0-640-854,25,640,854,train,id10001',        # frames 72..119 of 90
            f'{SOURCE_ID},10,20,0-0-640-854,25,640,854,train,id10001']         # fine
    out = tmp_path / 'out'
    assert prepare('--metadata', write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows), '--video_folder', str(videos),
                   '--out_folder', str(out), '--format', '.mp4', '--image_shape', '32,32') == 2
    err = capsys.readouterr().err.splitlines()
    box = [line for line in err if '#000007#000013' in line]
    end = [line for line in err if '#000060#000100' in line]
    assert len(box) == 1 and 'outside the frame' in box[0] and 'line 2' in box[0]
    assert len(end) == 1 and 'frames 72..119' in end[0] and 'only 90 frames' in end[0]
    assert '1 segment(s) written, 0 skipped as done, 2 failed' in err[-1]
    assert listing(out / 'train') == [f'id10001#{SOURCE_ID}#000010#000020.mp4']   # no temporaries left


@needs_sample
def test_video_damaged_part_way_keeps_the_clips_before_the_damage(tmp_path, videos, capsys):
    folder = tmp_path / 'videos'
    folder.mkdir()
    whole = folder / 'whole.mp4'
    subprocess.run([ffmpeg_exe(), '-loglevel', 'error', '-i', str(videos / f'{SOURCE_ID}.mp4'), '-c', 'copy',
                    '-movflags', '+faststart', str(whole)], check=True)     # index first: the cut file opens
    data = whole.read_bytes()
    (folder / f'{SOURCE_ID}.mp4').write_bytes(data[:len(data) * 2 // 3])
    whole.unlink()
    rows = [f'{SOURCE_ID},0,10,0-0-640-854,25,640,854,train,id1', f'{SOURCE_ID},60,70,0-0-640-854,25,640,854,train,id1']
    out = tmp_path / 'out'
    assert prepare('--metadata', write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows), '--video_folder', str(folder),
                   '--out_folder', str(out), '--image_shape', '32,32') == 2
    err = capsys.readouterr().err.splitlines()
    late = [line for line in err if '#000060#000070' in line]
    assert len(late) == 1 and 'frames 72..83' in late[0] and 'clip not written' in late[0], err
    assert listing(out / 'train') == [f'id1#{SOURCE_ID}#000000#000010.mp4'] + \
        [f'id1#{SOURCE_ID}#000000#000010.mp4/{i:07d}.png' for i in range(12)]


def test_unreadable_and_absent_videos_go_to_missing_csv(tmp_path, capsys):
    videos = tmp_path / 'videos'
    videos.mkdir()
    (videos / 'broken_vid1.mp4').write_bytes(b'not a video at all' * 100)
    rows = ['broken_vid1,1,5,0-0-10-10,25,640,480,train,id1', 'absent_vid1,1,5,0-0-10-10,25,640,480,test,id2',
            'absent_vid1,6,9,0-0-10-10,25,640,480,test,id2']
    out = tmp_path / 'out'
    assert prepare('--metadata', write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows), '--video_folder', str(videos),
                   '--out_folder', str(out)) == 2          # nothing could be made at all
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if line.startswith('missing video broken_vid1: unreadable')]) == 1
    assert len([line for line in err if line.startswith('missing video absent_vid1: not in')]) == 1
    with open(out / 'missing.csv') as f:
        missing = list(csv.DictReader(f))
    assert [(r['video_id'], r['segments']) for r in missing] == [('absent_vid1', '2'), ('broken_vid1', '1')]
    assert listing(out) == ['missing.csv', 'test', 'train']


# ------------------------------------------------------------------------------------------------
# --download (yt-dlp replaced by a stand-in: tests run offline)


def fake_yt_dlp(available: dict[str, Path]) -> types.ModuleType:
    """A yt_dlp stand-in: 'downloads' ids found in `available` by copying the file, else fails as offline."""
    module = types.ModuleType('yt_dlp')

    class DownloadError(Exception):
        pass

    class YoutubeDL:
        def __init__(self, options):
            self.options = options

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def download(self, urls):
            video_id = urls[0].rsplit('=', 1)[1]
            if video_id not in available:
                self.options['logger'].error(f'ERROR: [youtube] {video_id}: Unable to download webpage: '
                                             '<urlopen error [Errno -3] Temporary failure in name resolution>')
                raise DownloadError('download failed')
            target = self.options['outtmpl'].replace('%(ext)s', 'mp4')
            Path(target).write_bytes(available[video_id].read_bytes())

    module.YoutubeDL, module.DownloadError = YoutubeDL, DownloadError
    return module


@needs_sample
def test_download_fetches_missing_videos_and_goes_on_when_one_fails(tmp_path, videos, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'yt_dlp', fake_yt_dlp({SOURCE_ID: videos / f'{SOURCE_ID}.mp4'}))
    rows = [VOX_ROWS[0], 'gone_vid_01,1,5,0-0-10-10,25,640,480,train,id2']
    out, folder = tmp_path / 'out', tmp_path / 'fetched'
    assert prepare('--metadata', write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows), '--video_folder', str(folder),
                   '--out_folder', str(out), '--download', '--image_shape', '32,32') == 0
    err = capsys.readouterr().err.splitlines()
    gone = [line for line in err if 'gone_vid_01' in line]
    assert len(gone) == 1 and 'could not download' in gone[0] and 'name resolution' in gone[0]
    assert (folder / f'{SOURCE_ID}.mp4').is_file()
    assert (out / 'train' / f'id10001#{SOURCE_ID}#000007#000013.mp4').is_dir()
    assert '1 segment(s) written' in err[-1] and '1 video(s) missing' in err[-1]
    with open(out / 'missing.csv') as f:
        assert [r['video_id'] for r in csv.DictReader(f)] == ['gone_vid_01']


def test_download_without_yt_dlp_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'yt_dlp', None)       # import yt_dlp raises ImportError
    csv_path = write_csv(tmp_path / 'vox.csv', VOX_HEADER, VOX_ROWS)
    assert prepare('--metadata', csv_path, '--out_folder', str(tmp_path / 'out'), '--download') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: --download needs the yt-dlp package: pip install yt-dlp']


# ------------------------------------------------------------------------------------------------
# The output trains with run.py and an official config's dataset_params


@needs_sample
def test_prepared_set_trains_one_epoch_with_the_official_dataset_params(tmp_path, videos):
    import yaml
    import run
    from conftest import CONFIG_DIR, TINY_FOMM

    rows = [f'{SOURCE_ID},{s},{s + 12},60-40-600-800,25,640,854,{part},{person}'
            for s, part, person in ((0, 'train', 'id1'), (12, 'train', 'id2'), (24, 'train', 'id3'),
                                    (36, 'train', 'id1'), (48, 'test', 'id4'))]
    data = tmp_path / 'vox'
    assert prepare('--metadata', write_csv(tmp_path / 'vox.csv', VOX_HEADER, rows), '--video_folder', str(videos),
                   '--out_folder', str(data), '--format', '.mp4') == 0
    official = yaml.safe_load((CONFIG_DIR / 'fomm' / 'vox-256.yaml').read_text())
    config = copy.deepcopy(TINY_FOMM)
    config['dataset_params'] = {**official['dataset_params'], 'root_dir': str(data)}   # only the root moves
    config['train_params'].update({'vgg19_weights': 'random', 'dataloader_workers': 0, 'batch_size': 2,
                                   'num_repeats': 1, 'num_epochs': 1, 'epoch_milestones': []})
    # 256x256 frames: one scale, VGG's first block, no discriminator and no equivariance pass keep
    # the one step fast on a CPU (the data, not the losses, is under test)
    config['train_params']['scales'] = [1]
    config['train_params']['loss_weights'].update({'generator_gan': 0, 'discriminator_gan': 0,
                                                   'feature_matching': [0], 'perceptual': [10, 0, 0, 0, 0],
                                                   'equivariance_value': 0, 'equivariance_jacobian': 0})
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config))
    assert run.main(['--config', str(path), '--log_dir', str(tmp_path / 'log')]) == 0
    (run_dir,) = (tmp_path / 'log').iterdir()
    assert (run_dir / '00000000-checkpoint.pth.tar').is_file()
