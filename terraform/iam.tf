# One service account per component, each granted only what its code does, on the narrowest
# resource that IAM allows. No primitive roles; the default compute account is never used.

resource "google_service_account" "spec_function" {
  account_id   = "${local.prefix}-spec-fn"
  display_name = "SceneRender spec trigger"
}

resource "google_service_account" "report_function" {
  account_id   = "${local.prefix}-report-fn"
  display_name = "SceneRender completion trigger (signs URLs)"
}

resource "google_service_account" "api_function" {
  account_id   = "${local.prefix}-api-fn"
  display_name = "SceneRender HTTP API"
}

resource "google_service_account" "dead_letter_function" {
  account_id   = "${local.prefix}-dead-fn"
  display_name = "SceneRender dead-letter handler"
}

resource "google_service_account" "renderer" {
  account_id   = "${local.prefix}-renderer"
  display_name = "SceneRender renderer job"
}

# Each event function's Eventarc trigger has its own identity, so a trigger can invoke only
# its own function.
resource "google_service_account" "spec_trigger" {
  account_id   = "${local.prefix}-spec-trg"
  display_name = "SceneRender Eventarc trigger of the spec function"
}

resource "google_service_account" "dead_letter_trigger" {
  account_id   = "${local.prefix}-dead-trg"
  display_name = "SceneRender Eventarc trigger of the dead-letter function"
}

resource "google_service_account" "report_trigger" {
  account_id   = "${local.prefix}-report-trg"
  display_name = "SceneRender Eventarc trigger of the completion function"
}

resource "google_service_account" "builder" {
  account_id   = "${local.prefix}-builder"
  display_name = "SceneRender function builds"
}

# --- spec trigger: reads specs, writes job documents, queues requests, starts the renderer
resource "google_storage_bucket_iam_member" "spec_function_reads_specs" {
  bucket = google_storage_bucket.specs.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.spec_function.member
}

resource "google_pubsub_topic_iam_member" "spec_function_queues_requests" {
  topic  = google_pubsub_topic.render_requests.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.spec_function.member
}

resource "google_cloud_run_v2_job_iam_member" "spec_function_runs_renderer" {
  name     = google_cloud_run_v2_job.renderer.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.spec_function.member
}

# --- completion trigger: reads renders to sign URLs for them, signs as itself
resource "google_storage_bucket_iam_member" "report_function_reads_renders" {
  bucket = google_storage_bucket.renders.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.report_function.member
}

resource "google_service_account_iam_member" "report_function_signs_as_itself" {
  service_account_id = google_service_account.report_function.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.report_function.member
}

# --- HTTP API: writes specs (the same path as a dropped file), reads job documents.
# A re-submitted job overwrites its spec object, and an overwrite needs delete as well as
# create; no predefined role has just those two (objectUser would add reading and listing
# every spec), so this custom role does. The bucket's versioning keeps what is replaced.
resource "google_project_iam_custom_role" "spec_writer" {
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_spec_writer"
  title       = "SceneRender spec writer"
  description = "Create and replace spec objects; no reading or listing."
  permissions = ["storage.objects.create", "storage.objects.delete"]
}

resource "google_storage_bucket_iam_member" "api_function_writes_specs" {
  bucket = google_storage_bucket.specs.name
  role   = google_project_iam_custom_role.spec_writer.name
  member = google_service_account.api_function.member
}

# --- renderer: pulls requests, reads media, writes renders, reports
resource "google_pubsub_subscription_iam_member" "renderer_pulls_requests" {
  subscription = google_pubsub_subscription.render_requests.id
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.renderer.member
}

# Segment work: a task shares a long scene's encodes; every task takes them.
resource "google_pubsub_topic_iam_member" "renderer_shares_segments" {
  topic  = google_pubsub_topic.segment_work.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.renderer.member
}

resource "google_pubsub_subscription_iam_member" "renderer_takes_segments" {
  subscription = google_pubsub_subscription.segment_work.id
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.renderer.member
}

resource "google_pubsub_topic_iam_member" "renderer_reports" {
  topic  = google_pubsub_topic.render_reports.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.renderer.member
}

resource "google_storage_bucket_iam_member" "renderer_reads_media" {
  bucket = google_storage_bucket.media.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.renderer.member
}

# Buckets outside this deployment that specs may name (SCENERENDER_ALLOWED_GS_BUCKETS).
resource "google_storage_bucket_iam_member" "renderer_reads_extra_inputs" {
  for_each = toset(var.allowed_input_buckets)
  bucket   = each.value
  role     = "roles/storage.objectViewer"
  member   = google_service_account.renderer.member
}

resource "google_storage_bucket_iam_member" "renderer_writes_renders" {
  bucket = google_storage_bucket.renders.name
  role   = "roles/storage.objectUser"
  member = google_service_account.renderer.member
}

# Firestore grants exist only at project level (IAM has no per-collection role); the
# security rules keep end users to their own jobs, and only these accounts write.
resource "google_project_iam_member" "firestore_writers" {
  for_each = {
    spec     = google_service_account.spec_function.member
    report   = google_service_account.report_function.member
    dead     = google_service_account.dead_letter_function.member
    renderer = google_service_account.renderer.member
  }
  project = var.project_id
  role    = "roles/datastore.user"
  member  = each.value
}

resource "google_project_iam_member" "api_reads_firestore" {
  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = google_service_account.api_function.member
}

# --- Eventarc: each trigger account receives events and invokes only its own function's
# Cloud Run service (a 2nd-gen function runs as a service of the same name).
locals {
  triggers = {
    spec = {
      member   = google_service_account.spec_trigger.member
      name     = google_service_account.spec_trigger.name
      function = google_cloudfunctions2_function.spec.name
    }
    report = {
      member   = google_service_account.report_trigger.member
      name     = google_service_account.report_trigger.name
      function = google_cloudfunctions2_function.report.name
    }
    dead_letter = {
      member   = google_service_account.dead_letter_trigger.member
      name     = google_service_account.dead_letter_trigger.name
      function = google_cloudfunctions2_function.dead_letter.name
    }
  }
}

resource "google_project_iam_member" "trigger_receives_events" {
  # eventarc.eventReceiver has no narrower resource than the project.
  for_each = local.triggers
  project  = var.project_id
  role     = "roles/eventarc.eventReceiver"
  member   = each.value.member
}

resource "google_cloud_run_service_iam_member" "trigger_invokes_its_function" {
  for_each = local.triggers
  location = var.region
  service  = each.value.function
  role     = "roles/run.invoker"
  member   = each.value.member
}

# Pub/Sub mints the push tokens the triggers authenticate with (needed on projects made
# before April 2021, harmless after).
resource "google_service_account_iam_member" "pubsub_agent_mints_trigger_tokens" {
  for_each           = local.triggers
  service_account_id = each.value.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# --- builds of the function sources run as their own account, not the default compute one
resource "google_project_iam_member" "builder" {
  # checkov:skip=CKV_GCP_49: Cloud Functions builds need the builder role at project level; this account does nothing but build
  for_each = toset(["roles/cloudbuild.builds.builder", "roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.builder.member
}
