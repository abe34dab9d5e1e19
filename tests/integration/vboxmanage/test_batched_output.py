"""The CLI's fast paths print byte for byte what the one-call-per-attribute paths print.

`list vms`, `showvminfo` and `getextradata` read what they print in a few batched round trips
and, in their plain forms, without click. Each command here runs twice against the same
service: as users run it, and with batching and the click-free forms switched off (the
prefetch returning the proxy itself, one call per attribute, click parsing every form), which
is how the CLI read the API before. stdout, stderr and exit code must match exactly.
"""

import sys
import textwrap

import pytest

from .test_cli import create

# the same CLI run with batching and the click-free forms switched off
PER_ATTRIBUTE = textwrap.dedent("""
    import sys
    from frontends.vboxmanage import extradata, fetch, listing, main
    fetch.prefetch = lambda root, plans, levels=8: root
    fetch.prefetch_all = lambda roots, plans, levels=8: list(roots)

    # every entry as its lone call, an Earlier as the result it names (the client's own fallback for
    # a service that does not take Earlier)
    fetch.batch = lambda calls: fetch.Api.client()._one_by_one(list(calls), False)
    listing.machine_list_entries = lambda machines: [listing.machine_list_entry(m) for m in machines]
    extradata._values = lambda obj, keys: [(True, obj.get_extra_data(k)) for k in keys]
    main.FAST = {}
    main.main(sys.argv[1:])
""")


def per_attribute(vbm, *args):
    proc = vbm.world.run(
        [vbm.world.python, "-c", PER_ATTRIBUTE, *args], cwd=vbm.home, env=vbm.env, timeout=120
    )
    return proc.returncode, proc.stdout, proc.stderr


def same(vbm, *args) -> tuple:
    fast = vbm(*args)
    assert fast == per_attribute(vbm, *args), args
    return fast


@pytest.fixture
def configured(vbm, tmp_path):
    """A VM with something in every section showvminfo prints, and a bare one."""
    uuid, _ = create(vbm, "rich", "--ostype", "Debian_64", "--groups", "/team")
    create(vbm, "bare")
    share = tmp_path / "share"
    share.mkdir()
    disk = tmp_path / "rich.vdi"
    for args in (
        (
            "modifyvm",
            "rich",
            "--memory",
            "256",
            "--cpus",
            "2",
            "--description",
            "two\nlines",
            "--vram",
            "16",
            "--nic1",
            "nat",
            "--natpf1",
            "ssh,tcp,127.0.0.1,2222,,22",
            "--nic2",
            "intnet",
            "--intnet2",
            "lab",
            "--cableconnected2",
            "off",
            "--macaddress2",
            "080027000002",
            "--uart1",
            "0x3f8",
            "4",
            "--uartmode1",
            "disconnected",
            "--vrde",
            "on",
            "--vrdeport",
            "5000",
            "--audio-enabled",
            "on",
            "--usbohci",
            "on",
            "--boot1",
            "disk",
            "--boot2",
            "net",
            "--acpi",
            "on",
            "--ioapic",
            "on",
        ),
        ("storagectl", "rich", "--name", "SATA", "--add", "sata", "--portcount", "2"),
        ("createmedium", "disk", "--filename", str(disk), "--size", "4"),
        (
            "storageattach",
            "rich",
            "--storagectl",
            "SATA",
            "--port",
            "0",
            "--device",
            "0",
            "--type",
            "hdd",
            "--medium",
            str(disk),
        ),
        (
            "storageattach",
            "rich",
            "--storagectl",
            "SATA",
            "--port",
            "1",
            "--device",
            "0",
            "--type",
            "dvddrive",
            "--medium",
            "emptydrive",
        ),
        ("sharedfolder", "add", "rich", "--name", "data", "--hostpath", str(share), "--automount"),
        ("setextradata", "rich", "vboxpy/BootCmdline", "console=ttyS0"),
        ("setextradata", "rich", "zeta", "last"),
        ("setextradata", "rich", "alpha", "with spaces"),
        ("setextradata", "global", "GUI/Test", "1"),
    ):
        code, _, err = vbm(*args)
        assert code == 0, (args, err)
    return uuid


def test_showvminfo_batched_equals_per_attribute(vbm, configured):
    code, out, _ = same(vbm, "showvminfo", "rich", "--machinereadable")
    assert code == 0 and 'natnet1="nat"' in out and 'Forwarding(0)="ssh,tcp,127.0.0.1,2222,,22"' in out
    assert '"SATA-0-0"=' in out and 'SharedFolderNameMachineMapping1="data"' in out
    for args in (
        ("showvminfo", "rich"),
        ("showvminfo", "--details", "rich"),
        ("showvminfo", configured),
        ("showvminfo", "bare", "--machinereadable"),
        ("showvminfo", "-machinereadable", "bare"),
        ("showvminfo", "ghost", "--machinereadable"),
        ("showvminfo", "rich", "--machinereadable", "--machinereadable"),
    ):
        same(vbm, *args)


