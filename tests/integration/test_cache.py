"""The segment cache in the pipeline (the render bucket on fake-gcs-server): an unchanged
scene rendered again encodes nothing, and after one source object changed it encodes one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from scenerender.cloud.clients import Clients
from scenerender.messages import JobOutput
from scenerender.settings import Settings
from tests import measure
from tests.mediagen import make_tone_burst, make_video
from tests.unit.cloud_fakes import output_of

pytestmark = [pytest.mark.integration, pytest.mark.emulators]

JOB = "it-cache"


def drop_and_wait(stores: Clients, spec: dict[str, Any]) -> JobOutput:
    settings = stores.settings
    generation = stores.blobs.write_bytes(
        f"gs://{settings.spec_bucket}/jobs/{JOB}.json", json.dumps(spec).encode(), content_type="application/json"
    )
    deadline = time.monotonic() + 180
    while True:
        doc = stores.jobs.get(JOB)
        if doc is not None and doc.spec_generation == str(generation) and doc.status.ended:
            return output_of(doc)
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)


def test_a_scene_rendered_again_reuses_every_segment_and_one_changed_source_is_encoded_once(
    stores: Clients, settings: Settings, tmp_path: Path
) -> None:
    uris = []
    for i in range(4):  # bytes of their own (the tone): no other test's entries apply
        path = make_video(tmp_path / f"c{i}.mp4", width=640, height=360, fps=25, duration=1.0, tone=510 + 20 * i)
        uri = f"gs://{settings.media_bucket}/users/cache-user/c{i}.mp4"
        stores.blobs.upload_file(path, uri, content_type="video/mp4")
        uris.append(uri)
    line = f"gs://{settings.media_bucket}/users/cache-user/line.wav"
    stores.blobs.upload_file(make_tone_burst(tmp_path / "line.wav", freq=1000, duration=0.3), line, content_type="x")
    spec = {
        "version": 1,
        "job_id": JOB,
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": "cache-user",
        "output": {"resolution": "720p", "fps": 30},
        "segments": [{"id": f"s{i}", "url": uri} for i, uri in enumerate(uris)],
        "audio": {"clips": [{"type": "dialogue", "url": line, "segment_id": "s2", "offset": 0.25}]},
    }

    first = drop_and_wait(stores, spec)
    assert (first.segments_encoded, first.segments_reused) == (4, 0)
    second = drop_and_wait(stores, spec)
    assert (second.segments_encoded, second.segments_reused) == (0, 4)
    assert second.audio_reused is True and second.probes_reused == 5
    # A regenerated segment: the same object name, new bytes (a new generation).
    changed = make_video(tmp_path / "c1b.mp4", width=640, height=360, fps=25, duration=1.0, pattern="smptebars")
    stores.blobs.upload_file(changed, uris[1], content_type="video/mp4")
    third = drop_and_wait(stores, spec)
    assert (third.segments_encoded, third.segments_reused) == (1, 3)
    entries = stores.blobs.list_uris(f"gs://{settings.render_bucket}/cache/segments/")
    assert sum(u.endswith(".mp4") for u in entries) >= 5  # 4 segments + the changed one, never a partial object

    out = tmp_path / "third.mp4"
    out.write_bytes(stores.blobs.read_bytes(third.uri))
    assert measure.count_frames(out) == 120
    onset = measure.onset_time(measure.decode_audio(out), freq=1000)
    assert abs(onset - 2.25) <= 0.02, onset
