"""The Trainer's code: `model` (the paper's VGG16 network, weights loading), `run_fn` (TFX entry point
of both trainers: tf.data input, fit, export with two signatures and the training history) and
`artifact` (a Trainer's model artifact read back: its SavedModel directory, training history,
input mode). Imports transform and schemas; `artifact` is imported by scoring, registry and
pipeline/artifacts.py.
"""
