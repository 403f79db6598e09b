"""The scanner's service worker script, with a cache name that follows the files it caches.

The worker serves its files cache-first, so a scanner only fetches them again when the cache
name changes. The name therefore carries a digest of the exact bytes of every file in the
worker's ``FILES`` list: any deployed change to one of them makes installed scanners reinstall.
The list is read from ``sw.js`` itself, so the files hashed and the files cached cannot drift.
The scanner page (and its worklist) are rendered per request and cached network-first by the
worker; they are not hashed, and their copies are dropped with the cache of the files they
were rendered with.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

WORKER = Path("scan") / "sw.js"  # relative to the app's static folder
PLACEHOLDER = "__FILES_DIGEST__"
STATIC_URL = "/static/"
_FILES = re.compile(r"^const FILES = \[(?P<body>.*?)\];", re.MULTILINE | re.DOTALL)
_STRING = re.compile(r'"([^"\\]*)"')
_COMMENT = re.compile(r"//[^\n]*")


@dataclass(frozen=True)
class ServiceWorker:
    """The script as served, and the digest its cache name carries."""

    body: bytes
    digest: str

    @property
    def etag(self) -> str:
        """Follows the served bytes (sw.js and digest), unlike a file-based ETag of sw.js."""
        return hashlib.sha256(self.body).hexdigest()[:16]


def cached_urls(source: str) -> list[str]:
    """The URLs in the worker's ``FILES`` list, refusing anything but plain string literals."""
    match = _FILES.search(source)
    if match is None:
        raise ValueError("sw.js has no `const FILES = [...];` list")
    body = match["body"]
    # A constant or template literal here would be cached but not hashed: refuse it.
    rest = _STRING.sub("", _COMMENT.sub("", body)).replace(",", "").strip()
    if rest:
        raise ValueError(f"sw.js FILES must hold only string literals, found: {rest!r}")
    urls = _STRING.findall(body)
    if not urls or not all(url.startswith(STATIC_URL) for url in urls):
        raise ValueError(f"sw.js FILES must list files under {STATIC_URL}: {urls}")
    return urls


def static_path(static_dir: Path, url: str) -> Path:
    """The file behind a /static/ URL, never outside the static folder."""
    path = (static_dir / url.removeprefix(STATIC_URL)).resolve()
    if not path.is_relative_to(static_dir.resolve()):
        raise ValueError(f"{url} is outside the static folder")
    return path


def files_digest(static_dir: Path, urls: list[str]) -> str:
    """First 12 hex digits of a SHA-256 over each file's URL, length and exact bytes."""
    sha = hashlib.sha256()
    for url in urls:
        data = static_path(static_dir, url).read_bytes()
        # URL and length frame each file, so moving bytes between files changes the digest.
        sha.update(f"{url}\n{len(data)}\n".encode())
        sha.update(data)
    return sha.hexdigest()[:12]


@functools.cache
def service_worker(static_dir: Path) -> ServiceWorker:
    """``sw.js`` with the digest of its cached files in its cache name; built once per process.

    Deployed files do not change while a process runs, so the digest is not recomputed per
    request; a new deployment starts new processes.
    """
    source = (static_dir / WORKER).read_text(encoding="utf-8")
    if source.count(PLACEHOLDER) != 1:
        raise ValueError(f"sw.js must hold {PLACEHOLDER} exactly once (in its cache name)")
    digest = files_digest(static_dir, cached_urls(source))
    return ServiceWorker(body=source.replace(PLACEHOLDER, digest).encode(), digest=digest)
