"""Audio: the first audio track of a file, remuxed or re-encoded into an mp4 beside its video."""
from __future__ import annotations

from .decoding import _av, _open_failure
from .errors import _error

#: Audio codecs an mp4 holds as they are (packets are copied); others are re-encoded to AAC.
MP4_AUDIO_CODECS = ('aac', 'mp3', 'ac3', 'eac3', 'alac')


class _AudioTrack:
    """The first audio track of a file, written into an mp4 alongside its video, cut to its length.

    Packets are copied when the codec fits mp4 (:data:`MP4_AUDIO_CODECS`; the cut falls on a packet
    boundary), else decoded and re-encoded to AAC (cut to the sample). Audio is interleaved with the
    video as that is written, so nothing is held back.
    """

    def __init__(self, source: str) -> None:
        av = _av()
        self.source = source
        try:
            self.input = av.open(source, metadata_errors='ignore')
        except (av.error.FFmpegError, OSError) as err:
            raise _error('audio source', source, _open_failure(source, err)) from None
        self.stream = self.input.streams.audio[0] if self.input.streams.audio else None
        self.output = None
        self._pending = None      # the first packet not written yet (it starts after the video so far)
        self._fifo = None         # re-encoding: resampled audio waiting for the video to reach it
        self._samples = 0         # re-encoding: samples written

    def add_to(self, out) -> None:
        """Declare the audio stream in ``out`` (before its first packet is written)."""
        av = _av()
        self._packets = self.input.demux(self.stream)
        # Timestamps count from the file's start, as the ffmpeg program's do (video and audio stay in sync).
        self._shift = round((self.input.start_time or 0) / 1_000_000 / self.stream.time_base)
        if self.stream.codec_context.name in MP4_AUDIO_CODECS:
            self.output = out.add_stream_from_template(self.stream)
            return
        self._rate = self.stream.codec_context.sample_rate
        self.output = out.add_stream('aac', rate=self._rate)
        # A named layout (AAC refuses an unnamed '1 channels' one); more than two channels are downmixed.
        self.output.layout = 'mono' if self.stream.codec_context.channels == 1 else 'stereo'
        self._resampler = av.AudioResampler(format='fltp', layout=self.output.layout, rate=self._rate)
        self._fifo = av.AudioFifo()

    def write_until(self, out, seconds: float) -> None:
        """Write the audio up to ``seconds`` of video."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None or packet.size == 0:   # the source's audio ended
                self._packets = iter(())
                break
            if packet.pts is not None and (packet.pts - self._shift) * self.stream.time_base >= seconds:
                self._pending = packet
                break
            if self._fifo is None:
                packet.pts = packet.pts - self._shift if packet.pts is not None else None
                packet.dts = packet.dts - self._shift if packet.dts is not None else None
                packet.stream = self.output
                out.mux(packet)
                continue
            for frame in packet.decode():
                for part in self._resampler.resample(frame):
                    part.pts = None
                    self._fifo.write(part)
        if self._fifo is not None and self._fifo.samples:
            take = min(round(seconds * self._rate) - self._samples, self._fifo.samples)
            if take > 0:
                part = self._fifo.read(take)
                part.pts, self._samples = self._samples, self._samples + take
                out.mux(self.output.encode(part))

    def finish(self, out) -> None:
        """Flush the AAC encoder (re-encoding only)."""
        if self._fifo is not None:
            out.mux(self.output.encode(None))

    def close(self) -> None:
        self.input.close()
