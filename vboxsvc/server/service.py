"""The service as a bus host: clients arrive and leave, sessions are released, idle exit.

With auto-shutdown the service exits `shutdown_delay` seconds after the last client is
gone (VirtualBox: 5 s), unless a VM process it launched has not connected yet or a long
operation is still running. A VM process is a client, so the service stays while VMs run.
"""

from __future__ import annotations

import contextlib
import logging
import os

from ..api.errors import VBoxError
from ..ipc.busserver import BusServer, ClientInfo, Host
from .context import ctx
from .events import EventSource
from .progress import Progress
from .session import VirtualBoxClient, release_client_sessions

log = logging.getLogger("vboxsvc.service")


@contextlib.contextmanager
def _pydantic_plugins_off():
    """Import the settings models without pydantic's plugin discovery (a scan of every installed
    distribution's entry points, 15-40 ms of the service's start-up); the service uses no plugins."""
    if "PYDANTIC_DISABLE_PLUGINS" in os.environ:
        yield
        return
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    try:
        yield
    finally:  # not inherited by the VM processes the service starts
        os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)


class Service(Host):
    def __init__(self, key: bytes, auto_shutdown: bool, shutdown_delay_s: float):
        self.bus = BusServer(key, self)
        self.auto_shutdown = auto_shutdown
        self.shutdown_delay_s = shutdown_delay_s
        self.startup_error: VBoxError | None = None
        self._idle_timer = None
        ctx.bus = self.bus
        ctx.service = self
        ctx.events = EventSource()

    def load(self) -> None:
        """Read VirtualBox.xml and the machines; a broken setup is reported to every client."""
        with _pydantic_plugins_off():
            from settings.errors import SettingsError

            from .virtualbox import VirtualBox
        try:
            ctx.vbox = VirtualBox()
            from .reattach import adopt_running
            adopt_running(ctx.vbox)
        except SettingsError as e:
            log.error("cannot load the VirtualBox settings: %s", e)
            self.startup_error = VBoxError(0x80BB000A, str(e), "IVirtualBox", "VirtualBoxWrap")
        except OSError as e:
            log.error("cannot load the VirtualBox settings: %s", e)
            self.startup_error = VBoxError(0x80BB0004, f"Cannot access the VirtualBox home folder: {e}",
                                           "IVirtualBox", "VirtualBoxWrap")

    # --- Host --------------------------------------------------------------------------------
    def on_hello(self, client: ClientInfo) -> dict:
        if self.startup_error is not None:
            raise self.startup_error
        self._cancel_idle()
        vbc = VirtualBoxClient(client)
        client.data["vbclient"] = vbc
        # logged once the answer is on its way: a command's first call does not wait for the log file
        self.bus.post(lambda: log.info("client %s connected (pid %d, %s)", client.sid.hex()[:8], client.pid,
                                       client.name))
        return {"pid": os.getpid(), "vbox": ctx.vbox, "client": vbc}

    def on_client_gone(self, client: ClientInfo) -> None:
        log.info("client %s gone (pid %d)", client.sid.hex()[:8], client.pid)
        release_client_sessions(client)
        ctx.events.drop_owner(client.sid)
        self.bus.table.drop_tag(client.sid)
        self.check_idle()

    # --- idle exit --------------------------------------------------------------------------------
    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def check_idle(self) -> None:
        if not self.auto_shutdown or self.bus.clients:
            return
        self._cancel_idle()
        self._idle_timer = self.bus.call_later(self.shutdown_delay_s, self._idle_expired)

    def _busy(self) -> bool:
        if ctx.vbox is not None and any(c.launch is not None and not c.launch.done for c in ctx.vbox.cores):
            return True
        return any(not p.completed for p in Progress.registry.values())

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if self.bus.clients:
            return
        if self._busy():
            self._idle_timer = self.bus.call_later(self.shutdown_delay_s, self._idle_expired)
            return
        log.info("no clients for %.1f s: shutting down", self.shutdown_delay_s)
        self.bus.stop()
