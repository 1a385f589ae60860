"""The plan is data: ffmpeg argument lists checked without running ffmpeg."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from scenerender.core import adts, plan
from scenerender.core.probe import DEMUXER_WHITELIST, MediaInfo
from scenerender.core.spec import parse_spec
from scenerender.core.timeline import Timeline, build_timeline
from scenerender.errors import RenderError
from tests.unit.fakes import sound, video


def make(spec: dict[str, Any], probes: dict[str, MediaInfo]) -> Timeline:
    return build_timeline(parse_spec(json.dumps({"version": 1, "project_id": "p", "scene_id": "s", **spec})), probes)


def whole(timeline: Timeline, index: int = 0) -> plan.Piece:
    seg = timeline.segments[index]
    return plan.Piece(seg, 0, seg.frames)


def three_segments(**output: Any) -> dict[str, Any]:
    return {"output": output, "segments": [{"id": f"s{i}", "url": f"{i}.mp4"} for i in range(3)]}


MATCHING = {f"{i}.mp4": video(f"{i}.mp4") for i in range(3)}


def test_fast_path_when_every_segment_matches() -> None:
    assert plan.copy_blockers(make(three_segments(), MATCHING)) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"width": 1280, "height": 720}, "1280x720, output is 1920x1080"),
        ({"fps": Fraction(25)}, "25 fps, output is 30"),
        ({"codec": "hevc", "profile": "Main"}, "not H.264 High"),
        ({"profile": "Main"}, "not H.264 High"),
        ({"rotation": 90}, "rotated 90"),
        ({"extradata": "SHA256:other"}, "encoded with other parameters"),
    ],
)
def test_no_fast_path_when_a_segment_differs(change: dict[str, Any], reason: str) -> None:
    probes = dict(MATCHING, **{"1.mp4": video("1.mp4", **change)})
    blockers = plan.copy_blockers(make(three_segments(), probes))
    assert any(b.startswith("segments[1]:") and reason in b for b in blockers), blockers


def test_trims_block_the_fast_path() -> None:
    spec = three_segments()
    spec["segments"][0]["trim_start"] = 0.5
    spec["segments"][2]["duration"] = 1.0
    blockers = plan.copy_blockers(make(spec, MATCHING))
    assert "segments[0]: trimmed at the start" in blockers and "segments[2]: trimmed at the end" in blockers


@pytest.mark.parametrize(
    ("fit", "expected"),
    [
        ("letterbox", "force_original_aspect_ratio=decrease:force_divisible_by=2,pad=1920:1080"),
        ("crop", "force_original_aspect_ratio=increase,crop=1920:1080"),
        ("stretch", "scale=1920:1080,setsar=1"),
    ],
)
def test_normalize_command_fits_and_counts_frames(fit: str, expected: str) -> None:
    probes = {"p.mp4": video("p.mp4", width=1080, height=1920, fps=Fraction(25), seconds=2.0)}
    tl = make({"output": {"fps": 30, "fit": fit}, "segments": [{"id": "a", "url": "p.mp4", "trim_start": 0.5}]}, probes)
    cmd = plan.normalize_command(whole(tl), tl, Path("/o/0.mp4"), plan.EncodeSettings("veryfast", 18))
    argv = cmd.argv
    chain = argv[argv.index("-vf") + 1]
    assert expected in chain and "fps=30/1:start_time=0" in chain and "format=yuv420p" in chain
    assert argv[argv.index("-frames:v") + 1] == "45"  # 1.5 s at 30 fps
    assert argv[argv.index("-ss") + 1] == "0.5"
    assert argv[argv.index("-profile:v") + 1] == "high"
    assert argv[-1] == "/o/0.mp4" and cmd.duration_s == pytest.approx(1.5)


def pieces_of(seconds: float, *, trim: float = 0.0, policy: str = "video") -> tuple[Timeline, list[plan.Piece]]:
    probes = {"p.mp4": video("p.mp4", width=1280, height=720, fps=Fraction(25), seconds=seconds + trim)}
    spec = {
        "output": {"fps": 30, "duration_policy": policy},
        "segments": [{"id": "a", "url": "p.mp4", "trim_start": trim}],
    }
    if policy == "longest":
        probes["m.wav"] = sound("m.wav", seconds=seconds + 3)
        spec["audio"] = {"clips": [{"type": "music", "url": "m.wav"}]}
    tl = make(spec, probes)
    return tl, plan.segment_pieces(tl, plan.EncodeSettings.for_timeline(tl), {0: [0.0]})


@pytest.mark.parametrize(("seconds", "frames"), [(5.0, [150]), (8.0, [240]), (10.0, [150, 150]), (20.0, [200] * 3)])
def test_a_long_segment_is_encoded_as_even_pieces_of_at_most_two_gops(seconds: float, frames: list[int]) -> None:
    _, pieces = pieces_of(seconds)
    assert [p.frames for p in pieces] == frames
    assert [p.first_frame for p in pieces] == [sum(frames[:k]) for k in range(len(frames))]


def test_a_source_whose_container_may_seek_late_is_encoded_whole() -> None:
    from dataclasses import replace

    probes = {"p.mkv": replace(video("p.mkv", fps=Fraction(25), seconds=20.0), format_name="matroska,webm")}
    tl = make({"output": {"fps": 30}, "segments": [{"id": "a", "url": "p.mkv"}]}, probes)
    assert [p.frames for p in plan.segment_pieces(tl, plan.EncodeSettings.full(), {0: [0.0, 10.0]})] == [600]


def scene_of(*segments: tuple[float, float]) -> Timeline:
    """720p25 segments of (seconds, source bits per pixel: how busy the picture is) to 1080p30."""
    from dataclasses import replace

    probes = {
        f"{i}.mp4": replace(
            video(f"{i}.mp4", width=1280, height=720, fps=Fraction(25), seconds=seconds),
            size_bytes=round(bpp * 1280 * 720 * 25 * seconds / 8),
        )
        for i, (seconds, bpp) in enumerate(segments)
    }
    spec = {"output": {"fps": 30}, "segments": [{"id": f"s{i}", "url": f"{i}.mp4"} for i in range(len(segments))]}
    return make(spec, probes)


def chosen(timeline: Timeline, cores: int = 2, memory_mb: int = 0, gop_s: float = 1.0) -> list[int]:
    """The pieces ``plan_pieces`` picks, for sources with a keyframe every ``gop_s``."""

    def jobs_for(count: int) -> tuple[int, int]:
        return plan.parallel_jobs(0, count, cores, memory_mb=memory_mb, frame_size=(1920, 1080))

    keyframes = {
        seg.index: [k * gop_s for k in range(int(seg.source.duration / gop_s) + 1)] for seg in timeline.segments
    }
    enc = plan.EncodeSettings.full()
    return [p.frames for p in plan.plan_pieces(timeline, enc, keyframes, cores=cores, jobs_for=jobs_for)]


def test_long_segments_are_cut_where_whole_ones_would_leave_a_core_idle() -> None:
    # Three alike on two cores: whole, the third runs on one core while the other idles. Each
    # is cut where the seek lands on its keyframe at 5 s (two source frames ahead of frame 153).
    assert chosen(scene_of((10, 0.1), (10, 0.1), (10, 0.1))) == [153, 147] * 3
    # One on two cores: two pieces at a time do more than one encode of two frame threads.
    # Cut right after the keyframes nearest to the even cuts (at 7, 15 and 22 s).
    assert chosen(scene_of((30, 0.1))) == [213, 240, 210, 237]


def test_long_segments_stay_whole_where_they_pack_well_anyway() -> None:
    # A busy one beside two flat ones: the cores finish together whole, the pieces would only cost.
    assert chosen(scene_of((10, 0.11), (10, 0.006), (10, 0.006))) == [300] * 3
    # Under a memory budget of one encode at a time, pieces change nothing.
    assert chosen(scene_of((10, 0.1), (10, 0.1), (10, 0.1)), memory_mb=384) == [300] * 3
    # Nothing to cut.
    assert chosen(scene_of(*[(5, 0.1)] * 10)) == [150] * 10


def test_a_cut_moves_to_where_its_seek_lands_on_a_keyframe() -> None:
    """Keyframes at 0 and 10 s in a 20 s segment: one cut right after 10 s (the seek two source
    frames ahead lands on it) instead of two even ones that would decode from 0 and 10 s."""
    timeline = scene_of((20, 0.1))
    pieces = plan.segment_pieces(timeline, plan.EncodeSettings.full(), {0: [0.0, 10.0]}, reach=1)
    assert [(p.first_frame, p.frames) for p in pieces] == [(0, 303), (303, 297)]
    argv = plan.normalize_command(pieces[1], timeline, Path("1.mp4"), plan.EncodeSettings.full()).argv
    assert 10.0 <= float(argv[argv.index("-ss") + 1]) < 10.0 + 1 / 30
    # A keyframe with no cut near it moves nothing; unknown keyframes cut nothing.
    far = plan.segment_pieces(timeline, plan.EncodeSettings.full(), {0: [0.0, 19.9]}, reach=1)
    assert [p.frames for p in far] == [200] * 3
    assert [p.frames for p in plan.segment_pieces(timeline, plan.EncodeSettings.full(), {})] == [600]


def test_only_the_scene_s_last_piece_holds_the_last_frame() -> None:
    _, pieces = pieces_of(10.0, policy="longest")
    assert [p.hold_frames for p in pieces] == [0, 90]  # 3 s of music past 10 s of video at 30 fps


def seconds_of(argv: list[str], option: str) -> int:
    """An option's seconds in whole microseconds, as ffmpeg parses them."""
    whole_s, _, fraction = argv[argv.index(option) + 1].partition(".")
    return int(whole_s) * 1_000_000 + int(fraction.ljust(6, "0"))


