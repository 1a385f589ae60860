# Three buckets with one job each. Only the spec bucket notifies anything, and nothing the
# pipeline writes goes into it, so an output can never start a job.

resource "google_storage_bucket" "specs" {
  # checkov:skip=CKV_GCP_62: object access is audited by Cloud Audit Logs (turn on Data Access logs for GCS); a log bucket adds idle cost
  name                        = local.names.spec_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.teardown.force_destroy_buckets

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

  # The API's copies of the spec objects it wrote, one per generation (submitted/jobs/ID/GEN.json):
  # what GET /?job_id= gives a job's owner to re-render or promote it from any browser. Each is
  # written once under a name of its own, so num_newer_versions never ends one; they go by age.
  # ANY state: the first deletion of a live object in this versioned bucket leaves a noncurrent
  # version, which the same age then removes too.
  lifecycle_rule {
    condition {
      age            = var.spec_copy_days
      matches_prefix = ["submitted/"]
      with_state     = "ANY"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [time_sleep.apis_settle]
}

resource "google_storage_bucket" "renders" {
  # checkov:skip=CKV_GCP_62: downloads go through signed URLs; Cloud Audit Logs (Data Access) record them when turned on
  # checkov:skip=CKV_GCP_78: renders are reproducible from their spec and expire after retention_days; versions would only add cost
  name                        = local.names.render_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.teardown.force_destroy_buckets

  # A web page fetches or streams a finished render through its signed URL: the browser
  # needs CORS to read the response (and Range requests to seek in a <video>). No origin is
  # allowed unless configured; the signature, not CORS, is what keeps others out.
  dynamic "cors" {
    for_each = length(var.web_origins) > 0 ? [1] : []
    content {
      origin          = var.web_origins
      method          = ["GET", "HEAD"]
      response_header = ["Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "Range", "ETag"]
      max_age_seconds = 3600
    }
  }

  lifecycle_rule {
    condition {
      age            = var.retention_days
      matches_prefix = ["renders/", "cache/", "previews/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [time_sleep.apis_settle]
}

resource "google_storage_bucket" "media" {
  # checkov:skip=CKV_GCP_62: uploads are recorded by Cloud Audit Logs (Data Access) when turned on; a log bucket adds idle cost
  # checkov:skip=CKV_GCP_78: media is written once under content-hash names; overwrites do not happen
  name                        = local.names.media_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.teardown.force_destroy_buckets

  # Browsers upload inputs with a signed PUT URL (POST /uploads on the HTTP API), sending the
  # headers the signature covers (Content-Type, x-goog-content-length-range).
  dynamic "cors" {
    for_each = length(var.web_origins) > 0 ? [1] : []
    content {
      origin          = var.web_origins
      method          = ["PUT"]
      response_header = ["Content-Type", "x-goog-content-length-range", "ETag"]
      max_age_seconds = 3600
    }
  }

  depends_on = [time_sleep.apis_settle]
}

resource "google_storage_bucket" "sources" {
  # checkov:skip=CKV_GCP_62: holds only function source archives written by Terraform and build contexts staged by deploy.sh
  # checkov:skip=CKV_GCP_78: archives are named by content hash, never overwritten
  name                        = local.names.source_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.teardown.force_destroy_buckets

  depends_on = [time_sleep.apis_settle]
}
