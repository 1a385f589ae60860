"""The pipeline's own overhead over the render, on the local cloud (real emulators).

    .venv/bin/python benchmarks/bench_pipeline.py [--jobs 20]

1. Overhead, one job at a time (``--jobs`` jobs): spec written -> job RUNNING, and MP4
   uploaded -> job COMPLETED with its signed URL (median, p95). Target: under 1 s at the median.
2. Throughput: a batch file of ``--jobs`` short scenes with two workers and with one, and the
   same renders run one after another locally (``scenerender render``), timed in the same run.
3. Scale-out of one long scene: ``--segments`` segments that all need normalising
   (640x360@25 -> 1280x720@30, every one a different cut), the segment cache emptied before
   each run: two workers sharing this machine's cores against one worker with all of them,
   and — as Cloud Run tasks, each bringing its own CPUs — one worker with half the cores
   against two such workers (the encodes shared as work items).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--segments", type=int, default=40)
    args = parser.parse_args()

    from scenerender.cloud import clients
    from scenerender.dev.devstack import DevStack, Ports
    from scenerender.dev.procs import free_port
    from scenerender.settings import Settings, get_settings
    from tests.mediagen import make_tone_burst, make_video

    with tempfile.TemporaryDirectory(prefix="scenerender-pipeline-bench-") as tmp:
        work = Path(tmp)
        stack = DevStack(
            Settings(),
            state_dir=work / "stack",
            workers=0,  # started below, each with its CPU budget
            ports=Ports(pubsub=free_port(), firestore=free_port(), gcs=free_port(), functions=free_port()),
        )
        started = time.monotonic()
        stack.up()
        print(f"local cloud up in {time.monotonic() - started:.1f} s")
        os.environ.update(stack.env())
        os.environ["SCENERENDER_BATCH_REFRESH_S"] = os.environ.get("SCENERENDER_BATCH_REFRESH_S", "2")
        get_settings.cache_clear()
        clients.reset()
        settings = get_settings()
        blobs, jobs = clients.blobs(), clients.jobs()

        def start_workers(count: int, cpus: int) -> None:
            for p in [p for p in stack.state.processes if p.name.startswith("worker-")]:
                os.killpg(p.pid, signal.SIGTERM)
                stack.state.processes.remove(p)
            time.sleep(2.5)  # a stopped worker finishes its pull and leaves
            env = {**os.environ, "SCENERENDER_CPUS": str(cpus)}
            if count == 1:
                env["SCENERENDER_SPLIT_MIN_SEGMENTS"] = "0"  # as Terraform and dev up set it for one worker
            for i in range(count):
                argv = [sys.executable, "-m", "scenerender.pipeline.worker", "--serve"]
                stack.start_process(f"worker-{i}-{cpus}", argv, env, lambda: True)

        cores = os.cpu_count() or 1
        try:
            media = work / "media"
            media.mkdir()
            make_video(media / "a.mp4", width=640, height=360, fps=30, duration=1.0)
            make_video(media / "b.mp4", width=640, height=360, fps=30, duration=1.0, pattern="smptebars")
            make_tone_burst(media / "line.wav", freq=1000, duration=0.4)
            make_video(media / "long.mp4", width=640, height=360, fps=25, duration=args.segments * 2 + 1)
            for name in ("a.mp4", "b.mp4", "line.wav", "long.mp4"):
                blobs.upload_file(media / name, f"gs://{settings.media_bucket}/bench/{name}", content_type="x/y")

            def spec(job_id: str, local: bool = False) -> dict[str, Any]:
                def url(name: str) -> str:
                    return str(media / name) if local else f"gs://{settings.media_bucket}/bench/{name}"

                return {
                    "version": 1,
                    "job_id": job_id,
                    "project_id": "p",
                    "scene_id": "s",
                    "output": {"resolution": "640x360"},
                    "segments": [{"id": "a", "url": url("a.mp4")}, {"id": "b", "url": url("b.mp4")}],
                    "audio": {"clips": [{"type": "dialogue", "url": url("line.wav"), "segment_id": "b"}]},
                }

            def long_scene(job_id: str) -> dict[str, Any]:
                return {
                    "version": 1,
                    "job_id": job_id,
                    "project_id": "p",
                    "scene_id": job_id,
                    "output": {"resolution": "720p", "fps": 30},
                    "segments": [
                        {
                            "id": f"s{i}",
                            "url": f"gs://{settings.media_bucket}/bench/long.mp4",
                            "trim_start": 2 * i,
                            "duration": 2,
                        }
                        for i in range(args.segments)
                    ],
                    "audio": {
                        "clips": [
                            {
                                "type": "dialogue",
                                "url": f"gs://{settings.media_bucket}/bench/line.wav",
                                "segment_id": "s1",
                            }
                        ]
                    },
                }

            def render_long(job_id: str) -> tuple[float, dict[str, Any]]:
                for uri in blobs.list_uris(f"gs://{settings.render_bucket}/cache/"):
                    blobs.delete(uri)
                started = time.monotonic()
                body = json.dumps(long_scene(job_id)).encode()
                blobs.write_bytes(f"gs://{settings.spec_bucket}/jobs/{job_id}.json", body, content_type="x/y")
                doc = wait(job_id)
                assert doc["status"] == "COMPLETED", doc
                return time.monotonic() - started, doc["output"]

            def batch(batch_id: str) -> float:
                body = {
                    "version": 1,
                    "batch_id": batch_id,
                    "scenes": [
                        {k: v for k, v in spec(f"{batch_id}-{i}").items() if k != "job_id"} | {"scene_id": f"s{i}"}
                        for i in range(args.jobs)
                    ],
                }
                started = time.monotonic()
                blobs.write_bytes(
                    f"gs://{settings.spec_bucket}/jobs/{batch_id}.json", json.dumps(body).encode(), content_type="x/y"
                )
                while (jobs.get_batch(batch_id) or {}).get("status") not in ("COMPLETED", "FAILED"):
                    time.sleep(0.05)
                elapsed = time.monotonic() - started
                assert jobs.get_batch(batch_id)["status"] == "COMPLETED", jobs.get_batch(batch_id)
                return elapsed

            def drop(job_id: str) -> float:
                body = json.dumps(spec(job_id)).encode()
                blobs.write_bytes(f"gs://{settings.spec_bucket}/jobs/{job_id}.json", body, content_type="x/y")
                return time.time()

            def wait(job_id: str) -> dict[str, Any]:
                while True:
                    doc = jobs.get(job_id)
                    if doc and doc.get("status") in ("COMPLETED", "FAILED"):
                        return doc
                    time.sleep(0.05)

            start_workers(2, max(1, cores // 2))
            to_running: list[float] = []
            to_completed: list[float] = []
            for i in range(args.jobs):
                job_id = f"overhead-{i}"
                written = drop(job_id)
                doc = wait(job_id)
                assert doc["status"] == "COMPLETED", doc
                to_running.append(doc["started_at"].timestamp() - written)
                uploaded = (
                    blobs.client.bucket(settings.render_bucket)
                    .get_blob(f"renders/{job_id}/{job_id}.mp4")
                    .time_created.timestamp()
                )
                to_completed.append(doc["finished_at"].timestamp() - uploaded)

            # Two workers sharing this machine's cores, then one worker with all of them.
            burst_s = batch("burst")
            long_two_s, long_two = render_long("long-two")
            start_workers(1, cores)
            single_s = batch("single")
            long_one_s, long_one = render_long("long-one")
            # As tasks of a Cloud Run job, each bringing its own CPU: one task, then two.
            start_workers(1, max(1, cores // 2))
            task_one_s, _ = render_long("task-one")
            start_workers(2, max(1, cores // 2))
            task_two_s, task_two = render_long("task-two")

            started = time.monotonic()
            for i in range(args.jobs):
                path = work / f"local-{i}.json"
                path.write_text(json.dumps(spec(f"local-{i}", local=True)))
                subprocess.run(
                    [sys.executable, "-m", "scenerender", "render", str(path), "-o", str(work / f"local-{i}.mp4")],
                    check=True,
                    capture_output=True,
                )
            sequential_s = time.monotonic() - started
        finally:
            stack.down()

    print(
        f"spec written -> RUNNING, {args.jobs} jobs: median {statistics.median(to_running):.3f} s, "
        f"p95 {percentile(to_running, 0.95):.3f} s"
    )
    print(
        f"MP4 uploaded -> COMPLETED with URL: median {statistics.median(to_completed):.3f} s, "
        f"p95 {percentile(to_completed, 0.95):.3f} s"
    )
    print(
        f"batch of {args.jobs} short scenes: 1 worker {single_s:.2f} s, 2 workers {burst_s:.2f} s; "
        f"ratio {single_s / burst_s:.2f}x"
    )
    print(
        f"batch of {args.jobs} short scenes, 2 workers: {burst_s:.2f} s; "
        f"{args.jobs} local renders one after another: {sequential_s:.2f} s; ratio {sequential_s / burst_s:.2f}x"
    )
    print(
        f"{args.segments}-segment scene (all normalised), workers sharing {os.cpu_count()} cores: "
        f"1 worker {long_one_s:.2f} s, 2 workers {long_two_s:.2f} s "
        f"({long_two['segments_from_helpers']} of {long_two['segments_encoded']} encoded by the helper); "
        f"ratio {long_one_s / long_two_s:.2f}x"
    )
    print(
        f"{args.segments}-segment scene, tasks of {max(1, (os.cpu_count() or 1) // 2)} CPU each: "
        f"1 task {task_one_s:.2f} s, 2 tasks {task_two_s:.2f} s "
        f"({task_two['segments_from_helpers']} by the second); ratio {task_one_s / task_two_s:.2f}x"
    )
    assert long_one["segments_from_helpers"] == 0 and long_one["segments_encoded"] == args.segments


if __name__ == "__main__":
    main()
