# Builds run as their own accounts, never as the default Cloud Build or compute account:
#   builder        builds the functions' images (Cloud Functions' build, build_config below)
#   image_builder  builds the renderer image (renderer_image/cloudbuild.yaml, scripts/deploy.sh)
# Neither holds roles/cloudbuild.builds.builder: that role reads and writes objects in every
# bucket of the project (the spec bucket too, where a write starts a job).

resource "google_service_account" "builder" {
  account_id   = "${local.prefix}-builder"
  display_name = "SceneRender function builds"

  depends_on = [time_sleep.apis_settle]
}

resource "google_service_account" "image_builder" {
  account_id   = "${local.prefix}-image-builder"
  display_name = "SceneRender renderer image builds"

  depends_on = [time_sleep.apis_settle]
}

# Build logs: IAM has no level narrower than the project for writing logs.
resource "google_project_iam_member" "build_log_writers" {
  for_each = {
    builder       = google_service_account.builder.member
    image_builder = google_service_account.image_builder.member
  }
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = each.value
}

resource "google_artifact_registry_repository_iam_member" "builder_pushes_function_images" {
  location   = google_artifact_registry_repository.docker["functions"].location
  repository = google_artifact_registry_repository.docker["functions"].name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.builder.member
}

resource "google_artifact_registry_repository_iam_member" "image_builder_pushes_renderer_images" {
  location   = google_artifact_registry_repository.docker["images"].location
  repository = google_artifact_registry_repository.docker["images"].name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.image_builder.member
}

# Both builds read their source from the sources bucket: the functions' archive
# (functions.tf), and the renderer's build context that deploy.sh stages under cloudbuild/.
resource "google_storage_bucket_iam_member" "builders_read_sources" {
  for_each = {
    builder       = google_service_account.builder.member
    image_builder = google_service_account.image_builder.member
  }
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = each.value
}

# Cloud Functions copies the archive into its own bucket, gcf-v2-sources-NUMBER-REGION, and
# the build reads it from there (the documented role for a custom build account is
# storage.objectAdmin). That bucket is made by Cloud Functions, not here, so the grant is
# project-level, held to that one bucket by a condition.
resource "google_project_iam_member" "builder_reads_staged_sources" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = google_service_account.builder.member

  condition {
    title       = "gcf-v2-sources only"
    description = "Cloud Functions' staging bucket of this region; no other bucket."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

# IAM grants take up to a few minutes to reach every Google service; the provider's own
# example for a function with a custom build account waits 60 s after the grants before
# the function, or its first build fails with a permission error. The Eventarc and Pub/Sub
# service agents, made just before, are in the same state.
resource "time_sleep" "build_iam_settle" {
  create_duration = "60s"

  depends_on = [
    google_project_iam_member.build_log_writers,
    google_artifact_registry_repository_iam_member.builder_pushes_function_images,
    google_storage_bucket_iam_member.builders_read_sources,
    google_project_iam_member.builder_reads_staged_sources,
    google_project_service_identity.agents,
  ]
}

# What scripts/deploy.sh applies first (-target), before it builds the renderer image: the
# repository the image goes to, and the account that builds it with its grants settled.
resource "time_sleep" "image_builder_ready" {
  create_duration = "60s"

  depends_on = [
    google_project_iam_member.build_log_writers,
    google_artifact_registry_repository_iam_member.image_builder_pushes_renderer_images,
    google_storage_bucket_iam_member.builders_read_sources,
  ]
}
