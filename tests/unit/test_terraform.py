"""The deployment as a reviewer would check it by hand: HCL parsed (python-hcl2), wiring asserted.

Providers cannot be downloaded here, so there is no ``terraform plan``; these tests read the
HCL itself. References stay as their ``${...}`` text, which is what a reviewer compares.
"""

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

ROOT = Path(__file__).parents[2]
TERRAFORM = ROOT / "terraform"
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
# Roles IAM offers at no narrower level than the project; every other grant is on a resource.
PROJECT_LEVEL_ROLES = {
    "roles/datastore.user",  # Firestore has no per-collection IAM; the rules guard end users
    "roles/datastore.viewer",
    "roles/eventarc.eventReceiver",
    "roles/cloudbuild.builds.builder",  # the function builder account only
    "roles/logging.logWriter",
}


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
def parsed() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as fh:
            out[path.name] = _clean(hcl2.load(fh))
    return out


@cache
def resources() -> dict[str, dict[str, dict[str, Any]]]:
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for tree in parsed().values():
        for entry in tree.get("resource", []):
            for kind, named in entry.items():
                for name, body in named.items():
                    assert name not in found.get(kind, {}), f"{kind}.{name} declared twice"
                    found.setdefault(kind, {})[name] = body
    return found


@cache
def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for tree in parsed().values():
        for entry in tree.get("locals", []):
            merged.update(entry)
    return merged


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body[name]
    first: dict[str, Any] = value[0] if isinstance(value, list) else value
    return first


def functions() -> dict[str, dict[str, Any]]:
    return resources()["google_cloudfunctions2_function"]


def job_container() -> dict[str, Any]:
    job = resources()["google_cloud_run_v2_job"]["renderer"]
    return block(block(block(job, "template"), "template"), "containers")


def env_names(expression: Any) -> set[str]:
    """The variable names an environment expression sets: local.common_env plus literal keys."""
    text = str(expression)
    names = set(re.findall(r"\b(SCENERENDER_\w+|FFMPEG|FFPROBE)\s*=", text))
    if "local.common_env" in text:
        names |= set(locals_()["common_env"])
    return names


def deployed_env() -> dict[str, set[str]]:
    """Environment variable names of each function and of the renderer job."""
    env = {
        name: env_names(block(body, "service_config")["environment_variables"]) for name, body in functions().items()
    }
    dynamic_env = [d["env"] for d in job_container()["dynamic"] if "env" in d]
    assert len(dynamic_env) == 1 and block(dynamic_env[0], "content")["name"] == "${env.key}"
    env["renderer"] = env_names(dynamic_env[0]["for_each"])
    return env


def test_every_function_and_the_job_run_as_their_own_account() -> None:
    accounts = {name: block(body, "service_config")["service_account_email"] for name, body in functions().items()}
    job = resources()["google_cloud_run_v2_job"]["renderer"]
    accounts["renderer"] = block(block(job, "template"), "template")["service_account"]
    assert set(accounts) == {"spec", "report", "api", "dead_letter", "renderer"}
    assert len(set(accounts.values())) == len(accounts), accounts
    declared = resources()["google_service_account"]
    for account in accounts.values():
        found = re.fullmatch(r"\$\{google_service_account\.(\w+)\.email\}", account)
        assert found and found[1] in declared, account
    for body in functions().values():
        assert block(body, "build_config")["service_account"] == "${google_service_account.builder.id}"
    assert len({body["account_id"] for body in declared.values()}) == len(declared)


def test_the_function_entry_points_and_their_triggers() -> None:
    entry = {name: block(body, "build_config")["entry_point"] for name, body in functions().items()}
    assert entry == {
        "spec": "on_spec_uploaded",
        "report": "on_render_reported",
        "api": "http_api",
        "dead_letter": "on_render_dead_lettered",
    }
    source = (ROOT / "functions" / "main.py").read_text()
    for name in entry.values():
        assert f"def {name}(" in source, name
    assert "event_trigger" not in functions()["api"]


