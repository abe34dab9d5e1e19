"""Where the built guest lives: the builder writes there, the media and Debian disk finders and
the tests read from there."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$VBOXPY_GUEST_CACHE, else `.cache/guest` in the checkout."""
    env = os.environ.get("VBOXPY_GUEST_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".cache" / "guest"
