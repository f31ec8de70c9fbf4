"""FiftyOne Brain runs on our own model's embeddings: the 2-D map, the similarity index, uniqueness
and mistakenness of the curators' dataset.

* `embedding` (sample field): `Scorer.embeddings` — VGG16's `block5_pool` averaged to 512 numbers,
  the layer curation's uniqueness already used (a sub-model rebuilt from the loaded Keras layers; the
  serving signatures are unchanged).
* brain key `embedding_map`: `compute_visualization` of those embeddings to 2-D (t-SNE through
  scikit-learn by default, or PCA), shown by the App's Embeddings panel.
* brain key `similarity`: `compute_similarity` with the scikit-learn backend (cosine, in-process,
  no service): "sort by similarity" in the App, `ds.sort_by_similarity(id, brain_key="similarity")`.
* `mistakenness` (field and brain key): `compute_mistakenness` of `ground_truth` given `prediction`
  (the label at the model's calibrated threshold and its confidence); > 0.5 where they disagree,
  the more confident the model the higher.

Incremental: embeddings, map and index are fingerprinted by the model's files, the embedding layer
and every scored image's bytes (`ds.info["brain"]`); a rebuild with the same fingerprint reuses them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# label colours of the App (appconfig) and of the map picture: blue / red
LABEL_COLORS = {"real": "#1f6fd1", "synthesized": "#d62728"}

EMBEDDING_FIELD = "embedding"
MAP_KEY = "embedding_map"
SIMILARITY_KEY = "similarity"
MISTAKENNESS_FIELD = "mistakenness"     # FiftyOne names the run after the field
MAP_METHODS = ("tsne", "pca")
DEFAULT_MAP_METHOD = "tsne"
INFO_KEY = "brain"
SEED = 51


@dataclasses.dataclass
class BrainStatus:
    """What a build did with the embeddings, the map and the index: "computed", "reused" or
    "skipped (why)"."""
    embeddings: str = "skipped (no model)"
    map: str = "skipped (no model)"
    similarity: str = "skipped (no model)"
    map_method: str = ""
    embedded: int = 0

    def line(self) -> str:
        if self.embeddings.startswith("skipped"):
            return f"embeddings, map and similarity index: {self.embeddings}"
        if self.embeddings == self.map == self.similarity == "reused":
            return (f"embeddings of {self.embedded} samples, map {MAP_KEY!r} ({self.map_method}) and similarity "
                    f"index {SIMILARITY_KEY!r}: unchanged (same model and images), not recomputed")
        return (f"embeddings of {self.embedded} samples {self.embeddings}; map {MAP_KEY!r} ({self.map_method}) "
                f"{self.map}; similarity index {SIMILARITY_KEY!r} {self.similarity}")


def model_fingerprint(model_dir: str) -> str:
    """sha256 of a SavedModel's graph and variables (local directory, as the Scorer loads it)."""
    if "://" in model_dir:   # remote artifacts are immutable: their URI names them
        return hashlib.sha256(model_dir.encode()).hexdigest()
    h = hashlib.sha256()
    files = [os.path.join(model_dir, "saved_model.pb")]
    var_dir = os.path.join(model_dir, "variables")
    if os.path.isdir(var_dir):
        files += sorted(os.path.join(var_dir, f) for f in os.listdir(var_dir))
    for path in files:
        h.update(os.path.relpath(path, model_dir).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def embeddings_fingerprint(model_fp: str, layer: str, paths: Sequence[str], images: Sequence[bytes]) -> str:
    h = hashlib.sha256(f"{model_fp}\0{layer}\0".encode())
    for path, data in sorted(zip(paths, images, strict=True)):
        h.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def clear(ds) -> None:
    """Removes embeddings, map, index and mistakenness (a build without a model)."""
    for key in (MAP_KEY, SIMILARITY_KEY, MISTAKENNESS_FIELD):
        if key in ds.list_brain_runs():
            ds.delete_brain_run(key)
    for field in (EMBEDDING_FIELD, MISTAKENNESS_FIELD):
        if ds.has_sample_field(field):
            ds.set_values(field, [None] * len(ds), progress=False)
    ds.info.pop(INFO_KEY, None)


def _reusable(ds, ids: list[str], fingerprint: str) -> bool:
    info = ds.info.get(INFO_KEY) or {}
    if info.get("fingerprint") != fingerprint or not ds.has_sample_field(EMBEDDING_FIELD):
        return False
    if SIMILARITY_KEY not in ds.list_brain_runs():
        return False
    view = ds.select(ids)
    return len(view) == len(ids) and len(view.exists(EMBEDDING_FIELD)) == len(ids)


def update_embeddings(ds, ids: list[str], images: Sequence[bytes],
                      embed: Callable[[Sequence[bytes]], np.ndarray | None],
                      fingerprint: str, method: str = DEFAULT_MAP_METHOD, unavailable: Callable[[], str] = str,
                      progress: Callable[[str], None] = lambda s: None) -> BrainStatus:
    """Embeddings of the scored samples `ids` (images in the same order) on the samples, the 2-D map
    and the similarity index; reused when `fingerprint` equals the last build's. `embed(images)`
    returns [N, D] or None (then `unavailable()` says why and everything is skipped)."""
    import fiftyone.brain as fob
    if method not in MAP_METHODS:
        raise ValueError(f"map method must be one of {', '.join(MAP_METHODS)}, not {method!r}")
    status = BrainStatus(map_method=method, embedded=len(ids))
    info = dict(ds.info.get(INFO_KEY) or {})
    if _reusable(ds, ids, fingerprint):
        status.embeddings = status.similarity = "reused"
        if info.get("map_method") == method and MAP_KEY in ds.list_brain_runs():
            status.map = "reused"
            return status
    else:
        clear_runs = [k for k in (MAP_KEY, SIMILARITY_KEY) if k in ds.list_brain_runs()]
        for key in clear_runs:
            ds.delete_brain_run(key)
        if ds.has_sample_field(EMBEDDING_FIELD):
            ds.set_values(EMBEDDING_FIELD, [None] * len(ds), progress=False)
        ds.info.pop(INFO_KEY, None)
        progress(f"embedding {len(ids)} images")
        emb = embed(images) if ids else None
        if emb is None or len(ids) < 2 or float(np.ptp(emb, axis=0).max()) <= 0:
            why = ("fewer than 2 scored images" if len(ids) < 2 else
                   unavailable() or "embeddings are all identical")
            status.embeddings = status.map = status.similarity = f"skipped ({why})"
            status.embedded = 0
            ds.save()
            return status
        ds.select(ids, ordered=True).set_values(EMBEDDING_FIELD, [np.asarray(e, np.float32) for e in emb],
                                               progress=False)
        fob.compute_similarity(ds.exists(EMBEDDING_FIELD), embeddings=EMBEDDING_FIELD, brain_key=SIMILARITY_KEY,
                               backend="sklearn", metric="cosine", progress=False)
        status.embeddings = status.similarity = "computed"
    if MAP_KEY in ds.list_brain_runs():
        ds.delete_brain_run(MAP_KEY)
    view = ds.exists(EMBEDDING_FIELD)
    n, dim = len(view), len(view.first()[EMBEDDING_FIELD])
    progress(f"{method} map of {n} embeddings")
    kwargs: dict[str, Any] = {"seed": SEED, "verbose": False}
    if method == "tsne":
        kwargs.update(perplexity=float(min(30.0, max(1.0, (n - 1) / 3))), pca_dims=50 if min(n, dim) > 50 else None)
    fob.compute_visualization(view, embeddings=EMBEDDING_FIELD, brain_key=MAP_KEY, method=method, num_dims=2,
                              progress=False, **kwargs)
    status.map = "computed"
    ds.info[INFO_KEY] = {**info, "fingerprint": fingerprint, "map_method": method,
                         "embedding_field": EMBEDDING_FIELD, "map_key": MAP_KEY, "similarity_key": SIMILARITY_KEY}
    ds.save()
    return status


def compute_mistakenness(ds, pred_field: str = "prediction", label_field: str = "ground_truth") -> int:
    """Mistakenness of `label_field` on every sample with both labels (from the predictions'
    confidence); returns the number of samples scored."""
    import fiftyone.brain as fob
    if MISTAKENNESS_FIELD in ds.list_brain_runs():
        ds.delete_brain_run(MISTAKENNESS_FIELD)
    if ds.has_sample_field(MISTAKENNESS_FIELD):
        ds.set_values(MISTAKENNESS_FIELD, [None] * len(ds), progress=False)
    view = ds.exists(pred_field).exists(label_field)
    if len(view):
        fob.compute_mistakenness(view, pred_field, label_field=label_field, mistakenness_field=MISTAKENNESS_FIELD,
                                 use_logits=False, progress=False)
    return len(view)


def write_map_png(ds, path: str, label_field: str = "ground_truth.label") -> str | None:
    """The `embedding_map` as a static scatter plot (one dot per sample, coloured by its label with the
    App's label colours), for people who do not open the App. Returns `path`, or None without a map."""
    if MAP_KEY not in ds.list_brain_runs():
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = ds.load_brain_results(MAP_KEY)
    points = np.asarray(results.current_points, dtype=float)
    ids = list(results.current_sample_ids)
    labels = ds.select(ids, ordered=True).values(label_field)
    method = ds.get_brain_info(MAP_KEY).config.method
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    for label in sorted({str(x) for x in labels}, key=lambda x: (x not in LABEL_COLORS, x)):
        mask = np.array([str(x) == label for x in labels])
        ax.scatter(points[mask, 0], points[mask, 1], s=14, linewidths=0,
                   color=LABEL_COLORS.get(label, "#7f7f7f"), label=f"{label} ({int(mask.sum())})")
    ax.set_title(f"{ds.name}: {MAP_KEY} ({method}) of {len(ids)} samples, coloured by {label_field}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8, frameon=True)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
