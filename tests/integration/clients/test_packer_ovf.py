"""Debian's Packer, unmodified, builds an image with vboxpy: its virtualbox-ovf builder imports the
project's Vagrant box OVF, boots it headless, logs in over SSH through the NAT port forward it
adds, runs a shell provisioner, shuts the guest down with the guest's own `systemctl poweroff`,
exports a new OVF and deletes the machine it made. Packer drives `VBoxManage` (a wrapper on PATH
that runs vboxpy's) exactly as it drives VirtualBox; the template holds only what a user's
headless CI build would. The exported appliance must import again and its disk must carry the
file the provisioner wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.integration.clients.client_world import world_with_vboxmanage

ROOT = Path(__file__).resolve().parents[3]
BUILD_TIMEOUT = 1700        # import, a boot under REM on a loaded 2-core machine, export (about 5 min idle)
SSH_TIMEOUT = "20m"
MARKER = "/etc/packer-marker"
SECTOR = 512


def _missing() -> str | None:
    if shutil.which("packer") is None:
        return "Packer is not installed (scripts/install.sh --test installs Debian's)"
    if shutil.which("qemu-img") is None:
        return "qemu-img is not installed (qemu-utils)"
    if shutil.which("debugfs") is None and shutil.which("debugfs", path="/usr/sbin:/sbin") is None:
        return "debugfs (e2fsprogs) is not installed"
    return None


pytestmark = [pytest.mark.timeout(BUILD_TIMEOUT + 100),
              pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


@pytest.fixture(scope="module")
def box() -> tuple[Path, Path]:
    """(the box, the Vagrant insecure private key its `vagrant` user accepts)."""
    from vmm.guest import debian_disk, vagrant_box

    disk = debian_disk.find_debian_disk()
    if disk is None:
        pytest.skip("the Debian disk the box is made from is not built "
                    "(python3 -m vmm.guest.builder --media debian)")
    out = Path(os.environ.get("VBOXPY_BOX_CACHE", ROOT / ".cache" / "box"))
    return vagrant_box.build_box(disk.raw, out), disk.private_key


@pytest.fixture(scope="module")
def packer_world(box, tmp_path_factory):
    """One world whose PATH finds vboxpy's VBoxManage, with the box's OVF unpacked and the key."""
    box_file, key = box
    world = world_with_vboxmanage(tmp_path_factory, "packer-home")
    world.env.update(CHECKPOINT_DISABLE="1", PACKER_LOG="1")
    source = world.base / "box"
    source.mkdir()
    subprocess.run(["tar", "-xf", str(box_file), "-C", str(source)], check=True, timeout=300)
    shutil.copyfile(key, world.base / "key")
    (world.base / "key").chmod(0o600)
    for p in (source, world.base / "key"):
        world.give(p)
    yield world
    world.cleanup()


def _template(name: str, ovf: Path, key: Path, out: Path, marker: str) -> str:
    import json
    return json.dumps({
        "builders": [{
            "type": "virtualbox-ovf",
            "source_path": str(ovf),
            "checksum": "none",
            "vm_name": name,
            "headless": True,
            "guest_additions_mode": "disable",
            "communicator": "ssh",
            "ssh_username": "vagrant",
            "ssh_private_key_file": str(key),
            "ssh_timeout": SSH_TIMEOUT,
            "shutdown_command": "sudo systemctl poweroff",
            "shutdown_timeout": "10m",
            "format": "ovf",
            "output_directory": str(out),
        }],
        "provisioners": [{
            "type": "shell",
            "inline": [f"echo {marker} | sudo tee {MARKER}", "sync"],
        }],
    }, indent=2)


def _read_marker(vmdk: Path, scratch: Path) -> str:
    """The provisioner's file, read from the exported disk (qemu-img to raw, debugfs; nothing mounted)."""
    from vmm.guest.debian_disk import PARTITION_START

    raw = scratch / "exported.img"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vmdk), str(raw)], check=True, capture_output=True,
                   timeout=900)
    debugfs = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin")
    res = subprocess.run([debugfs, "-R", f"cat {MARKER}", f"{raw}?offset={PARTITION_START * SECTOR}"],
                         capture_output=True, text=True, timeout=300)
    raw.unlink()
    return res.stdout


def test_virtualbox_ovf_build_exports_a_provisioned_appliance(packer_world):
    world = packer_world
    attempt = Path(tempfile.mkdtemp(prefix="build-", dir=world.base))   # fresh names per attempt
    name = f"packer-{uuid.uuid4().hex[:8]}"
    marker = f"provisioned-by-packer-{uuid.uuid4().hex}"
    out = attempt / "output"
    (attempt / "template.json").write_text(_template(name, world.base / "box" / "box.ovf", world.base / "key",
                                                     out, marker))
    world.give(attempt)
    log = attempt / "packer.log"
    # PWD: in root's world the working directory is set from outside its mount namespace, where
    # getcwd(2) cannot name it; Go's os.Getwd (Packer) then trusts a PWD that matches "."
    env = dict(world.env, PACKER_LOG_PATH=str(log), PWD=str(attempt))

    try:
        proc = world.run(["packer", "build", "-color=false", "template.json"], cwd=attempt, env=env,
                         timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"packer build did not finish in {BUILD_TIMEOUT} s:\n{_calls(log)}")
    assert proc.returncode == 0, \
        f"packer build failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{_calls(log)}"
    assert f"Executing: export {name} --output {out / name}.ovf" in proc.stdout

    ovf, vmdks = out / f"{name}.ovf", sorted(out.glob("*.vmdk"))
    assert ovf.is_file() and len(vmdks) == 1, sorted(p.name for p in out.iterdir())
    assert vmdks[0].name in ovf.read_text()

    # the machine Packer made is gone: unregistered, its folder deleted
    _, vms, _ = world.vbm("list", "vms", check=0)
    assert name not in vms
    _, props, _ = world.vbm("list", "systemproperties", check=0)
    machines = next(line.split(":", 1)[1].strip() for line in props.splitlines()
                    if line.startswith("Default machine folder:"))
    assert not world.inside(Path(machines) / name).exists()

    # what Packer exported is an appliance VirtualBox imports, and it carries the provisioned disk
    code, text, err = world.vbm("import", str(ovf), "-n", timeout=300)
    assert code == 0, err
    assert f"source image={vmdks[0].name}" in text
    assert _read_marker(vmdks[0], attempt) == marker + "\n"


def _calls(log: Path) -> str:
    """The VBoxManage calls Packer made and what they printed (the tail of its log)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no packer log)"
    keep = [ln for ln in lines
            if "VBoxManage" in ln or "stderr:" in ln or "stdout:" in ln or "error" in ln.lower()]
    return "\n".join(keep[-60:])
