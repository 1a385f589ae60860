"""The sync certificate (``scenerender.core.sync``) on real renders: clean ones report where every
boundary and onset landed, within a frame and 20 ms; a render made wrong on purpose (a plan
function patched to misplace one clip or one join, as a bug would) is refused as
RENDER_FAILED naming the place, and nothing is published."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from scenerender.cli.local import local_policy
from scenerender.cli.specfiles import load_spec
from scenerender.core import plan, sync
from scenerender.core.ffmpeg import FFmpegRunner
from scenerender.core.inputs import InputResolver
from scenerender.core.plan import audio_mix, output
from scenerender.core.render import RenderOptions, RenderResult, render
from scenerender.errors import OutOfSyncError
from scenerender.settings import Settings
from tests.integration.test_render import write_spec
from tests.mediagen import make_clicks, make_stamped

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sync")
    # Segments whose own sound clicks 0.1 s in; two clips that click at their first sample.
    make_stamped(folder / "seg.mp4", duration=1, audio_duration=1, clicks=(0.1,))
    make_clicks(folder / "line.wav", duration=0.5, clicks=(0.0,))
    make_clicks(folder / "hit.m4a", duration=0.3, clicks=(0.0,), args=("-c:a", "aac"))
    return folder


def scene(media: Path, name: str, *, preview: bool = False) -> Path:
    """Four 1 s segments and two clips; ``preview``: at another size, so every segment is encoded."""
    return write_spec(
        media,
        {
            "output": {"resolution": "256x144" if preview else "320x180", "fps": 30, "preview": preview},
            "segments": [{"id": f"s{i}", "url": "seg.mp4", "volume": 1.0} for i in range(4)],
            "audio": {
                "clips": [
                    {"type": "dialogue", "url": "line.wav", "segment_id": "s1", "offset": 0.45},
                    {"type": "sfx", "url": "hit.m4a", "start": 2.7},
                ],
                "loudness": None,
                "ducking": {"enabled": False},
            },
        },
        f"{name}.json",
    )


def render_here(spec_path: Path, out: Path) -> RenderResult:
    settings = Settings(segment_cache=False, deliverables=False)
    policy = local_policy(spec_path, settings)
    return render(
        load_spec(spec_path), out, lambda d: InputResolver(d, policy), options=RenderOptions.from_settings(settings)
    )


@pytest.mark.parametrize("preview", [False, True], ids=["copy", "encode"])
def test_a_clean_render_certifies_every_boundary_and_onset(media: Path, tmp_path: Path, preview: bool) -> None:
    result = render_here(scene(media, f"clean-{preview}", preview=preview), tmp_path / "out.mp4")
    assert result.fast_path is not preview
    sync: dict[str, Any] = result.sync
    assert sync["boundaries_measured"] == 5  # four segments' first frames and the picture's end
    assert sync["onsets_measured"] == 6 and sync["onsets_not_measured"] == [], sync  # 4 segments' sound, 2 clips
    assert sync["max_boundary_error_ms"] <= 1000 / 30 and sync["max_onset_error_ms"] <= 20, sync
    assert "sync_s" in result.timings


def place_sfx_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the mix that puts the sfx clip (``audio.clips[1]``) 80 ms (2.4 frames at 30 fps) late."""
    chain = audio_mix.clip_chain

    def late(clip: Any, *args: Any, **kwargs: Any) -> str:
        text = chain(clip, *args, **kwargs)
        if clip.index == 1:
            planned, late = round(clip.start * 48000), round((clip.start + 0.08) * 48000)
            text = text.replace(f"adelay=delays={planned}S", f"adelay=delays={late}S")
        return text

    monkeypatch.setattr(audio_mix, "clip_chain", late)


