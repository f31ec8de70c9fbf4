"""synthdetect: a TFX pipeline that tells AI-synthesized images from real photographs.

Dependencies are pinned in requirements.lock (runtime, resolved with uv from requirements.in) and
requirements-dev.lock (+ tests and curation); install with `make bootstrap`, which syncs both into .venv
and installs this package in editable mode.
"""
from setuptools import find_packages, setup

setup(
    name="synthdetect",
    version="0.1.0",
    description="TFX pipeline for recognising synthesized images (VGG16 fine-tune vs baseline)",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*",
                                    "schemas", "schemas.*"]),
    package_data={"schemas": ["*.pbtxt"]},
    include_package_data=True,
    # Runtime requirements are the lock file's; these are the direct ones, unpinned, so that
    # `pip install .` into a prepared environment does not fight the lock.
    install_requires=["tfx", "tensorflow", "tf-keras", "apache-beam", "tensorflow-transform",
                      "tensorflow-model-analysis", "pydantic>=2", "pyyaml", "click", "rich",
                      "pillow"],
    entry_points={"console_scripts": ["synthdetect=pipeline.cli:main"]},
)
