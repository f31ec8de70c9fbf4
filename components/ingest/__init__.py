"""ImageExampleGen: labelled image folders / manifests -> deduplicated, leak-free TFRecord splits.

`listing` (what is read), `images` (decoding and format neutralisation), `dedup`, `plan`, `job` (the
Beam job), `records`, `executor`/`component` (TFX glue), `vertex_driver` (its pre-cache check on Vertex AI),
`outputs` (the files an ingestion leaves and their readers: everything that reads an ingestion back goes
through it). Imports schemas only; imported by the pipeline graph, scoring, curation, registry and pipeline/.
"""
