"""Versioned model registry (local directory or gs://) and the pipeline's RegistryPusher."""