def test_a_later_piece_reads_its_source_on_the_whole_segment_s_clock() -> None:
    """ffmpeg shifts timestamps by itsoffset - ss: exactly the whole segment's -trim_start, in microseconds."""
    tl, (first, *later) = pieces_of(20.0, trim=0.3)
    enc = plan.EncodeSettings.full()
    first_argv = plan.normalize_command(first, tl, Path("0.mp4"), enc).argv
    assert seconds_of(first_argv, "-ss") == 300_000 and "-noaccurate_seek" not in first_argv
    for piece in later:
        argv = plan.normalize_command(piece, tl, Path("n.mp4"), enc).argv
        assert "-noaccurate_seek" in argv
        assert seconds_of(argv, "-ss") - seconds_of(argv, "-itsoffset") == 300_000
        # Sought two source frames (25 fps) ahead of the piece, so the frames before it are decoded.
        assert piece.first_frame / 30 - 0.081 < seconds_of(argv, "-itsoffset") / 1e6 <= piece.first_frame / 30 - 0.08
        chain = argv[argv.index("-vf") + 1]
        assert chain.startswith(f"fps=30/1,trim=start_pts={piece.first_frame},setpts=PTS-STARTPTS,scale=")
        assert argv[argv.index("-frames:v") + 1] == str(piece.frames)