def test_a_clip_placed_late_is_refused_naming_it(media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    place_sfx_late(monkeypatch)
    out = tmp_path / "late.mp4"
    with pytest.raises(OutOfSyncError) as caught:
        render_here(scene(media, "late-clip"), out)
    assert caught.value.code == "RENDER_FAILED"
    assert "audio.clips[1] (sfx)" in caught.value.message and "planned 2.700 s" in caught.value.message
    assert "80." in caught.value.message and "ms late" in caught.value.message, caught.value.message
    assert [d.path for d in caught.value.details] == ["audio.clips[1] (sfx)"]
    assert not out.exists()


@pytest.mark.parametrize("preview", [False, True], ids=["copy", "encode"])
def test_a_join_that_slides_is_refused_naming_the_segment(
    media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preview: bool
) -> None:
    # A bug in the join: the second part's picture lasts two frames longer than planned, so
    # every later segment's picture starts 67 ms after its sound.
    listing = plan.concat_list

    def sliding(parts: Any) -> str:
        parts = list(parts)
        parts[1] = plan.VideoPart(parts[1].path, parts[1].duration + Fraction(2, 30), parts[1].label)
        return listing(parts)

    monkeypatch.setattr(output, "concat_list", sliding)
    out = tmp_path / "slid.mp4"
    with pytest.raises(OutOfSyncError) as caught:
        render_here(scene(media, f"slide-{preview}", preview=preview), out)
    message = caught.value.message
    assert "segments[2] ('s2')" in message and "planned 2.000 s" in message and "66.7 ms late" in message, message
    assert "segments[3] ('s3')" in {d.path for d in caught.value.details}
    assert not out.exists()


def long_scene(media: Path, name: str) -> Path:
    """Thirty 1 s segments without their own sound (copied), a line at 4.45 s and the sfx
    at 24.7 s: the certificate decodes the output around those two only."""
    return write_spec(
        media,
        {
            "output": {"resolution": "320x180", "fps": 30},
            "segments": [{"id": f"s{i}", "url": "seg.mp4"} for i in range(30)],
            "audio": {
                "clips": [
                    {"type": "dialogue", "url": "line.wav", "segment_id": "s4", "offset": 0.45},
                    {"type": "sfx", "url": "hit.m4a", "start": 24.7},
                ],
                "loudness": None,
                "ducking": {"enabled": False},
            },
        },
        f"{name}.json",
    )


@pytest.fixture
def spans_used(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[int, int]]]:
    """What ``sync.output_spans`` chose, each time the certificate asked."""
    chosen: list[list[tuple[int, int]]] = []
    real = sync.output_spans

    def spy(*args: Any) -> list[tuple[int, int]]:
        chosen.append(real(*args))
        return chosen[-1]

    monkeypatch.setattr(sync, "output_spans", spy)
    return chosen


def test_a_long_scene_is_measured_in_stretches_to_the_sample(
    media: Path, tmp_path: Path, spans_used: list[list[tuple[int, int]]]
) -> None:
    # Decoded from seeks, the output's stretches must be the samples a decode from the
    # start gives: a stretch a frame off would put both onsets 21 ms out.
    result = render_here(long_scene(media, "long-clean"), tmp_path / "long.mp4")
    [spans] = spans_used
    assert len(spans) == 2 and sum(end - start for start, end in spans) < 30 * sync.RATE / 2, spans
    assert result.sync["onsets_measured"] == 2 and result.sync["max_onset_error_ms"] <= 0.5, result.sync


def test_a_clip_placed_late_in_a_long_scene_is_refused(
    media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spans_used: list[list[tuple[int, int]]]
) -> None:
    place_sfx_late(monkeypatch)
    out = tmp_path / "long-late.mp4"
    with pytest.raises(OutOfSyncError) as caught:
        render_here(long_scene(media, "long-late"), out)
    assert len(spans_used[0]) == 2
    assert "audio.clips[1] (sfx)" in caught.value.message and "planned 24.700 s" in caught.value.message
    assert "80." in caught.value.message and "ms late" in caught.value.message, caught.value.message
    assert not out.exists()


def test_the_copy_paths_sound_is_measured_as_muxed_and_as_the_file_plays(media: Path, tmp_path: Path) -> None:
    # On the copy path the output's stretches are decoded by the mux, from the packets it
    # writes (``sync.packet_decode``): they must be, sample for sample, what a decode of the
    # finished file gives (``sync.output_command``), or the certificate would measure
    # something other than the output.
    seen: list[tuple[sync.Measurement, bool, sync.Spans]] = []
    real = sync.output_sound

    def spy(
        out: Path, measurement: sync.Measurement, runner: FFmpegRunner, work: Path, *, muxed: Any = None
    ) -> sync.Spans:
        seen.append((measurement, muxed is not None, real(out, measurement, runner, work, muxed=muxed)))
        return seen[-1][2]

    out = tmp_path / "long.mp4"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sync, "output_sound", spy)
        result = render_here(long_scene(media, "long-muxed"), out)
    [(measurement, muxed, in_mux)] = seen
    assert result.fast_path and muxed and len(measurement.spans) == 2
    from_file = real(out, measurement, FFmpegRunner("ffmpeg"), tmp_path)
    for start, end in measurement.spans:
        a, b = in_mux[start:end], from_file[start:end]
        assert len(a) == len(b) == end - start
        assert max(map(abs, a)) > 0.1  # a click is in each stretch: not two silences compared
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-6
