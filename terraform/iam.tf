# One service account per component, each granted only what its code does, on the narrowest
# resource that IAM allows. No primitive roles; the default compute account is never used.

resource "google_service_account" "spec_function" {
  account_id   = "${local.prefix}-spec-fn"
  display_name = "SceneRender spec trigger"

  depends_on = [time_sleep.apis_settle]
}

resource "google_service_account" "report_function" {
  account_id   = "${local.prefix}-report-fn"
  display_name = "SceneRender completion trigger (signs URLs)"

  depends_on = [time_sleep.apis_settle]
}

resource "google_service_account" "api_function" {
  account_id   = "${local.prefix}-api-fn"
  display_name = "SceneRender HTTP API"

  depends_on = [time_sleep.apis_settle]
}

resource "google_service_account" "dead_letter_function" {
  account_id   = "${local.prefix}-dead-fn"
  display_name = "SceneRender dead-letter handler"

  depends_on = [time_sleep.apis_settle]
}

resource "google_service_account" "renderer" {
  account_id   = "${local.prefix}-renderer"
  display_name = "SceneRender renderer job"

  depends_on = [time_sleep.apis_settle]
}

# Each event function's Eventarc trigger has its own identity, so a trigger can invoke only
# its own function.
resource "google_service_account" "spec_trigger" {
  account_id   = "${local.prefix}-spec-trg"
  display_name = "SceneRender Eventarc trigger of the spec function"

  depends_on = [time_sleep.apis_settle]
}

resource "google_service_account" "dead_letter_trigger" {
  account_id   = "${local.prefix}-dead-trg"
  display_name = "SceneRender Eventarc trigger of the dead-letter function"

  depends_on = [time_sleep.apis_settle]
}

resource "google_service_account" "report_trigger" {
  account_id   = "${local.prefix}-report-trg"
  display_name = "SceneRender Eventarc trigger of the completion function"

  depends_on = [time_sleep.apis_settle]
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

# The spec function launches the renderer: sweeper.tf, launchers.

# --- completion trigger: reads renders to sign URLs for them, signs as itself
resource "google_storage_bucket_iam_member" "report_function_reads_renders" {
  bucket = google_storage_bucket.renders.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.report_function.member
}

# Signing a URL is one IAM call, signBlob, made as the signer itself (no key file exists).
# roles/iam.serviceAccountTokenCreator would also let it mint access and ID tokens as
# itself; this role has signBlob alone. Each signer may sign only as itself.
resource "google_project_iam_custom_role" "url_signer" {
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_url_signer"
  title       = "SceneRender URL signer"
  description = "Sign blobs (V4 signed URLs) as a service account; nothing else."
  permissions = ["iam.serviceAccounts.signBlob"]

  depends_on = [time_sleep.apis_settle]
}

locals {
  # The accounts that sign URLs, each as itself: the completion function (download URLs)
  # and the HTTP API (upload URLs).
  url_signers = {
    report = google_service_account.report_function
    api    = google_service_account.api_function # POST /uploads: signed PUT URLs
  }
}

resource "google_service_account_iam_member" "signs_as_itself" {
  for_each           = local.url_signers
  service_account_id = each.value.name
  role               = google_project_iam_custom_role.url_signer.name
  member             = each.value.member
}

# --- HTTP API: writes specs (the same path as a dropped file), reads job documents.
# A re-submitted job overwrites its spec object, and an overwrite needs delete as well as
# create. GET /?job_id= gives a job's owner the spec it was accepted from (re-render from any
# browser), so the API reads spec objects by name, after checking the job's owner; it never
# lists them. No predefined role has just those three (objectUser would add listing), so this
# custom role does. The bucket's versioning keeps what is replaced.
resource "google_project_iam_custom_role" "spec_writer" {
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_spec_writer"
  title       = "SceneRender spec writer"
  description = "Create, replace and read spec objects by name; no listing."
  permissions = ["storage.objects.create", "storage.objects.delete", "storage.objects.get"]

  depends_on = [time_sleep.apis_settle]
}

resource "google_storage_bucket_iam_member" "api_function_writes_specs" {
  bucket = google_storage_bucket.specs.name
  role   = google_project_iam_custom_role.spec_writer.name
  member = google_service_account.api_function.member
}

# POST /uploads: the API signs a PUT URL for one object under users/{uid}/ of the media
# bucket, and the upload then acts with the API's permissions, so the API may create objects
# there (and see whether one is already there, for uploads that name their sha256): only
# under users/, held there by a condition.
resource "google_storage_bucket_iam_member" "api_function_signs_uploads" {
  for_each = toset(["roles/storage.objectCreator", "roles/storage.objectViewer"])
  bucket   = google_storage_bucket.media.name
  role     = each.value
  member   = google_service_account.api_function.member

  condition {
    title       = "users/ only"
    description = "End users' uploads; not the operator's media."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.media.name}/objects/users/\")"
  }
}