def test_encode_settings_reach_x264_as_given() -> None:
    probes = {"p.mp4": video("p.mp4", width=1280, height=720, fps=Fraction(25), seconds=2.0)}
    tl = make({"output": {"fps": 30}, "segments": [{"id": "a", "url": "p.mp4"}]}, probes)
    full = plan.normalize_command(whole(tl), tl, Path("f.mp4"), plan.EncodeSettings.for_timeline(tl)).argv
    assert full[full.index("-crf") + 1] == "19.5" and full[full.index("-preset") + 1] == "veryfast"
    assert full[full.index("-x264-params") + 1] == "me=dia:subme=1:b-pyramid=none:rc-lookahead=8"
    preview_tl = make({"output": {"fps": 30, "preview": True}, "segments": [{"id": "a", "url": "p.mp4"}]}, probes)
    preview_enc = plan.EncodeSettings.for_timeline(preview_tl)
    preview = plan.normalize_command(whole(preview_tl), preview_tl, Path("p.mp4"), preview_enc).argv
    assert preview[preview.index("-crf") + 1] == "30"
    assert preview[preview.index("-x264-params") + 1] == "8x8dct=1"  # High profile, not Constrained Baseline


def test_every_input_is_limited_to_local_files() -> None:
    probes = {"v.mp4": video("v.mp4"), "d.wav": sound("d.wav")}
    tl = make(
        {
            "segments": [{"id": "a", "url": "v.mp4", "volume": 0.5}],
            "audio": {"clips": [{"type": "sfx", "url": "d.wav"}]},
        },
        probes,
    )
    commands = [
        plan.normalize_command(whole(tl), tl, Path("n.mp4"), plan.EncodeSettings("veryfast", 18)).argv,
        plan.audio_mix_command(plan.plan_mix(tl), Path("m.wav"), Path("g.txt")).argv,
        plan.assemble_command(
            tl, [plan.VideoPart(Path("a.mp4"), Fraction(2))], Path("l.txt"), Path("a.m4a"), Path("o.mp4")
        ).argv,
    ]
    for argv in commands:
        inputs = [i for i, arg in enumerate(argv) if arg == "-i"]
        assert inputs
        for i in inputs:
            before = argv[max(0, i - 4) : i]
            assert before[before.index("-protocol_whitelist") + 1] == "file", argv
            if argv[i + 1] != "l.txt":  # our own concat list is the one non-media input
                assert before[-2:] == ["-format_whitelist", DEMUXER_WHITELIST], argv


def test_concat_list_quotes_paths() -> None:
    text = plan.concat_list(
        [plan.VideoPart(Path("/w/a.mp4"), Fraction(1)), plan.VideoPart(Path("/w/it's.mp4"), Fraction(2))]
    )
    files = [line for line in text.splitlines() if line.startswith("file")]
    assert text.startswith("ffconcat version 1.0\n") and files == ["file '/w/a.mp4'", "file '/w/it'\\''s.mp4'"]


def test_concat_durations_are_the_pictures_and_never_accumulate_rounding() -> None:
    # 120 segments of 119 frames at 24 fps (4.958333... s each) and 150 frames at 29.97.
    for frames, fps in ((119, Fraction(24)), (150, Fraction(30000, 1001)), (1, Fraction(24000, 1001))):
        parts = [plan.VideoPart(Path(f"{i}.mp4"), frames / fps) for i in range(120)]
        durations = [line.split()[1] for line in plan.concat_list(parts).splitlines() if line.startswith("duration")]
        assert len(durations) == 120
        starts = [0, *itertools.accumulate(round(Fraction(d) * 1_000_000) for d in durations)]
        for i, start_us in enumerate(starts):
            # Where the demuxer starts file i: its exact scene time, rounded once to the microsecond.
            assert abs(start_us - i * frames / fps * 1_000_000) <= Fraction(1, 2), (fps, i)


