variable "project" {
  description = "Google Cloud project id (vertex.project in configs/vertex.yaml)"
  type        = string
}

variable "region" {
  description = "Region of the bucket, the image repository, Vertex AI and Dataflow (vertex.region)"
  type        = string
  default     = "us-central1"
}

variable "name" {
  description = "Prefix of every resource name"
  type        = string
  default     = "synthdetect"
}

variable "submitters" {
  description = "Members allowed to compile/submit/schedule runs as the pipeline service account, e.g. [\"group:ml-platform@example.com\", \"serviceAccount:ci@p.iam.gserviceaccount.com\"]"
  type        = list(string)
  default     = []
}

variable "dataflow_tmp_retention_days" {
  description = "Days after which Dataflow temp/staging files are deleted"
  type        = number
  default     = 7
}
