variable "project_id" {
  description = "GCP project that holds the whole pipeline."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid GCP project id."
  }
}

variable "region" {
  description = "Region of the buckets, functions, Cloud Run job and Artifact Registry."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore database (a region or a multi-region such as eur3)."
  type        = string
  default     = "eur3"

  validation {
    condition     = can(regex("^([a-z]+-[a-z]+[0-9]|eur3|nam5|nam7)$", var.firestore_location))
    error_message = "firestore_location must be a region (europe-west1) or a Firestore multi-region (eur3, nam5, nam7)."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name, so several deployments can share a project."
  type        = string
  default     = "scenerender"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}$", var.name_prefix))
    error_message = "name_prefix: lowercase letters, digits and dashes, 2-19 characters, starting with a letter."
  }
}

variable "renderer_image" {
  description = "Renderer image (built from renderer_image/Dockerfile), e.g. REGION-docker.pkg.dev/PROJECT/scenerender/renderer:TAG."
  type        = string

  validation {
    condition     = length(var.renderer_image) > 0 && !endswith(var.renderer_image, ":latest")
    error_message = "renderer_image must name a pinned tag or digest, not :latest."
  }
}

variable "signed_url_ttl_s" {
  description = "Lifetime of download URLs in seconds (V4 signed URLs allow 7 days at most)."
  type        = number
  default     = 86400

  validation {
    condition     = var.signed_url_ttl_s >= 60 && var.signed_url_ttl_s <= 604800
    error_message = "signed_url_ttl_s must be between 60 and 604800 (7 days)."
  }
}

variable "renderer" {
  description = "Cloud Run job sizing and scale-out: CPU, memory, per-task timeout, retries, the most tasks one launch asks for (parallelism: a launch for N queued scenes asks for min(N, parallelism)), the tasks of an execution started by hand without overrides (task_count), the fewest segment encodes a scene shares with the other tasks (0: never; only with parallelism > 1), and how long an idle task waits for work before it exits."
  type = object({
    cpu                = optional(string, "4")
    memory             = optional(string, "8Gi")
    timeout_s          = optional(number, 3600)
    max_retries        = optional(number, 1)
    parallelism        = optional(number, 1)
    task_count         = optional(number, 1)
    split_min_segments = optional(number, 4)
    idle_exit_s        = optional(number, 20)
  })
  default = {}

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.renderer.cpu)
    error_message = "renderer.cpu must be 1, 2, 4, 6 or 8."
  }

  validation {
    condition     = var.renderer.timeout_s >= 60 && var.renderer.timeout_s <= 86400
    error_message = "renderer.timeout_s must be between 60 s and 24 h."
  }

  validation {
    condition     = var.renderer.max_retries >= 0 && var.renderer.max_retries <= 10 && var.renderer.parallelism >= 1 && var.renderer.task_count >= 1
    error_message = "renderer.max_retries must be 0..10; parallelism and task_count at least 1."
  }

  validation {
    condition     = can(regex("^[1-9][0-9]*Gi$", var.renderer.memory))
    error_message = "renderer.memory must be whole GiB, e.g. \"8Gi\" (the renderer sizes its encodes from it)."
  }

  validation {
    condition     = var.renderer.split_min_segments >= 0 && var.renderer.idle_exit_s >= 5 && var.renderer.idle_exit_s <= 600
    error_message = "renderer.split_min_segments must be 0 or more; renderer.idle_exit_s between 5 and 600 s."
  }
}

variable "retention_days" {
  description = "Days finished renders (renders/) and cached segments (cache/) are kept before deletion."
  type        = number
  default     = 30

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 3650
    error_message = "retention_days must be between 1 and 3650."
  }
}

variable "spec_copy_days" {
  description = "Days the API's copies of submitted specs (submitted/ in the spec bucket) are kept: a job can be re-rendered or promoted from the web page for this long."
  type        = number
  default     = 365

  validation {
    condition     = var.spec_copy_days >= 1 && var.spec_copy_days <= 3650
    error_message = "spec_copy_days must be between 1 and 3650."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of a render request before it goes to the dead-letter topic (Pub/Sub allows 5..100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "allowed_input_buckets" {
  description = "Extra buckets inputs may be read from (the media bucket is always allowed)."
  type        = list(string)
  default     = []
}

variable "web_origins" {
  description = "Origins of the web pages that use the pipeline (e.g. https://films.example.com): CORS on the render and media buckets, and authorized sign-in domains. Empty: no browser access."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.web_origins : can(regex("^(https://[a-z0-9.-]+(:[0-9]+)?|http://(localhost|127\\.0\\.0\\.1)(:[0-9]+)?)$", o))])
    error_message = "web_origins: each an origin without path, https:// (http:// only for localhost), e.g. https://films.example.com."
  }
}

variable "auth" {
  description = "End-user sign-in (Identity Platform): email/password on or off, and the OAuth client id of Google sign-in (empty: Google sign-in off; its secret is google_oauth_client_secret)."
  type = object({
    email_password   = optional(bool, true)
    google_client_id = optional(string, "")
  })
  default = {}

  validation {
    condition     = var.auth.google_client_id == "" || endswith(var.auth.google_client_id, ".apps.googleusercontent.com")
    error_message = "auth.google_client_id must be an OAuth client id (...apps.googleusercontent.com) or empty."
  }
}

variable "google_oauth_client_secret" {
  description = "Secret of the OAuth client in auth.google_client_id (pass it as TF_VAR_google_oauth_client_secret, never on the command line)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "firestore_deletion_policy" {
  description = "What `terraform destroy` does to the Firestore database: ABANDON (default: forget it, keep the data) or DELETE. teardown.delete_firestore overrides it."
  type        = string
  default     = "ABANDON"

  validation {
    condition     = contains(["ABANDON", "DELETE"], var.firestore_deletion_policy)
    error_message = "firestore_deletion_policy must be ABANDON or DELETE."
  }
}

variable "teardown" {
  description = "Set both to true and apply before `terraform destroy` to remove everything (scripts/deploy.sh --destroy does): buckets are deleted with their objects, and the Firestore database loses its delete protection and is deleted."
  type = object({
    force_destroy_buckets = optional(bool, false)
    delete_firestore      = optional(bool, false)
  })
  default = {}
}

variable "alert_emails" {
  description = "Email addresses told when a render request is dead-lettered or a renderer execution fails. Empty: the alert policies still record incidents in Cloud Monitoring."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alert_emails must be email addresses."
  }
}

variable "api_public" {
  description = "Let every caller reach the HTTP API, which checks each request's Firebase ID token itself (browsers cannot pass Cloud Run's IAM check). false: only callers granted roles/run.invoker."
  type        = bool
  default     = true
}
