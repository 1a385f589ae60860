"""A render request that never succeeds is not retried for ever: after the subscription's
delivery limit Pub/Sub moves it to the dead-letter topic (the emulator does this too), the
message is kept there, and its job ends FAILED with the last error."""

from __future__ import annotations

import time

import pytest

from scenerender.cloud.bus import publisher_client, subscriber_client
from scenerender.cloud.clients import Clients
from scenerender.messages import DeadLetter, JobDocument
from scenerender.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


def test_a_request_that_keeps_coming_back_ends_in_the_dead_letter_topic(stores: Clients, settings: Settings) -> None:
    """Pub/Sub's own dead-lettering (the emulator implements it): a subscription like the
    renderer's, whose consumer gives the request back every time (as a worker that crashes
    on it would), moves it to the dead-letter topic after 5 deliveries; the dead-letter
    function then fails the job with the last error recorded, and the message is kept."""
    jobs = stores.jobs
    last_error = {"code": "INPUT_UNREACHABLE", "message": "segments[0].url: storage unavailable", "details": []}
    jobs.create_job(
        "it-poison", JobDocument.model_validate({"status": "QUEUED", "attempt": 4, "last_error": last_error})
    )
    subscriber = subscriber_client(settings)
    publisher = publisher_client(settings)
    topic = publisher.topic_path(settings.project_id, "it-poison-requests")
    publisher.create_topic(name=topic)
    source = subscriber.subscription_path(settings.project_id, "it-poison-worker")
    subscriber.create_subscription(
        request={
            "name": source,
            "topic": topic,
            "ack_deadline_seconds": 10,
            "dead_letter_policy": {
                "dead_letter_topic": publisher.topic_path(settings.project_id, settings.dead_letter_topic),
                "max_delivery_attempts": 5,
            },
        }
    )
    stores.bus.publish("it-poison-requests", {"job_id": "it-poison", "spec": {}}, job_id="it-poison")
    deliveries = 0
    deadline = time.monotonic() + 60
    # Keep consuming (and giving back) until Pub/Sub gives up on it: the emulator moves a
    # message on the pull after its last allowed delivery.
    while (poisoned := jobs.get("it-poison")) is None or poisoned.status != "FAILED":
        assert time.monotonic() < deadline, (deliveries, jobs.get("it-poison"))
        pulled = subscriber.pull(request={"subscription": source, "max_messages": 1}, timeout=2)
        for received in pulled.received_messages:
            deliveries += 1
            subscriber.modify_ack_deadline(
                request={"subscription": source, "ack_ids": [received.ack_id], "ack_deadline_seconds": 0}
            )
        time.sleep(0.2)
    assert deliveries == 5
    error = poisoned.error
    assert error is not None and error.code == "INPUT_UNREACHABLE"
    assert error.message == "gave up after 5 deliveries; last error: segments[0].url: storage unavailable"
    kept = subscriber.pull(
        request={
            "subscription": subscriber.subscription_path(settings.project_id, f"{settings.dead_letter_topic}-keep"),
            "max_messages": 10,
        },
        timeout=10,
    )
    assert any(m.message.attributes.get("job_id") == "it-poison" for m in kept.received_messages)


def test_a_dead_lettered_duplicate_does_not_fail_a_job_a_worker_is_alive_on(
    stores: Clients, settings: Settings
) -> None:
    from scenerender.pipeline import steps

    jobs = stores.jobs
    jobs.create_job("it-alive", JobDocument.model_validate({"status": "RUNNING", "attempt": 1}))
    jobs.heartbeat("it-alive")  # its worker beats (the store stamps the time)
    letter = DeadLetter(job_id="it-alive", deliveries=5)
    assert not steps.record_dead_letter(letter, jobs=jobs, stale_after_s=settings.heartbeat_stale_s)
    assert (alive := jobs.get("it-alive")) is not None and alive.status == "RUNNING"


def test_a_job_whose_worker_vanished_for_good_is_failed_not_left_running(stores: Clients, settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from scenerender.cloud.launcher import AlwaysOnWorkers
    from scenerender.pipeline import sweeper

    jobs = stores.jobs
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    jobs.create_job(
        "it-stuck", JobDocument.model_validate({"status": "RUNNING", "attempt": 1, "heartbeat_at": long_ago})
    )
    jobs.create_job("it-busy", JobDocument.model_validate({"status": "RUNNING", "attempt": 1}))
    jobs.heartbeat("it-busy")
    # The sweeper (no longer a worker's idle chore); the local stack's workers are always on.
    report = sweeper.sweep(
        settings=settings.model_copy(update={"stuck_after_s": 3600}), jobs=jobs, launcher=AlwaysOnWorkers()
    )
    assert "it-stuck" in report.failed and "it-busy" not in report.failed
    doc = jobs.get("it-stuck")
    assert doc is not None and doc.status == "FAILED" and doc.error is not None and doc.error.code == "TIMEOUT"
    assert (busy := jobs.get("it-busy")) is not None and busy.status == "RUNNING"
