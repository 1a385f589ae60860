# End users sign in with Identity Platform (Firebase Auth): the HTTP API verifies their
# Firebase ID tokens, and firestore.rules reads request.auth.uid. Email/password and Google
# sign-in are switched by var.auth. Identity Platform needs billing on the project; a
# project where it was already turned on by hand is adopted with
#   terraform import google_identity_platform_config.auth projects/PROJECT/config
# (docs/deploy.md).
resource "google_identity_platform_config" "auth" {
  project = var.project_id

  # Where sign-in pages may run: the web origins' hosts, and localhost for development.
  authorized_domains = distinct(concat(
    ["localhost", "${var.project_id}.firebaseapp.com", "${var.project_id}.web.app"],
    [for origin in var.web_origins : regex("^https?://([^:/]+)", origin)[0]],
  ))

  sign_in {
    allow_duplicate_emails = false

    email {
      enabled           = var.auth.email_password
      password_required = true
    }
  }

  depends_on = [time_sleep.apis_settle]
}

# Google sign-in needs an OAuth client of the operator's (APIs & Services > Credentials);
# it is not made here because OAuth clients for external users cannot be made by API.
resource "google_identity_platform_default_supported_idp_config" "google" {
  count = var.auth.google_client_id == "" ? 0 : 1

  project       = var.project_id
  idp_id        = "google.com"
  client_id     = var.auth.google_client_id
  client_secret = var.google_oauth_client_secret
  enabled       = true

  depends_on = [google_identity_platform_config.auth]
}