def test_the_notification_feeds_the_topic_the_spec_function_listens_on() -> None:
    notification = resources()["google_storage_notification"]["specs"]
    trigger = block(functions()["spec"], "event_trigger")
    assert notification["object_name_prefix"] == "jobs/"
    assert notification["event_types"] == ["OBJECT_FINALIZE"]
    assert notification["bucket"] == "${google_storage_bucket.specs.name}"
    assert notification["topic"] == trigger["pubsub_topic"] == "${google_pubsub_topic.spec_events.id}"
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    report = block(functions()["report"], "event_trigger")
    assert report["pubsub_topic"] == "${google_pubsub_topic.render_reports.id}"
    assert report["retry_policy"] == "RETRY_POLICY_RETRY"
    dead = block(functions()["dead_letter"], "event_trigger")
    assert dead["pubsub_topic"] == "${google_pubsub_topic.dead_letter.id}"
    # The topics carry the names the code reads from its settings.
    topics = resources()["google_pubsub_topic"]
    assert topics["spec_events"]["name"] == "${local.names.spec_topic}"
    assert topics["render_reports"]["name"] == "${local.names.completion_topic}"
    assert locals_()["common_env"][Settings.env_name("completion_topic")] == "${local.names.completion_topic}"


def test_each_event_trigger_has_its_own_account_that_invokes_only_its_function() -> None:
    event_functions = {name for name, body in functions().items() if "event_trigger" in body}
    assert event_functions >= {"spec", "report"}
    wiring = locals_()["triggers"]
    assert set(wiring) == event_functions
    for name in event_functions:
        account = block(functions()[name], "event_trigger")["service_account_email"]
        assert account == f"${{google_service_account.{name}_trigger.email}}", name
        assert wiring[name]["member"] == f"${{google_service_account.{name}_trigger.member}}"
        assert wiring[name]["name"] == f"${{google_service_account.{name}_trigger.name}}"
        assert wiring[name]["function"] == f"${{google_cloudfunctions2_function.{name}.name}}"
    runtime = {block(functions()[name], "service_config")["service_account_email"] for name in event_functions}
    triggers = {block(functions()[name], "event_trigger")["service_account_email"] for name in event_functions}
    assert not runtime & triggers and len(triggers) == len(event_functions)
    invoke = resources()["google_cloud_run_service_iam_member"]["trigger_invokes_its_function"]
    assert (invoke["for_each"], invoke["role"], invoke["service"], invoke["member"]) == (
        "${local.triggers}",
        "roles/run.invoker",
        "${each.value.function}",
        "${each.value.member}",
    )
    receive = resources()["google_project_iam_member"]["trigger_receives_events"]
    assert (receive["role"], receive["member"], receive["for_each"]) == (
        "roles/eventarc.eventReceiver",
        "${each.value.member}",
        "${local.triggers}",
    )


def test_the_spec_function_may_start_only_the_renderer_job() -> None:
    grant = resources()["google_cloud_run_v2_job_iam_member"]["spec_function_runs_renderer"]
    assert grant["name"] == "${google_cloud_run_v2_job.renderer.name}"
    assert grant["role"] == "roles/run.invoker"
    assert grant["member"] == "${google_service_account.spec_function.member}"
    assert locals_()["names"]["renderer_job"] == "${var.name_prefix}-renderer"
    assert resources()["google_cloud_run_v2_job"]["renderer"]["name"] == "${local.names.renderer_job}"


def test_the_completion_function_signs_urls_as_itself() -> None:
    grant = resources()["google_service_account_iam_member"]["report_function_signs_as_itself"]
    assert grant["service_account_id"] == "${google_service_account.report_function.name}"
    assert grant["role"] == "roles/iam.serviceAccountTokenCreator"
    assert grant["member"] == "${google_service_account.report_function.member}"
    env = str(block(functions()["report"], "service_config")["environment_variables"])
    assert f"{Settings.env_name('signer_service_account')} = google_service_account.report_function.email" in env


