"""The deployment as a reviewer would check it by hand: HCL parsed (python-hcl2), wiring asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

from scenerender.settings import REQUIRED_IN_CLOUD, Settings

TERRAFORM = Path(__file__).parents[2] / "terraform"
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")


def _clean(value: Any) -> Any:
    """python-hcl2 keeps the quotes of labels and adds bookkeeping keys; drop both."""
    if isinstance(value, dict):
        return {k.strip('"'): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@cache
def resources() -> dict[str, dict[str, dict[str, Any]]]:
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as fh:
            parsed = _clean(hcl2.load(fh))
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    found.setdefault(kind, {})[name] = body
    return found


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body[name]
    first: dict[str, Any] = value[0] if isinstance(value, list) else value
    return first


def test_every_function_and_the_job_run_as_their_own_account() -> None:
    functions = resources()["google_cloudfunctions2_function"]
    accounts = {name: block(body, "service_config")["service_account_email"] for name, body in functions.items()}
    job = resources()["google_cloud_run_v2_job"]["renderer"]
    accounts["renderer"] = block(block(job, "template"), "template")["service_account"]
    assert set(accounts) == {"spec", "report", "api", "renderer"}
    assert len(set(accounts.values())) == 4, accounts
    for account in accounts.values():
        assert re.fullmatch(r"\$\{google_service_account\.\w+\.email\}", account), account
    for body in functions.values():
        assert block(body, "build_config")["service_account"].startswith("${google_service_account.builder")


def test_the_notification_feeds_the_topic_the_spec_function_listens_on() -> None:
    notification = resources()["google_storage_notification"]["specs"]
    trigger = block(resources()["google_cloudfunctions2_function"]["spec"], "event_trigger")
    assert notification["object_name_prefix"] == "jobs/"
    assert notification["event_types"] == ["OBJECT_FINALIZE"]
    assert notification["bucket"] == "${google_storage_bucket.specs.name}"
    assert notification["topic"] == trigger["pubsub_topic"] == "${google_pubsub_topic.spec_events.id}"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    report = block(resources()["google_cloudfunctions2_function"]["report"], "event_trigger")
    assert report["pubsub_topic"] == "${google_pubsub_topic.render_reports.id}"


def test_dead_letters_are_kept_and_pubsub_may_move_them() -> None:
    subscriptions = resources()["google_pubsub_subscription"]
    policy = block(subscriptions["render_requests"], "dead_letter_policy")
    assert policy["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert policy["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert subscriptions["dead_letter_keep"]["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert block(subscriptions["render_requests"], "retry_policy")["minimum_backoff"]
    agent = "${local.pubsub_agent}"
    assert resources()["google_pubsub_topic_iam_member"]["agent_publishes_dead_letters"]["member"] == agent
    assert resources()["google_pubsub_subscription_iam_member"]["agent_acks_render_requests"]["member"] == agent


@cache
def common_env() -> dict[str, str]:
    with (TERRAFORM / "main.tf").open() as fh:
        parsed = _clean(hcl2.load(fh))
    env: dict[str, str] = next(block["common_env"] for block in parsed["locals"] if "common_env" in block)
    return env


def test_every_setting_the_code_requires_is_set_on_each_function_and_the_job() -> None:
    required = {Settings.env_name(field) for field in REQUIRED_IN_CLOUD}
    known = {Settings.env_name(field) for field in Settings.model_fields}
    assert required <= set(common_env()), required - set(common_env())
    assert set(common_env()) <= known, set(common_env()) - known  # no name the code does not read
    for name, body in resources()["google_cloudfunctions2_function"].items():
        env = block(body, "service_config")["environment_variables"]
        assert "local.common_env" in str(env), name
    job_env = block(
        block(block(resources()["google_cloud_run_v2_job"]["renderer"], "template"), "template"), "containers"
    )
    assert "local.common_env" in str(job_env)
    signer = block(resources()["google_cloudfunctions2_function"]["report"], "service_config")
    assert Settings.env_name("signer_service_account") in str(signer["environment_variables"])


def test_no_primitive_roles_anywhere() -> None:
    text = "\n".join(p.read_text() for p in TERRAFORM.glob("*.tf"))
    for role in PRIMITIVE_ROLES:
        assert f'"{role}"' not in text
    assert "compute@developer.gserviceaccount.com" not in text
    for kind in ("google_project_iam_binding", "google_project_iam_policy", "google_storage_bucket_iam_binding"):
        assert kind not in resources(), f"{kind} replaces other grants; use *_iam_member"


def test_buckets_have_uniform_access_and_no_public_access() -> None:
    buckets = resources()["google_storage_bucket"]
    assert set(buckets) >= {"specs", "renders", "media"}
    for name, body in buckets.items():
        assert body["uniform_bucket_level_access"] is True, name
        assert body["public_access_prevention"] == "enforced", name
    assert block(buckets["specs"], "versioning")["enabled"] is True
    rule = block(buckets["renders"], "lifecycle_rule")
    assert block(rule, "condition")["age"] == "${var.retention_days}"


def test_function_source_is_named_by_content_hash() -> None:
    obj = resources()["google_storage_bucket_object"]["functions_source"]
    assert "output_sha256" in obj["name"]


def test_terraform_fmt() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    done = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", str(TERRAFORM)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


DOCKERFILE = (Path(__file__).parents[2] / "renderer_image" / "Dockerfile").read_text()


def test_dockerfile_base_is_pinned_installs_ffmpeg_and_runs_the_worker_as_non_root() -> None:
    base = re.search(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base[1]), base
    assert re.search(r"apt-get install[^\n]*ffmpeg", DOCKERFILE)
    user = DOCKERFILE.index("\nUSER ")
    entry = DOCKERFILE.index("\nENTRYPOINT ")
    assert user < entry and "USER root" not in DOCKERFILE
    assert '["python", "-m", "scenerender.worker"]' in DOCKERFILE
    assert (Path(__file__).parents[2] / "scenerender" / "worker.py").is_file()
