terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0, < 7.0"
    }
  }
  # State: keep it in a bucket you already have, e.g.
  # backend "gcs" { bucket = "my-tf-state" prefix = "synthdetect" }
}

provider "google" {
  project = var.project
  region  = var.region
}
