# The sweeper (scenerender.pipeline.sweeper): Cloud Scheduler calls it every few minutes, whether or
# not any renderer execution is alive, so no job stays QUEUED or RUNNING with nothing working
# on it. It launches executions for queued requests whose execution ended (or never started)
# and ends jobs whose executions died for good FAILED/TIMEOUT with the reason.

locals {
  # Often enough that a lost execution costs a user minutes, rarely enough to cost nothing.
  sweep_schedule = "*/2 * * * *"
}

resource "google_service_account" "sweeper_function" {
  account_id   = "${local.prefix}-sweep-fn"
  display_name = "SceneRender sweeper"
  depends_on   = [time_sleep.apis_settle]
}

resource "google_service_account" "sweeper_scheduler" {
  account_id   = "${local.prefix}-sweep-sch"
  display_name = "SceneRender Cloud Scheduler caller of the sweeper"
  depends_on   = [time_sleep.apis_settle]
}

# Launching is jobs.run with a taskCount override (a batch gets a task per scene, up to the
# job's parallelism), and checking an execution is executions.get. roles/run.invoker lacks
# runWithOverrides and roles/run.developer can change the job, so these three, on the job only
# (its executions inherit the job's policy).
resource "google_project_iam_custom_role" "renderer_launcher" {
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_renderer_launcher"
  title       = "SceneRender renderer launcher"
  description = "Run the renderer job with a task count, and read its executions."
  permissions = ["run.jobs.run", "run.jobs.runWithOverrides", "run.executions.get"]
  depends_on  = [time_sleep.apis_settle]
}

# The spec function launches for new requests, the sweeper for stranded ones, and a renderer
# task for a request it hands back (too little task time left for it).
resource "google_cloud_run_v2_job_iam_member" "launchers" {
  for_each = {
    spec     = google_service_account.spec_function.member
    sweeper  = google_service_account.sweeper_function.member
    renderer = google_service_account.renderer.member
  }
  name     = google_cloud_run_v2_job.renderer.name
  location = var.region
  role     = google_project_iam_custom_role.renderer_launcher.id
  member   = each.value
}

resource "google_project_iam_member" "sweeper_writes_jobs" {
  # Firestore has no per-collection IAM; the sweeper reads and ends job documents.
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.sweeper_function.member
}

# The function itself is local.functions.sweeper (functions.tf).

# Only the scheduler's account may call it (no allUsers).
resource "google_cloud_run_service_iam_member" "scheduler_invokes_sweeper" {
  location = var.region
  service  = google_cloudfunctions2_function.functions["sweeper"].name
  role     = "roles/run.invoker"
  member   = google_service_account.sweeper_scheduler.member
}

resource "google_cloud_scheduler_job" "sweep" {
  name        = "${local.prefix}-sweep"
  region      = var.region
  description = "Launch for stranded render requests; end jobs whose executions died (scenerender.pipeline.sweeper)."
  schedule    = local.sweep_schedule
  time_zone   = "Etc/UTC"

  retry_config {
    retry_count = 0 # the next tick is the retry
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.functions["sweeper"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.sweeper_scheduler.email
      audience              = google_cloudfunctions2_function.functions["sweeper"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invokes_sweeper]
}
