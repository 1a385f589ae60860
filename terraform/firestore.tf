resource "google_firestore_database" "default" {
  name                    = "(default)"
  location_id             = var.firestore_location
  type                    = "FIRESTORE_NATIVE"
  delete_protection_state = "DELETE_PROTECTION_ENABLED"

  depends_on = [google_project_service.apis]
}

# End users read only their own jobs; nobody writes from a client (see ../firestore.rules).
resource "google_firebaserules_ruleset" "firestore" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = file("${path.module}/../firestore.rules")
    }
  }

  depends_on = [google_firestore_database.default]
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore"
  ruleset_name = google_firebaserules_ruleset.firestore.name
}

# The queries the job documents serve: a user's jobs newest first, a batch by status,
# and the sweep for jobs stuck in a status.
locals {
  job_indexes = {
    owner_created = [["owner_uid", "ASCENDING"], ["created_at", "DESCENDING"]]
    batch_status  = [["batch_id", "ASCENDING"], ["status", "ASCENDING"]]
    status_update = [["status", "ASCENDING"], ["updated_at", "ASCENDING"]]
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
