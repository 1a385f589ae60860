"""A render request that never succeeds is not retried for ever: after the subscription's
delivery limit Pub/Sub moves it to the dead-letter topic (the emulator does this too), the
message is kept there, and its job ends FAILED with the last error."""

from __future__ import annotations

import threading
import time

import pytest
from google.cloud import firestore, pubsub_v1

from scenerender import clients
from scenerender.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


def test_a_request_that_keeps_coming_back_ends_in_the_dead_letter_topic(settings: Settings) -> None:
    jobs = clients.jobs()
    last_error = {"code": "INPUT_UNREACHABLE", "message": "segments[0].url: storage unavailable", "details": []}
    jobs.create_job(
        "it-poison",
        {
            "status": "RUNNING",
            "attempt": 1,
            "progress": 0.2,
            "last_error": last_error,
            "heartbeat_at": firestore.SERVER_TIMESTAMP,
        },
    )
    # A worker that never finishes but stays alive: every delivery finds the job busy and
    # gives the request back, until Pub/Sub gives up on it.
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(0.5):
            jobs.heartbeat("it-poison")

    beat = threading.Thread(target=keep_alive, daemon=True)
    beat.start()
    try:
        clients.bus().publish(settings.render_topic, {"job_id": "it-poison", "spec": {}}, job_id="it-poison")
        deadline = time.monotonic() + 120
        while (jobs.get("it-poison") or {}).get("status") != "FAILED":
            assert time.monotonic() < deadline, jobs.get("it-poison")
            time.sleep(0.3)
    finally:
        stop.set()
        beat.join()
    error = (jobs.get("it-poison") or {})["error"]
    assert error["code"] == "INPUT_UNREACHABLE"
    assert (
        error["message"] == f"gave up after {max(5, settings.max_attempts)} deliveries; last error: "
        "segments[0].url: storage unavailable"
    )
    subscriber = pubsub_v1.SubscriberClient()
    kept = subscriber.pull(
        request={
            "subscription": subscriber.subscription_path(settings.project_id, f"{settings.dead_letter_topic}-keep"),
            "max_messages": 10,
        },
        timeout=10,
    )
    assert any(m.message.attributes.get("job_id") == "it-poison" for m in kept.received_messages)


def test_a_job_whose_worker_vanished_for_good_is_failed_not_left_running(settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from scenerender import pipeline

    jobs = clients.jobs()
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    jobs.create_job("it-stuck", {"status": "RUNNING", "attempt": 1, "heartbeat_at": long_ago})
    jobs.create_job("it-busy", {"status": "RUNNING", "attempt": 1, "heartbeat_at": firestore.SERVER_TIMESTAMP})
    failed = pipeline.fail_stuck_jobs(settings=settings.model_copy(update={"stuck_after_s": 3600}), jobs=jobs)
    assert "it-stuck" in failed and "it-busy" not in failed
    doc = jobs.get("it-stuck") or {}
    assert doc["status"] == "FAILED" and doc["error"]["code"] == "TIMEOUT"
    assert (jobs.get("it-busy") or {})["status"] == "RUNNING"
