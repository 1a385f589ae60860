"""Pub/Sub: publishing JSON messages and pulling render requests one at a time, leased.

The Pub/Sub emulator is used when the settings name one (``pubsub_emulator_host``): the
clients are pointed at it explicitly, whatever this process's environment says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
from functools import lru_cache
from types import TracebackType
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from scenerender.cloud.google_errors import translate
from scenerender.errors import SceneRenderError
from scenerender.settings import Settings

log = logging.getLogger(__name__)
MAX_ACK_DEADLINE_S = 600  # Pub/Sub's longest ack deadline


def _insecure(host: str) -> Any:
    # Google's clients find the emulator only through PUBSUB_EMULATOR_HOST; handed an insecure
    # channel to the settings' emulator instead, they need no variable (nor credentials).
    import grpc

    return grpc.insecure_channel(target=host)


def publisher_client(settings: Settings) -> pubsub_v1.PublisherClient:
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    host = settings.pubsub_emulator_host
    kwargs: dict[str, Any] = {"transport": PublisherGrpcTransport(channel=_insecure(host))} if host else {}
    return pubsub_v1.PublisherClient(**kwargs)


def subscriber_client(settings: Settings) -> pubsub_v1.SubscriberClient:
    """The subscriber client for the settings' Pub/Sub (one per process and emulator: it holds a channel)."""
    return _subscriber(settings.pubsub_emulator_host)


@lru_cache(maxsize=4)
def _subscriber(emulator_host: str) -> pubsub_v1.SubscriberClient:
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    kwargs: dict[str, Any] = (
        {"transport": SubscriberGrpcTransport(channel=_insecure(emulator_host))} if emulator_host else {}
    )
    return pubsub_v1.SubscriberClient(**kwargs)


def _translate(exc: Exception, what: str) -> SceneRenderError:
    return translate(exc, f"Pub/Sub: {what}")


class Publisher:
    """Publishes JSON bodies to topics of the settings' project."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = publisher_client(settings)

    def topic_path(self, name: str) -> str:
        return str(self.client.topic_path(self.settings.project_id, name))

    def publish(self, topic_name: str, payload: dict[str, Any], **attributes: str) -> str:
        """Publish and wait until Pub/Sub has it; returns the message id."""
        data = json.dumps(payload, default=str).encode()
        try:
            future = self.client.publish(self.topic_path(topic_name), data, **attributes)  # type: ignore[arg-type]
            return str(future.result(timeout=60))
        except Exception as exc:
            raise _translate(exc, f"publish to {topic_name}") from exc

    def publish_many(self, topic_name: str, payloads: list[dict[str, Any]], **attributes: str) -> None:
        """Publish all at once (the client batches them) and wait until Pub/Sub has every one."""
        try:
            futures = [
                self.client.publish(self.topic_path(topic_name), json.dumps(p, default=str).encode(), **attributes)  # type: ignore[arg-type]
                for p in payloads
            ]
            for future in futures:
                future.result(timeout=60)
        except Exception as exc:
            raise _translate(exc, f"publish to {topic_name}") from exc


class LeasedMessage:
    """One pulled message whose lease is extended in the background until ack or nack."""

    def __init__(self, subscription: str, received: Any, lease_s: int, subscriber: pubsub_v1.SubscriberClient) -> None:
        self.subscription = subscription
        self._subscriber = subscriber
        self.lease_s = lease_s
        self.ack_id: str = received.ack_id
        self.message_id: str = received.message.message_id
        self.attributes: dict[str, str] = dict(received.message.attributes)
        self.delivery_attempt: int = int(received.delivery_attempt or 1)
        try:
            # The body as sent; its reader validates it into its message (RenderRequest, WorkItem).
            self.data: dict[str, Any] = json.loads(received.message.data or b"{}")
        except ValueError:
            self.data = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep_leased, name="lease", daemon=True)
        self._thread.start()

    def _keep_leased(self) -> None:
        # Renders outlast any ack deadline: extend well before it runs out.
        while not self._done.wait(self.lease_s / 3):
            try:
                self._subscriber.modify_ack_deadline(
                    request={
                        "subscription": self.subscription,
                        "ack_ids": [self.ack_id],
                        "ack_deadline_seconds": self.lease_s,
                    }
                )
            except Exception:
                log.warning("lease extension failed for message %s", self.message_id, exc_info=True)

    def _stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def ack(self) -> None:
        self._stop()
        self._subscriber.acknowledge(request={"subscription": self.subscription, "ack_ids": [self.ack_id]})

    def nack(self, delay_s: float = 0.0) -> None:
        """Give the message back for redelivery: now, or after ``delay_s`` (its ack deadline
        set to that, at most Pub/Sub's 600 s)."""
        self._stop()
        deadline = min(MAX_ACK_DEADLINE_S, math.ceil(delay_s)) if delay_s > 0 else 0
        self._subscriber.modify_ack_deadline(
            request={"subscription": self.subscription, "ack_ids": [self.ack_id], "ack_deadline_seconds": deadline}
        )

    def __enter__(self) -> LeasedMessage:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self._done.is_set():
            # Neither acked nor nacked (an exception): hand it back for redelivery.
            try:
                self.nack()
            except Exception:
                log.warning("nack failed for message %s", self.message_id, exc_info=True)


def pull_one(subscription_name: str, *, timeout_s: float, settings: Settings) -> LeasedMessage | None:
    """Pull at most one message, waiting up to ``timeout_s``; None when there is none."""
    subscriber = subscriber_client(settings)
    path = subscriber.subscription_path(settings.project_id, subscription_name)
    try:
        response = subscriber.pull(request={"subscription": path, "max_messages": 1}, timeout=timeout_s)
    except (gexc.DeadlineExceeded, gexc.RetryError):
        return None
    except Exception as exc:
        raise _translate(exc, f"pull from {subscription_name}") from exc
    if not response.received_messages:
        return None
    return LeasedMessage(path, response.received_messages[0], settings.lease_s, subscriber)


def ensure_topic(settings: Settings, name: str) -> str:
    publisher = publisher_client(settings)
    path = str(publisher.topic_path(settings.project_id, name))
    with contextlib.suppress(gexc.AlreadyExists):
        publisher.create_topic(request={"name": path})
    return path


def ensure_subscription(
    settings: Settings,
    name: str,
    topic: str,
    *,
    push_endpoint: str | None = None,
    ack_deadline_s: int = 60,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
) -> str:
    """Create the subscription if it is missing (idempotent)."""
    subscriber = subscriber_client(settings)
    path = str(subscriber.subscription_path(settings.project_id, name))
    request: dict[str, Any] = {
        "name": path,
        "topic": pubsub_v1.PublisherClient.topic_path(settings.project_id, topic),
        "ack_deadline_seconds": ack_deadline_s,
    }
    if push_endpoint:
        request["push_config"] = {"push_endpoint": push_endpoint}
    if dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": pubsub_v1.PublisherClient.topic_path(settings.project_id, dead_letter_topic),
            "max_delivery_attempts": max_delivery_attempts,
        }
    with contextlib.suppress(gexc.AlreadyExists):
        subscriber.create_subscription(request=request)
    return path
