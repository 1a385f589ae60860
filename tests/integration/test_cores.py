"""How a render shares the cores: the audio pass is one of the encoders' jobs, not one more process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import render_json
from tests.ffmpeg_log import Run, busy_at, logging_ffmpeg, read_runs
from tests.mediagen import make_music, make_tone_burst, make_video

pytestmark = pytest.mark.integration

CORES = 2


def render_logged(tmp_path: Path, segments: int, **env_vars: str) -> list[Run]:
    """Render ``segments`` 720p25 segments (all to be normalised to 1080p30) with dialogue and
    music on ``CORES`` cores; every ffmpeg run as (start, end, its arguments)."""
    make_video(tmp_path / "seg.mp4", width=1280, height=720, fps=25, duration=1.5)
    make_tone_burst(tmp_path / "line.wav", freq=1000, duration=0.5)
    make_music(tmp_path / "bed.wav", duration=3.0, freq=220)
    spec = {
        "version": 1,
        "project_id": "p",
        "scene_id": "cores",
        "output": {"resolution": "1080p", "fps": 30},
        # One source, but each segment trimmed differently: different encodes, none shared.
        "segments": [{"id": f"s{i}", "url": "seg.mp4", "trim_start": i * 0.04} for i in range(segments)],
        "audio": {
            "clips": [
                {"type": "dialogue", "url": "line.wav", "segment_id": "s0", "offset": 0.2},
                {"type": "music", "url": "bed.wav", "loop": True, "volume": 0.5},
            ]
        },
    }
    (tmp_path / "job_spec.json").write_text(json.dumps(spec))
    logged, log = logging_ffmpeg(tmp_path)
    env = {"SCENERENDER_CPUS": str(CORES), **logged, **env_vars}
    result = render_json(tmp_path / "job_spec.json", tmp_path / "o.mp4", timeout=300, env=env)
    assert result["segments_encoded"] == segments
    return read_runs(log)


def test_the_audio_pass_takes_a_core_of_the_encodes_and_never_runs_beside_all_of_them(tmp_path: Path) -> None:
    runs = render_logged(tmp_path, segments=3)
    encodes = [run for run in runs if "libx264" in run[2]]
    assert len(encodes) == 3 and all("-threads 1 " in argv for *_, argv in encodes)
    # While the encodes run, the other runs are the audio pass's (the mux comes after them).
    video_end = max(ended for _, ended, _ in encodes)
    audio = [run for run in runs if "libx264" not in run[2] and run[0] < video_end]
    assert audio, "the audio pass ran after the video instead of beside an encode"
    for began, _, _ in runs:
        encoding, others = busy_at(runs, began)
        # Before, the audio ran as a third process beside both encodes: three on two cores.
        assert encoding <= CORES and not (encoding == CORES and others), (encoding, others)
    # It had a core of its own, beside an encode: the cores were shared, not taken in turns.
    assert any(busy_at(runs, began) == (1, 1) for began, _, _ in audio)


def test_a_single_encode_takes_every_core_and_the_audio_runs_beside_it(tmp_path: Path) -> None:
    runs = render_logged(tmp_path, segments=1)
    (encode,) = [run for run in runs if "libx264" in run[2]]
    assert f"-threads {CORES} " in encode[2]
    began, ended, _ = encode
    # Queued after it, the audio would leave a core idle while it ran; it starts beside it.
    assert any(began <= start < ended for start, _, argv in runs if "libx264" not in argv)


def test_under_a_memory_budget_of_one_encode_at_a_time_the_audio_runs_beside_it(tmp_path: Path) -> None:
    # 384 MB holds one 1080p encode of two threads, not two of one (plan.parallel_jobs).
    runs = render_logged(tmp_path, segments=3, SCENERENDER_MEMORY_MB="384")
    encodes = sorted(run for run in runs if "libx264" in run[2])
    assert len(encodes) == 3 and all(f"-threads {CORES} " in argv for *_, argv in encodes)
    assert all(busy_at(runs, began)[0] == 1 for began, _, _ in encodes)  # one at a time
    first_began, first_ended, _ = encodes[0]
    assert any(first_began <= start < first_ended for start, _, argv in runs if "libx264" not in argv)
