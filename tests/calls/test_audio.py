"""Tone source, analyzer, WAV files and sound-device detection (node/calls/audio.py).

No network: tracks are read directly.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from node.calls import audio
from node.calls.audio import (
    FRAME_SAMPLES,
    AudioAnalyzer,
    RecorderSink,
    ToneTrack,
    dbfs,
    dominant_frequency,
    file_source,
    system_audio,
    tone_frame,
)
from node.calls.media import MutableAudio
from tests.calls.conftest import until


def fed(frequency: float, amplitude: float, frames: int = 20) -> AudioAnalyzer:
    analyzer = AudioAnalyzer(window=0.2)
    for i in range(frames):
        analyzer.feed(tone_frame(frequency, amplitude, i * FRAME_SAMPLES))
    return analyzer


@pytest.mark.parametrize("frequency", [440.0, 1000.0, 97.0, 3150.5])
def test_analyzer_measures_a_tone(frequency: float) -> None:
    analyzer = fed(frequency, 0.5)
    measured = analyzer.frequency()
    assert measured is not None and abs(measured - frequency) < 2, measured
    # A sine of peak 0.5 has an RMS of 0.5 / sqrt(2): -9.03 dBFS.
    assert abs(dbfs(analyzer.level()) - dbfs(0.5 / math.sqrt(2))) < 0.1
    assert analyzer.frames == 20 and analyzer.seconds == pytest.approx(0.4)


def test_level_follows_the_amplitude() -> None:
    assert abs(dbfs(fed(440, 0.05).level()) - dbfs(0.05 / math.sqrt(2))) < 0.2
    assert fed(440, 0.05).level() < fed(440, 0.5).level() / 5


def test_silence_has_no_frequency() -> None:
    analyzer = fed(440, 0.0)
    assert analyzer.frequency() is None
    assert analyzer.level() == 0.0 and dbfs(analyzer.level()) == -math.inf
    assert AudioAnalyzer().frequency() is None  # nothing received yet
    assert dominant_frequency([0.5] * 100) is None  # too short to say


def test_tone_frames_are_48k_stereo_with_sample_pts() -> None:
    frame = tone_frame(440, 0.5, 960)
    assert (frame.sample_rate, frame.samples, frame.pts) == (48000, 960, 960)
    assert frame.time_base == audio.TIME_BASE and frame.layout.name == "stereo"


async def test_tone_track_is_continuous_and_ends_when_stopped() -> None:
    track = ToneTrack(1000, 0.3)
    analyzer = AudioAnalyzer(window=0.1)
    pts = []
    for _ in range(6):
        frame = await track.recv()
        pts.append(frame.pts)
        analyzer.feed(frame)
    assert pts == [i * FRAME_SAMPLES for i in range(6)]
    measured = analyzer.frequency()
    assert measured is not None and abs(measured - 1000) < 2
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_analyzer_consumes_a_track() -> None:
    analyzer = AudioAnalyzer()
    track = ToneTrack(660, 0.5)
    await analyzer.attach(track)
    await until(lambda: analyzer.seconds >= 0.3, "0.3 s of tone")
    measured = analyzer.frequency()
    assert measured is not None and abs(measured - 660) < 2
    assert analyzer.first_frame_at is not None
    track.stop()
    await analyzer.close()


async def test_mute_sends_silence_of_the_same_shape() -> None:
    track = MutableAudio(ToneTrack(440, 0.5))
    track.muted = True
    silent = await track.recv()
    assert (silent.samples, silent.pts, silent.sample_rate) == (960, 0, 48000)
    quiet = AudioAnalyzer()
    quiet.feed(silent)
    assert quiet.level() == 0.0
    track.muted = False
    loud = AudioAnalyzer()
    loud.feed(await track.recv())
    assert loud.level() > 0.3
    track.stop()


async def test_wav_round_trip(tmp_path: Path) -> None:
    """A tone recorded with MediaRecorder to WAV and played back with MediaPlayer."""
    path = tmp_path / "tone.wav"
    source = ToneTrack(1000, 0.5)
    recorder = RecorderSink(path)
    await recorder.attach(source)
    probe = AudioAnalyzer()  # paces the wait on the tone's own clock
    await probe.attach(ToneTrack(1000, 0.0))
    await until(lambda: probe.seconds >= 0.6, "0.6 s recorded")
    await recorder.close()
    source.stop()
    await probe.close()
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate) == ("pcm_s16le", 48000)

    played = file_source(path)
    analyzer = AudioAnalyzer()
    await analyzer.attach(played)
    await until(lambda: analyzer.seconds >= 0.3, "0.3 s played back")
    measured = analyzer.frequency()
    assert measured is not None and abs(measured - 1000) < 2
    assert abs(dbfs(analyzer.level()) - dbfs(0.5 / math.sqrt(2))) < 0.5
    played.stop()
    await analyzer.close()


def test_file_source_without_audio(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "still.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(ValueError, match="no audio"):
        file_source(path)


@pytest.mark.parametrize(
    ("formats", "pulse", "alsa", "expected"),
    [
        ({"pulse", "alsa"}, True, True, "pulse"),
        ({"alsa"}, False, True, "alsa"),
        ({"alsa"}, True, False, "PulseAudio runs but PyAV was built without it"),
        (set(), False, True, "a sound card exists but PyAV was built without ALSA"),
        ({"pulse", "alsa"}, False, False, "no sound devices"),
    ],
)
def test_system_audio_choice(
    monkeypatch: pytest.MonkeyPatch, formats: set[str], pulse: bool, alsa: bool, expected: str
) -> None:
    monkeypatch.setattr(audio.av, "formats_available", formats)
    monkeypatch.setattr(audio, "_pulse_server", lambda: pulse)
    monkeypatch.setattr(audio, "_alsa_cards", lambda: alsa)
    found = system_audio()
    if expected in ("pulse", "alsa"):
        assert found.available and found.format == expected
    else:
        assert not found.available and found.reason.startswith(expected)
        assert "\n" not in found.reason
        with pytest.raises(RuntimeError, match=expected):
            found.player()


def test_system_audio_on_this_machine() -> None:
    found = system_audio()
    print(f"\nsound devices here: {found.format or found.reason}")
    assert found.available or found.reason
