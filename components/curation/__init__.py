"""Data curation with FiftyOne: one sample per ingested input file, with labels, ingestion metadata,
duplicate clusters, quarantine reasons, model predictions, mistakes, hardness and uniqueness; saved
views for curators; and the feedback file (exclude / relabel) that the next ingestion honours.

Modules: `members` (what ingestion did with every input file), `model` (predictions and embeddings
from an exported SavedModel), `dataset` (the FiftyOne dataset and its views), `feedback` (export of
curator tags), `app` (MongoDB check and App launch). The CLI is `pipeline/cli_curate.py`.
"""
