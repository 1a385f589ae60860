#!/usr/bin/env bash
# Deploy SceneRender to a Google Cloud project, or tear it down. One command, safe to rerun:
#
#   scripts/deploy.sh [--dry-run] PROJECT REGION [-- TERRAFORM_ARGS...]
#   scripts/deploy.sh [--dry-run] --destroy PROJECT REGION [-- TERRAFORM_ARGS...]
#
# Deploy: (1) enables the APIs Terraform itself needs, (2) makes the versioned state bucket
# PROJECT-tfstate, (3) `terraform init` against it, (4) applies the bootstrap targets (the
# APIs, the renderer's Artifact Registry repository, its build account and grants), (5)
# builds the renderer image with Cloud Build unless that image is already there, (6) applies
# everything and (7) prints the API URL and the buckets. Every step finds what is already
# there and leaves it, so a second run changes nothing; the image is tagged by the hash of
# what goes into it, so an unchanged tree is not built again.
#
# --destroy: applies teardown (buckets deletable with their objects, Firestore without
# delete protection and DELETE), destroys, then removes what Terraform did not make: Cloud
# Functions' staging buckets and the state bucket. The enabled APIs stay (free).
#
# --dry-run prints the commands a run on a fresh project would make, one per line, and runs
# none of them (tests/unit/test_deploy_script.py checks their order).
#
# Environment: NAME_PREFIX (default scenerender, the name_prefix variable); extra Terraform
# arguments after `--`, e.g. -- -var-file=prod.tfvars or -var 'web_origins=["https://a.b"]'.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/deploy.sh [--dry-run] [--destroy] PROJECT REGION [-- TERRAFORM_ARGS...]" >&2
  exit 2
}

dry_run=0
destroy=0
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --destroy) destroy=1 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    -*) echo "deploy.sh: unknown option $1" >&2; usage ;;
    *) positional+=("$1") ;;
  esac
  shift
done
[ ${#positional[@]} -eq 2 ] || usage
project="${positional[0]}"
region="${positional[1]}"
tf_extra=("$@")
prefix="${NAME_PREFIX:-scenerender}"

if ! [[ "$project" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]]; then
  echo "deploy.sh: '$project' is not a project id" >&2; exit 2
fi
if ! [[ "$region" =~ ^[a-z]+-[a-z]+[0-9]$ ]]; then
  echo "deploy.sh: '$region' is not a region (e.g. europe-west1)" >&2; exit 2
fi

# Names Terraform gives the same things (terraform/main.tf locals.names, build.tf); the
# dry-run test checks they agree.
state_bucket="${project}-tfstate"
source_bucket="${project}-${prefix}-sources"
image_builder="${prefix}-image-builder@${project}.iam.gserviceaccount.com"
repository="${region}-docker.pkg.dev/${project}/${prefix}"

# The image's tag: a hash of everything the image is built from, so a rebuild happens when,
# and only when, one of them changed.
image_inputs() {
  { git ls-files -z -- renderer_image requirements.lock scenerender .dockerignore 2>/dev/null \
      || find renderer_image scenerender requirements.lock .dockerignore -type f -print0; } \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}
tag="src-$(image_inputs)"
image="${repository}/renderer:${tag}"

tf_vars=(-var "project_id=${project}" -var "region=${region}" -var "name_prefix=${prefix}" -var "renderer_image=${image}")

# Print (dry run) or run one command.
run() {
  if [ "$dry_run" -eq 1 ]; then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    echo "+ $(printf '%q ' "$@")" >&2
    "$@"
  fi
}

# Whether something exists; in a dry run, as on a fresh project, nothing does.
exists() {
  [ "$dry_run" -eq 0 ] && "$@" >/dev/null 2>&1
}

tf() {
  run terraform -chdir=terraform "$@"
}

init() {
  run gcloud services enable serviceusage.googleapis.com cloudresourcemanager.googleapis.com \
    storage.googleapis.com --project "$project"
  if ! exists gcloud storage buckets describe "gs://${state_bucket}" --project "$project"; then
    run gcloud storage buckets create "gs://${state_bucket}" --project "$project" --location "$region" \
      --uniform-bucket-level-access --public-access-prevention
  fi
  # Every state version is kept: a bad apply can be rolled back to the state before it.
  run gcloud storage buckets update "gs://${state_bucket}" --project "$project" --versioning
  tf init -input=false -reconfigure "-backend-config=bucket=${state_bucket}" "-backend-config=prefix=${prefix}"
}

deploy() {
  init
  # What the image build needs, before the image: Terraform makes the repository and the
  # build account (build.tf) and waits for the grants to settle (time_sleep.image_builder_ready).
  tf apply -input=false -auto-approve "${tf_vars[@]}" \
    '-target=google_artifact_registry_repository.docker["images"]' -target=time_sleep.image_builder_ready "${tf_extra[@]}"
  if exists gcloud artifacts docker images describe "$image" --project "$project"; then
    echo "deploy.sh: ${image} is already built" >&2
  else
    run gcloud builds submit . --project "$project" --region "$region" \
      --config renderer_image/cloudbuild.yaml \
      --gcs-source-staging-dir "gs://${source_bucket}/cloudbuild" \
      --substitutions "_REGION=${region},_REPOSITORY=${prefix},_TAG=${tag},_BUILDER=${image_builder}"
  fi
  tf apply -input=false -auto-approve "${tf_vars[@]}" "${tf_extra[@]}"
  tf output -raw http_api_url
  [ "$dry_run" -eq 1 ] || echo
  tf output -json buckets
}

teardown() {
  init
  local teardown_var='teardown={force_destroy_buckets=true,delete_firestore=true}'
  # First make the buckets and the database deletable (an apply of just those: the rest may
  # name an image this tree has not built), then delete everything.
  tf apply -input=false -auto-approve "${tf_vars[@]}" -var "$teardown_var" \
    -target=google_storage_bucket.specs -target=google_storage_bucket.renders \
    -target=google_storage_bucket.media -target=google_storage_bucket.sources \
    -target=google_firestore_database.default "${tf_extra[@]}"
  tf destroy -input=false -auto-approve "${tf_vars[@]}" -var "$teardown_var" "${tf_extra[@]}"
  local number
  if [ "$dry_run" -eq 1 ]; then
    number=PROJECT_NUMBER
    run gcloud projects describe "$project" --format=value\(projectNumber\)
  else
    number=$(gcloud projects describe "$project" --format='value(projectNumber)')
  fi
  # Cloud Functions' own staging buckets, made on the first function deploy.
  for bucket in "gcf-v2-sources-${number}-${region}" "gcf-v2-uploads-${number}-${region}"; do
    if [ "$dry_run" -eq 1 ] || exists gcloud storage buckets describe "gs://${bucket}" --project "$project"; then
      run gcloud storage rm --recursive "gs://${bucket}" --project "$project"
    fi
  done
  # Last, the state (every version of it): nothing is left that Terraform knew about.
  run gcloud storage rm --recursive --all-versions "gs://${state_bucket}" --project "$project"
}

if [ "$destroy" -eq 1 ]; then
  teardown
else
  deploy
fi
