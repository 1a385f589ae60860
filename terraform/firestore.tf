# The job history. Kept by default: delete protection on, and a destroy only forgets the
# database (ABANDON). A teardown that deletes it sets teardown.delete_firestore (see
# docs/deploy.md): DELETE then removes it, and the next apply can make it again (after
# ABANDON it would meet 409, the database still being there).
resource "google_firestore_database" "default" {
  name                    = "(default)"
  location_id             = var.firestore_location
  type                    = "FIRESTORE_NATIVE"
  delete_protection_state = var.teardown.delete_firestore ? "DELETE_PROTECTION_DISABLED" : "DELETE_PROTECTION_ENABLED"
  deletion_policy         = var.teardown.delete_firestore ? "DELETE" : var.firestore_deletion_policy

  depends_on = [time_sleep.apis_settle]
}

# End users read only their own jobs; nobody writes from a client (see ../firestore.rules).
# A ruleset is immutable, so a change of the rules makes a new one, and the release (whose
# ruleset_name cannot change in place) is replaced to point at it: the pattern of the
# provider's own example. create_before_destroy makes the new ruleset first, so the old one
# is deleted only after no release serves it; between the release's delete and create
# (seconds) Firestore has no rules for clients and refuses them, which fails closed.
resource "google_firebaserules_ruleset" "firestore" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = file("${path.module}/../firestore.rules")
    }
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_firestore_database.default]
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"

  lifecycle {
    replace_triggered_by = [google_firebaserules_ruleset.firestore]
  }
}

# The queries the job documents serve: a user's jobs newest first, a batch by status,
# the sweep for jobs stuck in a status, and the API's query of a user's queued and running
# jobs (cloud/owner_slots.py, the per-owner cap).
locals {
  job_indexes = {
    owner_created = [["owner_uid", "ASCENDING"], ["created_at", "DESCENDING"]]
    batch_status  = [["batch_id", "ASCENDING"], ["status", "ASCENDING"]]
    status_update = [["status", "ASCENDING"], ["updated_at", "ASCENDING"]]
    owner_status  = [["owner_uid", "ASCENDING"], ["status", "ASCENDING"]]
  }
}

resource "google_firestore_index" "jobs" {
  for_each   = local.job_indexes
  database   = google_firestore_database.default.name
  collection = local.names.jobs_collection

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value[0]
      order      = fields.value[1]
    }
  }
}

# Work-item claims (render_jobs/{job}/items/{key}) matter only while their scene renders:
# Firestore deletes each one after its expire_at (set a day after its last claim).
resource "google_firestore_field" "item_expiry" {
  database   = google_firestore_database.default.name
  collection = "items"
  field      = "expire_at"

  ttl_config {}

  # A timestamp nobody queries on: no single-field index to maintain for it.
  index_config {}
}
