"""What captions, the poster, the contact sheet and the QC report add to a render, side by side in one run.

    .venv/bin/python benchmarks/bench_deliverables.py [--rounds N]

The matching reference scene of bench_render.py (10 x 5 s 1080p30, copied; narration, two
lines of dialogue, a looped music bed), its speech clips given text and speakers so that
captions are made. Timed in turns, on the same files: the render with every sidecar and the
quality report (the default), and the same render with SCENERENDER_DELIVERABLES=false (the
MP4 only). Target (issue #26): at most 25 % more wall time. Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_render import machine_speed, make_scene, scenerender, side_by_side

TARGET = 1.25


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--moving", action="store_true", help="every segment a moving pattern (the reference has static ones: findings)"
    )
    args = parser.parse_args()
    # As bench_render's comparisons: no segment cache, so every render makes its audio and probes.
    os.environ["SCENERENDER_SEGMENT_CACHE"] = "false"
    with tempfile.TemporaryDirectory(prefix="bench-deliverables-") as tmp:
        work = Path(tmp)
        spec_path = make_scene(work, segments=10, seconds=5.0, size="1920x1080", fps=30, one_pattern=args.moving)
        spec = json.loads(spec_path.read_text())
        texts = ["Long ago, in a quiet town by the sea.", "Where were you last night?", "Out."]
        speakers = [None, {"id": "ava", "name": "Ava"}, {"id": "ben", "name": "Ben"}]
        for clip, text, speaker in zip(spec["audio"]["clips"], texts, speakers, strict=False):
            clip["text"] = text
            if speaker:
                clip["character"] = speaker
        spec_path.write_text(json.dumps(spec))
        on = [*scenerender(spec_path, work / "on.mp4"), "--force"]
        off = ["env", "SCENERENDER_DELIVERABLES=false", *scenerender(spec_path, work / "off.mp4"), "--force"]
        speed = machine_speed()
        load_before = os.getloadavg()
        runs = side_by_side(
            [("with sidecars + qc", on), ("mp4 only", off)],
            args.rounds,
            {n: 5 for n in ("with sidecars + qc", "mp4 only")},
        )
        load_after = os.getloadavg()
        with_, without = runs
        ratio = with_.wall_s / without.wall_s
        cpu_ratio = with_.cpu_s / without.cpu_s
        turns = sorted(round(a / b, 3) for a, b in zip(with_.turn_walls, without.turn_walls, strict=True))
        print(f"{'run':<24}{'wall s':>8}{'CPU s':>8}{'peak MB':>9}")
        for run in runs:
            print(f"{run.name:<24}{run.wall_s:>8.2f}{run.cpu_s:>8.2f}{run.peak_mb:>9.0f}")
        print(
            f"with/without: {ratio:.3f}x (turns {turns}); "
            f"target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'}; CPU-s {cpu_ratio:.3f}x; "
            f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
        )
        results = Path(__file__).resolve().parent / "results"
        results.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        scene = "moving" if args.moving else "reference"
        (results / f"deliverables-{scene}-{stamp}.json").write_text(
            json.dumps(
                {
                    "scene": scene,
                    "machine": speed,
                    "load_average": {"before": load_before, "after": load_after},
                    "runs": [asdict(r) for r in runs],
                    "ratio": ratio,
                    "cpu_ratio": cpu_ratio,
                    "turns": turns,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
