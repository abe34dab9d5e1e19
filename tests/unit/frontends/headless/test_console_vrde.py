"""IConsole.VRDEServerInfo of the VM process: one object, read live (pollers such as Vagrant call
showvminfo thousands of times; every object the console hands out stays exported)."""

from types import SimpleNamespace

from frontends.headless.console import HeadlessConsole


def test_vrde_server_info_is_one_live_object():
    process = SimpleNamespace(vrde=None)
    console = HeadlessConsole(process)
    info = console.vrde_server_info
    assert (info.active, info.port, info.number_of_clients, info.begin_time) == (False, -1, 0, 0)
    process.vrde = SimpleNamespace(active=1, port=5901, connections=2, last_connect=12.5,
                                   last_disconnect=None)
    again = console.vrde_server_info
    assert again is info
    assert (info.active, info.port, info.number_of_clients, info.begin_time, info.end_time) == (
        True, 5901, 2, 12500, 0)
    process.vrde = None          # the server stopped (VRDE turned off while running)
    assert (info.active, info.port) == (False, -1)
