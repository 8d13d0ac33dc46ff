"""Audio for calls: a tone source, file sources and recorders, an analyzer, sound devices.

Client-server API, "Voice over IP" module: the media of a call is negotiated by the
SDP that m.call.invite / m.call.answer carry; this module provides what the local side
sends and what it does with what it receives (aiortc tracks, 48 kHz).

- :class:`ToneTrack`: a sine tone at a frequency and level, paced in real time.
- :func:`file_source` / :class:`RecorderSink`: a file played into a call and the
  received audio written to a file (WAV at least), through aiortc's MediaPlayer and
  MediaRecorder.
- :class:`AudioAnalyzer`: a sink that measures the dominant frequency and RMS level of
  a received track over a recent window (a small radix-2 FFT in pure Python: numpy is
  not a dependency).
- :func:`system_audio`: the machine's sound devices (PulseAudio or ALSA through PyAV's
  input formats), or a one-line reason why there are none.

Imported only when a call starts (aiortc and av are heavy).
"""

from __future__ import annotations

import array
import asyncio
import cmath
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc.contrib.media import MediaPlayer, MediaRecorder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from node.calls.tracks import TrackReader

RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, Opus's usual packet
TIME_BASE = Fraction(1, RATE)


class ToneTrack(MediaStreamTrack):
    """A sine tone: ``frequency`` Hz at peak ``amplitude`` (0..1 of full scale),
    48 kHz s16 frames of 20 ms with pts counted in samples, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.5) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = tone_frame(self.frequency, self.amplitude, self._pts)
        self._pts += FRAME_SAMPLES
        return frame


def tone_frame(
    frequency: float, amplitude: float, pts: int, samples: int = FRAME_SAMPLES
) -> av.AudioFrame:
    """One s16 stereo frame of a sine (the same on both channels), continuous across
    frames (the phase follows pts). Stereo because it is what aiortc's Opus encoder
    takes: a mono frame would be upmixed by FFmpeg at -3 dB per channel."""
    peak = max(0.0, min(1.0, amplitude)) * 32767
    step = 2 * math.pi * frequency / RATE
    mono = [round(peak * math.sin(step * (pts + i))) for i in range(samples)]
    data = array.array("h", [0]) * (2 * samples)
    data[0::2] = data[1::2] = array.array("h", mono)
    if sys.byteorder != "little":
        data.byteswap()
    frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
    frame.planes[0].update(data.tobytes())
    frame.sample_rate = RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


def mono_samples(frame: av.AudioFrame) -> list[float]:
    """The first channel of a frame as floats in -1..1 (s16 or flt, packed or planar)."""
    fmt = frame.format.name
    channels = 1 if frame.format.is_planar else len(frame.layout.channels)
    code, scale = {"s16": ("h", 32768.0), "s16p": ("h", 32768.0)}.get(fmt, ("f", 1.0))
    if fmt not in ("s16", "s16p", "flt", "fltp"):
        frame = av.AudioResampler(format="s16", layout="mono").resample(frame)[0]
        code, scale, channels = "h", 32768.0, 1
    width = array.array(code).itemsize
    data = array.array(code, bytes(frame.planes[0])[: frame.samples * channels * width])
    if sys.byteorder != "little":
        data.byteswap()
    return [x / scale for x in data[::channels]]


def rms(samples: list[float]) -> float:
    """Root mean square, 0..1 of full scale (a full-scale sine is 0.707)."""
    if not samples:
        return 0.0
    return math.sqrt(sum(x * x for x in samples) / len(samples))


def dbfs(level: float) -> float:
    """A linear RMS level in dB relative to full scale (-inf for silence)."""
    return 20 * math.log10(level) if level > 0 else -math.inf


def _fft(values: list[complex]) -> list[complex]:
    """Iterative radix-2 FFT (len(values) a power of two)."""
    n = len(values)
    out = list(values)
    j = 0
    for i in range(1, n):  # bit-reversal permutation
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            out[i], out[j] = out[j], out[i]
    size = 2
    while size <= n:
        half = size // 2
        twiddles = [cmath.exp(-2j * math.pi * k / size) for k in range(half)]
        for start in range(0, n, size):
            for k in range(half):
                a, b = out[start + k], out[start + k + half] * twiddles[k]
                out[start + k], out[start + k + half] = a + b, a - b
        size *= 2
    return out


def dominant_frequency(samples: list[float], rate: int = RATE) -> float | None:
    """The frequency (Hz) of the strongest spectral peak in ``samples`` (the last power
    of two of them, Hann-windowed), refined between bins by a parabola through the log
    magnitudes; None for silence or fewer than 256 samples."""
    n = 1 << (len(samples).bit_length() - 1) if samples else 0
    if n < 256 or rms(samples[-n:]) < 1e-4:
        return None
    window = samples[-n:]
    hann = [0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)) for i in range(n)]
    spectrum = _fft([complex(x * w) for x, w in zip(window, hann, strict=True)])
    mags = [abs(c) for c in spectrum[: n // 2]]
    k = max(range(1, n // 2 - 1), key=mags.__getitem__)
    a, b, c = (math.log(max(m, 1e-12)) for m in mags[k - 1 : k + 2])
    denominator = a - 2 * b + c
    offset = 0.5 * (a - c) / denominator if denominator else 0.0
    return (k + offset) * rate / n


class AudioAnalyzer(TrackReader):
    """A sink for a received audio track: keeps the last ``window`` seconds of its first
    channel and counts what arrived; :meth:`frequency` and :meth:`level` measure it."""

    def __init__(self, window: float = 0.2) -> None:
        super().__init__()
        self.window = window
        self.rate = RATE
        self.frames = 0
        self.samples = 0
        self.first_frame_at: float | None = None  # time.monotonic()
        self._recent: deque[float] = deque(maxlen=int(window * RATE))

    def on_frame(self, frame: Any) -> None:
        if isinstance(frame, av.AudioFrame):
            self.feed(frame)

    def feed(self, frame: av.AudioFrame) -> None:
        """Take one frame (also usable without a track)."""
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
        if frame.sample_rate != self.rate:
            self.rate = frame.sample_rate
            self._recent = deque(maxlen=int(self.window * self.rate))
        values = mono_samples(frame)
        self._recent.extend(values)
        self.frames += 1
        self.samples += len(values)

    @property
    def seconds(self) -> float:
        """How much audio has arrived, in seconds."""
        return self.samples / self.rate

    def recent(self) -> list[float]:
        return list(self._recent)

    def frequency(self) -> float | None:
        """The dominant frequency of the recent window, None for silence."""
        return dominant_frequency(self.recent(), self.rate)

    def level(self) -> float:
        """The RMS level of the recent window, 0..1 of full scale."""
        return rms(self.recent())


def file_source(path: str | Path, loop: bool = False) -> MediaStreamTrack:
    """The audio of a file (WAV, Ogg, MP3... whatever FFmpeg reads) as a track, played in
    real time; raises ValueError when the file has no audio."""
    player = MediaPlayer(str(path), loop=loop)
    if player.audio is None:
        raise ValueError(f"{path}: no audio stream")
    return player.audio


class RecorderSink:
    """A sink that writes the received audio to ``path`` (its suffix picks the container,
    e.g. ``.wav``) with aiortc's MediaRecorder; ``format``/``options`` pass through (a
    sound device: ``format="pulse"``, path ``"default"``)."""

    def __init__(
        self, path: str | Path, format: str | None = None, options: dict[str, str] | None = None
    ) -> None:
        self.recorder = MediaRecorder(str(path), format=format, options=options or {})

    async def attach(self, track: MediaStreamTrack) -> None:
        self.recorder.addTrack(track)
        await self.recorder.start()

    async def close(self) -> None:
        await self.recorder.stop()


@dataclass(frozen=True)
class SystemAudio:
    """The machine's sound devices through one of PyAV's device formats, or why not."""

    format: str | None  # "pulse" or "alsa"; None when there are no devices
    device: str = "default"
    reason: str = ""  # one line, set when format is None

    @property
    def available(self) -> bool:
        return self.format is not None

    def player(self) -> MediaStreamTrack:
        """The microphone as a track."""
        if self.format is None:
            raise RuntimeError(self.reason)
        track = MediaPlayer(self.device, format=self.format).audio
        if track is None:
            raise RuntimeError(f"{self.format} {self.device}: no audio input")
        return track

    def recorder(self) -> RecorderSink:
        """The speakers as a sink."""
        if self.format is None:
            raise RuntimeError(self.reason)
        return RecorderSink(self.device, format=self.format)


def _pulse_server() -> bool:
    if os.environ.get("PULSE_SERVER"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Path(runtime, "pulse", "native").exists()


def _alsa_cards() -> bool:
    cards = Path("/proc/asound/cards")
    try:
        text = cards.read_text()
    except OSError:
        return False
    return bool(text.strip()) and "no soundcards" not in text


def system_audio() -> SystemAudio:
    """PulseAudio if a server is reachable and PyAV has the format, else ALSA if the
    kernel has a sound card, else a :class:`SystemAudio` whose ``reason`` says why not."""
    formats = av.formats_available
    if "pulse" in formats and _pulse_server():
        return SystemAudio("pulse")
    if _alsa_cards():
        if "alsa" in formats:
            return SystemAudio("alsa")
        return SystemAudio(None, reason="a sound card exists but PyAV was built without ALSA")
    if "pulse" not in formats and _pulse_server():
        return SystemAudio(None, reason="PulseAudio runs but PyAV was built without it")
    return SystemAudio(None, reason="no sound devices (no PulseAudio server, no ALSA card)")
