"""Fixtures: the real CLI against a real service (vboxmanage's), and a real service with a client
connection for API-level tests (vboxsvc's)."""

from tests.integration.vboxmanage.conftest import Cli, vbm  # noqa: F401 - re-exported fixtures
from tests.integration.vboxsvc.conftest import client, svc_env, vbox  # noqa: F401 - re-exported fixtures
