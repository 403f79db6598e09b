"""The scanner's service worker names its cache after the bytes of the files it caches.

Each test works on a copy of the static folder, so files can be altered. The files checked
are read from the real sw.js's FILES list, so a file added there is checked here too.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracker.web import STATIC_DIR
from tracker.web import scan_worker
from tracker.web.scan_worker import cached_urls
from tracker.web.scan_worker import service_worker
from tracker.web.scan_worker import static_path

REAL_URLS = cached_urls((STATIC_DIR / scan_worker.WORKER).read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # Each test's copy lives at a new path, but a clean cache keeps the tests independent.
    service_worker.cache_clear()
    yield
    service_worker.cache_clear()


@pytest.fixture
def static(tmp_path: Path) -> Path:
    copy = tmp_path / "static"
    shutil.copytree(STATIC_DIR, copy)
    return copy


def _digest(static_dir: Path) -> str:
    """The digest of a folder as it is now (bypassing the once-per-process memo)."""
    service_worker.cache_clear()
    return service_worker(static_dir).digest


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_worker(static_dir: Path, old: str, new: str) -> None:
    worker = static_dir / scan_worker.WORKER
    source = worker.read_text(encoding="utf-8")
    assert old in source
    worker.write_text(source.replace(old, new, 1), encoding="utf-8")


def test_the_served_script_names_its_cache_after_the_digest(static: Path) -> None:
    worker = service_worker(static)
    source = worker.body.decode()
    assert re.fullmatch(r"[0-9a-f]{12}", worker.digest)
    assert f'const CACHE = "coi-scanner-{worker.digest}";' in source
    assert scan_worker.PLACEHOLDER not in source


def test_the_real_worker_caches_files_that_exist() -> None:
    # An install whose addAll meets a 404 fails, and the old worker (and code) stays.
    assert REAL_URLS
    for url in REAL_URLS:
        assert static_path(STATIC_DIR, url).is_file(), url


@pytest.mark.parametrize("url", REAL_URLS)
def test_one_changed_byte_in_any_cached_file_changes_the_cache_name(static: Path, url: str) -> None:
    before = service_worker(static)
    _flip_last_byte(static_path(static, url))
    after = _digest(static)
    assert after != before.digest
    assert f'"coi-scanner-{after}"' in service_worker(static).body.decode()


def test_the_digest_stays_when_no_cached_file_changes(static: Path) -> None:
    before = _digest(static)
    assert _digest(static) == before  # computed twice from the same bytes
    # Files the worker does not cache, and the worker script itself, are not part of it.
    (static / "cockpit" / "unrelated.js").write_text("// not cached by the scanner\n")
    _edit_worker(static, "// Service worker", "// The service worker")
    for url in REAL_URLS:
        static_path(static, url).touch()  # a new date on the same bytes
    assert _digest(static) == before


def test_a_file_added_to_the_worker_list_is_covered_by_the_digest(static: Path) -> None:
    (static / "scan" / "extra.js").write_text("export const version = 1;\n")
    before = _digest(static)
    _edit_worker(
        static, '"/static/scan/outbox.js",', '"/static/scan/outbox.js",\n  "/static/scan/extra.js",'
    )
    added = _digest(static)
    assert added != before
    (static / "scan" / "extra.js").write_text("export const version = 2;\n")
    assert _digest(static) != added


@pytest.mark.parametrize(
    "entry",
    [
        "'/static/scan/extra.js'",  # another quoting
        "`/static/scan/extra.js`",
        "EXTRA",  # a constant: cached by the worker, invisible to a list of strings
    ],
)
def test_a_worker_list_entry_the_digest_cannot_read_is_refused(static: Path, entry: str) -> None:
    _edit_worker(static, '"/static/scan/outbox.js",', f'"/static/scan/outbox.js",\n  {entry},')
    with pytest.raises(ValueError, match="only string literals"):
        service_worker(static)


def test_a_cached_file_missing_from_the_deployment_fails_loudly(static: Path) -> None:
    static_path(static, REAL_URLS[-1]).unlink()
    with pytest.raises(FileNotFoundError):
        service_worker(static)


def test_a_listed_file_outside_the_static_folder_is_refused(static: Path) -> None:
    _edit_worker(static, '"/static/scan/outbox.js",', '"/static/../secret.txt",')
    (static.parent / "secret.txt").write_text("not ours to serve\n")
    with pytest.raises(ValueError, match="outside the static folder"):
        service_worker(static)


def test_a_worker_without_the_placeholder_is_refused(static: Path) -> None:
    _edit_worker(static, scan_worker.PLACEHOLDER, "v3")
    with pytest.raises(ValueError, match="exactly once"):
        service_worker(static)


def test_the_digest_is_computed_once_per_process_not_per_request(static: Path) -> None:
    first = service_worker(static)
    _flip_last_byte(static_path(static, REAL_URLS[0]))
    assert service_worker(static) is first
