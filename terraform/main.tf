data "google_project" "this" {
  project_id = var.project_id

  depends_on = [time_sleep.apis_settle]
}

locals {
  prefix = var.name_prefix

  names = {
    spec_bucket          = "${var.project_id}-${var.name_prefix}-specs"
    render_bucket        = "${var.project_id}-${var.name_prefix}-renders"
    media_bucket         = "${var.project_id}-${var.name_prefix}-media"
    source_bucket        = "${var.project_id}-${var.name_prefix}-sources"
    spec_topic           = "${var.name_prefix}-spec-events"
    render_topic         = "${var.name_prefix}-render-requests"
    render_subscription  = "${var.name_prefix}-render-requests-worker"
    completion_topic     = "${var.name_prefix}-render-reports"
    dead_letter_topic    = "${var.name_prefix}-render-dead-letter"
    segment_topic        = "${var.name_prefix}-segment-work"
    segment_subscription = "${var.name_prefix}-segment-work-worker"
    renderer_job         = "${var.name_prefix}-renderer"
    jobs_collection      = "render_jobs"
  }

  # The names are scenerender.settings.Settings fields (SCENERENDER_<FIELD>); the tests read
  # them from that class, so the code and this deployment cannot drift apart.
  common_env = {
    SCENERENDER_PROJECT_ID           = var.project_id
    SCENERENDER_REGION               = var.region
    SCENERENDER_SPEC_BUCKET          = local.names.spec_bucket
    SCENERENDER_RENDER_BUCKET        = local.names.render_bucket
    SCENERENDER_MEDIA_BUCKET         = local.names.media_bucket
    SCENERENDER_SPEC_TOPIC           = local.names.spec_topic
    SCENERENDER_RENDER_TOPIC         = local.names.render_topic
    SCENERENDER_RENDER_SUBSCRIPTION  = local.names.render_subscription
    SCENERENDER_COMPLETION_TOPIC     = local.names.completion_topic
    SCENERENDER_DEAD_LETTER_TOPIC    = local.names.dead_letter_topic
    SCENERENDER_SEGMENT_TOPIC        = local.names.segment_topic
    SCENERENDER_SEGMENT_SUBSCRIPTION = local.names.segment_subscription
    SCENERENDER_RENDERER_JOB         = local.names.renderer_job
    SCENERENDER_LAUNCH_PARALLELISM   = tostring(var.renderer.parallelism) # tasks one launch asks for, at most
    SCENERENDER_JOBS_COLLECTION      = local.names.jobs_collection
    SCENERENDER_SIGNED_URL_TTL_S     = tostring(var.signed_url_ttl_s)
    SCENERENDER_MAX_ATTEMPTS         = tostring(var.max_delivery_attempts)
    SCENERENDER_ALLOWED_GS_BUCKETS   = join(",", concat([local.names.media_bucket], var.allowed_input_buckets))

    # In the media bucket a user's spec reads only users/{uid}/; the extra buckets are shared whole.
    SCENERENDER_SHARED_MEDIA_PREFIXES = join(",", [for b in var.allowed_input_buckets : "gs://${b}/"])
  }
}
