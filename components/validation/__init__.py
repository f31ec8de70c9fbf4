"""ExampleValidator (TFX's own component: TFDV statistics against schemas/schema.pbtxt): `anomalies`
reads its `anomalies` artifact back. Imported by pipeline/artifacts.py.
"""
