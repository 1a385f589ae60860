"""Render speed and memory against named baselines, measured side by side in one run.

    .venv/bin/python benchmarks/bench_render.py [--quick] [--no-moviepy]
    .venv/bin/python benchmarks/bench_render.py --before TREE [--rounds 3] [--case matching ...]

The second form is a change's check (``before_and_after``): this checkout against the code
in TREE on the scenes below, taking turns.

Reference scene: 10 segments of 5 s 1080p30 H.264 + AAC, a narration clip, two dialogue
clips and a music bed shorter than the scene (looped), once with flat test patterns and once
with film grain (what an encoder meets in real footage). Timed on the same files:

  scenerender   `scenerender render SPEC -o OUT --json`
  naive-ffmpeg  one ffmpeg command: concat filter + amix, libx264 veryfast (the common approach)
  moviepy       MoviePy 2: concatenate_videoclips + CompositeAudioClip, preset veryfast
                (in its own venv, .venv-bench, made on first use from requirements-bench.txt)

Then the "needs normalising" case (720p25 sources to 1080p30) against naive ffmpeg, at x264's
default crf 23 and at crf 20 (the picture scenerender keeps), with each output's PSNR and SSIM
against its sources measured so "equal quality" is a figure, not a claim; the same for a
scene of three 20 s segments (scenerender encodes each as pieces); and the
peak memory of the whole process tree for 10 vs 100 segments. Compared runs take turns
(ours, naive, ours, naive, ...; the median of three each; a 2-second render of ours runs
five times in a row in each turn), so a drift in the machine's speed meets them alike.
Prints a table and ratios, and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the pictures are measured with the test suite's own meter

from tests.measure import picture_quality  # noqa: E402
from tests.mediagen import AAC_STEREO_48K, H264_HIGH  # noqa: E402

SHORT_RUN_REPEATS = 5  # renders of about 2 s, run this many times in each turn (side_by_side)
# A budget too small for two encodes at once (plan.parallel_jobs): one encode of two threads.
BUDGET_MB = 384
EQUAL_QUALITY_CRF = 20  # plain veryfast at this crf gives the picture scenerender keeps
BENCH_VENV = ROOT / ".venv-bench"


@dataclass
class Run:
    name: str
    wall_s: float
    cpu_s: float
    peak_mb: float  # PSS of the whole tree
    peak_rss_mb: float  # RSS summed over the tree (shared pages counted in every process)
    python_mb: float = 0.0  # PSS of the render's own (Python) process at the tree's peak
    turn_walls: list[float] = field(default_factory=list)  # one per turn, in the order the turns ran
    turn_cpus: list[float] = field(default_factory=list)  # the CPU-s of the run each turn_walls entry came from
    turn_loads: list[float] = field(default_factory=list)  # the 1-minute load average as each turn began


def measure(name: str, argv: list[str], cwd: Path | None = None, *, timed_runs: int = 1) -> Run:
    """Run ``argv``: wall time, CPU time of the whole tree, and its peak memory.

    Wall and CPU come from ``timed_runs`` runs left alone (the median wall, with its CPU);
    the memory from one more run, sampled every 50 ms: reading every process's smaps costs
    CPU on the same cores, which would slow a 2-second run measurably and a 30-second one
    hardly at all. ``timed_runs=0``: all from the sampled run (for runs that must not
    repeat, e.g. a cold cache).

    Memory is the tree's proportional set size (PSS): each process's private pages plus its
    share of pages it shares, so the libraries every ffmpeg of the tree maps are counted
    once, not once per process (a sum of RSS would); the peak of the plain RSS sum is kept too.
    """
    timings = sorted(timed(name, argv, cwd) for _ in range(timed_runs))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = psutil.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = peak_rss = python_at_peak = 0
    while proc.poll() is None:
        pss = rss = own = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                info = p.memory_full_info()
            except psutil.Error:
                continue
            pss, rss = pss + info.pss, rss + info.rss
            own = info.pss if p is proc else own
        if pss > peak:
            peak, python_at_peak = pss, own
        peak_rss = max(peak_rss, rss)
        time.sleep(0.05)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if timings:
        wall, cpu = timings[len(timings) // 2]
    peak_mb, rss_mb, python_mb = (round(b / 1e6, 1) for b in (peak, peak_rss, python_at_peak))
    return Run(name, round(wall, 2), round(cpu, 2), peak_mb, rss_mb, python_mb)


def side_by_side(cases: list[tuple[str, list[str]]], rounds: int, repeats: dict[str, int] | None = None) -> list[Run]:
    """Each case timed ``rounds`` times, the cases taking turns (A B C, B C A, ...), then its memory sampled once.

    On a shared machine the speed of the cores drifts over minutes; taking turns spreads the
    drift over every case alike, where one case's runs after another's would each meet its own.
    A case named in ``repeats`` runs that many times in a row in each turn, and the turn
    counts their median: a 2-second render meets the machine's hiccups (a stalled second of
    a process or two, now and then) whole, where a 17-second one averages them out within
    itself. Its wall time is the median of all its runs, with that run's CPU.
    """
    repeats = repeats or {}
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in cases}
    turn_runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in cases}
    turn_loads: dict[str, list[float]] = {name: [] for name, _ in cases}
    for turn in range(rounds):
        # Each turn starts with the next case: none always follows the same one (after
        # MoviePy's 2 GB, say), so what a run leaves behind meets every case alike.
        for name, argv in cases[turn % len(cases) :] + cases[: turn % len(cases)]:
            turn_loads[name].append(round(os.getloadavg()[0], 2))
            this_turn = [timed(name, argv, None) for _ in range(repeats.get(name, 1))]
            timings[name] += this_turn
            turn_runs[name].append(sorted(this_turn)[len(this_turn) // 2])
    runs = []
    for name, argv in cases:
        sampled = measure(name, argv, timed_runs=0)
        wall, cpu = sorted(timings[name])[len(timings[name]) // 2]
        runs.append(
            Run(
                name,
                round(wall, 2),
                round(cpu, 2),
                sampled.peak_mb,
                sampled.peak_rss_mb,
                sampled.python_mb,
                [round(w, 2) for w, _ in turn_runs[name]],
                [round(c, 2) for _, c in turn_runs[name]],
                turn_loads[name],
            )
        )
    return runs


def per_turn(baseline: Run, ours: Run) -> list[float]:
    """The ratio within each turn, lowest first: the runs of one turn follow each other, so a
    slow spell of the machine shows as one low turn instead of hiding in the medians."""
    return sorted(round(b / o, 2) for b, o in zip(baseline.turn_walls, ours.turn_walls, strict=True))


def machine_speed() -> dict[str, float]:
    """Two yardsticks of this machine's speed right now: the start of one ffprobe (most of a
    short render is process starts) and a fixed pure-Python loop (compute)."""
    starts = []
    for _ in range(9):
        began = time.monotonic()
        subprocess.run(["ffprobe", "-version"], stdout=subprocess.DEVNULL, check=True)
        starts.append(time.monotonic() - began)
    began = time.monotonic()
    total = 0
    for i in range(3_000_000):
        total += i
    return {"ffprobe_start_ms": round(sorted(starts)[4] * 1000, 1), "python_loop_s": round(time.monotonic() - began, 2)}


def timed(name: str, argv: list[str], cwd: Path | None) -> tuple[float, float]:
    """(wall, CPU of the whole tree) of one run with nothing watching it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr.decode()[-2000:]}")
    # Every descendant was waited for by its parent, so its CPU time rolls up into ours.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_scene(
    folder: Path,
    *,
    segments: int,
    seconds: float,
    size: str,
    fps: int,
    grain: bool = False,
    distinct: int = 4,
    one_pattern: bool = False,
) -> Path:
    """A scene of ``segments`` segments, ``distinct`` different files among them.

    Scenes that are only copied may repeat files (generating 100 costs time, copying does
    not care); a scene that is encoded needs every segment different, because scenerender
    encodes identical segments once and the comparison would flatter it. ``one_pattern``:
    every segment the same busy pattern in another hue, so they cost the same to encode.
    """
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    patterns = ("testsrc2", "smptebars", "rgbtestsrc", "testsrc")
    distinct = min(segments, distinct)
    for i in range(distinct):
        # Grain (temporal noise) gives the encoders texture like real footage has; flat test
        # patterns make every re-encode look cheaper than it is.
        pattern = "testsrc2" if one_pattern else patterns[i % 4]
        video = f"{pattern}=s={size}:r={fps}:d={seconds}" + (",noise=alls=12:allf=t" if grain else "")
        video += f",hue=h={37 * i}" if i >= 4 or one_pattern else ""
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            video,
            "-f",
            "lavfi",
            "-i",
            f"sine=f={200 + 40 * i}:d={seconds}",
            *H264_HIGH,
            *AAC_STEREO_48K,
            "-shortest",
            str(media / f"src-{i}.mp4"),
        )
    for i in range(segments):
        target = media / f"seg-{i}.mp4"
        target.unlink(missing_ok=True)
        target.symlink_to(media / f"src-{i % distinct}.mp4")
    scene_s = segments * seconds
    ffmpeg("-f", "lavfi", "-i", f"sine=f=600:d={min(8.0, scene_s / 2)}", str(media / "narration.wav"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=900:d=1.5", str(media / "line-1.wav"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=1100:d=1.2", str(media / "line-2.wav"))
    ffmpeg("-f", "lavfi", "-i", f"sine=f=220:d={min(12.0, scene_s / 3):.2f}", "-ac", "2", str(media / "music.wav"))
    spec = {
        "version": 1,
        "project_id": "bench",
        "scene_id": "ref",
        "output": {"resolution": "1080p", "fps": 30},
        "segments": [{"id": f"s{i}", "url": f"media/seg-{i}.mp4"} for i in range(segments)],
        "audio": {
            "clips": [
                {"type": "narration", "url": "media/narration.wav", "start": 0.5},
                {
                    "type": "dialogue",
                    "url": "media/line-1.wav",
                    "segment_id": f"s{min(2, segments - 1)}",
                    "offset": 0.5,
                },
                {"type": "dialogue", "url": "media/line-2.wav", "segment_id": f"s{min(5, segments - 1)}"},
                {"type": "music", "url": "media/music.wav", "loop": True, "volume": 0.4},
            ]
        },
    }
    path = folder / "job_spec.json"
    path.write_text(json.dumps(spec))
    return path


def naive_command(spec_path: Path, out: Path, *, seconds: float, crf: int | None = None) -> list[str]:
    """The usual one-command approach: decode everything, concat filter, amix, re-encode.

    x264's default quality (crf 23) unless ``crf`` is given: scenerender keeps the picture of
    veryfast at crf 20, so the same command at crf 20 is the comparison at equal quality.
    """
    spec = json.loads(spec_path.read_text())
    base = spec_path.parent
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    for seg in spec["segments"]:
        argv += ["-i", str(base / seg["url"])]
    n = len(spec["segments"])
    chains = [
        f"[{i}:v]scale=1920:1080:force_original_aspect_ratio=decrease,pad=1920:1080:(ow-iw)/2:(oh-ih)/2,"
        f"setsar=1,fps=30[v{i}]"
        for i in range(n)
    ]
    chains.append("".join(f"[v{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]")
    labels = []
    for k, clip in enumerate(spec["audio"]["clips"]):
        argv += (["-stream_loop", "-1"] if clip.get("loop") else []) + ["-i", str(base / clip["url"])]
        anchor = seconds * int(clip["segment_id"][1:]) if "segment_id" in clip else 0.0
        start_ms = int(1000 * (clip.get("start", 0.0) + anchor + clip.get("offset", 0.0)))
        chains.append(f"[{n + k}:a]adelay={start_ms}|{start_ms},volume={clip.get('volume', 1.0)}[a{k}]")
        labels.append(f"[a{k}]")
    chains.append("".join(labels) + f"amix=inputs={len(labels)}:duration=first[a]")
    total = seconds * len(spec["segments"])
    return [
        *argv,
        "-filter_complex",
        ";".join(chains),
        "-map",
        "[v]",
        "-map",
        "[a]",
        "-t",
        str(total),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        *(["-crf", str(crf)] if crf is not None else []),
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(out),
    ]


MOVIEPY_SCRIPT = """
import json, sys
from pathlib import Path
from moviepy import AudioFileClip, CompositeAudioClip, VideoFileClip, concatenate_videoclips
from moviepy.audio.fx import AudioLoop
spec_path, out = Path(sys.argv[1]), sys.argv[2]
spec = json.loads(spec_path.read_text())
clips = [VideoFileClip(str(spec_path.parent / s["url"])).resized((1920, 1080)) for s in spec["segments"]]
video = concatenate_videoclips(clips)
audio = []
for c in spec["audio"]["clips"]:
    a = AudioFileClip(str(spec_path.parent / c["url"]))
    if c.get("loop"):
        a = a.with_effects([AudioLoop(duration=video.duration)])
    audio.append(a.with_start(c.get("start", 0.0)).with_volume_scaled(c.get("volume", 1.0)))
video = video.with_audio(CompositeAudioClip(audio).with_duration(video.duration))
video.write_videofile(out, codec="libx264", audio_codec="aac", preset="veryfast", fps=30, logger=None)
"""


def moviepy_python() -> Path:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    # Installed unless it imports: a venv made by a run that was stopped during the install has no MoviePy.
    if subprocess.run([str(python), "-c", "import moviepy"], capture_output=True, check=False).returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements-bench.txt")], check=True
        )
    return python


def scenerender(spec: Path, out: Path) -> list[str]:
    # --force: each turn renders to the same name again (sidecars included).
    return [sys.executable, "-m", "scenerender", "render", str(spec), "-o", str(out), "--json", "--force"]


BEFORE_AFTER_CASES = ("matching", "normalising", "long", "memory")


def render_in(tree: Path, spec: Path, out: Path, env: list[str]) -> list[str]:
    """``scenerender render`` with ``tree``'s package, whatever folder the benchmark runs from.

    ``-P``: ``python -m`` would otherwise put the current folder first on ``sys.path``, ahead of
    PYTHONPATH, and a run started from a checkout's root would render with that checkout's
    package on both sides (every side-by-side before this check was such a run). ``--force``
    only where the tree's CLI has it (older trees overwrite without it and refuse the option).
    """
    argv = ["env", f"PYTHONPATH={tree}", *env, sys.executable, "-P", "-m", "scenerender"]
    imported = subprocess.run(
        [*argv[:-2], "-c", "import scenerender; print(scenerender.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(imported).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: its side would import scenerender from {imported}, not from the tree")
    helptext = subprocess.run([*argv, "render", "--help"], capture_output=True, text=True, check=True).stdout
    force = ["--force"] if "--force" in helptext else []
    return [*argv, "render", str(spec), "-o", str(out), "--json", *force]


def tree_state(tree: Path) -> str:
    """The tree's commit, ``+changes`` when its package differs from that commit."""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no", "--", "scenerender"],
        capture_output=True,
        text=True,
    )
    return head.stdout.strip() + ("+changes" if changed.stdout.strip() else "")


def before_and_after(
    tree: Path, work: Path, seconds: float, rounds: int, *, cases: list[str], before_env: list[str]
) -> dict[str, object]:
    """This checkout against ``tree``, the code before a change (``git worktree add /tmp/base
    REV``), on bench_render's scenes: 10 x 1080p30 that match (copied), 10 that need
    normalising (720p25 -> 1080p30), 3 long segments encoded as pieces, 100 x 1080p30 for
    memory. Each case's two renders take turns (the 2-second matching render five times in
    a row each turn); the ratio after/before per case and per turn, of wall and of CPU
    (CPU-s move less with the machine's load than wall time), with the load as each turn began.

    Both run with this venv, their own package first on PYTHONPATH (checked: see render_in);
    ``before_env`` (``KEY=VALUE``) is set for the before side only, so ``--before .
    --before-env X=Y`` measures a switch on the same code. ``SCENERENDER_*`` variables of the
    benchmark's own environment reach both sides and are recorded.
    """
    os.environ["SCENERENDER_SEGMENT_CACHE"] = "false"  # every render encodes
    # Both packages' bytecode, compiled now: with PYTHONDONTWRITEBYTECODE set (as here) a tree
    # without it, or with a module edited since, compiles it again on every render (0.2 CPU-s
    # for this package, measured), which would be charged to that side's render.
    for side in (ROOT, tree):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(side / "scenerender")], check=True)
    scenes = {
        "matching": lambda: make_scene(work / "matching", segments=10, seconds=seconds, size="1920x1080", fps=30),
        "normalising": lambda: make_scene(
            work / "normalising", segments=10, seconds=seconds, size="1280x720", fps=25, distinct=10
        ),
        "long": lambda: make_scene(
            work / "long", segments=3, seconds=4 * seconds, size="1280x720", fps=25, distinct=3, one_pattern=True
        ),
        "memory": lambda: make_scene(work / "mem", segments=100, seconds=seconds, size="1920x1080", fps=30),
    }
    results: dict[str, object] = {}
    for case in cases:
        spec = scenes[case]()
        after_name, before_name = f"after: {case}", f"before: {case}"
        both = [
            (after_name, render_in(ROOT, spec, work / "after.mp4", [])),
            (before_name, render_in(tree, spec, work / "before.mp4", before_env)),
        ]
        repeats = {after_name: SHORT_RUN_REPEATS, before_name: SHORT_RUN_REPEATS} if case == "matching" else {}
        after, before = side_by_side(both, rounds=1 if case == "memory" else rounds, repeats=repeats)
        done = subprocess.run(both[0][1], capture_output=True, text=True, check=True)
        ratio = round(after.wall_s / before.wall_s, 3)
        cpu_ratio = round(after.cpu_s / before.cpu_s, 3)
        by_turn = [round(a / b, 3) for a, b in zip(after.turn_walls, before.turn_walls, strict=True)]
        cpu_by_turn = [round(a / b, 3) for a, b in zip(after.turn_cpus, before.turn_cpus, strict=True)]
        print(
            f"{case}: after {after.wall_s:.2f} s / {after.cpu_s:.2f} CPU-s / {after.peak_mb:.0f} MB (Python "
            f"{after.python_mb:.0f}), before {before.wall_s:.2f} s / {before.cpu_s:.2f} CPU-s / "
            f"{before.peak_mb:.0f} MB (Python {before.python_mb:.0f}): after/before {ratio}x, "
            f"CPU {cpu_ratio}x (turns in order: wall {by_turn}, CPU {cpu_by_turn}, load {after.turn_loads})",
            flush=True,
        )
        results[case] = {
            "runs": [asdict(after), asdict(before)],
            "after_over_before": ratio,
            "cpu_after_over_before": cpu_ratio,
            "turn_by_turn": by_turn,
            "cpu_turn_by_turn": cpu_by_turn,
            "stages_after": json.loads(done.stdout)["timings"],
        }
    return {
        "before": str(tree),
        "before_commit": tree_state(tree),
        "after_commit": tree_state(ROOT),
        "before_env": before_env,
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("SCENERENDER_")},
        "rounds": rounds,
        "cases": results,
    }


