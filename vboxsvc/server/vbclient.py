"""IVirtualBoxClient: what each connection gets in its hello (the IVirtualBox and new sessions).

Kept apart from session.py so that the service answers a hello without loading the API's
enumerations (see quickstart.py).
"""

from __future__ import annotations

from .context import ctx


class VirtualBoxClient:
    """IVirtualBoxClient: one per connection; hands out the IVirtualBox and new sessions."""

    __interface__ = "IVirtualBoxClient"
    __component__ = "VirtualBoxClientWrap"

    def __init__(self, client):
        self._client = client
        self.__bus_tag__ = client.sid

    @property
    def virtual_box(self):
        return ctx.vbox

    @property
    def session(self):
        from .session import Session

        s = Session(self._client)
        self._client.data.setdefault("sessions", []).append(s)
        return s
