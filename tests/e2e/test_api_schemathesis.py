"""Schemathesis against /api/openapi.json: no 5xx, and every answer matches the document.

Each operation is its own test (``[POST /api/v1/...]``) in the usual rolled-back transaction,
called as a logged-in administrator (session cookie + CSRF header) so generated requests reach
the handlers, not only the authentication gate. Path parameters come both from records seeded
for that test and from schemathesis' own strategy. Select these tests with ``-m schemathesis``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance
from schemathesis.specs.openapi.checks import negative_data_rejection
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.api_seed import SOURCES
from tests.api_seed import seed_api_world
from tests.e2e.test_api import login
from tracker.config import Settings
from tracker.web import create_app

pytestmark = pytest.mark.schemathesis

MAX_EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# The document is loaded once, at collection, from an app that only serves it (it never opens
# its database). Requests then go to the test's own app, bound to the rolled-back transaction.
# (schemathesis' lazy `from_fixture` loader would avoid this, but 4.32 reads `Node._nodeid`,
# which pytest 9.2 no longer has.)
_DOCUMENT_APP = create_app(
    Settings(env="test", database_url="sqlite://", secret_key="schema-only")  # type: ignore[arg-type]
)
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", _DOCUMENT_APP)

# Public ids of the records seeded for the running test, by the path segment that names them.
_seeded: dict[str, list[Any]] = {}


def _seeded_value(source: str) -> st.SearchStrategy[Any]:
    # Looked up when drawn, not when the strategy is built: ids are new in every test.
    return st.integers(min_value=0, max_value=15).map(
        lambda i: _seeded[source][i % len(_seeded[source])]
    )


def _path_sources(path: str) -> dict[str, str]:
    """Each path parameter with the collection segment before it (``orders``: ``{public_id}``)."""
    segments = path.strip("/").split("/")
    return {
        seg[1:-1]: segments[i - 1]
        for i, seg in enumerate(segments)
        if seg.startswith("{") and i > 0
    }


@schema.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    names = _path_sources(context.operation.path)
    if not names or not all(src in SOURCES for src in names.values()):
        return strategy
    known = st.fixed_dictionaries({name: _seeded_value(src) for name, src in names.items()})
    # Seeded records first: Hypothesis tries (and shrinks towards) the first branch.
    return st.one_of(known, strategy)


USER_AGENT = "tracker-schemathesis"


@dataclass
class Caller:
    app: Any
    client: Any
    csrf: str
    cookie: str

    def send(self, case: Any) -> Any:
        """Send as the logged-in administrator, unless the case is about missing credentials."""
        cookies = None
        if not case.operation.schema.is_security_param_negated(case):
            # Replace the generated credentials (a random cookie or bearer token) with ours.
            if case.headers:
                case.headers.pop("Authorization", None)
            cookies = {"session": self.cookie}
        headers = {"X-CSRFToken": self.csrf, "User-Agent": USER_AGENT}
        return case.call_and_validate(
            app=self.app, session=self.client, headers=headers, cookies=cookies, checks=CHECKS
        )


@pytest.fixture
def admin(app, client, world, new_uow, settings, clock):  # type: ignore[no-untyped-def]
    seeded = seed_api_world(new_uow, world, settings, clock.now())
    _seeded.clear()
    _seeded.update(seeded.ids)
    # Flask-Login's "strong" session protection ties the session to the user agent.
    client.environ_base["HTTP_USER_AGENT"] = USER_AGENT
    token, _ = login(client, "admin")
    yield Caller(app, client, token, client.get_cookie("session").value)
    _seeded.clear()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_operation_answers_as_documented(case, admin):  # type: ignore[no-untyped-def]
    admin.send(case)