def rerender_after_one_change(work: Path, seconds: float) -> tuple[Run, Run]:
    """A 10-segment scene that needs normalising: full render (cold segment cache), then the
    re-render after one segment was regenerated (the other nine come from the cache)."""
    scene = work / "rerender"
    media = scene / "media"
    media.mkdir(parents=True)
    for i in range(10):
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s=1280x720:r=25:d={seconds}",
            "-vf",
            f"hue=h={36 * i}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            str(media / f"seg-{i}.mp4"),
        )
    spec = scene / "job_spec.json"
    spec.write_text(
        json.dumps(
            {
                "version": 1,
                "project_id": "bench",
                "scene_id": "rerender",
                "output": {"resolution": "1080p", "fps": 30},
                "segments": [{"id": f"s{i}", "url": f"media/seg-{i}.mp4"} for i in range(10)],
            }
        )
    )
    os.environ["SCENERENDER_CACHE_DIR"] = str(work / "segment-cache")
    full = measure("scenerender full render (cold cache)", scenerender(spec, work / "full.mp4"), timed_runs=0)
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"smptebars=s=1280x720:r=25:d={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        str(media / "seg-4.mp4"),
    )
    again = measure("scenerender re-render, 1 of 10 changed", scenerender(spec, work / "again.mp4"), timed_runs=0)
    del os.environ["SCENERENDER_CACHE_DIR"]
    return full, again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-moviepy", action="store_true", help="skip the MoviePy baseline")
    parser.add_argument("--quick", action="store_true", help="1 s segments (a smoke run, not the reference)")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="TREE",
        help="instead of the baselines: this checkout against the code in TREE (a worktree of the commit before)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns of the --before comparison")
    parser.add_argument(
        "--case", action="append", choices=BEFORE_AFTER_CASES, help="with --before: only these scenes (default: all)"
    )
    parser.add_argument(
        "--before-env", action="append", default=[], metavar="KEY=VALUE", help="with --before: set for TREE's side"
    )
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 5.0
    if args.before is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        speed = machine_speed()
        with tempfile.TemporaryDirectory(prefix="scenerender-bench-") as tmp:
            cases = args.case or list(BEFORE_AFTER_CASES)
            data = before_and_after(
                args.before.resolve(), Path(tmp), seconds, args.rounds, cases=cases, before_env=args.before_env
            )
        data["machine_speed"] = {"before": speed, "after": machine_speed()}
        data["started"], data["load_at_end"] = started, [round(x, 2) for x in os.getloadavg()]
        print(f"machine speed before / after the runs: {data['machine_speed']}")
        results = ROOT / "benchmarks" / "results"
        results.mkdir(exist_ok=True)
        (results / f"render-before-after-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(data, indent=2))
        return
    rows: list[Run] = []
    ratios: dict[str, float] = {}
    turns: dict[str, list[float]] = {}
    pictures: dict[str, dict[str, float]] = {}
    speed_before = machine_speed()
    with tempfile.TemporaryDirectory(prefix="scenerender-bench-") as tmp:
        work = Path(tmp)
        matching = make_scene(work / "matching", segments=10, seconds=seconds, size="1920x1080", fps=30)
        # The comparisons with the baselines run without the segment cache: every render encodes.
        os.environ["SCENERENDER_SEGMENT_CACHE"] = "false"
        cases = [
            ("scenerender (matching)", scenerender(matching, work / "ours.mp4")),
            ("naive-ffmpeg (matching)", naive_command(matching, work / "naive.mp4", seconds=seconds)),
        ]
        if not args.no_moviepy:
            script = work / "moviepy_render.py"
            script.write_text(MOVIEPY_SCRIPT)
            argv = [str(moviepy_python()), str(script), str(matching), str(work / "moviepy.mp4")]
            cases.append(("moviepy (matching)", argv))
        short = {"scenerender (matching)": SHORT_RUN_REPEATS}
        matched = side_by_side(cases, rounds=3, repeats=short)
        rows += matched
        ours, naive = matched[0], matched[1]
        ratios["naive/scenerender (matching)"] = round(naive.wall_s / ours.wall_s, 2)
        turns["naive/scenerender (matching)"] = per_turn(naive, ours)
        if not args.no_moviepy:
            ratios["moviepy/scenerender (matching)"] = round(matched[2].wall_s / ours.wall_s, 2)
            turns["moviepy/scenerender (matching)"] = per_turn(matched[2], ours)

        grainy = make_scene(work / "grainy", segments=10, seconds=seconds, size="1920x1080", fps=30, grain=True)
        ours_g, naive_g = side_by_side(
            [
                ("scenerender (matching, film grain)", scenerender(grainy, work / "ours-g.mp4")),
                ("naive-ffmpeg (matching, film grain)", naive_command(grainy, work / "naive-g.mp4", seconds=seconds)),
            ],
            rounds=1,
        )
        rows += [ours_g, naive_g]
        ratios["naive/scenerender (matching, film grain)"] = round(naive_g.wall_s / ours_g.wall_s, 2)

        normalising = make_scene(
            work / "normalising", segments=10, seconds=seconds, size="1280x720", fps=25, distinct=10
        )
        budget = ["env", f"SCENERENDER_MEMORY_MB={BUDGET_MB}", *scenerender(normalising, work / "ours-nb.mp4")]
        ours_n, ours_budget, naive_n, naive_n20 = side_by_side(
            [
                ("scenerender (720p25 -> 1080p30)", scenerender(normalising, work / "ours-n.mp4")),
                (f"scenerender, {BUDGET_MB} MB budget (720p25 -> 1080p30)", budget),
                ("naive-ffmpeg (720p25 -> 1080p30)", naive_command(normalising, work / "naive-n.mp4", seconds=seconds)),
                (
                    "naive-ffmpeg crf 20 (720p25 -> 1080p30)",
                    naive_command(normalising, work / "naive-n20.mp4", seconds=seconds, crf=EQUAL_QUALITY_CRF),
                ),
            ],
            rounds=3,
        )
        rows += [ours_n, ours_budget, naive_n, naive_n20]
        ratios[f"naive/scenerender with a {BUDGET_MB} MB budget (normalising)"] = round(
            naive_n.wall_s / ours_budget.wall_s, 2
        )
        ratios["naive/scenerender (normalising)"] = round(naive_n.wall_s / ours_n.wall_s, 2)
        turns["naive/scenerender (normalising)"] = per_turn(naive_n, ours_n)
        ratios["naive at equal quality (crf 20)/scenerender (normalising)"] = round(naive_n20.wall_s / ours_n.wall_s, 2)
        sources = [normalising.parent / seg["url"] for seg in json.loads(normalising.read_text())["segments"]]
        for label, out in (
            ("scenerender", work / "ours-n.mp4"),
            ("naive-ffmpeg", work / "naive-n.mp4"),
            ("naive-ffmpeg crf 20", work / "naive-n20.mp4"),
        ):
            psnr, ssim = picture_quality(out, sources, width=1920, height=1080, fps="30")
            pictures[f"{label} (720p25 -> 1080p30)"] = {"psnr_db": psnr, "ssim": ssim, "mb": out.stat().st_size / 1e6}

        # A few long segments of the same cost, one more than the cores: each is encoded as
        # pieces, so the cores stay busy to the end instead of the last segment running on one.
        long_s = 4 * seconds
        long_scene = make_scene(
            work / "long", segments=3, seconds=long_s, size="1280x720", fps=25, distinct=3, one_pattern=True
        )
        ours_l, naive_l = side_by_side(
            [
                ("scenerender (3 long segments, 720p25 -> 1080p30)", scenerender(long_scene, work / "ours-l.mp4")),
                (
                    "naive-ffmpeg (3 long segments, 720p25 -> 1080p30)",
                    naive_command(long_scene, work / "naive-l.mp4", seconds=long_s),
                ),
            ],
            rounds=3,
        )
        rows += [ours_l, naive_l]
        ratios["naive/scenerender (3 long segments)"] = round(naive_l.wall_s / ours_l.wall_s, 2)
        turns["naive/scenerender (3 long segments)"] = per_turn(naive_l, ours_l)
        del os.environ["SCENERENDER_SEGMENT_CACHE"]

        full, again = rerender_after_one_change(work, seconds)
        rows += [full, again]
        ratios["re-render after 1 change / full render"] = round(again.wall_s / full.wall_s, 2)

        # Without the cache: the same generated media as above would find its audio there.
        os.environ["SCENERENDER_SEGMENT_CACHE"] = "false"
        for count in (10, 100):
            scene = make_scene(work / f"mem-{count}", segments=count, seconds=seconds, size="1920x1080", fps=30)
            label = f"scenerender memory, {count} x {seconds:g} s segments"
            rows.append(measure(label, scenerender(scene, work / f"m{count}.mp4")))
        ratios["peak memory 100/10 segments"] = round(rows[-1].peak_mb / rows[-2].peak_mb, 2)

    width = max(len(r.name) for r in rows)
    print(f"{'run':<{width}}  {'wall s':>8}  {'cpu s':>8}  {'peak MB':>8}  {'(RSS sum)':>9}")
    for r in rows:
        print(f"{r.name:<{width}}  {r.wall_s:>8.2f}  {r.cpu_s:>8.2f}  {r.peak_mb:>8.1f}  {r.peak_rss_mb:>9.1f}")
    print()
    for key, value in ratios.items():
        by_turn = f" (turn by turn: {', '.join(f'{r:.2f}' for r in turns[key])})" if key in turns else ""
        print(f"{key}: {value}x{by_turn}")
    print()
    for label, pic in pictures.items():
        print(f"picture of {label}: PSNR {pic['psnr_db']:.2f} dB, SSIM {pic['ssim']:.4f}, {pic['mb']:.1f} MB")
    speed_after = machine_speed()
    print(
        f"machine speed before / after: ffprobe start {speed_before['ffprobe_start_ms']} / "
        f"{speed_after['ffprobe_start_ms']} ms, Python loop {speed_before['python_loop_s']} / "
        f"{speed_after['python_loop_s']} s"
    )
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"render-{stamp}.json").write_text(
        json.dumps(
            {
                "runs": [asdict(r) for r in rows],
                "ratios": ratios,
                "ratios_turn_by_turn": turns,
                "pictures": pictures,
                "machine_speed": {"before": speed_before, "after": speed_after},
                "segment_seconds": seconds,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