def test_mix_places_each_clip_at_its_sample() -> None:
    probes = {"v.mp4": video("v.mp4", seconds=4), "d.wav": sound("d.wav", seconds=1)}
    tl = make(
        {
            "segments": [{"id": "a", "url": "v.mp4"}, {"id": "b", "url": "v.mp4"}],
            "audio": {"clips": [{"type": "dialogue", "url": "d.wav", "segment_id": "b", "offset": 0.25}]},
        },
        probes,
    )
    cmd = plan.audio_mix_command(plan.plan_mix(tl), Path("m.wav"), Path("g.txt"))
    graph = cmd.files[Path("g.txt")]
    assert "adelay=delays=204000S:all=1" in graph  # (4 + 0.25) s * 48000
    assert "apad=whole_len=384000,atrim=end_sample=384000" in graph  # 8 s exactly
    assert cmd.argv[cmd.argv.index("-ar") + 1] == "48000"


def test_whole_file_loops_are_looped_by_the_demuxer_and_trimmed_loops_in_memory() -> None:
    probes = {"v.mp4": video("v.mp4", seconds=10), "m.wav": sound("m.wav", seconds=3)}
    whole = make(
        {
            "segments": [{"id": "a", "url": "v.mp4"}],
            "audio": {"clips": [{"type": "music", "url": "m.wav", "loop": True}]},
        },
        probes,
    )
    argv = plan.audio_mix_command(plan.plan_mix(whole), Path("m.wav"), Path("g")).argv
    assert argv[argv.index("-stream_loop") + 1] == "-1"
    part = make(
        {
            "segments": [{"id": "a", "url": "v.mp4"}],
            "audio": {"clips": [{"type": "music", "url": "m.wav", "loop": True, "trim_start": 1}]},
        },
        probes,
    )
    cmd = plan.audio_mix_command(plan.plan_mix(part), Path("m.wav"), Path("g"))
    assert "-stream_loop" not in cmd.argv and "aloop=loop=-1:size=96000" in cmd.files[Path("g")]


def _gain_at(expr: str, t: float) -> float:
    # The ffmpeg expression uses only these functions; evaluate it as Python to check the curve
    # (NaN propagates through them as it does in ffmpeg's evaluator).
    def nan_safe(f: Callable[..., float]) -> Callable[..., float]:
        return lambda *args: math.nan if any(math.isnan(a) for a in args) else f(*args)

    env = {
        "if_": lambda cond, yes, no: yes if cond else no,
        "isnan": math.isnan,
        "clip": nan_safe(lambda x, lo, hi: min(max(x, lo), hi)),
        "min": nan_safe(min),
        "pow": nan_safe(pow),
        "gte": nan_safe(lambda a, b: float(a >= b)),
        "lte": nan_safe(lambda a, b: float(a <= b)),
        "t": t,
    }
    return float(eval(expr.replace("if(", "if_("), {"__builtins__": {}}, env))


def test_ducking_curve_follows_the_timeline() -> None:
    probes = {
        "v.mp4": video("v.mp4", seconds=10),
        "m.wav": sound("m.wav", seconds=10),
        "d.wav": sound("d.wav", seconds=1),
    }
    tl = make(
        {
            "segments": [{"id": "a", "url": "v.mp4"}],
            "audio": {
                "clips": [
                    {"type": "music", "url": "m.wav"},
                    {"type": "dialogue", "url": "d.wav", "start": 3},
                    {"type": "narration", "url": "d.wav", "start": 3.5},
                ],
                "ducking": {"music_db": -12, "attack": 0.2, "release": 0.5},
            },
        },
        probes,
    )
    graph = plan.audio_mix_command(plan.plan_mix(tl), Path("m.wav"), Path("g")).files[Path("g")]
    expr = graph.split("volume=volume='")[1].split("'")[0]
    assert _gain_at(expr, 2.0) == pytest.approx(1.0)
    assert _gain_at(expr, 2.9) == pytest.approx(10 ** (-6 / 20))  # halfway down the attack
    for t in (3.0, 3.7, 4.5):
        assert _gain_at(expr, t) == pytest.approx(10 ** (-12 / 20))
    assert _gain_at(expr, 4.75) == pytest.approx(10 ** (-6 / 20))  # halfway up the release
    assert _gain_at(expr, 5.2) == pytest.approx(1.0)
    # ffmpeg evaluates it once before the first frame, with t unknown: unity, not NaN.
    assert _gain_at(expr, math.nan) == 1.0


