# spec bucket --(notification, jobs/ only)--> spec_events --> on_spec_uploaded
# on_spec_uploaded --> render_requests --(pull)--> renderer job --> render_reports --> on_render_reported
# renderer task --> segment_work --(pull)--> every renderer task (a long scene's encodes, shared)
# render_requests --(after max_delivery_attempts)--> dead_letter --> on_render_dead_lettered (job FAILED)
#                                                               \-> dead_letter_keep (a copy kept for inspection)

# Cloud Storage's service agent publishes the spec notifications; reading it makes it exist.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [time_sleep.apis_settle]
}

resource "google_pubsub_topic" "spec_events" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; the messages carry object names only
  name = local.names.spec_topic

  depends_on = [time_sleep.apis_settle]
}

resource "google_pubsub_topic_iam_member" "gcs_publishes_spec_events" {
  topic  = google_pubsub_topic.spec_events.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_storage_notification" "specs" {
  bucket             = google_storage_bucket.specs.name
  payload_format     = "JSON_API_V1"
  topic              = google_pubsub_topic.spec_events.id
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = "jobs/"

  depends_on = [google_pubsub_topic_iam_member.gcs_publishes_spec_events]
}

resource "google_pubsub_topic" "render_requests" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption, as for the spec bucket whose specs these requests carry
  name = local.names.render_topic

  depends_on = [time_sleep.apis_settle]
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption, as for the request topic it receives from
  name = local.names.dead_letter_topic

  depends_on = [time_sleep.apis_settle]
}

resource "google_pubsub_subscription" "render_requests" {
  name                       = local.names.render_subscription
  topic                      = google_pubsub_topic.render_requests.id
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  # The worker extends its lease while it renders; these only pace redelivery after a crash.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "dead_letter_keep" {
  name                       = "${local.names.dead_letter_topic}-keep"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

# Pub/Sub itself moves undeliverable requests: its service agent must publish to the
# dead-letter topic and acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks_render_requests" {
  subscription = google_pubsub_subscription.render_requests.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_topic" "render_reports" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; reports carry object names and measurements
  name = local.names.completion_topic

  depends_on = [time_sleep.apis_settle]
}

# A long scene's segment encodes, shared out by the task that holds its render request.
# Claims and their heartbeats live in Firestore, so an item whose worker died is taken
# over there; a redelivered message only finds it DONE or held, and is acknowledged.
resource "google_pubsub_topic" "segment_work" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption, as for the request topic whose scenes these items are part of
  name = local.names.segment_topic

  depends_on = [time_sleep.apis_settle]
}

resource "google_pubsub_subscription" "segment_work" {
  name                       = local.names.segment_subscription
  topic                      = google_pubsub_topic.segment_work.id
  ack_deadline_seconds       = 600
  message_retention_duration = "86400s" # an item outlives its scene's render by far less

  retry_policy {
    minimum_backoff = "5s"
    maximum_backoff = "60s"
  }

  expiration_policy {
    ttl = ""
  }
}
