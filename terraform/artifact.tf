resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: the image holds open-source software and our code only; Google-managed encryption is enough
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "SceneRender renderer images"

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  depends_on = [google_project_service.apis]
}