def test_no_ducking_when_disabled() -> None:
    probes = {"v.mp4": video("v.mp4", seconds=10), "m.wav": sound("m.wav"), "d.wav": sound("d.wav")}
    tl = make(
        {
            "segments": [{"id": "a", "url": "v.mp4"}],
            "audio": {
                "clips": [{"type": "music", "url": "m.wav"}, {"type": "dialogue", "url": "d.wav"}],
                "ducking": {"enabled": False},
            },
        },
        probes,
    )
    assert "eval=frame" not in plan.audio_mix_command(plan.plan_mix(tl), Path("m.wav"), Path("g")).files[Path("g")]


def test_silent_scene_mixes_silence_of_the_exact_length() -> None:
    tl = make({"segments": [{"id": "a", "url": "v.mp4"}]}, {"v.mp4": video("v.mp4", seconds=2)})
    graph = plan.audio_mix_command(plan.plan_mix(tl), Path("m.wav"), Path("g")).files[Path("g")]
    assert graph.startswith("anullsrc=r=48000:cl=stereo") and "atrim=end_sample=96000" in graph


EBUR128_SUMMARY = """[Parsed_ebur128_0 @ 0x1] Summary:

  Integrated loudness:
    I:         -23.1 LUFS
    Threshold: -33.4 LUFS

  Loudness range:
    LRA:         3.2 LU
    Threshold: -43.5 LUFS
    LRA low:   -25.0 LUFS
    LRA high:  -21.8 LUFS

  True peak:
    Peak:       {peak} dBFS
"""


def test_loudness_scan_is_parsed() -> None:
    scan = plan.parse_ebur128("frame lines\n" + EBUR128_SUMMARY.format(peak="-5.0"))
    assert scan == plan.LoudnessScan(-23.1, -33.4, 3.2, -5.0)
    assert plan.parse_ebur128(EBUR128_SUMMARY.replace("-23.1", "-70.0").format(peak="-inf")).silent
    with pytest.raises(RenderError):
        plan.parse_ebur128("no summary here")


def test_loudness_gain_is_linear_when_the_peak_allows_it() -> None:
    tl = make({"segments": [{"id": "a", "url": "v.mp4"}]}, {"v.mp4": video("v.mp4")})
    quiet = plan.parse_ebur128(EBUR128_SUMMARY.format(peak="-15.0"))
    chain = plan.audio_encode_command(Path("m.wav"), tl, quiet, Path("a.m4a")).argv
    assert chain[chain.index("-af") + 1].startswith("volume=9.10dB,")
    peaky = plan.parse_ebur128(EBUR128_SUMMARY.format(peak="-5.0"))
    correction = plan.LevelCorrection(gain_db=-0.5)
    chain = plan.audio_encode_command(Path("m.wav"), tl, peaky, Path("a.m4a"), correction=correction).argv
    af = chain[chain.index("-af") + 1]
    assert af.startswith("volume=8.60dB,aresample=192000,alimiter=limit=0.8414:")  # -1.5 dBTP, 4x rate
    assert "level=false" in af and "aresample=48000" in af
    # A result over the ceiling: the limiter aims lower by what it asked.
    lower = plan.LevelCorrection(gain_db=-0.5, headroom_db=1.0)
    argv = plan.audio_encode_command(Path("m.wav"), tl, peaky, Path("a.m4a"), correction=lower).argv
    assert "alimiter=limit=0.7499:" in argv[argv.index("-af") + 1]  # -2.5 dBTP


def test_a_long_mix_is_shared_among_encoders_on_the_frame_grid() -> None:
    total = 50 * 48000
    assert plan.audio_chunks(total, 1) == [] and plan.audio_chunks(10 * 48000, 4) == []
    assert len(plan.audio_chunks(total, 16)) == 6  # no chunk shorter than 8 s
    first, second = plan.audio_chunks(total, 2)
    assert (first.start_sample, second.end_sample) == (0, total)
    assert first.start_sample % 1024 == second.start_sample % 1024 == 0
    nominal = second.join_candidates[0]
    # The first chunk is the shorter: its frames are the ones the consumers take first.
    share = plan.AUDIO_FIRST_CHUNK_WEIGHT / (plan.AUDIO_FIRST_CHUNK_WEIGHT + 1)
    assert abs(nominal * 1024 - total * share) <= 1024 * 2
    assert sorted(second.join_candidates) == list(range(nominal - 16, nominal + 17))
    # Every candidate leaves the second encoder a settled lead-in and the first one frames
    # short of its own end (whose windows follow the end of its input, not the mix).
    assert min(second.join_candidates) - 1 - second.first_frame >= plan.AUDIO_LEAD_IN_FRAMES
    assert first.first_frame + first.frames - max(second.join_candidates) >= 8
    # Frame indices line up: one encode's frames add up to the chunks' spans.
    assert second.first_frame + second.frames == adts.packet_count(total)


