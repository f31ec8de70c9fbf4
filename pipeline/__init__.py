"""synthdetect's pipeline layer: the graph, running it, reading runs back, and the command line.

    pipeline.py        create_components(cfg, placement) / create_pipeline; the component ids and
                       output keys; LocalPlacement
    runner.py          the local run (LocalDagRunner, run log, preflight); process_record.py, logs.py
    vertex.py          VertexPlacement; compiling and submitting to Vertex AI Pipelines, its jobs read back
    parameters.py      the runtime parameters on Vertex; runtime_parameters.py: the RuntimeParameters step
    artifacts.py       where a run's outputs are (ML Metadata by component id): the read-back layer
    report.py, runs.py what a run produced / every run and its lineage, built on artifacts.py
    cli/               the `synthdetect` command (one module per command group)

May import components/ and schemas/. Nothing under components/ or schemas/ imports it
(tests/test_structure.py).
"""
import os as _os

# TFT and TFMA need Keras 2: every entry point sets this before TensorFlow is imported.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
