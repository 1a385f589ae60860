"""Work items: the template a helper runs is exactly the encode its cache address names."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from scenerender.core.cache import materialize, segment_key, segment_template
from scenerender.pipeline.workitems import WorkItem

SOURCE, OUTPUT = Path("/work/in/a.mp4"), Path("/work/norm/0001.mp4")
ARGV = [
    "ffmpeg",
    "-y",
    "-ss",
    "3",
    "-i",
    str(SOURCE),
    "-vf",
    "scale=1280:720",
    "-threads",
    "2",
    "-f",
    "mp4",
    str(OUTPUT),
]
DIGEST = "ab" * 32


def item(**changes: object) -> dict[str, object]:
    template = segment_template(ARGV, SOURCE, OUTPUT)
    fields: dict[str, object] = {
        "job_id": "j",
        "key": segment_key(DIGEST, template),
        "index": 1,
        "source_url": "gs://media/a.mp4",
        "input_path": "segments[1].url",
        "source_digest": DIGEST,
        "template": template,
        "duration_s": 3.0,
    }
    return {**fields, **changes}


def test_the_template_leaves_out_the_binary_paths_and_thread_count() -> None:
    template = segment_template(ARGV, SOURCE, OUTPUT)
    assert template == ["-y", "-ss", "3", "-i", "<source>", "-vf", "scale=1280:720", "-f", "mp4", "<output>"]
    other_threads = [a if a != "2" else "8" for a in ARGV]
    assert segment_key(DIGEST, segment_template(other_threads, SOURCE, OUTPUT)) == segment_key(DIGEST, template)


def test_a_helper_runs_the_same_encode_on_its_own_paths() -> None:
    template = segment_template(ARGV, SOURCE, OUTPUT)
    here = materialize(template, ffmpeg="ffmpeg", source=Path("/h/src.mp4"), output=Path("/h/out.mp4"), threads=4)
    assert here[:6] == ["ffmpeg", "-y", "-ss", "3", "-i", "/h/src.mp4"]
    assert here[-5:] == ["-f", "mp4", "-threads", "4", "/h/out.mp4"]
    assert segment_template(here, Path("/h/src.mp4"), Path("/h/out.mp4")) == template


def test_a_work_item_whose_key_is_not_its_encode_is_refused() -> None:
    assert WorkItem.model_validate(item()).index == 1
    tampered = segment_template(ARGV, SOURCE, OUTPUT)
    tampered[6] = "scale=640:360"
    with pytest.raises(ValidationError, match="content address"):
        WorkItem.model_validate(item(template=tampered))
    with pytest.raises(ValidationError, match="content address"):
        WorkItem.model_validate(item(source_digest="cd" * 32))


def test_a_work_item_must_read_its_source_and_write_its_output_last() -> None:
    template = segment_template(ARGV, SOURCE, OUTPUT)
    for bad in ([*template[:-1], "/tmp/elsewhere.mp4"], [a if a != "<source>" else "/etc/passwd" for a in template]):
        with pytest.raises(ValidationError, match="<source> once"):
            WorkItem.model_validate(item(template=bad, key=segment_key(DIGEST, bad)))
    with pytest.raises(ValidationError):
        WorkItem.model_validate(item(extra="field"))


def test_the_decoder_and_filter_thread_options_stay_in_the_template() -> None:
    argv = ["ffmpeg", "-threads", "1", "-i", str(SOURCE), "-filter_threads", "1", "-threads", "3", str(OUTPUT)]
    template = segment_template(argv, SOURCE, OUTPUT)
    assert template == ["-threads", "1", "-i", "<source>", "-filter_threads", "1", "<output>"]
    here = materialize(template, ffmpeg="ffmpeg", source=SOURCE, output=OUTPUT, threads=2)
    assert here == ["ffmpeg", "-threads", "1", "-i", str(SOURCE), "-filter_threads", "1", "-threads", "2", str(OUTPUT)]


def test_tasks_of_a_cloud_run_job_have_distinct_worker_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    from scenerender.pipeline.workitems import worker_id
    from scenerender.settings import Settings

    # The variables Cloud Run sets on each task, read through Settings.
    monkeypatch.setenv("CLOUD_RUN_EXECUTION", "renderer-x7k")
    ids = set()
    for index in ("0", "1"):
        monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", index)
        ids.add(worker_id(Settings()))
    assert len(ids) == 2 and all(i.startswith("renderer-x7k/task-") for i in ids)
    monkeypatch.delenv("CLOUD_RUN_TASK_INDEX")
    alone = worker_id(Settings())
    assert alone.rsplit(":", 1)[1].isdigit() and "/" not in alone
