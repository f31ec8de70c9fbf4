"""Using an exported model: the SavedModel client and which model a reference names.

`scorer` (Scorer: p_synthesized through the `serving_images` signature, embeddings for FiftyOne),
`models` (resolve_model: registry:REF, SavedModel or model-artifact paths, local or gs://, with
their calibrated threshold; remote copies in components/cache.py), `examples` (the tf.Examples of an
ingestion output, e.g. the eval split). Imports trainer.artifact, transform, ingest.outputs,
registry; imported by release_check, curation and pipeline/ (predict, curate, artifacts).
"""
