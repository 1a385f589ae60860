# The two Docker repositories: the renderer's images (scripts/deploy.sh builds into it; its
# id is name_prefix) and the functions' build images (build_config.docker_repository in
# functions.tf: without it Cloud Functions makes and uses gcf-artifacts, which would need a
# grant on a repository Terraform does not own). Each builder may write to its own alone
# (build.tf).
resource "google_artifact_registry_repository" "docker" {
  # checkov:skip=CKV_GCP_84: the images hold open-source software and our code only; Google-managed encryption is enough
  for_each = {
    images    = { id = var.name_prefix, description = "SceneRender renderer images" }
    functions = { id = "${var.name_prefix}-functions", description = "SceneRender functions' build images (written by Cloud Functions' builds)" }
  }
  location      = var.region
  repository_id = each.value.id
  format        = "DOCKER"
  description   = each.value.description

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
