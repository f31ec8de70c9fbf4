"""FiftyOne's database connection (with a useful error) and the App server."""
from __future__ import annotations

import logging
import os

from components.curation.members import CurationError

MONGO_HINT = ("FiftyOne's bundled mongod needs OpenSSL 1.1 (Debian: run infra/ensure_mongod.sh as root to "
              "install libssl1.1), or set FIFTYONE_DATABASE_URI=mongodb://HOST:PORT to use an external MongoDB")


def quiet_fiftyone() -> None:
    """No telemetry, no MongoDB version chatter on the terminal (errors still surface)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_LOGGING_LEVEL", "WARNING")   # "Computing hardness..." goes to stdout
    logging.getLogger("fiftyone.core.odm.database").setLevel(logging.ERROR)
    import fiftyone as fo
    import fiftyone.brain  # noqa: F401 - its loggers exist before their level is set
    fo.core.logging.set_logging_level(logging.WARNING)


def ensure_database() -> None:
    """Connect to FiftyOne's MongoDB (starting the bundled mongod if no FIFTYONE_DATABASE_URI),
    or raise CurationError with one line saying how to fix it."""
    quiet_fiftyone()
    uri = os.environ.get("FIFTYONE_DATABASE_URI")
    try:
        import fiftyone as fo
        fo.list_datasets()
    except Exception as e:  # noqa: BLE001 - any failure here is "no database", with the cause named
        cause = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}".rstrip(": ")
        where = f"the MongoDB at FIFTYONE_DATABASE_URI={uri}" if uri else "FiftyOne's bundled MongoDB"
        hint = ("check that it is running and reachable" if uri else MONGO_HINT)
        raise CurationError(f"cannot start or reach {where} ({cause}); {hint}") from None


def launch(name: str, address: str = "127.0.0.1", port: int = 5151, view: str | None = None):
    """Starts the App server for dataset `name` on address:port, in the dataset's `curation`
    workspace (grid and embeddings map) when it has one; returns the Session (the caller blocks on it)."""
    import fiftyone as fo
    if not fo.dataset_exists(name):
        raise CurationError(f"no FiftyOne dataset {name!r}; build it first with `synthdetect curate --run latest`"
                            + (f" (existing: {', '.join(fo.list_datasets())})" if fo.list_datasets() else ""))
    ds = fo.load_dataset(name)
    v = None
    if view:
        if view not in ds.list_saved_views():
            raise CurationError(f"dataset {name!r} has no saved view {view!r} (saved views: "
                                f"{', '.join(ds.list_saved_views()) or 'none'})")
        v = ds.load_saved_view(view)
    from components.curation.appconfig import WORKSPACE
    spaces = ds.load_workspace(WORKSPACE) if ds.has_workspace(WORKSPACE) else None   # grid + embeddings map
    return fo.launch_app(ds, view=v, spaces=spaces, address=address, port=port, remote=True, auto=False)
