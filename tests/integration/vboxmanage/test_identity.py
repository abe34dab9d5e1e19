"""The identity vboxpy speaks as, through the real CLI and service: 7.0 by default, 7.1 with
VBOXPY_VBOX_VERSION=7.1, and the version, API version and the layouts that differ agree."""

import re

from .test_cli import create


def _check(vbm, version_re: str, api: str, v71: bool) -> None:
    code, version, _ = vbm("--version")
    assert code == 0 and re.fullmatch(version_re, version), version
    create(vbm)
    info = vbm.machinereadable("vm1")
    assert ("platformArchitecture" in info) == v71
    _, human, _ = vbm("showvminfo", "vm1")
    assert ("Platform Architecture:" in human) == v71
    _, props, _ = vbm("list", "systemproperties")
    assert props.startswith(f"API version:                     {api}\n")
    assert ("Host platform properties:" in props) == v71
    assert "Default Guest Additions ISO:" in props and "Default machine folder:" in props
    _, ostypes, _ = vbm("list", "ostypes")
    assert ostypes.startswith("Supported guest OS types:\n\n") == v71
    assert ("ID:          Debian_64\n" in ostypes) == (not v71)
    _, out, _ = vbm("--help")
    assert out.startswith(f"Oracle VirtualBox Command Line Management Interface Version "
                          f"{version.split('r')[0]}\n")


def test_default_is_70(vbm):
    _check(vbm, r"7\.0\.\d+r\d+\n", "7_0", v71=False)


def test_71_on_request(vbm):
    vbm.stop_service()  # the service keeps the identity it started with
    vbm.env["VBOXPY_VBOX_VERSION"] = "7.1"
    _check(vbm, r"7\.1\.\d+r\d+\n", "7_1", v71=True)