def test_a_chunk_encodes_its_stretch_with_the_same_gain() -> None:
    tl = make({"segments": [{"id": "a", "url": "v.mp4"}]}, {"v.mp4": video("v.mp4")})
    scan = plan.parse_ebur128(EBUR128_SUMMARY.format(peak="-15.0"))
    chunk = plan.AudioChunk(start_sample=4096, end_sample=8192)
    argv = plan.audio_chunk_command(Path("m.wav"), tl, scan, chunk, 7).argv
    af = argv[argv.index("-af") + 1]
    assert af.index("atrim=start_sample=4096:end_sample=8192") < af.index("volume=9.10dB")
    assert argv[-3:] == ["-f", "adts", "pipe:7"]


def test_the_joined_stream_gets_the_timestamps_one_encode_has() -> None:
    # The copy path's final mux takes the joined frames from a pipe as they are encoded.
    tl = make({"segments": [{"id": "a", "url": "v.mp4"}]}, {"v.mp4": video("v.mp4", seconds=50)})
    parts = [plan.VideoPart(Path("v.mp4"), Fraction(50))]
    argv = plan.assemble_command(tl, parts, Path("l.txt"), 9, Path("o.part"), audio_copy=Path("a.m4a")).argv
    # 2 400 000 samples + 1024 of encoder delay = 2345 frames, the last one 768 samples long.
    stamps = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-bsf:a"]
    assert len(stamps) == 2  # the MP4's audio and the M4A copy's, stamped alike
    assert all("pts=N*1024-1024" in s and "if(eq(N\\,2344)\\,768\\,1024)" in s for s in stamps)
    assert argv[argv.index("pipe:9") - 2 : argv.index("pipe:9")] == ["aac", "-i"]
    mp4 = argv.index("o.part")
    assert argv.index("-bsf:a") < mp4 < argv.index("-bsf:a", mp4) < argv.index("a.m4a")
    assert argv[argv.index("-map", mp4) + 1] == "1:a:0"
    # ...and the audio measured in the same pass, without the encoder delay a decode of the M4A skips.
    assert argv[argv.index("null") - 5 : argv.index("null") - 3] == ["-map", "1:a:0"]
    assert argv[argv.index("null") - 3 : argv.index("null") + 2] == [
        "-af",
        f"atrim=start_sample=1024,{plan.EBUR128_SCAN}",
        "-f",
        "null",
        "-",
    ]


def test_final_mux_copies_both_and_puts_the_index_first() -> None:
    tl = make({"segments": [{"id": "a", "url": "v.mp4"}]}, {"v.mp4": video("v.mp4", seconds=3)})
    parts = [plan.VideoPart(Path("v.mp4"), Fraction(3)), plan.VideoPart(Path("w.mp4"), Fraction(1))]
    cmd = plan.assemble_command(tl, parts, Path("l.txt"), Path("a.m4a"), Path("o.part"))
    argv = cmd.argv
    assert argv[argv.index("-c") + 1] == "copy" and argv[argv.index("-movflags") + 1] == "+faststart"
    assert "-bsf:a" not in argv  # an M4A has its timestamps
    assert "-copyts" in argv  # the audio's encoder delay must not shift the picture
    assert cmd.files[Path("l.txt")] == plan.concat_list(parts)
    assert argv[-1] == "o.part"


def test_one_time_base_for_every_piece() -> None:
    assert plan.track_timescale(Fraction(30)) == 90000
    assert plan.track_timescale(Fraction(30000, 1001)) == 90000
    assert plan.track_timescale(Fraction(7)) == 7000


def test_encodes_at_once_fit_the_memory_budget() -> None:
    from scenerender.core.plan import encoder_mb, parallel_jobs

    hd = (1920, 1080)
    assert parallel_jobs(0, 10, 2) == (2, 1)  # no budget: one process per core
    assert parallel_jobs(0, 10, 2, memory_mb=8192, frame_size=hd) == (2, 1)
    assert parallel_jobs(0, 10, 2, memory_mb=512, frame_size=hd) == (2, 1)  # two need ~381 MiB
    assert parallel_jobs(0, 10, 2, memory_mb=384, frame_size=hd) == (1, 2)  # but not in 3/4 of 384
    assert parallel_jobs(0, 10, 8, memory_mb=4096, frame_size=(3840, 2160)) == (5, 1)
    assert parallel_jobs(0, 10, 8, memory_mb=256, frame_size=(3840, 2160)) == (1, 8)  # never fewer than one
    assert 185 < encoder_mb(*hd, 1) < 200 and encoder_mb(*hd, 2) > encoder_mb(*hd, 1)


