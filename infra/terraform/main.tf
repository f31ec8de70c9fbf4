# synthdetect on Google Cloud: one bucket (data, pipeline root, Dataflow temp, model registry), one
# Docker repository (pipeline + GPU training images), one service account that Vertex AI Pipelines,
# Dataflow workers and Vertex AI training jobs run as, with only the roles those need.

data "google_project" "this" {
  project_id = var.project
}

locals {
  apis = [
    "aiplatform.googleapis.com",       # Vertex AI Pipelines, custom training, Model Registry
    "dataflow.googleapis.com",         # Beam components
    "artifactregistry.googleapis.com", # images
    "storage.googleapis.com",
    "compute.googleapis.com", # Dataflow / training VMs
    "iam.googleapis.com",
  ]
  bucket = "${var.project}-${var.name}"
  sa     = google_service_account.pipeline.email
  # Google-managed agents that pull our images: Vertex AI (custom training code) and Dataflow.
  service_agents = [
    "serviceAccount:service-${data.google_project.this.number}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com",
    "serviceAccount:service-${data.google_project.this.number}@gcp-sa-aiplatform.iam.gserviceaccount.com",
    "serviceAccount:service-${data.google_project.this.number}@dataflow-service-producer-prod.iam.gserviceaccount.com",
  ]
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

# ------------------------------------------------------------------------------------- storage
resource "google_storage_bucket" "pipeline" {
  name                        = local.bucket
  project                     = var.project
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  lifecycle_rule {
    condition {
      age            = var.dataflow_tmp_retention_days
      matches_prefix = ["dataflow/tmp/", "dataflow/staging/"]
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.apis]
}

# ------------------------------------------------------------------------------------- images
resource "google_artifact_registry_repository" "images" {
  project       = var.project
  location      = var.region
  repository_id = var.name
  format        = "DOCKER"
  description   = "synthdetect pipeline (infra/Dockerfile) and GPU training (infra/Dockerfile.gpu) images"
  depends_on    = [google_project_service.apis]
}

# ------------------------------------------------------------------------------ service account
resource "google_service_account" "pipeline" {
  project      = var.project
  account_id   = "${var.name}-pipeline"
  display_name = "synthdetect: Vertex AI Pipelines, Dataflow workers, Vertex AI training"
}

# Project-level roles, each for one thing the pipeline does:
resource "google_project_iam_member" "pipeline" {
  for_each = toset([
    "roles/aiplatform.user",         # pipeline jobs, custom training jobs, Model Registry uploads, Vertex ML Metadata
    "roles/dataflow.developer",      # Beam components launch and watch Dataflow jobs
    "roles/dataflow.worker",         # ... whose workers run as this account
    "roles/logging.logWriter",       # job and worker logs
    "roles/monitoring.metricWriter", # Dataflow worker metrics
  ])
  project = var.project
  role    = each.value
  member  = "serviceAccount:${local.sa}"
}

# Data, pipeline root, Dataflow temp and the model registry: this bucket only.
resource "google_storage_bucket_iam_member" "pipeline_objects" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${local.sa}"
}

resource "google_storage_bucket_iam_member" "pipeline_bucket_read" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.legacyBucketReader" # bucket metadata (Beam and TFX check the bucket)
  member = "serviceAccount:${local.sa}"
}

# Pull the images: the account itself and the Google service agents that start containers.
resource "google_artifact_registry_repository_iam_member" "readers" {
  for_each   = toset(concat(["serviceAccount:${local.sa}"], local.service_agents))
  project    = var.project
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = each.value
}

# Pipeline steps start Dataflow jobs and training jobs that run as this same account.
resource "google_service_account_iam_member" "act_as_self" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${local.sa}"
}

# People / CI who submit and schedule runs: create Vertex AI jobs, act as the pipeline account,
# read compiled specs and push images.
resource "google_project_iam_member" "submitters" {
  for_each = toset(var.submitters)
  project  = var.project
  role     = "roles/aiplatform.user"
  member   = each.value
}

resource "google_service_account_iam_member" "submitters_act_as" {
  for_each           = toset(var.submitters)
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

resource "google_artifact_registry_repository_iam_member" "submitters_push" {
  for_each   = toset(var.submitters)
  project    = var.project
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = each.value
}

resource "google_storage_bucket_iam_member" "submitters_objects" {
  for_each = toset(var.submitters)
  bucket   = google_storage_bucket.pipeline.name
  role     = "roles/storage.objectUser"
  member   = each.value
}
