"""Data curation with FiftyOne: one sample per ingested input file, with labels, ingestion metadata,
duplicate clusters, quarantine reasons, model predictions, mistakes, hardness and uniqueness; saved
views for curators; and the feedback file (exclude / relabel) that the next ingestion honours.

Modules: `members` (what ingestion did with every input file, through components/ingest/outputs.py),
`dataset` (the FiftyOne dataset and its views; scores through components/scoring), `brain`
(embeddings, the `embedding_map` map, the `similarity` index, mistakenness; reused when model and
images are unchanged), `appconfig` (sidebar groups, colours and the `curation` workspace saved with
the dataset), `feedback` (export of curator tags), `app` (MongoDB check and App launch). Imports ingest,
scoring, transform, cache; imported only by the CLI (`pipeline/cli/curate.py`).
"""
