#!/usr/bin/env python3
"""Pin the Dockerfiles' base images by digest: every `ARG *_IMAGE=NAME:TAG@sha256:…` (or without a
digest yet) gets the digest NAME:TAG has in its registry now (the multi-platform index digest, what
`docker buildx imagetools inspect NAME:TAG` shows), written in place.

    python3 infra/pin_images.py            # resolve and write (needs Docker Hub / ghcr.io)
    python3 infra/pin_images.py --check    # exit 1 if a pin is UNRESOLVED (no network)

Standard library only; talks to the registries' HTTP API (anonymous pull tokens), no Docker engine.
To move to a newer base image, change the tag and run it again."""
from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

INFRA = Path(__file__).resolve().parent
DOCKERFILES = (INFRA / "Dockerfile", INFRA / "Dockerfile.gpu")
PIN = re.compile(r"^(ARG [A-Z_]+_IMAGE=)([^@\s]+:[^@\s]+)(?:@sha256:(\S+))?$", re.M)
ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def parse_reference(ref: str) -> tuple[str, str, str]:
    """python:3.10-slim -> (registry-1.docker.io, library/python, 3.10-slim); ghcr.io/a/b:t -> (ghcr.io, a/b, t)."""
    name, tag = ref.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        registry, repo = name.split("/", 1)
    else:
        registry, repo = "registry-1.docker.io", name if "/" in name else f"library/{name}"
    return registry, repo, tag


def _token(challenge: str) -> str:
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    url = fields.pop("realm") + "?" + "&".join(f"{k}={v}" for k, v in fields.items())
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.load(r)
    return body.get("token") or body["access_token"]


def resolve(ref: str) -> str:
    """The digest (hex) NAME:TAG points to in its registry now."""
    registry, repo, tag = parse_reference(ref)
    url = f"https://{registry}/v2/{repo}/manifests/{tag}"
    headers = {"Accept": ACCEPT}
    for _ in range(2):
        req = urllib.request.Request(url, headers=headers, method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                digest = r.headers["Docker-Content-Digest"]
                return digest.split(":", 1)[1]
        except urllib.error.HTTPError as e:
            if e.code != 401 or "Authorization" in headers:
                raise
            headers["Authorization"] = f"Bearer {_token(e.headers['WWW-Authenticate'])}"
    raise RuntimeError(f"{ref}: no digest")


def pin(text: str, resolver=resolve) -> str:
    """`text` (a Dockerfile) with every image ARG pinned to resolver(NAME:TAG)."""
    return PIN.sub(lambda m: f"{m.group(1)}{m.group(2)}@sha256:{resolver(m.group(2))}", text)


def unresolved(text: str) -> list[str]:
    return [m.group(2) for m in PIN.finditer(text) if not re.fullmatch(r"[0-9a-f]{64}", m.group(3) or "")]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        bad = [f"{f.name}: {ref}" for f in DOCKERFILES for ref in unresolved(f.read_text())]
        for b in bad:
            print(f"not pinned by digest: {b} (run `make pin-images`)", file=sys.stderr)
        return 1 if bad else 0
    texts = {f: f.read_text() for f in DOCKERFILES}
    try:   # every digest first: a failure leaves the files unchanged
        digests = {ref: resolve(ref) for text in texts.values() for ref in dict.fromkeys(
            m.group(2) for m in PIN.finditer(text))}
    except (OSError, urllib.error.URLError) as e:
        print(f"error: cannot resolve the image digests (needs Docker Hub and ghcr.io): {e}", file=sys.stderr)
        return 1
    for f, text in texts.items():
        f.write_text(pin(text, digests.__getitem__))
    for ref, digest in digests.items():
        print(f"{ref}@sha256:{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
