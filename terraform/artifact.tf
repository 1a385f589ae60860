resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: the image holds open-source software and our code only; Google-managed encryption is enough
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "SceneRender renderer images"

  # Images older than 30 days are deleted, except the 10 most recent (KEEP wins over DELETE),
  # so the repository's storage stays bounded; the deployed image is one of the newest.
  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  depends_on = [time_sleep.apis_settle]
}
