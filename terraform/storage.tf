# Three buckets with one job each. Only the spec bucket notifies anything, and nothing the
# pipeline writes goes into it, so an output can never start a job.

resource "google_storage_bucket" "specs" {
  # checkov:skip=CKV_GCP_62: object access is audited by Cloud Audit Logs (turn on Data Access logs for GCS); a log bucket adds idle cost
  name                        = local.names.spec_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 10
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "renders" {
  # checkov:skip=CKV_GCP_62: downloads go through signed URLs; Cloud Audit Logs (Data Access) record them when turned on
  # checkov:skip=CKV_GCP_78: renders are reproducible from their spec and expire after retention_days; versions would only add cost
  name                        = local.names.render_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age            = var.retention_days
      matches_prefix = ["renders/", "cache/", "previews/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "media" {
  # checkov:skip=CKV_GCP_62: uploads are recorded by Cloud Audit Logs (Data Access) when turned on; a log bucket adds idle cost
  # checkov:skip=CKV_GCP_78: media is written once under content-hash names; overwrites do not happen
  name                        = local.names.media_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "sources" {
  # checkov:skip=CKV_GCP_62: holds only function source archives written by Terraform
  # checkov:skip=CKV_GCP_78: archives are named by content hash, never overwritten
  name                        = local.names.source_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  depends_on = [google_project_service.apis]
}
