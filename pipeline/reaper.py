"""Nothing outlives a killed `synthdetect ingest`: its Beam workers and its temporary folders.

The DirectRunner's worker processes are started by Beam, not by us, and keep running for minutes
when their launcher dies (SIGKILL, an OOM kill, a closed terminal): ~230 MB each. `Reaper` starts a
small watcher process in its own session before the job: the launcher holds the write end of a
pipe the watcher reads, so the watcher sees end-of-file the moment the launcher is gone, however it
ended. Every process the job starts inherits an environment variable holding a random token; the
watcher then ends every process carrying that token (SIGTERM, then SIGKILL) and removes the folders
it was given. After a clean end the same sweep finds nothing to do.

    python -m pipeline.reaper TOKEN [PATH ...]   (the watcher; stdin is the pipe)
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

TOKEN_ENV = "SYNTHDETECT_JOB_TOKEN"


def _carriers(token: str) -> list[int]:
    """PIDs of the processes whose environment holds TOKEN_ENV=token (this process excluded)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    out.append(int(name))
        except OSError:
            continue
    return out


def sweep(token: str, paths: list[str], grace: float = 3.0) -> int:
    """Ends the token's processes and removes `paths`; returns how many processes were signalled."""
    pids = _carriers(token)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + grace
        while pids and time.time() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}") and not _zombie(p)]
            time.sleep(0.1)
        if not pids:
            break
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
    return len(pids)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


class Reaper:
    """`with Reaper([progress_dir]):` around a job whose processes must not outlive this one.
    Sets TOKEN_ENV in this process's environment (inherited by every process the job starts)."""

    def __init__(self, paths: list[str] | None = None):
        self.token = uuid.uuid4().hex
        self.paths = [p for p in (paths or []) if p]
        self._proc: subprocess.Popen | None = None
        self._w: int | None = None
        self._old: str | None = None

    def __enter__(self) -> Reaper:
        if not os.path.isdir("/proc"):   # the sweep reads /proc: elsewhere, no watcher
            return self
        r, w = os.pipe()                 # both ends non-inheritable: Beam's workers never hold `w`
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        self._proc = subprocess.Popen([sys.executable, "-m", "pipeline.reaper", self.token, *self.paths], stdin=r,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                      start_new_session=True)   # not reached by the terminal's Ctrl-C
        os.close(r)
        self._w = w
        self._old = os.environ.get(TOKEN_ENV)
        os.environ[TOKEN_ENV] = self.token
        return self

    def __exit__(self, *exc) -> None:
        if self._old is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = self._old
        if self._w is not None:
            os.close(self._w)            # the watcher sweeps now, as it would had we been killed
            self._w = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass


def main(argv: list[str]) -> int:
    token, paths = argv[0], argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:                          # until the launcher's end of the pipe is closed
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    sweep(token, paths)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
