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
  value       = google_cloudfunctions2_function.api.url
}

output "functions" {
  description = "Name and URL of each 2nd-gen function (the event functions' URLs accept only their Eventarc triggers)."
  value = {
    for key, fn in {
      on_spec_uploaded        = google_cloudfunctions2_function.spec
      on_render_reported      = google_cloudfunctions2_function.report
      on_render_dead_lettered = google_cloudfunctions2_function.dead_letter
      http_api                = google_cloudfunctions2_function.api
    } : key => { name = fn.name, url = fn.url }
  }
}

output "dead_letter_subscription" {
  description = "Render requests that exhausted max_delivery_attempts wait here for inspection or replay."
  value       = google_pubsub_subscription.dead_letter_keep.name
}

output "artifact_repository" {
  description = "Push the renderer image here."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "service_accounts" {
  description = "The account of each component."
  value = {
    spec_function        = google_service_account.spec_function.email
    report_function      = google_service_account.report_function.email
    api_function         = google_service_account.api_function.email
    renderer             = google_service_account.renderer.email
    spec_trigger         = google_service_account.spec_trigger.email
    report_trigger       = google_service_account.report_trigger.email
    dead_letter_function = google_service_account.dead_letter_function.email
    dead_letter_trigger  = google_service_account.dead_letter_trigger.email
    builder              = google_service_account.builder.email
  }
}
