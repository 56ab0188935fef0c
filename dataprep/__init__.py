"""Make the papers' data sets (VoxCeleb, Tai-Chi-HD, TED-384) from the authors' metadata CSVs.

`prepare_dataset.py` is the command; this package holds its parts, each small:

* :mod:`dataprep.metadata`: read and check a metadata CSV (the three published formats) into
  :class:`~dataprep.metadata.Segment` records, one per clip, with the clip's file name.
* :mod:`dataprep.rules`: which source frames belong to a segment and where its box lies in the
  file, exactly as video-preprocessing's ``load_videos.py`` decides.
* :mod:`dataprep.clips`: atomic clip writers (H.264 ``.mp4`` with a keyframe every second, or a
  folder of ``0000000.png`` frames).
* :mod:`dataprep.worker`: one source video: decode it once and stream every segment's crops.
* :mod:`dataprep.download`: fetch a missing source video with yt-dlp (optional dependency).
* :mod:`dataprep.jobs`: the process pool, the progress bar, the summary and ``missing.csv``.
"""