def test_the_dearest_encodes_are_known_before_they_start() -> None:
    """Longer and busier segments (more bits per pixel in the source) cost more to encode."""
    from dataclasses import replace

    busy = replace(video("busy.mp4", seconds=5.0, width=1280, height=720, fps=Fraction(25)), size_bytes=1_500_000)
    flat = replace(video("flat.mp4", seconds=5.0, width=1280, height=720, fps=Fraction(25)), size_bytes=90_000)
    long_flat = replace(video("long.mp4", seconds=10.0, width=1280, height=720, fps=Fraction(25)), size_bytes=180_000)
    spec = {
        "output": {"resolution": "1080p", "fps": 30},
        "segments": [{"id": n, "url": f"{n}.mp4"} for n in ("flat", "long", "busy")],
    }
    timeline = make(spec, {"flat.mp4": flat, "long.mp4": long_flat, "busy.mp4": busy})
    costs = {seg.id: plan.encode_cost(seg) for seg in timeline.segments}
    assert costs["busy"] > 1.8 * costs["flat"] > 0
    assert costs["long"] == pytest.approx(2 * costs["flat"])  # same picture, twice the frames
    # Measured at veryfast: 5 s of the busy pattern 5.0-6.0 CPU-s, 5 s of the flat one 2.2-2.8.
    assert costs["busy"] == pytest.approx(costs["long"], rel=0.15)


def test_an_avi_segment_is_read_from_its_start_and_trimmed_in_the_filter() -> None:
    # ffmpeg 5.1 seeks a B-frame AVI 3/23 s early and lands on a non-keyframe: no -ss; the
    # trim (and the B-frame decode delay, one frame) is cut by the filter, frame-exactly.
    source = video("p.avi", fps=Fraction(25), seconds=4.0)
    assert source.video is not None
    source = replace(source, format_name="avi", video=replace(source.video, decode_delay=0.04))
    tl = make({"output": {"fps": 25}, "segments": [{"id": "a", "url": "p.avi", "trim_start": 1.0}]}, {"p.avi": source})
    argv = plan.normalize_command(whole(tl), tl, Path("/o/0.mp4"), plan.EncodeSettings("veryfast", 18)).argv
    assert "-ss" not in argv and float(argv[argv.index("-t") + 1]) > 4.0
    chain = argv[argv.index("-vf") + 1]
    assert "trim=start=1.04,fps=25/1:start_time=1.04,setpts=PTS-STARTPTS" in chain, chain
    assert argv[argv.index("-frames:v") + 1] == "75"


def test_an_avi_segment_trimmed_far_into_its_file_is_read_from_a_keyframe_ahead_on_the_files_clock() -> None:
    # 600 s of B-frame AVI trimmed at 540 s: seeking to the index's keyframe 2 s ahead (nothing
    # dropped there) and giving the seek back keeps every frame's time, so the filter's trim
    # is the one a read from the start makes.
    source = video("p.avi", fps=Fraction(25), seconds=600.0)
    assert source.video is not None
    source = replace(source, format_name="avi", video=replace(source.video, decode_delay=0.04))
    spec = {"output": {"fps": 25}, "segments": [{"id": "a", "url": "p.avi", "trim_start": 540.0, "duration": 5}]}
    tl = make(spec, {"p.avi": source})
    argv = plan.normalize_command(whole(tl), tl, Path("/o/0.mp4"), plan.EncodeSettings("veryfast", 18)).argv
    at = argv.index("-ss")
    assert argv[at - 1 : at + 4] == ["-noaccurate_seek", "-ss", "538.040000", "-itsoffset", "538.040000"], argv
    assert float(argv[argv.index("-t") + 1]) > 545.04
    assert "trim=start=540.04,fps=25/1:start_time=540.04,setpts=PTS-STARTPTS" in argv[argv.index("-vf") + 1]
    assert argv[argv.index("-frames:v") + 1] == "125"


def test_a_segments_sound_far_into_its_file_is_read_from_a_seek_on_the_files_clock() -> None:
    # 600 s of phone footage, trimmed at 579.5 s: decoded from the file's start, 9.8 s of
    # AAC before the first sample heard; from a seek a second before it, 0.6 s.
    probes = {"long.mp4": video("long.mp4", seconds=600), "short.mp4": video("short.mp4", seconds=4)}
    tl = make(
        {
            "segments": [
                {"id": "a", "url": "long.mp4", "trim_start": 579.5, "duration": 2, "volume": 1},
                {"id": "b", "url": "short.mp4", "trim_start": 1, "duration": 2, "volume": 1},
            ]
        },
        probes,
    )
    assert plan.sound_seek(tl.segments[0]) == (578_500 * 48, 48000)  # whole milliseconds, 1 s ahead
    assert plan.sound_seek(tl.segments[1]) == (0, 48000)  # near the start: decoded from it
    cmd = plan.audio_mix_command(plan.plan_mix(tl), Path("m.wav"), Path("g"))
    inputs = [cmd.argv[k : k + 2] for k, arg in enumerate(cmd.argv) if arg == "-ss"]
    assert inputs == [["-ss", "578.5"]]
    graph = cmd.files[Path("g")]
    assert "first_pts=0,aformat=sample_fmts=fltp:channel_layouts=stereo,atrim=start_sample=48000:end_sample=144000" in (
        graph
    )


