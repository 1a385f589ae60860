"""One long scene's segment encodes spread over workers, on the emulators.

Three workers render a scene whose twelve segments all need normalising: the encodes are
shared out as work items and the output matches a single-process render of the same scene.
A worker killed while it holds an item delays that item and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scenerender.cloud.bus import ensure_subscription, ensure_topic
from scenerender.cloud.clients import Clients
from scenerender.messages import JobDocument
from scenerender.pipeline.workitems import ItemRecord, ItemStore
from scenerender.settings import Settings
from tests import measure
from tests.cli import render_json
from tests.integration.conftest import LocalCloud
from tests.mediagen import make_tone_burst, make_video, run_ffmpeg
from tests.unit.cloud_fakes import output_of

pytestmark = [pytest.mark.integration, pytest.mark.emulators]

SEGMENTS = 12
SEGMENT_S = 3.0
LINE_SEGMENT, LINE_OFFSET = 7, 1.0


def scene(source_uri: str, line_uri: str, job_id: str) -> dict[str, Any]:
    """Twelve different 3 s cuts of one 640x360@25 source, to 1280x720@30: twelve distinct encodes."""
    return {
        "version": 1,
        "job_id": job_id,
        "project_id": "p",
        "scene_id": job_id,
        "owner_uid": "split-user",
        "output": {"resolution": "720p", "fps": 30},
        "segments": [
            {"id": f"s{i}", "url": source_uri, "trim_start": i * SEGMENT_S, "duration": SEGMENT_S}
            for i in range(SEGMENTS)
        ],
        "audio": {
            "clips": [{"type": "dialogue", "url": line_uri, "segment_id": f"s{LINE_SEGMENT}", "offset": LINE_OFFSET}]
        },
    }


def upload_media(tmp_path: Path, stores: Clients, name: str, tone: float) -> tuple[str, str, Path, Path]:
    settings = stores.settings
    # Bytes of its own per test (the tone differs): no other test's cache entries can stand in for its encodes.
    duration = SEGMENTS * SEGMENT_S + 1
    source = make_video(tmp_path / f"{name}.mp4", width=640, height=360, fps=25, duration=duration, tone=tone)
    line = make_tone_burst(tmp_path / f"{name}-line.wav", freq=1000, duration=0.5)
    uris = []
    for path in (source, line):
        uri = f"gs://{settings.media_bucket}/users/split-user/{path.name}"
        stores.blobs.upload_file(path, uri, content_type="application/octet-stream")
        uris.append(uri)
    return uris[0], uris[1], source, line


def submit(stores: Clients, spec: dict[str, Any]) -> None:
    settings = stores.settings
    stores.blobs.write_bytes(
        f"gs://{settings.spec_bucket}/jobs/{spec['job_id']}.json",
        json.dumps(spec).encode(),
        content_type="application/json",
    )


def wait_for_end(stores: Clients, job_id: str, timeout_s: float = 240) -> JobDocument:
    deadline = time.monotonic() + timeout_s
    while True:
        doc = stores.jobs.get(job_id)
        if doc is not None and doc.status.ended:
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)


def download_output(stores: Clients, job_id: str, dest: Path) -> Path:
    dest.write_bytes(stores.blobs.read_bytes(output_of(stores.jobs.get(job_id)).uri))
    return dest


def start_worker(local: LocalCloud, name: str, **env: str) -> int:
    local.stack.start_process(
        name, [sys.executable, "-m", "scenerender.pipeline.worker", "--serve"], local.env(**env), lambda: True
    )
    return next(p.pid for p in local.stack.state.processes if p.name == name)


def stop_worker(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)


def test_a_scene_split_over_three_workers_matches_a_single_worker_render(
    stores: Clients, local: LocalCloud, settings: Settings, tmp_path: Path
) -> None:
    source_uri, line_uri, source, line = upload_media(tmp_path, stores, "split-three", tone=300)
    third = start_worker(local, "worker-split-third")
    try:
        spec = scene(source_uri, line_uri, "it-split-three")
        submit(stores, spec)
        doc = wait_for_end(stores, "it-split-three")
    finally:
        stop_worker(third)
    output = output_of(doc)
    assert output.segments_encoded == SEGMENTS and output.segments_reused == 0
    assert output.segments_from_helpers >= 1, output

    items = ItemStore(stores.jobs.client, settings).items("it-split-three")
    assert len(items) == SEGMENTS and {i.status for i in items.values()} == {"DONE"}
    encoders = {i.done_by for i in items.values()}
    assert len(encoders) >= 2, encoders  # the encodes really were shared out
    assert sorted(i.index for i in items.values()) == list(range(SEGMENTS))

    shared = download_output(stores, "it-split-three", tmp_path / "shared.mp4")
    local_spec = scene(str(source), str(line), "local")
    (tmp_path / "local.json").write_text(json.dumps(local_spec))
    single = tmp_path / "local.mp4"
    assert render_json(tmp_path / "local.json", single)["segments_from_helpers"] == 0

    frames = round(SEGMENTS * SEGMENT_S * 30)
    assert measure.count_frames(shared) == measure.count_frames(single) == frames
    shared_probe, local_probe = measure.probe(shared), measure.probe(single)
    assert abs(float(shared_probe["format"]["duration"]) - float(local_probe["format"]["duration"])) <= 1 / 30
    expected = LINE_SEGMENT * SEGMENT_S + LINE_OFFSET
    onsets = [measure.onset_time(measure.decode_audio(path), freq=1000) for path in (shared, single)]
    assert all(abs(onset - expected) <= 0.02 for onset in onsets), onsets
    assert abs(output.av_drift_ms) <= 1000 / 30


def test_a_worker_killed_while_holding_a_segment_does_not_stall_the_scene(
    stores: Clients, local: LocalCloud, settings: Settings, tmp_path: Path
) -> None:
    source_uri, line_uri, _, _ = upload_media(tmp_path, stores, "split-kill", tone=400)
    # The victim takes only shared segments (its render subscription never has a request),
    # and its ffmpeg waits before encoding, so it is sure to be caught holding one.
    ensure_topic(settings, "victim-no-requests")
    ensure_subscription(settings, "victim-no-requests", "victim-no-requests")
    slow = tmp_path / "slow-ffmpeg"
    slow.write_text('#!/bin/sh\nsleep 120\nexec ffmpeg "$@"\n')
    slow.chmod(0o755)
    victim = start_worker(
        local, "worker-split-victim", FFMPEG=str(slow), SCENERENDER_RENDER_SUBSCRIPTION="victim-no-requests"
    )
    try:
        submit(stores, scene(source_uri, line_uri, "it-split-kill"))
        deadline = time.monotonic() + 90
        held: tuple[str, ItemRecord] | None = None
        while held is None:
            assert time.monotonic() < deadline, "the victim never took a segment"
            running = stores.jobs.get("it-split-kill")
            assert running is None or running.status != "COMPLETED"
            items = ItemStore(stores.jobs.client, settings).items("it-split-kill")
            held = next(
                ((k, i) for k, i in items.items() if (i.holder or "").endswith(f":{victim}") and i.status == "CLAIMED"),
                None,
            )
            time.sleep(0.1)
        os.killpg(victim, signal.SIGKILL)  # the worker and its ffmpeg, as a task that died
        killed_at = time.monotonic()
        doc = wait_for_end(stores, "it-split-kill")
    finally:
        stop_worker(victim)
    output = output_of(doc)
    assert doc.attempt == 1  # the scene itself was never restarted
    assert time.monotonic() - killed_at < 60
    key, _ = held
    item = ItemStore(stores.jobs.client, settings).items("it-split-kill")[key]
    assert item.status == "DONE" and item.done_by and not item.done_by.endswith(f":{victim}")
    assert item.attempt >= 2 and item.holders[0].endswith(f":{victim}")
    out = download_output(stores, "it-split-kill", tmp_path / "out.mp4")
    assert measure.count_frames(out) == round(SEGMENTS * SEGMENT_S * 30)
    assert output.segments_encoded == SEGMENTS


def test_an_animated_webp_segment_is_made_by_the_scenes_own_worker(
    stores: Clients, local: LocalCloud, settings: Settings, tmp_path: Path
) -> None:
    """Its frames were decoded by the assembler, within its memory budget: not offered to the
    helpers, who would decode them all again with no budget that counts them."""
    source_uri, line_uri, _, _ = upload_media(tmp_path, stores, "split-webp", tone=500)
    webp = tmp_path / "split-anim.webp"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=10:d=2", "-c:v", "libwebp_anim", "-lossless", "1", str(webp))
    webp_uri = f"gs://{settings.media_bucket}/users/split-user/{webp.name}"
    stores.blobs.upload_file(webp, webp_uri, content_type="image/webp")
    spec = scene(source_uri, line_uri, "it-split-webp")
    spec["segments"].append({"id": "anim", "url": webp_uri})
    third = start_worker(local, "worker-split-webp")
    try:
        submit(stores, spec)
        doc = wait_for_end(stores, "it-split-webp")
    finally:
        stop_worker(third)
    output = output_of(doc)
    assert output.segments_encoded == SEGMENTS + 1 and output.segments_from_helpers >= 1, output
    items = ItemStore(stores.jobs.client, settings).items("it-split-webp")
    # Every other segment was offered (its item names its index); the WebP's was not: its only
    # record is the assembler's own claim (index -1), done by the worker that holds the job.
    offered = sorted(i.index for i in items.values() if i.index >= 0)
    own = [i for i in items.values() if i.index < 0]
    assert offered == list(range(SEGMENTS)) and len(own) == 1, items
    assert own[0].status == "DONE" and own[0].done_by == doc.worker, (own, doc.worker)
    shared = download_output(stores, "it-split-webp", tmp_path / "shared.mp4")
    assert measure.count_frames(shared) == round(SEGMENTS * SEGMENT_S * 30) + 2 * 30
