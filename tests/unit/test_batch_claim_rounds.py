"""``claim_batch``'s rounds: a claim whose Firestore transaction runs out of attempts (every one
ABORTED, as the emulator's lock timeouts did to eight racing owners on a loaded CI run) is tried
again after a random pause, and after its last round is a TransientError, left for redelivery.

The transaction itself is a stand-in here: that the claim leaves exactly one owner when
owners race is shown on the emulator (tests/integration/test_tenancy.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from scenerender.cloud import batch_docs
from scenerender.cloud.batch_docs import CLAIM_ROUNDS, BatchDocuments
from scenerender.errors import SceneRenderError, TransientError


class Client:
    def transaction(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs


class Collection:
    def document(self, name: str) -> str:
        return name


def out_of_attempts() -> ValueError:
    """What google-cloud-firestore raises when a transaction's attempts run out."""
    try:
        raise gexc.Aborted("Transaction lock timeout.")
    except gexc.Aborted as aborted:
        try:
            raise ValueError("Failed to commit transaction in 20 attempts.") from aborted
        except ValueError as exc:
            return exc


def claims(
    monkeypatch: pytest.MonkeyPatch, failures: list[BaseException]
) -> tuple[BatchDocuments, list[Any], list[float]]:
    """A store whose transactions fail with ``failures`` in turn, then succeed; what each round
    was given, and the pauses between rounds."""
    rounds: list[Any] = []
    pauses: list[float] = []

    def transactional(body: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(transaction: Any) -> None:
            rounds.append(transaction)
            if len(rounds) <= len(failures):
                raise failures[len(rounds) - 1]

        return run

    monkeypatch.setattr(firestore, "transactional", transactional)
    monkeypatch.setattr(time, "sleep", pauses.append)
    store = BatchDocuments()
    store.client = Client()  # type: ignore[assignment]
    store.batches = Collection()
    return store, rounds, pauses


def test_a_claim_that_ran_out_of_attempts_is_tried_again_after_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    store, rounds, pauses = claims(monkeypatch, [out_of_attempts()] * (CLAIM_ROUNDS - 1))
    assert store.claim_batch("b", "alice", {}) is None
    assert len(rounds) == CLAIM_ROUNDS and all(r == {"max_attempts": batch_docs.CLAIM_ATTEMPTS} for r in rounds)
    assert len(pauses) == CLAIM_ROUNDS - 1 and all(0 < p < 1 for p in pauses)


def test_a_claim_that_loses_every_round_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    store, rounds, pauses = claims(monkeypatch, [out_of_attempts()] * CLAIM_ROUNDS)
    with pytest.raises(
        TransientError, match=r"^Firestore: claim batch b: .*Failed to commit transaction in 20 attempts"
    ):
        store.claim_batch("b", "alice", {})
    assert len(rounds) == CLAIM_ROUNDS and len(pauses) == CLAIM_ROUNDS - 1


def test_a_permanent_failure_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    store, rounds, pauses = claims(monkeypatch, [gexc.PermissionDenied("rules")])
    with pytest.raises(SceneRenderError) as raised:
        store.claim_batch("b", "alice", {})
    assert not raised.value.retryable and len(rounds) == 1 and pauses == []
