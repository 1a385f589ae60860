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
    "roles/logging.logWriter",  # the two build accounts' build logs
}
# Granted at project level only under a condition that holds it to one bucket Terraform
# does not own (Cloud Functions' staging bucket).
CONDITIONAL_PROJECT_ROLES = {
    "roles/storage.objectAdmin": 'resource.name.startsWith(\\"projects/_/buckets/gcf-v2-sources-'
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


EACH_VALUE = re.compile(r"\$\{(?:each|event_trigger)\.value\.(\w+)\}")


def instantiate(body: Any, values: dict[str, Any]) -> Any:
    """A for_each body with ``each.value.X`` (and a dynamic block's ``NAME.value.X``) replaced by
    one instance's values, as Terraform would: a whole ``${each.value.X}`` takes the value
    itself, one inside a template its text."""
    if isinstance(body, dict):
        return {k: instantiate(v, values) for k, v in body.items()}
    if isinstance(body, list):
        return [instantiate(v, values) for v in body]
    if isinstance(body, str):
        whole = EACH_VALUE.fullmatch(body)
        if whole:
            return values[whole[1]]
        return EACH_VALUE.sub(lambda m: str(values[m[1]]).removeprefix("${").removesuffix("}"), body)
    return body


def instances(kind: str) -> dict[str, dict[str, Any]]:
    """Every instance of a resource type by address: a for_each over a literal map expanded with
    ``each.value``/``each.key`` put in (``name["key"]``), any other resource as it is."""
    out: dict[str, dict[str, Any]] = {}
    for name, body in resources().get(kind, {}).items():
        for_each = body.get("for_each")
        if not isinstance(for_each, dict):
            out[name] = body
            continue
        for key, value in for_each.items():

            def put(v: Any, key: str = key, value: Any = value) -> Any:
                if isinstance(v, dict):
                    return {k: put(x) for k, x in v.items()}
                if isinstance(v, list):
                    return [put(x) for x in v]
                return {"${each.value}": value, "${each.key}": key}.get(v, v) if isinstance(v, str) else v

            out[f'{name}["{key}"]'] = {k: put(v) for k, v in body.items() if k != "for_each"}
    return out


# The two expressions of the functions' resource that read more than each.value, and what
# they come to for one function (the helper below applies them as Terraform would).
SIGNER_ENV = (
    "${merge(local.common_env, each.value.signs_urls ? "
    "{SCENERENDER_SIGNER_SERVICE_ACCOUNT = local.function_accounts[each.key]} : {})}"
)
ITS_TRIGGER = "${{for key, trigger in local.event_triggers : key => trigger if key == each.key}}"


@cache
def functions() -> dict[str, dict[str, Any]]:
    """Each function as if written out alone: the for_each resource over local.functions (its
    row of local.function_settings over local.function_defaults), instantiated for each key:
    its account and signer variable put in, its dynamic event_trigger expanded where
    local.event_triggers has it."""
    (template,) = resources()["google_cloudfunctions2_function"].values()
    assert template["for_each"] == "${local.functions}"
    assert locals_()["functions"] == (
        "${{for key, fn in local.function_settings : key => merge(local.function_defaults, fn)}}"
    )
    config = block(template, "service_config")
    assert config["service_account_email"] == "${local.function_accounts[each.key]}"
    assert config["environment_variables"] == SIGNER_ENV, config["environment_variables"]
    (dynamic,) = template["dynamic"]
    assert dynamic["event_trigger"]["for_each"] == ITS_TRIGGER
    triggers = locals_()["event_triggers"]
    out: dict[str, dict[str, Any]] = {}
    for key, settings in locals_()["function_settings"].items():
        values = {**locals_()["function_defaults"], **settings}
        account = locals_()["function_accounts"][key]
        body = instantiate({k: v for k, v in template.items() if k not in ("for_each", "dynamic")}, values)
        service = block(body, "service_config")
        service["service_account_email"] = account
        service["environment_variables"] = (
            f"${{merge(local.common_env, {{SCENERENDER_SIGNER_SERVICE_ACCOUNT = {account[2:-1]}}})}}"
            if values["signs_urls"]
            else "${local.common_env}"
        )
        if key in triggers:
            body["event_trigger"] = [instantiate(block(dynamic["event_trigger"], "content"), triggers[key])]
        out[key] = body
    return out


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
    assert set(accounts) == {"spec", "report", "api", "dead_letter", "sweeper", "renderer"}
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
        "sweeper": "on_sweep",
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
        assert wiring[name]["function"] == f'${{google_cloudfunctions2_function.functions["{name}"].name}}'
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
    # Pub/Sub-sourced triggers: Pub/Sub pushes with the trigger account's token, so run.invoker
    # is all it needs; eventarc.eventReceiver is for events Eventarc delivers itself.
    roles = [g["role"] for g in resources()["google_project_iam_member"].values()]
    assert "roles/eventarc.eventReceiver" not in roles


def test_the_spec_function_may_start_only_the_renderer_job() -> None:
    grant = resources()["google_cloud_run_v2_job_iam_member"]["launchers"]
    assert grant["name"] == "${google_cloud_run_v2_job.renderer.name}"
    assert grant["role"] == "${google_project_iam_custom_role.renderer_launcher.id}"
    assert grant["for_each"]["spec"] == "${google_service_account.spec_function.member}"
    role = resources()["google_project_iam_custom_role"]["renderer_launcher"]
    # jobs.run with a taskCount override, and reading executions: nothing that changes the job.
    assert role["permissions"] == ["run.jobs.run", "run.jobs.runWithOverrides", "run.executions.get"]
    assert locals_()["names"]["renderer_job"] == "${var.name_prefix}-renderer"
    assert resources()["google_cloud_run_v2_job"]["renderer"]["name"] == "${local.names.renderer_job}"


def test_cloud_scheduler_calls_the_sweeper_on_the_settings_schedule_and_alone_may() -> None:
    """The sweep runs whether or not any execution is alive: Cloud Scheduler calls on_sweep with
    an OIDC token of its own account, the only invoker, every ``sweep_interval_s`` (the local
    cloud's scheduler, scenerender.scheduler, uses the same setting)."""
    job = resources()["google_cloud_scheduler_job"]["sweep"]
    assert job["schedule"] == "${local.sweep_schedule}"
    minutes = re.fullmatch(r"\*/(\d+) \* \* \* \*", locals_()["sweep_schedule"])
    assert minutes and int(minutes[1]) * 60 == Settings().sweep_interval_s
    target = block(job, "http_target")
    assert target["http_method"] == "POST"
    assert target["uri"] == '${google_cloudfunctions2_function.functions["sweeper"].service_config[0].uri}'
    oidc = block(target, "oidc_token")
    assert oidc["service_account_email"] == "${google_service_account.sweeper_scheduler.email}"
    invokers = [
        g for g in resources()["google_cloud_run_service_iam_member"].values() if "sweeper" in str(g["service"])
    ]
    assert [(g["role"], g["member"]) for g in invokers] == [
        ("roles/run.invoker", "${google_service_account.sweeper_scheduler.member}")
    ]
    assert block(functions()["sweeper"], "service_config")["max_instance_count"] == 1  # one sweep at a time


def test_the_completion_function_signs_urls_as_itself() -> None:
    grant = resources()["google_service_account_iam_member"]["signs_as_itself"]
    assert (grant["for_each"], grant["service_account_id"], grant["member"]) == (
        "${local.url_signers}",
        "${each.value.name}",
        "${each.value.member}",
    )
    assert locals_()["url_signers"]["report"] == "${google_service_account.report_function}"
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
    assert 'google_project_service_identity.agents["pubsub.googleapis.com"].email' in locals_()["pubsub_agent"]
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
        for g in instances("google_pubsub_topic_iam_member").values()
        if g["topic"] == "${google_pubsub_topic.segment_work.id}"
    ]
    takers = [
        g
        for g in instances("google_pubsub_subscription_iam_member").values()
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
    assert set(env) == {"spec", "report", "api", "dead_letter", "sweeper", "renderer"}
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
        if roles <= set(CONDITIONAL_PROJECT_ROLES) and "condition" in body:
            expression = block(body, "condition")["expression"]
            assert all(expression.startswith(CONDITIONAL_PROJECT_ROLES[r]) for r in roles), (name, expression)
            continue
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
    # The API's spec copies (submitted/, what GET /?job_id= reads) expire by age, their
    # noncurrent versions too; nothing under jobs/ (the live specs) is aged out.
    rules = {block(r, "condition").get("matches_prefix", [""])[0]: r for r in buckets["specs"]["lifecycle_rule"]}
    copies = block(rules["submitted/"], "condition")
    assert copies == {"age": "${var.spec_copy_days}", "matches_prefix": ["submitted/"], "with_state": "ANY"}
    assert block(rules["submitted/"], "action")["type"] == "Delete"
    assert set(rules) == {"", "submitted/"} and "age" not in block(rules[""], "condition")
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
    # Writing a spec may replace one (a re-submission); reading one by name gives its owner the
    # accepted spec back (GET /?job_id=, after the owner check); listing them is never needed.
    assert writers[0]["role"] == "${google_project_iam_custom_role.spec_writer.name}"
    role = resources()["google_project_iam_custom_role"]["spec_writer"]
    assert sorted(role["permissions"]) == ["storage.objects.create", "storage.objects.delete", "storage.objects.get"]


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
        (("owner_uid", "ASCENDING"), ("status", "ASCENDING")),  # owner_slots: a user's active jobs
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


# --- A first apply on a fresh project ---------------------------------------------------

# The API each resource type calls. A type missing here fails the test below: add it with
# its API (and the API to terraform/apis.tf).
API_OF_PREFIX = {
    "google_artifact_registry_": "artifactregistry.googleapis.com",
    "google_cloud_run_": "run.googleapis.com",
    "google_cloud_scheduler_": "cloudscheduler.googleapis.com",
    "google_cloudfunctions2_": "cloudfunctions.googleapis.com",
    "google_firebaserules_": "firebaserules.googleapis.com",
    "google_firestore_": "firestore.googleapis.com",
    "google_identity_platform_": "identitytoolkit.googleapis.com",
    "google_logging_": "logging.googleapis.com",
    "google_monitoring_": "monitoring.googleapis.com",
    "google_project_iam_custom_role": "iam.googleapis.com",
    "google_project_iam_": "cloudresourcemanager.googleapis.com",
    "google_project_service_identity": "serviceusage.googleapis.com",
    "google_project": "cloudresourcemanager.googleapis.com",
    "google_pubsub_": "pubsub.googleapis.com",
    "google_service_account": "iam.googleapis.com",
    "google_storage_": "storage.googleapis.com",
}
# Types that call no Google API, or enable them.
NO_API = {"google_project_service", "time_sleep", "archive_file"}
# A 2nd-gen function is built by Cloud Build into Artifact Registry, runs on Cloud Run and
# is triggered through Eventarc: all of these must be on before the first one.
FUNCTION_APIS = {
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "run.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
}


def enabled_apis() -> set[str]:
    return set(re.findall(r"[a-z]+\.googleapis\.com", str(locals_()["apis"])))


def api_of(kind: str) -> str | None:
    if kind in NO_API:
        return None
    prefix = max((p for p in API_OF_PREFIX if kind.startswith(p)), key=len, default=None)
    assert prefix, f"{kind}: which API does it call? Add it to API_OF_PREFIX"
    return API_OF_PREFIX[prefix]


@cache
def graph() -> dict[str, set[str]]:
    """Each resource and data source → the resources and data sources it references or depends on."""
    nodes: dict[str, Any] = {}
    for tree in parsed().values():
        for section, prefix in (("resource", ""), ("data", "data.")):
            for entry in tree.get(section, []):
                for kind, named in entry.items():
                    for name, body in named.items():
                        nodes[f"{prefix}{kind}.{name}"] = body
    ref = re.compile(r"\b((?:data\.)?[a-z][a-z0-9]*_[a-z0-9_]+\.[a-z0-9_]+)\b")
    locals_text = {name: str(value) for name, value in locals_().items()}
    edges: dict[str, set[str]] = {}
    for node, body in nodes.items():
        text = str(body)
        # A reference through a local counts as a reference to what the local names.
        for name, value in locals_text.items():
            if f"local.{name}" in text:
                text += value
        edges[node] = {m for m in ref.findall(text) if m in nodes and m != node}
    return edges


def reaches(start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph()[node])
    return False


def test_every_api_a_resource_calls_is_enabled_and_waited_for() -> None:
    apis = enabled_apis()
    # Terraform itself needs these to enable the rest and to grant on the project.
    assert {"iam.googleapis.com", "cloudresourcemanager.googleapis.com", "serviceusage.googleapis.com"} <= apis
    assert apis >= FUNCTION_APIS
    for node in graph():
        kind = node.removeprefix("data.").split(".")[0]
        api = api_of(kind)
        if api is None:
            continue
        assert api in apis, (node, api)
        # Through depends_on or references, everything waits for the APIs to be on.
        assert reaches(node, "google_project_service.apis"), f"{node} can race the enabling of {api}"
    settle = resources()["time_sleep"]["apis_settle"]
    assert settle["depends_on"] == ["${google_project_service.apis}"]
    assert resources()["google_project_service"]["apis"]["disable_on_destroy"] is False


def test_service_agents_come_from_service_identities_not_spelt_out_addresses() -> None:
    identities = resources()["google_project_service_identity"]["agents"]
    assert identities["provider"] in ("${google-beta}", "google-beta")
    assert {"pubsub.googleapis.com", "eventarc.googleapis.com"} <= set(
        re.findall(r"[a-z]+\.googleapis\.com", str(identities["for_each"]))
    )
    text = "\n".join(p.read_text() for p in TERRAFORM.glob("*.tf"))
    assert "gcp-sa-" not in text, "a service agent's address spelt out: use google_project_service_identity"
    assert "google_project_service_identity" in str(locals_()["pubsub_agent"])


def test_functions_wait_for_their_build_grants_to_propagate() -> None:
    wait = resources()["time_sleep"]["build_iam_settle"]
    assert wait["create_duration"] == "60s"
    waited = set(wait["depends_on"])
    for grant in (
        "${google_project_iam_member.build_log_writers}",
        "${google_artifact_registry_repository_iam_member.builder_pushes_function_images}",
        "${google_storage_bucket_iam_member.builders_read_sources}",
        "${google_project_service_identity.agents}",
    ):
        assert grant in waited, grant
    for name, body in functions().items():
        assert "${time_sleep.build_iam_settle}" in body["depends_on"], name
        repository = block(body, "build_config")["docker_repository"]
        assert repository == '${google_artifact_registry_repository.docker["functions"].id}'


def test_builds_run_as_their_own_accounts_with_no_project_wide_storage() -> None:
    roles = {g["role"] for kind, named in resources().items() if kind.endswith("_iam_member") for g in named.values()}
    roles |= set(re.findall(r"roles/[\w.]+", str(resources()["google_project_iam_member"])))
    assert "roles/cloudbuild.builds.builder" not in roles
    assert "roles/iam.serviceAccountTokenCreator" not in roles
    grants = [
        g
        for kind in ("google_storage_bucket_iam_member", "google_artifact_registry_repository_iam_member")
        for g in resources()[kind].values()
    ]
    builder_grants = [g for g in grants if "builder" in str(g["member"]) or "builder" in str(g.get("for_each", ""))]
    assert builder_grants
    # The renderer image's build names its account, and its logs go to Cloud Logging (a
    # user-specified build account cannot write to the default logs bucket).
    cloudbuild = (ROOT / "renderer_image" / "cloudbuild.yaml").read_text()
    assert re.search(
        r"^serviceAccount: \"?projects/\$\{?PROJECT_ID\}?/serviceAccounts/\$\{_BUILDER\}", cloudbuild, re.M
    )
    assert re.search(r"^\s+logging: CLOUD_LOGGING_ONLY$", cloudbuild, re.M)


def test_url_signing_is_signblob_alone_and_only_as_oneself() -> None:
    role = resources()["google_project_iam_custom_role"]["url_signer"]
    assert role["permissions"] == ["iam.serviceAccounts.signBlob"]
    grant = resources()["google_service_account_iam_member"]["signs_as_itself"]
    assert grant["role"] == "${google_project_iam_custom_role.url_signer.name}"
    assert (grant["service_account_id"], grant["member"]) == ("${each.value.name}", "${each.value.member}")
    assert "google_service_account.report_function" in str(locals_()["url_signers"])
    minter = resources()["google_project_iam_custom_role"]["push_token_minter"]
    assert minter["permissions"] == ["iam.serviceAccounts.getOpenIdToken"]


def test_browsers_may_read_renders_and_put_media_from_the_configured_origins_only() -> None:
    buckets = resources()["google_storage_bucket"]
    for name, method in (("renders", ["GET", "HEAD"]), ("media", ["PUT"])):
        (cors,) = [d["cors"] for d in buckets[name]["dynamic"] if "cors" in d]
        assert cors["for_each"] == "${length(var.web_origins) > 0 ? [1] : []}"
        content = block(cors, "content")
        assert content["origin"] == "${var.web_origins}"
        assert content["method"] == method
    assert (
        "Range"
        in block(next(d["cors"] for d in buckets["renders"]["dynamic"] if "cors" in d), "content")["response_header"]
    )
    for name in ("specs", "sources"):
        assert "cors" not in str(buckets[name].get("dynamic", "")), name


def test_identity_platform_is_on_with_the_providers_the_variables_choose() -> None:
    config = resources()["google_identity_platform_config"]["auth"]
    email = block(block(config, "sign_in"), "email")
    assert email["enabled"] == "${var.auth.email_password}"
    assert "var.web_origins" in config["authorized_domains"]
    google = resources()["google_identity_platform_default_supported_idp_config"]["google"]
    assert google["idp_id"] == "google.com"
    assert google["count"] == '${var.auth.google_client_id == "" ? 0 : 1}'
    assert google["client_secret"] == "${var.google_oauth_client_secret}"
    assert variables()["google_oauth_client_secret"]["sensitive"] is True


def test_firestore_teardown_and_rules_changes() -> None:
    database = resources()["google_firestore_database"]["default"]
    assert "var.firestore_deletion_policy" in database["deletion_policy"]
    assert "var.teardown.delete_firestore" in database["deletion_policy"]
    assert "var.teardown.delete_firestore" in database["delete_protection_state"]
    assert variables()["firestore_deletion_policy"]["default"] == "ABANDON"
    ruleset = resources()["google_firebaserules_ruleset"]["firestore"]
    assert block(ruleset, "lifecycle")["create_before_destroy"] is True
    release = resources()["google_firebaserules_release"]["firestore"]
    assert block(release, "lifecycle")["replace_triggered_by"] == ["${google_firebaserules_ruleset.firestore}"]
    assert release["ruleset_name"].startswith("projects/${var.project_id}/rulesets/")
    for name in ("specs", "renders", "media", "sources"):
        assert resources()["google_storage_bucket"][name]["force_destroy"] == "${var.teardown.force_destroy_buckets}"


def test_dead_letters_and_failed_executions_alert() -> None:
    assert resources()["google_logging_metric"]["pipeline"]["for_each"] == "${local.log_metrics}"
    metrics = locals_()["log_metrics"]
    assert 'google_cloudfunctions2_function.functions["dead_letter"].name' in metrics["dead_letters"]["filter"]
    assert "google_cloud_run_v2_job.renderer.name" in metrics["renderer_errors"]["filter"]
    alerts = locals_()["alerts"]
    assert set(alerts) == {"dead_letters", "renderer_errors", "failed_executions"}
    assert 'google_logging_metric.pipeline["dead_letters"].name' in alerts["dead_letters"]["filter"]
    assert 'google_logging_metric.pipeline["renderer_errors"].name' in alerts["renderer_errors"]["filter"]
    assert 'metric.labels.result=\\"failed\\"' in alerts["failed_executions"]["filter"]
    policy = resources()["google_monitoring_alert_policy"]["pipeline"]
    assert policy["for_each"] == "${local.alerts}"
    assert "google_monitoring_notification_channel.email" in policy["notification_channels"]
    assert reaches("google_monitoring_alert_policy.pipeline", "time_sleep.metrics_settle")


def test_state_is_remote_and_never_committed() -> None:
    terraform = parsed()["versions.tf"]["terraform"][0]
    backend = block(terraform, "backend")
    assert list(backend) == ["gcs"] and {k: v for k, v in backend["gcs"].items()} == {}, backend
    lines = (ROOT / ".gitignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {"terraform.tfstate", "terraform.tfstate.*", "*.tfplan"} <= set(ignored)
    assert not any(line.endswith("lock.hcl") for line in ignored), "the dependency lock file is committed"


def variables() -> dict[str, dict[str, Any]]:
    return {name: body for tree in parsed().values() for v in tree.get("variable", []) for name, body in v.items()}


def test_variables_are_typed_and_described_and_outputs_described() -> None:
    for name, body in variables().items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(body.get("description", "")) > 20, f"variable {name} has no description"
    outputs = {name: body for tree in parsed().values() for o in tree.get("output", []) for name, body in o.items()}
    assert {"http_api_url", "spec_bucket", "render_bucket", "media_bucket", "image_build"} <= set(outputs)
    for name, body in outputs.items():
        assert len(body.get("description", "")) > 10, f"output {name} has no description"


def test_one_service_account_per_component() -> None:
    accounts = resources()["google_service_account"]
    assert {"builder", "image_builder"} <= set(accounts)
    # Each waits for the IAM API (the graph test above checks every resource does).
    for name in accounts:
        assert reaches(f"google_service_account.{name}", "time_sleep.apis_settle"), name


def test_the_api_signs_uploads_only_under_users_and_browsers_can_reach_it() -> None:
    grant = resources()["google_storage_bucket_iam_member"]["api_function_signs_uploads"]
    assert grant["bucket"] == "${google_storage_bucket.media.name}"
    assert grant["member"] == "${google_service_account.api_function.member}"
    assert re.findall(r"roles/[\w.]+", grant["for_each"]) == [
        "roles/storage.objectCreator",
        "roles/storage.objectViewer",
    ]
    assert block(grant, "condition")["expression"].endswith('/objects/users/\\")')
    assert locals_()["url_signers"]["api"] == "${google_service_account.api_function}"
    env = str(block(functions()["api"], "service_config")["environment_variables"])
    assert f"{Settings.env_name('signer_service_account')} = google_service_account.api_function.email" in env
    public = resources()["google_cloud_run_service_iam_member"]["api_public"]
    assert (public["member"], public["role"], public["count"]) == (
        "allUsers",
        "roles/run.invoker",
        "${var.api_public ? 1 : 0}",
    )
    assert public["service"] == '${google_cloudfunctions2_function.functions["api"].name}'
    # The only allUsers grant there is.
    everyone = [
        (kind, name)
        for kind, named in resources().items()
        if kind.endswith("_iam_member")
        for name, body in named.items()
        if "allUsers" in str(body.get("member")) or "allAuthenticatedUsers" in str(body.get("member"))
    ]
    assert everyone == [("google_cloud_run_service_iam_member", "api_public")]
    media_cors = next(d["cors"] for d in resources()["google_storage_bucket"]["media"]["dynamic"] if "cors" in d)
    assert "x-goog-content-length-range" in block(media_cors, "content")["response_header"]


def test_every_variable_but_booleans_is_validated() -> None:
    """What the operator types (ids, regions, origins, addresses, policies) is checked at plan."""
    for name, body in variables().items():
        kind = str(body["type"])
        if kind in ("${bool}", "bool"):
            continue
        if name in ("allowed_input_buckets", "google_oauth_client_secret", "teardown"):
            continue  # bucket names GCS checks itself; a secret; two booleans
        assert body.get("validation"), f"variable {name} is not validated"


def test_every_checkov_skip_says_why() -> None:
    text = "\n".join(p.read_text() for p in TERRAFORM.glob("*.tf"))
    text += (ROOT / "renderer_image" / "Dockerfile").read_text()
    skips = re.findall(r"checkov:skip=([A-Z_0-9]+)(.*)", text)
    assert skips
    for check, reason in skips:
        assert re.fullmatch(r":\s*\S.{20,}", reason), f"{check} skipped without a reason"


def test_the_outputs_name_every_function_account_bucket_and_the_sweep() -> None:
    """An operator finds each part of the deployment from `terraform output` alone."""
    outputs = {name: body for tree in parsed().values() for o in tree.get("output", []) for name, body in o.items()}
    text = {name: str(body["value"]) for name, body in outputs.items()}
    assert "for key, fn in google_cloudfunctions2_function.functions :" in text["functions"]
    # Each account directly, or through the functions' and their triggers' tables.
    assert "for key, email in local.function_accounts" in text["service_accounts"]
    assert "for key, trigger in local.event_triggers" in text["service_accounts"]
    listed = text["service_accounts"] + str(locals_()["function_accounts"]) + str(locals_()["event_triggers"])
    for name in resources()["google_service_account"]:
        assert f"google_service_account.{name}.email" in listed, name
    for name in resources()["google_storage_bucket"]:
        assert f"google_storage_bucket.{name}.name" in text["buckets"], name
    assert "google_cloud_scheduler_job.sweep.name" in text["sweeper"]
    assert 'google_cloudfunctions2_function.functions["sweeper"].name' in text["sweeper"]


def instance_keys(for_each: Any) -> set[str]:
    """The keys of a for_each: a literal map's, or a local's (local.functions: function_settings')."""
    if isinstance(for_each, dict):
        return set(for_each)
    name = str(for_each).removeprefix("${local.").removesuffix("}")
    value = locals_()[name]
    if isinstance(value, str):  # { for key, x in local.other : key => ... }
        source = re.fullmatch(r"\$\{\{for \w+, \w+ in local\.(\w+) : .*\}\}", value)
        assert source, value
        value = locals_()[source[1]]
    return set(value)


def test_the_worker_is_told_the_time_memory_and_cores_its_task_has() -> None:
    """The remaining-time check and the memory budget use the job's own limits, passed from the
    same variables the job is sized with; and a launch asks for at most the job's parallelism."""
    job = resources()["google_cloud_run_v2_job"]["renderer"]
    task = block(block(job, "template"), "template")
    container = job_container()
    limits = block(container, "resources")["limits"]
    assert (task["timeout"], limits["memory"], limits["cpu"]) == (
        "${var.renderer.timeout_s}s",
        "${var.renderer.memory}",
        "${var.renderer.cpu}",
    )
    (env,) = [d["env"] for d in container["dynamic"] if "env" in d]
    text = str(env["for_each"])
    for field, expression in (
        ("task_timeout_s", "tostring(var.renderer.timeout_s)"),
        ("memory_mb", 'tostring(tonumber(trimsuffix(var.renderer.memory, "Gi")) * 1024)'),
        ("cpus", "var.renderer.cpu"),
        # Segment sharing needs a second task, which only a launch of more than one can have.
        ("split_min_segments", "tostring(var.renderer.parallelism > 1 ? var.renderer.split_min_segments : 0)"),
    ):
        assert f"{Settings.env_name(field)} = {expression}" in text, field
    # The MiB arithmetic holds only for whole GiB, which the variable's validation demands.
    memory_rules = [v["condition"] for v in variables()["renderer"]["validation"] if "memory" in v["condition"]]
    assert memory_rules == ['${can(regex("^[1-9][0-9]*Gi$", var.renderer.memory))}'], memory_rules
    assert locals_()["common_env"][Settings.env_name("launch_parallelism")] == "${tostring(var.renderer.parallelism)}"
