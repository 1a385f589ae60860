"""CPU-s (and wall) of bench_render's matching render, several trees interleaved.

    .venv/bin/python benchmarks/cpu_by_tree.py [--rounds 5] [--repeats 3] TREE[=LABEL] ...

Where a change's cost goes, tree by tree (1d16aca, a commit in between, this checkout): the
10 x 5 s 1080p30 copied scene with its 4 clips, rendered by each tree's package (this venv,
``python -P``, checked as bench_render's ``--before`` checks it), sidecars and the segment
cache off as ``bench_render.py --before`` runs. Each round every tree renders ``repeats``
times in a row, the trees taking turns (A B C, B C A, ...). CPU-s of the whole process tree
move less with the machine's load than wall time, so this is the figure to read on a busy
machine; wall is kept beside it, with the 1-minute load as each turn began. Writes
``benchmarks/results/matching-cpu-by-tree-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_render import ROOT, make_scene, render_in, timed, tree_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", metavar="TREE[=LABEL]", help="a checkout or worktree (. for this one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="renders in a row per tree per round")
    args = parser.parse_args()
    os.environ["SCENERENDER_DELIVERABLES"] = "false"  # the MP4 only, as bench_render --before compares
    os.environ["SCENERENDER_SEGMENT_CACHE"] = "false"
    trees: list[tuple[str, Path]] = []
    for item in args.trees:
        path, _, label = item.partition("=")
        tree = Path(path).resolve()
        trees.append((f"{label or tree.name} ({tree_state(tree)})", tree))
    cpu: dict[str, list[float]] = {label: [] for label, _ in trees}
    wall: dict[str, list[float]] = {label: [] for label, _ in trees}
    loads: dict[str, list[float]] = {label: [] for label, _ in trees}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="cpu-by-tree-") as tmp:
        work = Path(tmp)
        spec = make_scene(work / "matching", segments=10, seconds=5.0, size="1920x1080", fps=30)
        argvs = {label: render_in(tree, spec, work / f"out-{n}.mp4", []) for n, (label, tree) in enumerate(trees)}
        for label, argv in argvs.items():  # one untimed render each: files cached, bytecode written
            timed(label, argv, None)
        for turn in range(args.rounds):
            order = trees[turn % len(trees) :] + trees[: turn % len(trees)]
            for label, _ in order:
                loads[label].append(round(os.getloadavg()[0], 2))
                for _ in range(args.repeats):
                    w, c = timed(label, argvs[label], None)
                    wall[label].append(round(w, 3))
                    cpu[label].append(round(c, 3))
            print(f"round {turn + 1}: " + ", ".join(f"{k}: {statistics.median(v):.2f} CPU-s" for k, v in cpu.items()))
    first = trees[0][0]
    summary = {
        label: {
            "cpu_s": cpu[label],
            "wall_s": wall[label],
            "load_at_turn": loads[label],
            "cpu_median": round(statistics.median(cpu[label]), 3),
            "wall_median": round(statistics.median(wall[label]), 3),
            "cpu_over_first": round(statistics.median(cpu[label]) / statistics.median(cpu[first]), 3),
            "wall_over_first": round(statistics.median(wall[label]) / statistics.median(wall[first]), 3),
        }
        for label, _ in trees
    }
    for label, _ in trees:
        print(
            f"{label}: CPU {statistics.median(cpu[label]):.2f} s ({summary[label]['cpu_over_first']}x), "
            f"wall {statistics.median(wall[label]):.2f} s ({summary[label]['wall_over_first']}x), "
            f"load {min(loads[label])}-{max(loads[label])}"
        )
    data = {
        "what": "CPU-s and wall of one matching render (bench_render's 10 x 5 s 1080p30 scene, 4 clips), trees "
        f"interleaved, {args.rounds} rounds x {args.repeats} renders; SCENERENDER_DELIVERABLES=false, "
        "SCENERENDER_SEGMENT_CACHE=false; each tree on PYTHONPATH with python -P",
        "started": started,
        "load_at_end": [round(x, 2) for x in os.getloadavg()],
        "this_checkout": tree_state(ROOT),
        "trees": summary,
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    out = results / f"matching-cpu-by-tree-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
