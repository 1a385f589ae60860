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
    "cloud/bus.py",
    "cloud/clients.py",
    "cloud/google_errors.py",
    "cloud/identity.py",
    "cloud/jobs.py",
    "cloud/launcher.py",
    "cloud/storage.py",
    "core/__init__.py",
    "core/adts.py",
    "core/audio.py",
    "core/cache.py",
    "core/deliverables/__init__.py",
    "core/deliverables/captions.py",
    "core/deliverables/qc.py",
    "core/deliverables/roles.py",
    "core/deliverables/stills.py",
    "core/ffmpeg.py",
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
    "errors.py",
    "logs.py",
    "pipeline/__init__.py",
    "pipeline/api.py",
    "pipeline/batch.py",
    "pipeline/budget.py",
    "pipeline/steps.py",
    "pipeline/sweeper.py",
    "pipeline/workitems.py",
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

locals {
  function_source = {
    bucket = google_storage_bucket.sources.name
    object = google_storage_bucket_object.functions_source.name
  }
}

resource "google_cloudfunctions2_function" "spec" {
  name     = "${local.prefix}-on-spec-uploaded"
  location = var.region

  build_config {
    runtime           = "python311"
    entry_point       = "on_spec_uploaded"
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = local.function_source.bucket
        object = local.function_source.object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.spec_function.email
    environment_variables = local.common_env
    available_memory      = "512M"
    timeout_seconds       = 120
    max_instance_count    = 20
    ingress_settings      = "ALLOW_INTERNAL_ONLY"
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.spec_events.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.spec_trigger.email
  }

  depends_on = [time_sleep.build_iam_settle]
}

resource "google_cloudfunctions2_function" "report" {
  name     = "${local.prefix}-on-render-reported"
  location = var.region

  build_config {
    runtime           = "python311"
    entry_point       = "on_render_reported"
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = local.function_source.bucket
        object = local.function_source.object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.report_function.email
    environment_variables = merge(local.common_env, {
      SCENERENDER_SIGNER_SERVICE_ACCOUNT = google_service_account.report_function.email
    })
    available_memory   = "512M"
    timeout_seconds    = 60
    max_instance_count = 20
    ingress_settings   = "ALLOW_INTERNAL_ONLY"
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.render_reports.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.report_trigger.email
  }

  depends_on = [time_sleep.build_iam_settle]
}

# Render requests Pub/Sub gave up on: their jobs end FAILED with the last error seen.
resource "google_cloudfunctions2_function" "dead_letter" {
  name     = "${local.prefix}-on-render-dead-lettered"
  location = var.region

  build_config {
    runtime           = "python311"
    entry_point       = "on_render_dead_lettered"
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = local.function_source.bucket
        object = local.function_source.object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.dead_letter_function.email
    environment_variables = local.common_env
    available_memory      = "256M"
    timeout_seconds       = 60
    max_instance_count    = 5
    ingress_settings      = "ALLOW_INTERNAL_ONLY"
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.dead_letter.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.dead_letter_trigger.email
  }

  depends_on = [time_sleep.build_iam_settle]
}

# The end users' HTTP API (scenerender.pipeline.api): POST a spec, GET a job, POST /uploads. Every
# request carries a Firebase ID token, which the function verifies; see iam.tf api_public.
resource "google_cloudfunctions2_function" "api" {
  # checkov:skip=CKV_GCP_124: its callers are browsers and apps outside any VPC by design; every request is authenticated by its Firebase ID token
  name     = "${local.prefix}-http-api"
  location = var.region

  build_config {
    runtime           = "python311"
    entry_point       = "http_api"
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = local.function_source.bucket
        object = local.function_source.object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.api_function.email
    environment_variables = merge(local.common_env, {
      SCENERENDER_SIGNER_SERVICE_ACCOUNT = google_service_account.api_function.email
    })
    available_memory   = "512M"
    timeout_seconds    = 60
    max_instance_count = 10
    ingress_settings   = "ALLOW_ALL"
  }

  depends_on = [time_sleep.build_iam_settle]
}
