terraform {
  required_version = ">= 1.5, < 2.0"

  # State lives in a GCS bucket that scripts/deploy.sh makes (versioned) and names with
  # -backend-config=bucket=... -backend-config=prefix=...; nothing about it is hard-coded here.
  backend "gcs" {}

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    # google_project_service_identity exists only in the beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }
}

# user_project_override + billing_project: APIs that bill the caller's quota project (the
# Firebase Rules and Identity Toolkit APIs among them) refuse end-user credentials without
# one; with these the operator's `gcloud auth application-default login` works as it is.
provider "google" {
  project               = var.project_id
  region                = var.region
  user_project_override = true
  billing_project       = var.project_id
}

provider "google-beta" {
  project               = var.project_id
  region                = var.region
  user_project_override = true
  billing_project       = var.project_id
}