def test_a_seek_into_sound_lands_on_its_streams_time_base() -> None:
    # ffmpeg takes a seek off each timestamp in the stream's own unit, rounded: an AVI's MP3
    # counts frames (1152 samples at 48 kHz, time base 3/125), so its seek is a whole number
    # of frames; 44.1 kHz MP3 frames (32/1225 s) meet whole 48 kHz samples every 49 frames
    # (1.28 s); PCM at 48 kHz and Matroska's milliseconds keep whole milliseconds.
    source = video("p.avi", fps=Fraction(25), seconds=600.0)
    assert source.audio is not None
    spec = {"segments": [{"id": "a", "url": "p.avi", "trim_start": 540.0, "duration": 5, "volume": 1}]}
    seeks = {}
    for unit in (Fraction(3, 125), Fraction(32, 1225), Fraction(1, 48000), Fraction(1, 1000), Fraction(0), Fraction(7)):
        avi = replace(source, format_name="avi", audio=replace(source.audio, time_base=unit))
        seeks[unit] = plan.sound_seek(make(spec, {"p.avi": avi}).segments[0])
    assert seeks[Fraction(3, 125)] == (22458 * 1152, 48384)  # frame 22458, 539.0 s or just before
    assert all(seek + first == 540 * 48000 for seek, first in seeks.values())
    assert seeks[Fraction(3, 125)][0] % 1152 == 0 and seeks[Fraction(32, 1225)][0] % 61440 == 0
    assert seeks[Fraction(1, 48000)] == seeks[Fraction(1, 1000)] == seeks[Fraction(0)] == (539 * 48000, 48000)
    assert seeks[Fraction(7)] == (0, 540 * 48000)  # a 7 s unit: read from the start
    assert plan.seek_step(replace(source, audio=replace(source.audio, time_base=Fraction(1, 44100)))) == 480


def test_sound_a_muxer_wrote_early_is_delayed_by_that_much() -> None:
    # ffmpeg 5.1's Opus in Matroska: 7 ms early by its timestamps (probe.lavf_opus_error).
    source = video("v.webm", seconds=2)
    assert source.audio is not None
    early = replace(source, audio=replace(source.audio, delay=0.007))
    tl = make({"segments": [{"id": "a", "url": "v.webm", "volume": 1}]}, {"v.webm": early})
    assert plan.sound_seek(tl.segments[0]) == (0, -336)
    graph = plan.audio_mix_command(plan.plan_mix(tl), Path("m.wav"), Path("g")).files[Path("g")]
    assert "aresample=48000:first_pts=0,adelay=delays=336S:all=1," in graph
    assert "atrim=start_sample=0:end_sample=96000" in graph


def test_an_mxfs_left_and_right_tracks_are_joined_where_its_sound_is_read() -> None:
    source = video("v.mxf", seconds=2)
    assert source.audio is not None
    paired = replace(source, audio=replace(source.audio, right_track=1))
    tl = make(
        {
            "segments": [{"id": "a", "url": "v.mxf", "volume": 1}],
            "audio": {"clips": [{"type": "music", "url": "v.mxf", "start": 0}]},
        },
        {"v.mxf": paired},
    )
    graph = plan.audio_mix_command(plan.plan_mix(tl), Path("m.wav"), Path("g")).files[Path("g")]
    join = "[{n}:a:0][{n}:a:1]join=inputs=2:channel_layout=stereo:map=0.0-FL|1.0-FR,aresample=48000"
    assert join.format(n=0) in graph and join.format(n=1) in graph, graph


def test_captions_burned_in_a_piece_are_drawn_on_the_scenes_clock() -> None:
    # The third segment starts at 4 s (frame 120 at 30 fps); a piece of it from its frame 45
    # shows scene frames 165 on: libass is handed those times, and the piece gets its own back.
    tl = make(three_segments(resolution="1280x720", fps=30), MATCHING)
    seg = tl.segments[2]
    piece = plan.Piece(seg, 45, seg.frames - 45)
    script = Path("/w/captions.ass")
    argv = plan.normalize_command(piece, tl, Path("/o/2.mp4"), plan.EncodeSettings("veryfast", 18), captions=script)
    chain = argv.argv[argv.argv.index("-vf") + 1].split(",")
    assert chain[-3:] == ["setpts=PTS+165", "subtitles=filename='/w/captions.ass'", "setpts=PTS-165"], chain
    assert chain[-4].startswith("tpad=")  # held frames carry the captions of their time too
    plain = plan.normalize_command(piece, tl, Path("/o/2.mp4"), plan.EncodeSettings("veryfast", 18)).argv
    assert "subtitles" not in " ".join(plain)