def test_showvminfo_leaves_the_machine_unlocked(vbm, configured):
    """showvminfo takes a Shared lock (a write lock on a machine nobody runs) and does not wait for
    its unlock's answer: the next command, started at once, still finds the machine unlocked."""
    for size in (64, 96, 128):
        assert vbm("showvminfo", "bare", "--machinereadable")[0] == 0
        assert vbm("modifyvm", "bare", "--memory", str(size)) == (0, "", "")
        assert f"memory={size}\n" in vbm("showvminfo", "bare", "--machinereadable")[1]


def test_showvminfo_with_a_snapshot(vbm, configured):
    assert vbm("snapshot", "rich", "take", "first", "--description", "one")[0] == 0
    code, out, _ = same(vbm, "showvminfo", "rich", "--machinereadable")
    assert code == 0 and 'SnapshotName="first"' in out
    same(vbm, "showvminfo", "rich")
    assert same(vbm, "snapshot", "rich", "showvminfo", "first")[0] == 0


def test_list_vms_batched_equals_per_attribute(vbm, configured):
    code, out, _ = same(vbm, "list", "vms")
    assert code == 0 and out.count("\n") == 2 and out.startswith('"rich" {')
    for args in (("list", "--sorted", "vms"), ("list", "runningvms"), ("list", "-l", "vms")):
        same(vbm, *args)


def test_getextradata_batched_equals_per_attribute(vbm, configured):
    assert same(vbm, "getextradata", "rich", "enumerate")[1] == (
        "Key: vboxpy/BootCmdline, Value: console=ttyS0\nKey: zeta, Value: last\n"
        "Key: alpha, Value: with spaces\n"
    )
    assert same(vbm, "getextradata", "rich", "alpha") == (0, "Value: with spaces\n", "")
    for args in (
        ("getextradata", "rich"),
        ("getextradata", "bare", "enumerate"),
        ("getextradata", "rich", "none"),
        ("getextradata", "global", "GUI/Test"),
        ("getextradata", "global", "enumerate"),
        ("getextradata", "ghost", "x"),
        ("getextradata", "rich", "--bogus"),
    ):
        same(vbm, *args)


def test_running_vm_showvminfo_batched_equals_per_attribute(vbm, configured):
    from .test_running_vm import FAKE_VM

    vbm.stop_service()  # restart it with the stand-in VM process (tests/integration/vboxsvc/fake_vm.py)
    vbm.env["VBOXPY_VM_PROCESS"] = f"{sys.executable} {FAKE_VM}"
    assert vbm("startvm", "bare", "--type", "headless")[0] == 0
    try:
        code, out, _ = same(vbm, "showvminfo", "bare", "--machinereadable")
        assert code == 0 and 'VMState="running"' in out
        same(vbm, "showvminfo", "bare")
        same(vbm, "list", "runningvms")
        # an Earlier naming an object of the VM process: that entry goes on to it as the object
        proc = vbm.world.run([vbm.world.python, "-c", CONSOLE_THROUGH_EARLIER], cwd=vbm.home, env=vbm.env,
                             timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["True"] * 6 + ["False", "True"], proc.stdout
    finally:
        vbm("controlvm", "bare", "poweroff")


CONSOLE_THROUGH_EARLIER = textwrap.dedent("""
    from vboxsvc.ipc.client import connect
    from vboxsvc.ipc.dispatcher import CALL, GET
    from vboxsvc.ipc.wire import Earlier
    c = connect(light=True)
    got = c.batch([(c.virtualbox, CALL, "find_machine", ("bare",)),
                   (c.virtualbox_client, GET, "session", ()),
                   (Earlier(0, "IMachine"), CALL, "lock_machine", (Earlier(1, "ISession"), 1)),
                   (Earlier(1, "ISession"), GET, "console", ()),
                   (Earlier(3, "IConsole"), GET, "vrde_server_info", ()),
                   (Earlier(1, "ISession"), CALL, "unlock_machine", ())])
    print(*[ok for ok, _ in got])
    # nested in an argument of an entry for the VM process: refused here, not sent on
    (ok, error), = c.batch([(got[3][1], CALL, "take_snapshot_online", ("x", [Earlier(0)]))])
    print(ok, error.result_code == 0x80070057)
    c.close()
""")