def test_dead_letters_are_kept_and_pubsub_may_move_them() -> None:
    subscriptions = resources()["google_pubsub_subscription"]
    work = subscriptions["render_requests"]
    assert work["name"] == "${local.names.render_subscription}"
    assert work["topic"] == "${google_pubsub_topic.render_requests.id}"
    policy = block(work, "dead_letter_policy")
    assert policy["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert policy["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert block(work, "retry_policy")["minimum_backoff"]
    assert subscriptions["dead_letter_keep"]["topic"] == "${google_pubsub_topic.dead_letter.id}"
    agent = "${local.pubsub_agent}"
    assert locals_()["pubsub_agent"].endswith("@gcp-sa-pubsub.iam.gserviceaccount.com")
    publish = resources()["google_pubsub_topic_iam_member"]["agent_publishes_dead_letters"]
    assert (publish["topic"], publish["role"], publish["member"]) == (
        "${google_pubsub_topic.dead_letter.id}",
        "roles/pubsub.publisher",
        agent,
    )
    ack = resources()["google_pubsub_subscription_iam_member"]["agent_acks_render_requests"]
    assert (ack["subscription"], ack["role"], ack["member"]) == (
        "${google_pubsub_subscription.render_requests.id}",
        "roles/pubsub.subscriber",
        agent,
    )
    # Attempts before the dead-letter topic default to the code's own max_attempts.
    variables = {name: body for tree in parsed().values() for v in tree.get("variable", []) for name, body in v.items()}
    assert variables["max_delivery_attempts"]["default"] == Settings.model_fields["max_attempts"].default


def test_the_renderer_tasks_share_segment_work_and_only_they_do() -> None:
    topic = resources()["google_pubsub_topic"]["segment_work"]
    subscription = resources()["google_pubsub_subscription"]["segment_work"]
    assert topic["name"] == "${local.names.segment_topic}"
    assert subscription["topic"] == "${google_pubsub_topic.segment_work.id}"
    renderer = "${google_service_account.renderer.member}"
    publishers = [
        g
        for g in resources()["google_pubsub_topic_iam_member"].values()
        if g["topic"] == "${google_pubsub_topic.segment_work.id}"
    ]
    takers = [
        g
        for g in resources()["google_pubsub_subscription_iam_member"].values()
        if g["subscription"] == "${google_pubsub_subscription.segment_work.id}"
    ]
    assert [(g["role"], g["member"]) for g in publishers] == [("roles/pubsub.publisher", renderer)]
    assert [(g["role"], g["member"]) for g in takers] == [("roles/pubsub.subscriber", renderer)]
    env = deployed_env()["renderer"]
    for field in ("segment_topic", "segment_subscription", "split_min_segments", "idle_exit_s"):
        assert Settings.env_name(field) in env
    job = resources()["google_cloud_run_v2_job"]["renderer"]
    template = block(job, "template")
    assert (template["task_count"], template["parallelism"]) == (
        "${var.renderer.task_count}",
        "${var.renderer.parallelism}",
    )


def test_every_setting_the_code_requires_is_set_on_each_function_and_the_job() -> None:
    required = {Settings.env_name(field) for field in REQUIRED_IN_CLOUD}
    known = {Settings.env_name(field) for field in Settings.model_fields}
    env = deployed_env()
    assert set(env) == {"spec", "report", "api", "dead_letter", "renderer"}
    for component, names in env.items():
        assert required <= names, (component, required - names)
        assert names <= known, (component, names - known)  # no name the code does not read
    wanted = {Settings.env_name(f) for f in ("renderer_job", "region", "jobs_collection", "max_attempts")}
    assert wanted <= env["spec"], wanted - env["spec"]
    assert Settings.env_name("signed_url_ttl_s") in env["report"]
    assert Settings.env_name("signer_service_account") in env["report"]
    assert Settings.env_name("allowed_gs_buckets") in env["renderer"]


def test_no_primitive_roles_anywhere() -> None:
    files = [p for p in TERRAFORM.rglob("*") if p.is_file() and ".terraform" not in p.parts and ".build" not in p.parts]
    text = "\n".join(p.read_text() for p in files)
    for role in PRIMITIVE_ROLES:
        assert f'"{role}"' not in text and f"{role}\n" not in text, role
    assert "compute@developer.gserviceaccount.com" not in text
    for kind in resources():
        assert not kind.endswith(("_iam_binding", "_iam_policy")), f"{kind} replaces other grants; use *_iam_member"


def test_project_level_grants_are_only_those_iam_has_no_narrower_level_for() -> None:
    for name, body in resources()["google_project_iam_member"].items():
        role = body["role"]
        roles = set(re.findall(r"roles/[\w.]+", str(body["for_each"]))) if role == "${each.value}" else {role}
        assert roles <= PROJECT_LEVEL_ROLES, (name, roles - PROJECT_LEVEL_ROLES)


def test_buckets_have_uniform_access_and_no_public_access() -> None:
    buckets = resources()["google_storage_bucket"]
    assert set(buckets) >= {"specs", "renders", "media"}
    for name, body in buckets.items():
        assert body["uniform_bucket_level_access"] is True, name
        assert body["public_access_prevention"] == "enforced", name
    assert block(buckets["specs"], "versioning")["enabled"] is True
    rule = block(buckets["renders"], "lifecycle_rule")
    condition = block(rule, "condition")
    assert condition["age"] == "${var.retention_days}"
    assert {"renders/", "cache/"} <= set(condition["matches_prefix"])
    assert block(rule, "action")["type"] == "Delete"
    # Only the spec bucket notifies, and no component may write to it but the HTTP API (which
    # writes specs, exactly like a client would).
    assert [n["bucket"] for n in resources()["google_storage_notification"].values()] == [
        "${google_storage_bucket.specs.name}"
    ]
    writers = [
        g
        for g in resources()["google_storage_bucket_iam_member"].values()
        if g["bucket"] == "${google_storage_bucket.specs.name}" and g["role"] != "roles/storage.objectViewer"
    ]
    assert [g["member"] for g in writers] == ["${google_service_account.api_function.member}"]
    # Writing a spec may replace one (a re-submission), but never read or list the others.
    assert writers[0]["role"] == "${google_project_iam_custom_role.spec_writer.name}"
    role = resources()["google_project_iam_custom_role"]["spec_writer"]
    assert sorted(role["permissions"]) == ["storage.objects.create", "storage.objects.delete"]


def test_function_source_is_named_by_content_hash() -> None:
    obj = resources()["google_storage_bucket_object"]["functions_source"]
    assert "${data.archive_file.functions.output_sha256}" in obj["name"]
    archive = next(d["archive_file"]["functions"] for d in parsed()["functions.tf"]["data"] if "archive_file" in d)
    names = {s["filename"] for s in archive["source"]}
    assert {"main.py", "requirements.txt"} <= names
    assert "scenerender/${source.value}" in str(archive["dynamic"])


def test_firestore_indexes_serve_the_job_queries() -> None:
    indexes = locals_()["job_indexes"]
    fields = {tuple(tuple(f) for f in spec) for spec in indexes.values()}
    assert fields == {
        (("owner_uid", "ASCENDING"), ("created_at", "DESCENDING")),
        (("batch_id", "ASCENDING"), ("status", "ASCENDING")),
        (("status", "ASCENDING"), ("updated_at", "ASCENDING")),
    }
    index = resources()["google_firestore_index"]["jobs"]
    assert index["collection"] == "${local.names.jobs_collection}"
    assert locals_()["names"]["jobs_collection"] == Settings.model_fields["jobs_collection"].default
    ruleset = resources()["google_firebaserules_ruleset"]["firestore"]
    assert "../firestore.rules" in str(ruleset)


def test_terraform_fmt() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    done = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", str(TERRAFORM)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
