"""The versioned model registry and the pipeline's RegistryPusher.

`store` (local directory or gs://: immutable versions, model.json, atomic aliases; gcs_client and
download_tree for gs:// copies), `vertex` (vertex:// destinations: GCS versions registered in Vertex
AI Model Registry; open_readable), `component` (RegistryPusher: model.json from the release check,
the ingest summary and the training history), `pushed` (its `pushed_model` artifact: properties
and push.json, written and read back). Imported by the pipeline graph, scoring (the model
resolver) and the CLI.
"""
