"""TAP test fixtures: the TAP server over a filled alert DB, once per backend (helpers in tests/tap_helpers.py)."""

import pytest
from tap_helpers import database_url, fill, serve


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tap(request, tmp_path_factory):
    """A running TAP server over a filled alert DB, once per backend."""
    tmp_path = tmp_path_factory.mktemp(f"tap-{request.param}")
    with database_url(request.param, tmp_path) as url:
        fill(url)
        # uploads by URL on (public addresses only), as TAP 1.1 wants of a service with uploads: taplint checks
        # it (tests/tap/test_upload_url.py runs the default, off)
        with serve(request.param, url, tmp_path, "--http-uploads") as server:
            yield server
