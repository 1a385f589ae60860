output "spec_bucket" {
  description = "Drop jobs/<name>.json here to start a job."
  value       = google_storage_bucket.specs.name
}

output "render_bucket" {
  description = "Finished MP4s (renders/{job_id}/), deleted after retention_days."
  value       = google_storage_bucket.renders.name
}

output "media_bucket" {
  description = "Source media; `scenerender submit` uploads local inputs here."
  value       = google_storage_bucket.media.name
}

output "topics" {
  description = "Pub/Sub topics: spec notifications, render requests, reports, dead letters."
  value = {
    spec_events     = google_pubsub_topic.spec_events.name
    render_requests = google_pubsub_topic.render_requests.name
    render_reports  = google_pubsub_topic.render_reports.name
    dead_letter     = google_pubsub_topic.dead_letter.name
  }
}

output "renderer_job" {
  description = "The Cloud Run job that renders."
  value       = google_cloud_run_v2_job.renderer.name
}

output "http_api_url" {
  description = "URL of the HTTP API (IAM-authenticated)."
  value       = google_cloudfunctions2_function.functions["api"].url
}

output "functions" {
  description = "Name and URL of each 2nd-gen function, by entry point (the event functions' URLs accept only their Eventarc triggers)."
  value = {
    for key, fn in google_cloudfunctions2_function.functions :
    local.functions[key].entry_point => { name = fn.name, url = fn.url }
  }
}

output "sweeper" {
  description = "The sweep that launches for stranded render requests and ends jobs whose executions died: the Cloud Scheduler job (run it now with `gcloud scheduler jobs run NAME --location REGION`), its schedule, and the function it calls."
  value = {
    scheduler_job = google_cloud_scheduler_job.sweep.name
    schedule      = google_cloud_scheduler_job.sweep.schedule
    function      = google_cloudfunctions2_function.functions["sweeper"].name
  }
}

output "dead_letter_subscription" {
  description = "Render requests that exhausted max_delivery_attempts wait here for inspection or replay."
  value       = google_pubsub_subscription.dead_letter_keep.name
}

output "artifact_repository" {
  description = "The renderer image's repository (scripts/deploy.sh builds into it)."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.docker["images"].repository_id}"
}

output "service_accounts" {
  description = "The account of each component: each function's (KEY_function), each event trigger's (KEY_trigger), the renderer's, the builds' and Cloud Scheduler's."
  value = merge(
    { for key, email in local.function_accounts : "${key}_function" => email },
    { for key, trigger in local.event_triggers : "${key}_trigger" => trigger.account },
    {
      renderer          = google_service_account.renderer.email
      builder           = google_service_account.builder.email
      image_builder     = google_service_account.image_builder.email
      sweeper_scheduler = google_service_account.sweeper_scheduler.email
    },
  )
}

output "source_bucket" {
  description = "Function source archives, and the renderer's build context (scripts/deploy.sh stages it under cloudbuild/)."
  value       = google_storage_bucket.sources.name
}

output "image_build" {
  description = "What `gcloud builds submit` needs for the renderer image: the account it runs as (cloudbuild.yaml _BUILDER) and the staging directory of its source."
  value = {
    service_account = google_service_account.image_builder.email
    staging_dir     = "gs://${google_storage_bucket.sources.name}/cloudbuild"
  }
}

output "auth" {
  description = "End-user sign-in: the Identity Platform providers turned on and the domains sign-in pages may run on."
  value = {
    email_password     = var.auth.email_password
    google             = var.auth.google_client_id != ""
    authorized_domains = google_identity_platform_config.auth.authorized_domains
  }
}

output "alert_policies" {
  description = "Cloud Monitoring alert policies (dead letters, renderer errors, failed executions) by key."
  value       = { for key, policy in google_monitoring_alert_policy.pipeline : key => policy.name }
}

output "buckets" {
  description = "Every bucket of the deployment by role (scripts/deploy.sh prints it)."
  value = {
    specs   = google_storage_bucket.specs.name
    renders = google_storage_bucket.renders.name
    media   = google_storage_bucket.media.name
    sources = google_storage_bucket.sources.name
  }
}
