"""Synthetic figures for training checks and the bundled example: `python -m synthetic --help`
(`kpanim-synthetic-data`) writes a small data set of moving figures in FramesDataset's layout."""