# Browsers call the API with a Firebase ID token, which Cloud Run's own IAM check does not
# accept; the function verifies the token itself (scenerender.cloud.identity) on every request,
# so the service lets every caller reach it. Without var.api_public only IAM-authenticated
# callers (roles/run.invoker) reach it, and browsers cannot.
resource "google_cloud_run_service_iam_member" "api_public" {
  # checkov:skip=CKV_GCP_102: the API authenticates every request itself with a Firebase ID token; Cloud Run IAM cannot check those
  count    = var.api_public ? 1 : 0
  location = var.region
  service  = google_cloudfunctions2_function.functions["api"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# --- renderer: pulls requests and segment work, shares segments, reports, reads media,
# writes renders. Segment work: a task shares a long scene's encodes, and every task takes them.
resource "google_pubsub_subscription_iam_member" "renderer_pulls" {
  for_each = {
    requests = google_pubsub_subscription.render_requests.id
    segments = google_pubsub_subscription.segment_work.id
  }
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.renderer.member
}

resource "google_pubsub_topic_iam_member" "renderer_publishes" {
  for_each = {
    segments = google_pubsub_topic.segment_work.id
    reports  = google_pubsub_topic.render_reports.id
  }
  topic  = each.value
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

# --- Eventarc: each trigger account invokes only its own function's Cloud Run service (a
# 2nd-gen function runs as a service of the same name). The triggers are Pub/Sub-sourced:
# Pub/Sub pushes to the function with the trigger account's ID token, so that account needs
# run.invoker and nothing else (roles/eventarc.eventReceiver is for events Eventarc itself
# delivers from other sources).
locals {
  triggers = {
    spec = {
      member   = google_service_account.spec_trigger.member
      name     = google_service_account.spec_trigger.name
      function = google_cloudfunctions2_function.functions["spec"].name
    }
    report = {
      member   = google_service_account.report_trigger.member
      name     = google_service_account.report_trigger.name
      function = google_cloudfunctions2_function.functions["report"].name
    }
    dead_letter = {
      member   = google_service_account.dead_letter_trigger.member
      name     = google_service_account.dead_letter_trigger.name
      function = google_cloudfunctions2_function.functions["dead_letter"].name
    }
  }
}

resource "google_cloud_run_service_iam_member" "trigger_invokes_its_function" {
  for_each = local.triggers
  location = var.region
  service  = each.value.function
  role     = "roles/run.invoker"
  member   = each.value.member
}

# Pub/Sub mints the push ID tokens the triggers authenticate with (needed on projects made
# before April 2021, harmless after). Minting an ID token is getOpenIdToken alone; the
# predefined roles/iam.serviceAccountTokenCreator would add access tokens and signBlob.
resource "google_project_iam_custom_role" "push_token_minter" {
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_push_token_minter"
  title       = "SceneRender push token minter"
  description = "Mint OpenID Connect tokens as a trigger account, for Pub/Sub push; nothing else."
  permissions = ["iam.serviceAccounts.getOpenIdToken"]

  depends_on = [time_sleep.apis_settle]
}

resource "google_service_account_iam_member" "pubsub_agent_mints_trigger_tokens" {
  for_each           = local.triggers
  service_account_id = each.value.name
  role               = google_project_iam_custom_role.push_token_minter.name
  member             = local.pubsub_agent
}
