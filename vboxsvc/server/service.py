"""The service as a bus host: clients arrive and leave, sessions are released, idle exit.

With auto-shutdown the service exits `shutdown_delay` seconds after the last client is
gone (VirtualBox: 5 s), unless a VM process it launched has not connected yet or a long
operation is still running. A VM process is a client, so the service stays while VMs run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

from ..api import errors as rc
from ..api.errors import VBoxError
from ..ipc.busserver import BusServer, ClientInfo, Host
from .context import ctx
from .vbclient import VirtualBoxClient

log = logging.getLogger("vboxsvc.service")
READER_DELAY_S = 0.05   # quick start: the longest the full read of the settings waits for the first command


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
        self._reader: threading.Thread | None = None   # the full read of the settings, while quick
        self._read_result: tuple = (None, None)
        self._quick = None
        self._switch = 0.005
        self._valid: dict[str, list] = {}   # settings files the full read found valid: path -> identity
        ctx.bus = self.bus
        ctx.service = self
        ctx.events = None   # events.EventSource, made with the registry (it loads the API's enumerations)

    def load(self) -> None:
        """Read VirtualBox.xml and the machines; a broken setup is reported to every client.

        With a quick view (quickstart.py) the reading runs on a thread and the bus answers the
        machine list from the quick view meanwhile; any other call waits for the reading."""
        from settings import home as shome

        from ..ipc import paths
        from . import quickstart

        home = shome.vbox_user_home(create=True)
        record = paths.settings_record_path()
        try:
            quick = quickstart.quick_view(home, record)
        except Exception:  # noqa: BLE001 - the full read first, as without a record
            log.exception("could not make the quick view of the settings")
            quick = None
        if quick is None:
            self._events()
            self._take(*self._read(home, record))
            return
        self._quick = quick
        ctx.vbox = quick
        log.info("answering the machine list (%d machines) from the quick view while reading the settings",
                 len(quick.machines))
        self.bus.admit = self._admit
        self._reader = threading.Thread(target=self._read_then_post, args=(home, record), name="settings",
                                        daemon=True)
        # the reader starts once the first command that started us is answered (it leaves), or soon
        # anyway: the two would share the interpreter, and that command waits
        self.bus.call_later(READER_DELAY_S, self._start_reader)

    def _start_reader(self) -> None:
        reader = self._reader
        if reader is not None and reader.ident is None:
            # the reader holds the interpreter most of the time: hand it to the bus thread often
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(0.0005)
            reader.start()

    def _read(self, home: str, record: str):
        """The full read (any thread): (VirtualBox, None) or (None, the error every client is told)."""
        with _pydantic_plugins_off():
            from settings.errors import SettingsError

            from . import quickstart
            from .virtualbox import VirtualBox
        before = quickstart.before_reading(home)
        try:
            vbox = VirtualBox()
        except SettingsError as e:
            log.error("cannot load the VirtualBox settings: %s", e)
            return None, VBoxError(0x80BB000A, str(e), "IVirtualBox", "VirtualBoxWrap")
        except OSError as e:
            log.error("cannot load the VirtualBox settings: %s", e)
            return None, VBoxError(0x80BB0004, f"Cannot access the VirtualBox home folder: {e}",
                                   "IVirtualBox", "VirtualBoxWrap")
        self._valid = quickstart.valid_after_read(home, before, vbox)
        quickstart.leave_record(home, record, self._valid)
        return vbox, None

    def _read_then_post(self, home: str, record: str) -> None:
        try:
            self._read_result = self._read(home, record)
        except BaseException as e:  # an unexpected failure is every client's error, not a hang
            log.exception("reading the settings failed")
            self._read_result = (None, VBoxError(rc.E_FAIL, f"Reading the settings failed: {e}",
                                                 "IVirtualBox", "VirtualBoxWrap"))
        finally:
            self.bus.post(self._ready)

    def _take(self, vbox, error: VBoxError | None) -> None:
        """Serve `vbox` (bus thread), or fail every client with `error`."""
        self._events()
        if error is not None:
            ctx.vbox = None
            self.startup_error = error
            return
        ctx.vbox = vbox
        from .reattach import adopt_running
        try:
            adopt_running(vbox)
        except OSError as e:
            log.error("cannot load the VirtualBox settings: %s", e)
            self.startup_error = VBoxError(0x80BB0004, f"Cannot access the VirtualBox home folder: {e}",
                                           "IVirtualBox", "VirtualBoxWrap")

    @staticmethod
    def _events() -> None:
        if ctx.events is None:
            from .events import EventSource

            ctx.events = EventSource()

    def _ready(self) -> None:
        """The full read is done (bus thread): the real objects take over from the quick view."""
        if self._reader is None:
            return
        self._start_reader()
        reader, self._reader = self._reader, None
        reader.join()
        sys.setswitchinterval(self._switch)
        self.bus.admit = None
        vbox, error = self._read_result
        self._take(vbox, error)
        from . import quickstart
        quickstart.take_over(self.bus.table, self._quick, vbox)
        self._quick = None

    def _admit(self, msg: dict) -> bool:
        from . import quickstart
        if quickstart.answers(msg):
            return True
        self._ready()
        return False

    def leave_record(self) -> None:
        """At exit: the record for the next start's quick view (quickstart.py), the files this service
        wrote read again to check them."""
        if ctx.vbox is None or self._reader is not None or self.startup_error is not None:
            return
        from settings import home as shome

        from ..ipc import paths
        from . import quickstart

        try:
            quickstart.leave_record(shome.vbox_user_home(create=False), paths.settings_record_path(),
                                    self._valid)
        except Exception:  # noqa: BLE001 - the next start then reads in full, as without a record
            log.exception("could not leave the record of the settings")

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
        self._start_reader()
        log.info("client %s gone (pid %d)", client.sid.hex()[:8], client.pid)
        if client.data.get("sessions"):
            from .session import release_client_sessions

            release_client_sessions(client)
        if ctx.events is not None:
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
        if self._reader is not None:
            return True
        if ctx.vbox is not None and any(c.launch is not None and not c.launch.done for c in ctx.vbox.cores):
            return True
        from .progress import Progress

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
