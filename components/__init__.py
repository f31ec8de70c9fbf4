"""synthdetect's pipeline steps, one folder each; each folder owns the format of what its step
writes and the code that reads it back.

    ingest/         ImageExampleGen (Beam): listing, decoding, deduplication, leak-free splits;
                    outputs.py names and reads its files (summary, members, quarantine, shards)
    validation/     ExampleValidator (TFX's): anomalies.py reads its anomalies back
    transform/      preprocessing_fn and decode_images, the one image decoding of training and serving
    trainer/        the model, run_fn; artifact.py reads a Trainer's model artifact back
    evaluator/      the TFMA config of the gate, its results reader, calibration maths (the
                    Evaluator component itself is TFX's)
    release_check/  ReleaseCheck: calibration, robustness, the final blessing
    registry/       the versioned model registry and RegistryPusher (GCS, Vertex AI)
    scoring/        the SavedModel client, the model resolver, the eval split read back
    curation/       the curators' FiftyOne dataset
    cache.py        the one local cache ($SYNTHDETECT_CACHE)
    gcloud.py       Google Cloud credentials, decided at once (Vertex AI, gs:// registries, models, inputs)

May import schemas/ and each other (without cycles); never pipeline/, which builds on them
(tests/test_structure.py).
"""
import os as _os

# TFT and TFMA need Keras 2: every entry point sets this before TensorFlow is imported.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
