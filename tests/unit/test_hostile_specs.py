"""Any bytes dropped as a spec end as a recorded INVALID_SPEC (or a valid job), never a crash or a retry loop."""

from __future__ import annotations

import json
import logging
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scenerender.core.spec import parse_spec
from scenerender.errors import SpecError
from scenerender.logs import JsonFormatter, redact
from scenerender.pipeline import steps
from scenerender.pipeline.batch import is_batch
from scenerender.settings import Settings
from tests.unit.cloud_fakes import FakeBlobs, FakeBus, FakeJobs

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
spec_like = st.fixed_dictionaries(
    {
        "version": st.sampled_from([1, 2, "1", None]),
        "project_id": st.text(max_size=20),
        "scene_id": st.text(max_size=20),
        "segments": st.lists(
            st.dictionaries(
                st.sampled_from(["id", "url", "duration", "trim_start", "volume", "x"]), json_values, max_size=5
            ),
            max_size=3,
        ),
    },
    optional={"audio": json_values, "output": json_values, "job_id": json_values},
)
hostile_bytes = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=2000).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    spec_like.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([b'{"version": 1e999}', b'{"version": NaN}', b"\xef\xbb\xbf{}", b"x" * (1024 * 1024 + 1)]),
)


@given(hostile_bytes)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parse_spec_raises_only_spec_errors_with_a_message(raw: bytes) -> None:
    try:
        parse_spec(raw)
    except SpecError as exc:
        assert exc.message and exc.details and all(d.message for d in exc.details)


@given(hostile_bytes)
@example(b'{"scenes": null}')
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_spec_trigger_records_every_drop(raw: bytes) -> None:
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    blobs.objects["gs://scenerender-specs/jobs/fuzz.json"] = raw
    event = steps.SpecEvent("scenerender-specs", "jobs/fuzz.json", "1", "OBJECT_FINALIZE")
    job_id = steps.accept_spec(event, settings=Settings(), blobs=blobs, jobs=jobs, bus=bus)
    assert job_id is not None
    # A JSON object with "scenes" is a batch file (even {"scenes": null}): its record is the batch's.
    job = jobs.batches[job_id] if is_batch(raw) else jobs.docs[job_id]
    if job["status"] == "FAILED":
        assert job["error"]["code"] == "INVALID_SPEC" and job["error"]["message"]
        assert bus.published == []
    else:
        assert job["status"] == "QUEUED" and len(bus.published) == 1


def test_signed_urls_and_tokens_never_reach_the_logs() -> None:
    url = (
        "https://storage.googleapis.com/b/o.mp4?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p"
        "&X-Goog-Signature=deadbeef"
    )
    assert "deadbeef" not in redact(url) and "sa%40p" not in redact(url)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "output %s with Bearer ya29.secret", (url,), None)
    line: dict[str, Any] = json.loads(JsonFormatter().format(record))
    assert line["severity"] == "INFO"
    assert "deadbeef" not in line["message"] and "ya29.secret" not in line["message"]
