"""/scan/sw.js over HTTP: the cache name follows the cached files, browsers always re-check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tracker.web import STATIC_DIR
from tracker.web import scan_worker
from tracker.web.scan_worker import cached_urls
from tracker.web.scan_worker import service_worker
from tracker.web.scan_worker import static_path


@pytest.fixture
def altered_static(app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    """The app serving a copy of its static folder in which one cached file has changed."""
    copy = tmp_path / "static"
    shutil.copytree(STATIC_DIR, copy)
    source = (copy / scan_worker.WORKER).read_text(encoding="utf-8")
    scan_js = static_path(copy, next(u for u in cached_urls(source) if u.endswith("scan.js")))
    scan_js.write_bytes(scan_js.read_bytes() + b"\n// a deployed fix\n")
    monkeypatch.setattr(app, "static_folder", str(copy))
    return copy


def test_the_served_worker_names_its_cache_after_the_cached_files(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/scan/sw.js")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert f'const CACHE = "coi-scanner-{service_worker(STATIC_DIR).digest}";' in body
    assert scan_worker.PLACEHOLDER not in body
    assert response.mimetype == "text/javascript"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Service-Worker-Allowed"] == "/scan/"


def test_a_changed_cached_file_changes_the_served_cache_name_and_etag(
    client, altered_static: Path
) -> None:  # type: ignore[no-untyped-def]
    real = service_worker(STATIC_DIR)
    response = client.get("/scan/sw.js")
    body = response.get_data(as_text=True)
    digest = service_worker(altered_static).digest
    assert digest != real.digest
    assert f'"coi-scanner-{digest}"' in body
    # A browser re-checking with the old worker's ETag must get the new script, not a 304.
    again = client.get("/scan/sw.js", headers={"If-None-Match": f'"{real.etag}"'})
    assert again.status_code == 200
    assert again.get_data(as_text=True) == body


def test_an_unchanged_worker_is_revalidated_with_a_304(client) -> None:  # type: ignore[no-untyped-def]
    first = client.get("/scan/sw.js")
    again = client.get("/scan/sw.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Service-Worker-Allowed"] == "/scan/"
