"""Google Cloud credentials, decided at once: the one place where Vertex AI calls, gs:// registries
and models, and gs:// inputs get them.

google-auth's `default()` looks in three places: GOOGLE_APPLICATION_CREDENTIALS, gcloud's
application-default file, then the GCE metadata server, which it probes three times with a 3 s
timeout, and again on every call. Without a network or credentials that is tens of seconds to
minutes before a `DefaultCredentialsError` traceback. Here the first two are checked on disk and the
metadata server is asked once, briefly (`GCE_METADATA_TIMEOUT`, default 1 s here; `NO_GCE_CHECK=true`
skips it, both google-auth's documented settings); google-auth is called only when one of the three
has something, so "no credentials" is one line within about a second. The GCS emulator
(`STORAGE_EMULATOR_HOST`) needs none.
"""
from __future__ import annotations

import os

NO_CREDENTIALS = ("no Google Cloud credentials: run gcloud auth application-default login or set "
                  "GOOGLE_APPLICATION_CREDENTIALS")
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
PROBE_TIMEOUT_S = 1.0
_GCE_PRODUCT_NAME = "/sys/class/dmi/id/product_name"


class NoCredentials(Exception):
    """No usable Google Cloud credentials; the message is one line saying what to do."""


def emulated() -> bool:
    """GCS calls go to an emulator (the tests' real GCS server): no credentials involved."""
    return bool(os.environ.get("STORAGE_EMULATOR_HOST"))


def adc_file() -> str | None:
    """gcloud's application-default credentials file, if there is one."""
    try:
        from google.auth import _cloud_sdk
        path = _cloud_sdk.get_application_default_credentials_path()
    except Exception:  # noqa: BLE001 - the documented location
        root = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "gcloud")
        path = os.path.join(root, "application_default_credentials.json")
    return path if os.path.isfile(path) else None


def on_gce(timeout: float | None = None) -> bool:
    """Whether a GCE metadata server answers (one request, `timeout` seconds), as on Compute Engine,
    GKE, Vertex AI and Dataflow workers. Honours google-auth's GCE_METADATA_IP, GCE_METADATA_TIMEOUT
    and NO_GCE_CHECK."""
    if os.environ.get("NO_GCE_CHECK", "").strip().lower() == "true":
        return False
    try:
        with open(_GCE_PRODUCT_NAME) as f:
            if f.read().strip().startswith("Google"):
                return True
    except OSError:
        pass
    if timeout is None:
        try:
            timeout = float(os.environ.get("GCE_METADATA_TIMEOUT", PROBE_TIMEOUT_S))
        except ValueError:
            timeout = PROBE_TIMEOUT_S
    import http.client
    host = os.environ.get("GCE_METADATA_IP", "169.254.169.254")
    conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Metadata-Flavor": "Google"})
        return conn.getresponse().getheader("Metadata-Flavor") == "Google"
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        conn.close()


def credentials(scopes=SCOPES):
    """(credentials, project or None) from Application Default Credentials, or NoCredentials at once."""
    if not (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or adc_file() or on_gce()):
        raise NoCredentials(NO_CREDENTIALS)
    import google.auth
    from google.auth import exceptions
    try:
        return google.auth.default(scopes=list(scopes))
    except exceptions.DefaultCredentialsError as e:
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NoCredentials(f"{NO_CREDENTIALS} ({cause})") from None


def storage_client():
    """A google-cloud-storage client: anonymous on the emulator, else with these credentials."""
    import google.cloud.storage as storage   # (mypy: `from google.cloud import storage` misses it)
    if emulated():
        from google.auth.credentials import AnonymousCredentials
        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test-project"),
                              credentials=AnonymousCredentials())
    creds, project = credentials()
    return storage.Client(project=project or os.environ.get("GOOGLE_CLOUD_PROJECT"), credentials=creds)


def beam_gcs_on_emulator() -> None:
    """On the emulator, Beam's gs:// filesystem connects anonymously at once. (Beam looks up Application
    Default Credentials itself, retrying four times with back-off — about 24 s in every process —
    before it falls back to an anonymous client; the emulator needs no credentials.) Beam caches its
    answer per process in `apache_beam.internal.gcp.auth._Credentials` (Beam 2.74; no public switch:
    `--no_auth` does not reach gcsio); elsewhere Beam's own lookup is left alone. The cache is Beam's
    for all of Google Cloud (a Dataflow submission too): with the emulator set, everything Beam does is
    anonymous, as the emulator implies."""
    global _beam_anonymous
    if not emulated() and not _beam_anonymous:
        return
    from apache_beam.internal.gcp import auth
    with auth._Credentials._credentials_lock:  # noqa: SLF001 - see above
        auth._Credentials._credentials = None  # noqa: SLF001
        # emulator gone (a test unset it): Beam looks for credentials again, as it would have
        auth._Credentials._credentials_init = emulated()  # noqa: SLF001
    _beam_anonymous = emulated()


_beam_anonymous = False   # whether beam_gcs_on_emulator set Beam's cache (undone without the emulator)
