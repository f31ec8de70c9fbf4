"""Library logging for CLI commands: TensorFlow, Beam, TFX and absl write to a log file (or
nowhere), never over the progress bar and the report on the terminal."""
from __future__ import annotations

import logging
import warnings

_NOISY = ("tensorflow", "absl", "apache_beam", "tfx", "ml_metadata", "tensorflow_model_analysis",
          "tensorflow_transform", "tensorflow_data_validation", "py.warnings", "h5py", "matplotlib")


def route_library_logs(handlers: list[logging.Handler] | None, level: int = logging.INFO) -> list[logging.Handler]:
    """Send library logs to `handlers` (None: keep the root's) and drop the libraries' own stderr
    handlers; returns the old root handlers. Call again after importing TensorFlow/TFX/TFMA: their
    imports add stderr handlers of their own."""
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    root = logging.getLogger()
    old = root.handlers[:]
    if handlers is not None:
        root.handlers = list(handlers) or [logging.NullHandler()]
        root.setLevel(level)
    for name in _NOISY:
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.INFO if root.level <= logging.INFO else absl_logging.WARNING)
        absl_logging.get_absl_handler().setLevel(logging.CRITICAL + 1)
    except ImportError:
        pass
    return old
