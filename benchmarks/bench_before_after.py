"""The render of one checkout against another's, side by side in one run (a refactor's check).

    .venv/bin/python benchmarks/bench_before_after.py --before DIR [--after DIR] [--rounds 5] [--quick]

DIR is a checkout of the code to compare (``git worktree add /tmp/before <commit>``); each
render runs ``python -m scenerender render`` with that checkout first on PYTHONPATH, in this
venv. The two take turns on the same generated scenes (bench_render's): 10 x 5 s 1080p30 that
match (stream copy), 10 that need normalising (720p25 -> 1080p30), 3 long segments encoded as
pieces, and 100 segments for memory. Each case's wall time is the median over the rounds;
memory is the peak PSS of the render's process tree, sampled once. Prints after/before per
case and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_render import ROOT, Run, machine_speed, make_scene, side_by_side


def render_with(checkout: Path, spec: Path, out: Path) -> list[str]:
    return [
        "env",
        f"PYTHONPATH={checkout}",
        sys.executable,
        "-m",
        "scenerender",
        "render",
        str(spec),
        "-o",
        str(out),
        "--json",
        "--force",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code before the change")
    parser.add_argument("--after", type=Path, default=ROOT, help="checkout of the code after (default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 s segments (a smoke run)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 5.0
    os.environ["SCENERENDER_SEGMENT_CACHE"] = "false"  # every render encodes
    speed_before = machine_speed()
    rows: dict[str, dict[str, Run]] = {}
    import tempfile

    with tempfile.TemporaryDirectory(prefix="scenerender-bench-ba-") as tmp:
        work = Path(tmp)
        scenes = {
            "matching 10 x 1080p30": make_scene(
                work / "matching", segments=10, seconds=seconds, size="1920x1080", fps=30
            ),
            "normalising 10 x 720p25 -> 1080p30": make_scene(
                work / "normalising", segments=10, seconds=seconds, size="1280x720", fps=25, distinct=10
            ),
            "3 long segments 720p25 -> 1080p30": make_scene(
                work / "long", segments=3, seconds=4 * seconds, size="1280x720", fps=25, distinct=3, one_pattern=True
            ),
            "100 x 1080p30 (memory)": make_scene(work / "mem", segments=100, seconds=seconds, size="1920x1080", fps=30),
        }
        for case, spec in scenes.items():
            rounds = 1 if "memory" in case else args.rounds
            before, after = side_by_side(
                [
                    (f"before: {case}", render_with(args.before.resolve(), spec, work / "before.mp4")),
                    (f"after: {case}", render_with(args.after.resolve(), spec, work / "after.mp4")),
                ],
                rounds=rounds,
            )
            rows[case] = {"before": before, "after": after}
            print(
                f"{case}: before {before.wall_s:.2f} s / {before.peak_mb:.0f} MB, after {after.wall_s:.2f} s / "
                f"{after.peak_mb:.0f} MB, after/before {after.wall_s / before.wall_s:.3f}",
                flush=True,
            )
    speed_after = machine_speed()
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"before-after-{stamp}.json").write_text(
        json.dumps(
            {
                "before": str(args.before),
                "after": str(args.after),
                "rounds": args.rounds,
                "segment_seconds": seconds,
                "cases": {
                    case: {
                        "before": asdict(pair["before"]),
                        "after": asdict(pair["after"]),
                        "after_over_before": round(pair["after"].wall_s / pair["before"].wall_s, 3),
                    }
                    for case, pair in rows.items()
                },
                "machine_speed": {"before": speed_before, "after": speed_after},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
