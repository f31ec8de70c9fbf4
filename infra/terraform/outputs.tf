# The values configs/vertex.yaml needs (vertex.* and the gs:// paths).
output "project" { value = var.project }
output "region" { value = var.region }
output "service_account" { value = google_service_account.pipeline.email }
output "bucket" { value = "gs://${google_storage_bucket.pipeline.name}" }
output "pipeline_root" { value = "gs://${google_storage_bucket.pipeline.name}/pipeline_root" }
output "dataflow_temp_location" { value = "gs://${google_storage_bucket.pipeline.name}/dataflow/tmp" }
output "dataflow_staging_location" { value = "gs://${google_storage_bucket.pipeline.name}/dataflow/staging" }
output "registry" { value = "gs://${google_storage_bucket.pipeline.name}/registry" }
output "image_repository" {
  value = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}
