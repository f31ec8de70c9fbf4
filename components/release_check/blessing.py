"""ReleaseCheck's `blessing` artifact, written here and read back here: the decision as the
artifact's `blessed` custom property (1 or 0, what the pusher and TFX's resolvers read) and a marker
file named BLESSED or NOT_BLESSED (TFX's Evaluator writes the same names, empty) holding the
reasons, one a line. No TensorFlow at import: `synthdetect runs` reads markers of every run."""
from __future__ import annotations

import os

BLESSED_PROPERTY = "blessed"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"


def marker_name(blessed: bool) -> str:
    return BLESSED_FILE if blessed else NOT_BLESSED_FILE


def write_marker(uri: str, blessed: bool, reasons: list[str]) -> None:
    """The marker file of a blessing (local path or gs://)."""
    import tensorflow as tf
    with tf.io.gfile.GFile(f"{uri}/{marker_name(blessed)}", "w") as f:
        f.write("\n".join(reasons) + "\n")


def read_reasons(uri: str, blessed: bool) -> list[str]:
    """The reasons in a blessing's marker file ([] for TFX's empty ones). FileNotFoundError when the
    marker of that decision is missing, OSError when it cannot be read."""
    path = os.path.join(uri, marker_name(blessed))
    if uri.startswith("gs://"):
        import tensorflow as tf
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"no {marker_name(blessed)} file in {uri}")
        with tf.io.gfile.GFile(path) as f:
            text = f.read()
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    return [line for line in text.splitlines() if line.strip()]
