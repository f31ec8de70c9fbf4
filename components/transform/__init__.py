"""Transform's preprocessing_fn and `decode_images`, the one function that turns encoded images into
the model input in training's tf.data and inside both exported signatures (resize or crop mode).
Imports nothing of ours; imported by trainer, evaluator, scoring and the pipeline graph.
"""
