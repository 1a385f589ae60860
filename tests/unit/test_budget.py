"""The render's cost before it starts (scenerender.pipeline.budget) and the Cloud Run launcher's API calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scenerender.cloud.launcher import CloudRunLauncher, execution_from_resource
from scenerender.core import webp
from scenerender.core.spec import parse_spec
from scenerender.messages import JobDocument, RenderRequest
from scenerender.pipeline import steps
from scenerender.pipeline.budget import estimated_render_s, memory_need
from scenerender.settings import Settings
from tests.unit.cloud_fakes import FakeBlobs, FakeBus, FakeJobs

MEDIA = "gs://scenerender-media/users/u1/big.mp4"


def scene(duration: float, resolution: str = "1080p") -> dict[str, Any]:
    return {
        "version": 1,
        "job_id": "j",
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": "u1",
        "output": {"resolution": resolution},
        "segments": [{"id": "a", "url": MEDIA, "duration": duration}],
    }


def test_the_time_estimate_grows_with_length_and_pixels_and_shrinks_with_cores() -> None:
    settings = Settings(cpus=2)
    short, long = (estimated_render_s(parse_spec(scene(d)), settings) for d in (10.0, 100.0))
    small = estimated_render_s(parse_spec(scene(100.0, "640x360")), settings)
    more_cores = estimated_render_s(parse_spec(scene(100.0)), Settings(cpus=8))
    assert 10 < short < long and small < long and more_cores < long


def test_a_render_that_cannot_fit_in_memory_is_refused_with_the_numbers_before_any_fetch() -> None:
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    blobs.objects[MEDIA] = b"\0" * (300 * 1024 * 1024)
    settings = Settings(memory_mb=1024, cpus=2)
    need = memory_need(parse_spec(scene(60.0)), settings, lambda url: len(blobs.objects[url]))
    assert need.inputs == 300 * 1024 * 1024 and need.total > need.memory
    jobs.create_job("j", JobDocument.model_validate({"status": "QUEUED", "owner_uid": "u1"}))
    fetched: list[str] = []
    outcome = steps.run_render_request(
        RenderRequest(job_id="j", spec=scene(60.0)),
        settings=settings,
        blobs=blobs,
        jobs=jobs,
        bus=bus,
        gs_download=lambda uri, dest, cap: fetched.append(uri),
    )
    assert outcome.ack and outcome.status == "FAILED" and fetched == []
    error = bus.published[-1][1]["error"]
    assert error["code"] == "LIMIT_EXCEEDED" and error["message"].startswith("memory_mb: the render needs about")
    assert "inputs 300 MiB" in error["message"] and "the renderer has 1,024 MiB" in error["message"]
    assert error["details"] == [{"path": "segments[0].url", "problem": "300 MiB to fetch"}]


class FakeResponse:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code, self._body, self.text = status, body, str(body)

    def json(self) -> dict[str, Any]:
        return self._body


class FakeSession:
    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []

    def post(self, url: str, *, json: Any, timeout: float) -> FakeResponse:
        self.posts.append((url, json))
        return FakeResponse(200, {"name": "operations/x", "metadata": {"name": "projects/p/jobs/r/executions/r-1"}})

    def get(self, url: str, *, timeout: float) -> FakeResponse:
        return FakeResponse(404, {})


def test_cloud_run_launches_with_a_task_count_and_reads_executions() -> None:
    session = FakeSession()
    launcher = CloudRunLauncher(Settings(project_id="p", region="r", renderer_job="job"), session=session)
    assert launcher.run(3) == "projects/p/jobs/r/executions/r-1"
    assert session.posts == [
        ("https://run.googleapis.com/v2/projects/p/locations/r/jobs/job:run", {"overrides": {"taskCount": 3}})
    ]
    assert launcher.execution("projects/p/jobs/r/executions/gone").state == "NOT_FOUND"
    assert execution_from_resource("e", {"taskCount": 2}).state == "PENDING"
    assert execution_from_resource("e", {"startTime": "t", "runningCount": 1}).alive
    failed = execution_from_resource("e", {"startTime": "t", "completionTime": "t", "taskCount": 2, "failedCount": 1})
    assert failed.state == "FAILED" and "1 failed" in failed.detail
    done = {"startTime": "t", "completionTime": "t", "taskCount": 2, "succeededCount": 2}
    assert execution_from_resource("e", done).state == "SUCCEEDED"


def animated_webp(path: Path, size: tuple[int, int], durations: list[int]) -> None:
    """A real animated WebP (libwebp's encoder in Pillow): flat frames, a few hundred bytes."""
    from PIL import Image

    frames = [Image.new("RGB", size, (40 * n % 256, 100, 50)) for n in range(len(durations))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, lossless=True)


def test_an_animated_webp_is_counted_by_its_decoded_frames_and_refused_before_one_is_decoded(tmp_path: Path) -> None:
    # 6 frames of 4000x3000 in a few hundred bytes: its bucket size fits any budget, the MOV
    # its frames become (up to 361 MiB) does not fit what 768 MiB leaves. ffmpeg is a path
    # that does not exist, so a conversion that started would fail otherwise ("not found").
    webp_file = tmp_path / "a.webp"
    animated_webp(webp_file, (4000, 3000), [100, 200, 100, 100, 100, 400])
    header = webp.read_header(webp_file, "segments[0].url")
    assert (header.width, header.height, header.duration_ms, len(header.durations)) == (4000, 3000, 1000, 6)
    assert 7 * 4000 * 3000 * 4 < header.decoded_bytes < 7 * 4000 * 3000 * 5  # every frame, the last twice
    size = webp_file.stat().st_size
    assert size < 2000

    def attempt(memory_mb: int, name: str) -> tuple[dict[str, Any], list[str]]:
        blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
        uri = f"gs://scenerender-media/users/u1/{name}"
        spec = {**scene(1.0, "640x360"), "segments": [{"id": "s0", "url": uri, "duration": 1.0}]}
        blobs.objects[uri] = webp_file.read_bytes()
        settings = Settings(memory_mb=memory_mb, cpus=2, ffmpeg=str(tmp_path / "no-ffmpeg"), segment_cache=False)
        need = memory_need(parse_spec(spec), settings, lambda url: len(blobs.objects[url]))
        assert need.total <= need.memory  # the scene as the bucket sizes count it fits
        jobs.create_job("j", JobDocument.model_validate({"status": "QUEUED", "owner_uid": "u1"}))
        fetched: list[str] = []

        def download(uri: str, dest: Path, cap: int) -> None:
            fetched.append(uri)
            dest.write_bytes(blobs.objects[uri])

        outcome = steps.run_render_request(
            RenderRequest(job_id="j", spec=spec),
            settings=settings,
            blobs=blobs,
            jobs=jobs,
            bus=bus,
            gs_download=download,
        )
        assert outcome.status == "FAILED"
        error: dict[str, Any] = bus.published[-1][1]["error"]
        return error, fetched

    # Named .webp: read from the bucket and counted by its frames before anything is fetched.
    error, fetched = attempt(768, "a.webp")
    assert error["code"] == "LIMIT_EXCEEDED" and fetched == [], error
    assert error["message"].startswith("memory_mb: the render needs about inputs ")
    assert "+ animated WebPs' frames 361 MiB = 825 MiB; the renderer has 768 MiB" in error["message"], error
    assert error["details"] == [
        {
            "path": "segments[0].url",
            "problem": f"{size} bytes to fetch, an animated WebP whose frames take up to 361 MiB decoded",
        }
    ]
    # Named otherwise (its bytes make it a WebP, not its name): counted once fetched, before
    # a frame is decoded, against the ~303 MiB the rest leaves.
    error, fetched = attempt(768, "clip.mp4")
    assert error["code"] == "LIMIT_EXCEEDED" and len(fetched) == 1, error
    assert error["message"].startswith("memory_mb: segments[0].url is an animated WebP whose frames take up to 361 MiB")
    assert error["details"] == [
        {"path": "segments[0].url", "problem": "its 6 frames of 4000x3000 take up to 361 MiB decoded; 303 MiB left"}
    ]
    # 1,024 MiB: it fits both counts, and its conversion starts (and meets the missing ffmpeg).
    # Several WebPs share what is left: tests/unit/test_webp.py.
    for name in ("a.webp", "clip.mp4"):
        error, fetched = attempt(1024, name)
        assert error["code"] == "INPUT_INVALID_MEDIA" and "ffmpeg not found" in error["message"], error
        assert len(fetched) == 1
