"""The real CLI against a real service in a temporary home (the vboxmanage integration fixture)."""

from tests.integration.vboxmanage.conftest import Cli, vbm  # noqa: F401 - re-exported fixtures
