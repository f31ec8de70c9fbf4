"""The one local cache of synthdetect: `$SYNTHDETECT_CACHE`, by default `~/.cache/synthdetect`.

    registry/<hash of the registry location>/<version>/   versions fetched from a gs:// registry
    models/<hash of the URI>-<hash of its generations>/   SavedModels fetched from a gs:// path (a model
                                                          replaced at that path gets a new folder)
    media/<hash of the URI><ext>                          gs:// images shown in the FiftyOne App

Everything under it is a copy of something immutable (registry versions, one generation of a
model's objects, input objects) and may be deleted at any time.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "SYNTHDETECT_CACHE"


def cache_dir(*parts: str) -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "synthdetect")
    return Path(root, *parts)


def key(uri: str, length: int = 16) -> str:
    """A file name for a URI (hex prefix of its sha256)."""
    return hashlib.sha256(uri.encode()).hexdigest()[:length]
