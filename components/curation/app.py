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
    import fiftyone.brain  # its loggers exist before their level is set
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


def launch(name: str, address: str = "127.0.0.1", port: int = 5151, view: str | None = None,
           timeout: float | None = None, progress=lambda line: None):
    """Starts the App server for dataset `name` on address:port, in the dataset's `curation`
    workspace (grid and embeddings map) when it has one; returns the Session (the caller blocks on it).
    The server's start-up wait: `start_timeout(timeout)` per attempt, two attempts (`start_server`)."""
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
    service = start_server(address, port, start_timeout(timeout), progress)
    # The session uses the server started above (FiftyOne keeps one per port in this map, starts
    # one only when the port has none, and stops it when the session closes).
    import fiftyone.core.session.session as fosession
    if service is not None:
        fosession._server_services[port] = service  # noqa: SLF001 - FiftyOne's per-port server map (see above)
    try:
        return fo.launch_app(ds, view=v, spaces=spaces, address=address, port=port, remote=True, auto=False)
    except BaseException:
        if service is not None:
            fosession._server_services.pop(port, None)  # noqa: SLF001 - FiftyOne's per-port server map
            service.stop()
        raise


# ------------------------------------------------------------------------------ the App server
START_TIMEOUT_ENV = "SYNTHDETECT_APP_START_TIMEOUT"
BASE_START_TIMEOUT_S = 120.0    # per attempt on an idle machine (FiftyOne's own wait: a fixed 60 s)
MAX_START_TIMEOUT_S = 900.0
ATTEMPTS = 2
PROGRESS_EVERY_S = 15.0


def _load() -> tuple[float, int]:
    cores = os.cpu_count() or 1
    try:
        return os.getloadavg()[0], cores
    except OSError:
        return 0.0, cores


def start_timeout(configured: float | None = None) -> float:
    """Seconds one attempt waits for the App server to listen: `configured` (--start-timeout), else
    $SYNTHDETECT_APP_START_TIMEOUT, else 120 s times the load per core (at least 1), at most 900 s.
    A machine running a training at load 8 on 2 cores gets 480 s."""
    if configured is None and os.environ.get(START_TIMEOUT_ENV):
        try:
            configured = float(os.environ[START_TIMEOUT_ENV])
        except ValueError:
            raise CurationError(f"{START_TIMEOUT_ENV}={os.environ[START_TIMEOUT_ENV]!r} is not a number of "
                                "seconds") from None
    if configured is not None:
        if not configured > 0:
            raise CurationError(f"the App start-up timeout must be a positive number of seconds, got {configured}")
        return float(configured)
    load, cores = _load()
    return min(MAX_START_TIMEOUT_S, BASE_START_TIMEOUT_S * max(1.0, load / cores))


def _port_in_use(address: str, port: int) -> bool:
    import socket
    host = "127.0.0.1" if address in ("0.0.0.0", "", "localhost") else address
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _fiftyone_answers(address: str, port: int) -> bool:
    import requests
    host = "127.0.0.1" if address in ("0.0.0.0", "", "localhost") else address
    try:
        return "version" in requests.get(f"http://{host}:{port}/fiftyone", timeout=10).json()
    except Exception:  # noqa: BLE001 - anything else on that port
        return False


def port_is_free(address: str, port: int) -> bool:
    """True: nothing listens on address:port; False: a FiftyOne App does (a session attaches to it);
    CurationError (one line) when another program holds the port. Needs neither FiftyOne nor MongoDB,
    so `curate --launch` says it before starting either."""
    if not _port_in_use(address, port):
        return True
    if _fiftyone_answers(address, port):
        return False
    raise CurationError(f"port {port} on {address} is in use by another program; choose another --port")


def _server_service(address: str, port: int):
    """FiftyOne's ServerService (its server process under FiftyOne's service wrapper, which stops the
    server when this process dies), started without FiftyOne's fixed 60 s wait: `_wait_listening`
    waits instead."""
    import fiftyone as fo
    import fiftyone.core.service as fos

    class AppServer(fos.ServerService):
        def _wait_for_child_port(self, port=None, timeout=60):   # waited for by _wait_listening
            return port
    return AppServer(port, address=address, do_not_track=fo.config.do_not_track)


def _wait_listening(service, port: int, timeout: float, progress, attempt: int) -> str | None:
    """None once a process of `service` listens on `port`; else why not ("timeout", "exited (code N)")."""
    import time

    import psutil
    import fiftyone.service.util as fosu
    t0 = last = time.monotonic()
    while True:
        if service.child is None:      # FiftyOne attached to a server already running on that port
            return None
        try:
            for child in fosu.normalize_wrapper_process(service.child).children(recursive=True):
                try:
                    if port in fosu.get_listening_tcp_ports(child):
                        return None
                except psutil.Error:
                    pass
            code = service.child.poll() if hasattr(service.child, "poll") else None
        except psutil.NoSuchProcess:
            code = -1
        if code is not None:
            return f"exited (code {code})"
        now = time.monotonic()
        if now - t0 >= timeout:
            return "timeout"
        if now - last >= PROGRESS_EVERY_S:
            last = now
            load, cores = _load()
            progress(f"FiftyOne App server still starting on port {port}: {now - t0:.0f} s of up to {timeout:.0f} s"
                     f" (attempt {attempt} of {ATTEMPTS}; load average {load:.1f} on {cores} cores)")
        time.sleep(0.25)


def start_server(address: str, port: int, timeout: float, progress=lambda line: None):
    """Starts the App server on address:port, waiting up to `timeout` s per attempt with progress
    lines, and trying once more after a timeout or a crash. Returns FiftyOne's ServerService (None:
    a FiftyOne App already serves that port), or raises CurationError with one line saying what to do."""
    if not port_is_free(address, port):
        return None   # a FiftyOne App already serves there: the session attaches to it, as FiftyOne does
    why: str | None = "timeout"
    for attempt in range(1, ATTEMPTS + 1):
        service = _server_service(address, port)
        why = _wait_listening(service, port, timeout, progress, attempt)
        if why is None:
            return service
        service.stop()   # closes the wrapper's stdin: it stops the server it started
        if attempt < ATTEMPTS:
            detail = f"did not listen within {timeout:.0f} s" if why == "timeout" else why
            progress(f"FiftyOne App server on port {port} {detail}; trying again")
    load, cores = _load()
    if why == "timeout":
        raise CurationError(
            f"the FiftyOne App server did not listen on {address}:{port} within {timeout:g} s ({ATTEMPTS} attempts; "
            f"load average {load:.1f} on {cores} cores): the machine is too busy to start it in time; retry with a "
            f"longer wait (--start-timeout SECONDS or {START_TIMEOUT_ENV}) or when the load is lower")
    raise CurationError(f"the FiftyOne App server on {address}:{port} {why} while starting ({ATTEMPTS} attempts); "
                        f"is port {port} free? try another --port")
