# Every API a resource here calls, enabled before anything uses it. Enabling is eventually
# consistent: a call right after `services.enable` returns can still be refused, so what is
# made directly on top of an API waits for time_sleep.apis_settle, and everything else waits
# through its references (tests/unit/test_terraform.py checks that every resource reaches
# google_project_service.apis, and that each resource type's API is in this list).
#
# serviceusage and cloudresourcemanager are enabled by scripts/deploy.sh before the first
# apply: Terraform needs them to enable the others.
locals {
  apis = toset([
    "artifactregistry.googleapis.com",     # the renderer image, the functions' build images
    "cloudbuild.googleapis.com",           # the renderer image and the functions' builds
    "cloudfunctions.googleapis.com",       # the four functions (2nd gen)
    "cloudresourcemanager.googleapis.com", # project IAM grants, the project data source
    "cloudscheduler.googleapis.com",       # the sweeper's schedule (sweeper.tf)
    "eventarc.googleapis.com",             # the event functions' triggers
    "firebaserules.googleapis.com",        # the Firestore security rules
    "firestore.googleapis.com",            # job documents
    "iam.googleapis.com",                  # service accounts, the custom roles
    "iamcredentials.googleapis.com",       # signBlob: signed download and upload URLs
    "identitytoolkit.googleapis.com",      # Identity Platform (Firebase Auth): end users' ID tokens
    "logging.googleapis.com",              # the log-based alert metrics
    "monitoring.googleapis.com",           # alert policies and notification channels
    "pubsub.googleapis.com",               # topics and subscriptions
    "run.googleapis.com",                  # the renderer job; 2nd-gen functions run on it
    "serviceusage.googleapis.com",         # the service identities below
    "storage.googleapis.com",              # the buckets
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project = var.project_id
  service = each.value
  # Other deployments in the project may use the same APIs; destroying this one must not
  # switch them off.
  disable_on_destroy = false
}

resource "time_sleep" "apis_settle" {
  create_duration = "60s"
  triggers        = { apis = join(",", sort(local.apis)) }

  depends_on = [google_project_service.apis]
}

# Service agents are made lazily by Google on first use; a grant to one that does not exist
# yet fails the apply. google_project_service_identity makes each one now (beta provider only).
resource "google_project_service_identity" "agents" {
  provider = google-beta
  for_each = toset(["pubsub.googleapis.com", "eventarc.googleapis.com"])

  project = var.project_id
  service = each.value

  depends_on = [time_sleep.apis_settle]
}

locals {
  pubsub_agent   = "serviceAccount:${google_project_service_identity.agents["pubsub.googleapis.com"].email}"
  eventarc_agent = "serviceAccount:${google_project_service_identity.agents["eventarc.googleapis.com"].email}"
}
