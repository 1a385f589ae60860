"""The AAC encode shared by one encoder per core and joined frame by frame: the same audio as one encoder makes.

Each scene is rendered twice from the CLI, with ``SCENERENDER_CPUS=1`` (one encoder) and with
more; the outputs are decoded and compared sample by sample.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scenerender.cli.local import local_policy
from scenerender.cli.specfiles import load_spec
from scenerender.core import adts, plan
from scenerender.core.inputs import InputResolver
from scenerender.core.render import RenderOptions, render
from scenerender.errors import RenderError
from scenerender.settings import Settings
from tests import measure
from tests.cli import render_json
from tests.mediagen import make_music, make_tone_burst, make_video

pytestmark = pytest.mark.integration

WINDOW = 4800  # 100 ms


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chunks")
    make_video(folder / "v.mp4", width=640, height=360, fps=30, duration=2.0)
    make_tone_burst(folder / "line.wav", freq=1000, duration=0.6)
    make_music(folder / "bed.wav", duration=2.5, freq=220)
    return folder


def scene(folder: Path, name: str, seconds: int, clips: list[dict[str, Any]], **audio: Any) -> Path:
    spec = {
        "version": 1,
        "project_id": "p",
        "scene_id": name,
        "output": {"resolution": "360p"},
        "segments": [{"id": f"s{i}", "url": str(folder / "v.mp4")} for i in range(seconds // 2)],
        "audio": {"clips": clips, **audio},
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def render_with(spec: Path, out: Path, cpus: int) -> dict[str, Any]:
    return render_json(spec, out, env={"SCENERENDER_CPUS": str(cpus)})


def join_times(seconds: int, encoders: int) -> list[float]:
    """Where (in s) the audio of a ``seconds`` scene is nominally joined when ``encoders`` share it."""
    chunks = plan.audio_chunks(seconds * plan.SAMPLE_RATE, encoders)
    return [c.join_candidates[0] * adts.FRAME_SAMPLES / plan.SAMPLE_RATE for c in chunks[1:]]


def window_snr_db(reference: measure.Samples, other: measure.Samples) -> list[tuple[float, float]]:
    """(SNR of ``other`` against ``reference`` in dB, window start in s) for each 100 ms window with signal."""
    ref, oth = reference.astype(np.float64), other.astype(np.float64)
    found = []
    for start in range(0, len(ref) - WINDOW, WINDOW):
        signal = float(np.sum(ref[start : start + WINDOW] ** 2))
        error = float(np.sum((ref[start : start + WINDOW] - oth[start : start + WINDOW]) ** 2))
        if signal > 1e-6:
            found.append((10 * np.log10(signal / error) if error > 0 else float("inf"), start / measure.SAMPLE_RATE))
    return found


def test_dialogue_across_a_join_sounds_as_one_encoder_makes_it(media: Path, tmp_path: Path) -> None:
    # 20 s on the fast path: two encoders; the dialogue line starts 0.1 s before their join.
    join_s = join_times(20, 2)[0]
    line_s = round(join_s - 0.1, 3)
    spec = scene(
        media,
        "join",
        20,
        [
            {"type": "music", "url": "bed.wav", "loop": True, "volume": 0.5},
            {"type": "dialogue", "url": "line.wav", "segment_id": f"s{int(line_s // 2)}", "offset": line_s % 2},
        ],
    )
    single = render_with(spec, tmp_path / "single.mp4", cpus=1)
    shared = render_with(spec, tmp_path / "shared.mp4", cpus=2)
    assert (single["audio_encoders"], shared["audio_encoders"]) == (1, 2)
    for result in (single, shared):
        assert result["fast_path"] is True
        assert result["duration_s"] == 20.0 and result["av_drift_ms"] == 0.0
    assert shared["loudness_lufs"] == pytest.approx(single["loudness_lufs"], abs=0.1)
    assert shared["true_peak_db"] == pytest.approx(single["true_peak_db"], abs=0.3)

    one, joined = measure.decode_audio(tmp_path / "single.mp4"), measure.decode_audio(tmp_path / "shared.mp4")
    assert len(one) == len(joined)
    snr = window_snr_db(one, joined)
    # Up to the join region the first encoder is the single encoder, sample for sample.
    search_s = plan.AUDIO_JOIN_SEARCH_FRAMES * adts.FRAME_SAMPLES / plan.SAMPLE_RATE
    assert all(value == float("inf") for value, at in snr if at < join_s - search_s - 0.2)
    # Around and after the join: the second encoder's own rounding, far below the signal.
    assert min(value for value, _ in snr) >= 30, sorted(snr)[:5]
    assert abs(measure.onset_time(joined, freq=1000, after=line_s - 1.5) - line_s) <= 0.020


def test_three_encoders_make_one_stream_of_exact_length(media: Path, tmp_path: Path) -> None:
    spec = scene(
        media,
        "three",
        30,
        [
            {"type": "music", "url": "bed.wav", "loop": True, "volume": 0.5},
            {"type": "dialogue", "url": "line.wav", "segment_id": "s4", "offset": 1.5},
            {"type": "dialogue", "url": "line.wav", "segment_id": "s10", "offset": 0.5},
        ],
    )
    single = render_with(spec, tmp_path / "single.mp4", cpus=1)
    shared = render_with(spec, tmp_path / "shared.mp4", cpus=4)  # 30 s makes 3 chunks of at least 8 s
    assert shared["audio_encoders"] == 3
    assert shared["duration_s"] == 30.0 and shared["av_drift_ms"] == 0.0
    info = measure.probe(tmp_path / "shared.mp4")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert int(audio["duration_ts"]) == 30 * 48000  # the edit list ends on the last real sample
    assert shared["loudness_lufs"] == pytest.approx(single["loudness_lufs"], abs=0.1)
    one, joined = measure.decode_audio(tmp_path / "single.mp4"), measure.decode_audio(tmp_path / "shared.mp4")
    snr = window_snr_db(one, joined)
    joins = join_times(30, 3)
    # Where a splice went wrong (a click, a frame twice or missing) the window's SNR would fall
    # to near 0 dB. Away from the joins, a tone burst's attack is coded a little differently by
    # an encoder whose bit reservoir has another history: still over 25 dB under the signal.
    assert min(value for value, at in snr if any(abs(at - j) <= 0.5 for j in joins)) >= 30, sorted(snr)[:6]
    assert min(value for value, _ in snr) >= 25, sorted(snr)[:6]
    assert abs(measure.onset_time(joined, freq=1000, after=19.0) - 20.5) <= 0.020


def test_a_peaky_mix_is_limited_in_every_chunk(media: Path, tmp_path: Path) -> None:
    make_tone_burst(tmp_path / "bed.wav", freq=300, duration=20.0, amplitude=0.02)
    make_tone_burst(tmp_path / "click.wav", freq=2000, duration=0.01, amplitude=0.9)
    join_s = join_times(20, 2)[0]
    clips: list[dict[str, Any]] = [
        {"type": "music", "url": str(tmp_path / "bed.wav")},
        {"type": "sfx", "url": str(tmp_path / "click.wav"), "start": 4},
        {"type": "sfx", "url": str(tmp_path / "click.wav"), "start": round(join_s, 2)},
        {"type": "sfx", "url": str(tmp_path / "click.wav"), "start": 16},
    ]
    spec = scene(media, "peaky", 20, clips)
    result = render_with(spec, tmp_path / "peaky.mp4", cpus=2)
    assert result["audio_encoders"] == 2
    lufs, peak = measure.loudness(tmp_path / "peaky.mp4")
    assert abs(lufs - (-14)) <= 1.0 and peak <= -1.0, (lufs, peak)


def test_without_a_clean_join_one_encoder_does_it_all(
    media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two encoders that never windowed a frame alike cannot be joined: the render must still
    # come out whole, from one encoder.
    monkeypatch.setattr(adts, "choose_splice", lambda *args, **kwargs: None)
    spec_path = scene(media, "nojoin", 20, [{"type": "dialogue", "url": "line.wav", "segment_id": "s5"}])
    settings = Settings(cpus=2, segment_cache=False)
    policy = local_policy(spec_path, settings)
    out = tmp_path / "nojoin.mp4"
    result = render(
        load_spec(spec_path), out, lambda d: InputResolver(d, policy), options=RenderOptions.from_settings(settings)
    )
    assert result.audio_encoders == 1
    assert result.duration_s == 20.0 and result.av_drift_ms == 0.0
    assert abs(measure.onset_time(measure.decode_audio(out), freq=1000, after=9.0) - 10.0) <= 0.020
    assert plan.audio_chunks(20 * 48000, 2)  # the scene was long enough to share: the join was refused


def test_an_audio_mux_that_fails_is_reported_as_itself(
    media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The final mux that takes the joined frames dies at once (it is asked for a muxer that
    # does not exist): the render fails with the mux's own error, not with "stopped
    # reading", and leaves no file.
    real = plan.assemble_command

    def broken(timeline: Any, pieces: Any, list_path: Path, audio: Path | int, out: Path, **kwargs: Any) -> Any:
        command = real(timeline, pieces, list_path, audio, out, **kwargs)
        argv = ["no-such-muxer" if arg == "mp4" else arg for arg in command.argv]
        return plan.Command(argv=argv, output=command.output, duration_s=command.duration_s, files=command.files)

    monkeypatch.setattr(plan, "assemble_command", broken)
    spec_path = scene(media, "muxfails", 20, [{"type": "dialogue", "url": "line.wav", "segment_id": "s5"}])
    settings = Settings(cpus=2, segment_cache=False)
    policy = local_policy(spec_path, settings)
    out = tmp_path / "never.mp4"
    with pytest.raises(RenderError) as failed:
        render(
            load_spec(spec_path), out, lambda d: InputResolver(d, policy), options=RenderOptions.from_settings(settings)
        )
    assert "no-such-muxer" in failed.value.stderr_tail and "stopped reading" not in str(failed.value)
    assert not out.exists() and not list(tmp_path.glob(".never.mp4*"))
