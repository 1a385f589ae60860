# The function source: functions/main.py, the scenerender modules it imports and the locked
# runtime requirements, nothing else (not the CLI, the local cloud or the worker; and no
# typer, rich or GCS emulator wheel). tests/unit/test_artifacts.py checks that this list is
# exactly what main.py reaches through its imports, and tests/integration/
# test_function_archive.py imports main.py from these files in a venv made from the
# archive's requirements alone. The object is named by the archive's hash, so a change of
# any of them redeploys.
locals {
  function_modules = [
    "__init__.py",
    "cloud/__init__.py",
    "cloud/batch_docs.py",
    "cloud/bus.py",
    "cloud/clients.py",
    "cloud/google_errors.py",
    "cloud/identity.py",
    "cloud/jobs.py",
    "cloud/launcher.py",
    "cloud/liveness.py",
    "cloud/owner_slots.py",
    "cloud/storage.py",
    "core/__init__.py",
    "core/adts.py",
    "core/audio.py",
    "core/cache.py",
    "core/deliverables/__init__.py",
    "core/deliverables/burn.py",
    "core/deliverables/captions.py",
    "core/deliverables/maker.py",
    "core/deliverables/qc.py",
    "core/deliverables/roles.py",
    "core/deliverables/sidecars.py",
    "core/deliverables/stills.py",
    "core/encode_queue.py",
    "core/ffmpeg.py",
    "core/fetch.py",
    "core/inputs.py",
    "core/mp4.py",
    "core/plan/__init__.py",
    "core/plan/audio_encode.py",
    "core/plan/audio_mix.py",
    "core/plan/command.py",
    "core/plan/loudness.py",
    "core/plan/output.py",
    "core/plan/pieces.py",
    "core/plan/schedule.py",
    "core/plan/video.py",
    "core/probe.py",
    "core/render.py",
    "core/spec.py",
    "core/sync.py",
    "core/tenancy.py",
    "core/timeline.py",
    "core/wav.py",
    "core/webp.py",
    "errors.py",
    "logs.py",
    "messages.py",
    "pipeline/__init__.py",
    "pipeline/api.py",
    "pipeline/batch.py",
    "pipeline/budget.py",
    "pipeline/steps/__init__.py",
    "pipeline/steps/accept.py",
    "pipeline/steps/accept_batch.py",
    "pipeline/steps/events.py",
    "pipeline/steps/refusals.py",
    "pipeline/steps/rendering.py",
    "pipeline/steps/report.py",
    "pipeline/steps/requests.py",
    "pipeline/sweeper.py",
    "pipeline/workitems.py",
    "ports.py",
    "settings.py",
  ]
}

data "archive_file" "functions" {
  type        = "zip"
  output_path = "${path.module}/.build/functions.zip"

  source {
    content  = file("${path.module}/../functions/main.py")
    filename = "main.py"
  }

  # Cloud Functions installs requirements.txt; the lock pins every transitive package.
  source {
    content  = file("${path.module}/../requirements.lock")
    filename = "requirements.txt"
  }

  dynamic "source" {
    for_each = toset(local.function_modules)
    content {
      content  = file("${path.module}/../scenerender/${source.value}")
      filename = "scenerender/${source.value}"
    }
  }
}

resource "google_storage_bucket_object" "functions_source" {
  name   = "functions-${data.archive_file.functions.output_sha256}.zip"
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.functions.output_path
}

# Every 2nd-gen function is one build of the same archive, with its own entry point (its
# name too, dashed), account and limits: the defaults, less what its row says otherwise.
#   spec         a spec dropped in the bucket (or POSTed): validate, record, queue, launch
#   report       a render's report: the job ends, with a signed URL
#   dead_letter  render requests Pub/Sub gave up on: their jobs end FAILED with the last error
#   api          the end users' HTTP API (scenerender.pipeline.api): browsers outside any VPC
#                call it, each request with a Firebase ID token it verifies (iam.tf api_public)
#   sweeper      called by Cloud Scheduler (sweeper.tf) from outside any VPC, IAM (OIDC)
#                guarding it; one at a time, as two sweeps would only find the same jobs
locals {
  function_defaults = { memory = "512M", timeout_s = 60, max_instances = 20, ingress = "ALLOW_INTERNAL_ONLY", signs_urls = false }

  function_settings = {
    spec        = { entry_point = "on_spec_uploaded", timeout_s = 120 }
    report      = { entry_point = "on_render_reported", signs_urls = true }
    dead_letter = { entry_point = "on_render_dead_lettered", memory = "256M", max_instances = 5 }
    api         = { entry_point = "http_api", signs_urls = true, max_instances = 10, ingress = "ALLOW_ALL" }
    sweeper     = { entry_point = "on_sweep", memory = "256M", timeout_s = 120, max_instances = 1, ingress = "ALLOW_ALL" }
  }

  functions = { for key, fn in local.function_settings : key => merge(local.function_defaults, fn) }

  # Each function runs as its own account (iam.tf grants each what its code does).
  function_accounts = {
    spec        = google_service_account.spec_function.email
    report      = google_service_account.report_function.email
    dead_letter = google_service_account.dead_letter_function.email
    api         = google_service_account.api_function.email
    sweeper     = google_service_account.sweeper_function.email
  }

  # The event functions: the topic that feeds each, and the account its Eventarc trigger
  # pushes as (iam.tf local.triggers: each may invoke only its own function).
  event_triggers = {
    spec        = { topic = google_pubsub_topic.spec_events.id, account = google_service_account.spec_trigger.email }
    report      = { topic = google_pubsub_topic.render_reports.id, account = google_service_account.report_trigger.email }
    dead_letter = { topic = google_pubsub_topic.dead_letter.id, account = google_service_account.dead_letter_trigger.email }
  }
}

resource "google_cloudfunctions2_function" "functions" {
  # checkov:skip=CKV_GCP_124: the event functions are ALLOW_INTERNAL_ONLY; the HTTP API (browsers, Firebase ID token on every request) and the sweeper (Cloud Scheduler, OIDC) are called from outside any VPC by design
  for_each = local.functions
  name     = "${local.prefix}-${replace(each.value.entry_point, "_", "-")}"
  location = var.region

  build_config {
    runtime           = "python311"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.docker["functions"].id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    service_account_email = local.function_accounts[each.key]
    # The functions that sign URLs (download, upload) sign as themselves (iam.tf url_signers).
    environment_variables = merge(local.common_env, each.value.signs_urls ? { SCENERENDER_SIGNER_SERVICE_ACCOUNT = local.function_accounts[each.key] } : {})
    available_memory      = each.value.memory
    timeout_seconds       = each.value.timeout_s
    max_instance_count    = each.value.max_instances
    ingress_settings      = each.value.ingress
  }

  dynamic "event_trigger" {
    for_each = { for key, trigger in local.event_triggers : key => trigger if key == each.key }
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = event_trigger.value.topic
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = event_trigger.value.account
    }
  }

  depends_on = [time_sleep.build_iam_settle]
}
