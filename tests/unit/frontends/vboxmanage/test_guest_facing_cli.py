"""guestproperty enumerate's layouts and option parsing, sharedfolder's option parsing and the
showvminfo shared folder sections, on plain data."""

import pytest

from frontends.vboxmanage.cmd_guestproperty import parse_enumerate, render_enumerate
from frontends.vboxmanage.cmd_sharedfolder import parse
from frontends.vboxmanage.output import SyntaxFailure
from frontends.vboxmanage.render_vminfo import _shared_folders

T0 = 1714566896789000000  # 2024-05-01T12:34:56.789Z
ROWS = [("/b/long-name", "v", T0, ""), ("/a", "value", T0, "TRANSIENT, RDONLYGUEST")]
DEFAULTS = {"old": False, "sort": True, "ts": True, "abs": True, "flags": True}


def test_enumerate_table_sorted_and_padded():
    assert render_enumerate(ROWS, DEFAULTS, T0) == (
        # width: name + value + 6
        "/a           = 'value' @ 2024-05-01T12:34:56.789Z TRANSIENT, RDONLYGUEST\n"
        "/b/long-name = 'v'     @ 2024-05-01T12:34:56.789Z\n")
    assert render_enumerate(ROWS, dict(DEFAULTS, ts=False, flags=False), T0) == (
        "/a           = 'value'\n/b/long-name = 'v'\n")
    # padding, then a space
    assert (
        render_enumerate(ROWS, dict(DEFAULTS, ts=False), T0)
        .splitlines()[0]
        .endswith("'  TRANSIENT, RDONLYGUEST")
    )
    assert render_enumerate(ROWS, dict(DEFAULTS, abs=False), T0 + 61_500_000_000).splitlines()[0].endswith(
        "@ 1m 01.500s TRANSIENT, RDONLYGUEST")


def test_enumerate_old_format_and_empty():
    assert render_enumerate(ROWS, dict(DEFAULTS, old=True, sort=False), 0) == (
        f"Name: /b/long-name, value: v, timestamp: {T0}, flags: \n"
        f"Name: /a, value: value, timestamp: {T0}, flags: TRANSIENT, RDONLYGUEST\n")
    assert render_enumerate([], DEFAULTS, 0) == "No properties found.\n"


def test_enumerate_options():
    vm, patterns, opts = parse_enumerate(["vm1", "--patterns", "/a*", "/b*", "--no-ts", "--unsort"])
    assert (vm, patterns, opts["ts"], opts["sort"]) == ("vm1", ["/a*", "/b*"], False, False)
    with pytest.raises(SyntaxFailure):
        parse_enumerate(["vm1", "--bogus"])


def test_sharedfolder_options():
    o = parse(["vm1", "--name=n", "--hostpath", "/tmp/x", "--readonly", "--automount", "--auto-mount-point",
               "/mnt"], adding=True)
    assert (o["vm"], o["name"], o["hostpath"], o["readonly"], o["automount"], o["mountpoint"]) == (
        "vm1", "n", "/tmp/x", True, True, "/mnt")
    for args, text in ((["vm1", "--hostpath", "/x"], "No shared folder name (--name) was given"),
                       (["vm1", "--name", "a b", "--hostpath", "/x"],
                        "Invalid shared folder name 'a b': contains space"),
                       (["vm1", "--name", "a"], "No host path (--hostpath) was given"),
                       (["--name", "a"], "No machine was specified")):
        with pytest.raises(SyntaxFailure) as e:
            parse(args, adding=True)
        assert e.value.text == text
    with pytest.raises(SyntaxFailure):
        parse(["vm1", "--name", "a", "--readonly"], adding=False)


def test_shared_folder_sections():
    info = {"shared_folders": [{"name": "v", "host_path": "/h", "writable": True, "auto_mount": False,
                                "auto_mount_point": ""}],
            "transient_folders": [{"name": "t", "host_path": "/t", "writable": False, "auto_mount": True,
                                   "auto_mount_point": "/m"}]}
    assert "".join(_shared_folders(info, True)) == (
        'SharedFolderNameMachineMapping1="v"\nSharedFolderPathMachineMapping1="/h"\n'
        'SharedFolderNameTransientMapping1="t"\nSharedFolderPathTransientMapping1="/t"\n')
    assert "".join(_shared_folders(info, False)) == (
        "Shared folders:              \n\nName: 'v', Host path: '/h' (machine mapping), writable\n"
        "Name: 't', Host path: '/t' (transient mapping), readonly, auto-mount, mount-point: '/m'\n\n")
    assert "".join(_shared_folders({}, False)) == "Shared folders:              <none>\n"
    assert _shared_folders({}, True) == []
