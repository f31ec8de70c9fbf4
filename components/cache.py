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


class CacheError(Exception):
    """The cache folder cannot be used (one line, naming $SYNTHDETECT_CACHE)."""


def usable_cache_dir(*parts: str) -> Path:
    """`cache_dir(*parts)`, created and checked writable before anything is fetched into it."""
    path = cache_dir(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        now = os.environ.get(CACHE_ENV) or "unset: ~/.cache/synthdetect"
        raise CacheError(f"the cache folder {str(path)!r} cannot be used ({e.strerror or e}); set {CACHE_ENV} to a "
                         f"writable folder (now {now})") from None
    return path
