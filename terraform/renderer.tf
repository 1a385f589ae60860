# The renderer is a Cloud Run job that drains the render-request and segment-work
# subscriptions and exits when it is idle. The tasks of one execution share the queued
# scenes, and a long scene's segment encodes (scenerender.pipeline.workitems). The spec function, the
# sweeper and a task handing a request back start executions (jobs.run with a taskCount
# override: a task per queued scene, up to parallelism; sweeper.tf). Idle cost is zero:
# nothing runs between renders.
resource "google_cloud_run_v2_job" "renderer" {
  name                = local.names.renderer_job
  location            = var.region
  deletion_protection = false

  template {
    task_count  = var.renderer.task_count
    parallelism = var.renderer.parallelism

    template {
      service_account = google_service_account.renderer.email
      timeout         = "${var.renderer.timeout_s}s"
      max_retries     = var.renderer.max_retries

      containers {
        image = var.renderer_image

        resources {
          limits = {
            cpu    = var.renderer.cpu
            memory = var.renderer.memory
          }
        }

        dynamic "env" {
          for_each = merge(local.common_env, {
            SCENERENDER_RENDER_TIMEOUT_S   = tostring(var.renderer.timeout_s - 30)
            SCENERENDER_SPLIT_MIN_SEGMENTS = tostring(var.renderer.parallelism > 1 ? var.renderer.split_min_segments : 0) # launches ask for at most parallelism tasks: with one, nobody to share with
            SCENERENDER_IDLE_EXIT_S        = tostring(var.renderer.idle_exit_s)
            SCENERENDER_TASK_TIMEOUT_S     = tostring(var.renderer.timeout_s) # a task takes no render it cannot finish
            SCENERENDER_CPUS               = var.renderer.cpu                 # the limit, which os.cpu_count() inside the container does not report
            SCENERENDER_MEMORY_MB          = tostring(tonumber(trimsuffix(var.renderer.memory, "Gi")) * 1024)
          })
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  depends_on = [time_sleep.apis_settle]
}
