# Alerts on the two ways a job ends without its render: a render request Pub/Sub gave up on
# (dead-lettered after max_delivery_attempts) and a renderer execution that failed.

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  display_name = "SceneRender alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [time_sleep.apis_settle]
}

# Log-based metrics, each a count of matching log lines (DELTA, INT64).
locals {
  log_metrics = {
    # One request to the dead-letter function per message Pub/Sub moved to the dead-letter
    # topic (a retried delivery counts again, which an alert on "more than zero" does not mind).
    dead_letters = {
      name        = "dead_lettered_requests"
      description = "Render requests delivered to the dead-letter function (their jobs end FAILED)."
      filter      = <<-EOT
        resource.type="cloud_run_revision"
        resource.labels.service_name="${google_cloudfunctions2_function.functions["dead_letter"].name}"
        log_id("run.googleapis.com/requests")
      EOT
    }
    # Error lines of the renderer: its own (a render that failed, with the job id) and Cloud
    # Run's for a task that exited non-zero or ran out of time or memory.
    renderer_errors = {
      name        = "renderer_errors"
      description = "Log lines of severity ERROR or worse from the renderer job's tasks."
      filter      = <<-EOT
        resource.type="cloud_run_job"
        resource.labels.job_name="${google_cloud_run_v2_job.renderer.name}"
        severity>=ERROR
      EOT
    }
  }
}

resource "google_logging_metric" "pipeline" {
  for_each    = local.log_metrics
  name        = "${local.prefix}/${each.value.name}"
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# A new log-based metric's descriptor takes a moment to be known to Cloud Monitoring; an
# alert policy created at once on it can be refused ("cannot find metric").
resource "time_sleep" "metrics_settle" {
  create_duration = "30s"

  depends_on = [google_logging_metric.pipeline]
}

locals {
  alerts = {
    dead_letters = {
      name   = "SceneRender: render requests dead-lettered"
      filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.pipeline["dead_letters"].name}\" AND resource.type=\"cloud_run_revision\""
      doc    = "A render request ran out of deliveries; its job is FAILED with the last error. The request is kept in the ${google_pubsub_subscription.dead_letter_keep.name} subscription for 7 days (docs/deploy.md: Alerts)."
    }
    renderer_errors = {
      name   = "SceneRender: renderer errors"
      filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.pipeline["renderer_errors"].name}\" AND resource.type=\"cloud_run_job\""
      doc    = "The renderer logged an error: a failed render or a task that died. See the job's executions in Cloud Run (docs/deploy.md: Alerts)."
    }
    failed_executions = {
      name   = "SceneRender: renderer executions failed"
      filter = "metric.type=\"run.googleapis.com/job/completed_execution_count\" AND resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${google_cloud_run_v2_job.renderer.name}\" AND metric.labels.result=\"failed\""
      doc    = "An execution of the renderer job ended failed (a task exhausted its retries). Jobs it held are swept to FAILED or TIMEOUT (docs/deploy.md: Alerts)."
    }
  }
}

resource "google_monitoring_alert_policy" "pipeline" {
  for_each = local.alerts

  display_name          = each.value.name
  combiner              = "OR"
  notification_channels = [for channel in google_monitoring_notification_channel.email : channel.id]

  conditions {
    display_name = "${each.value.name} (any in 5 min)"

    condition_threshold {
      filter          = each.value.filter
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [time_sleep.metrics_settle]
}
