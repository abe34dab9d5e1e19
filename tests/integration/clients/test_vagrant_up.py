"""Debian's Vagrant, unmodified, drives vboxpy end to end with a Debian 12 box built from Debian
packages: `vagrant box add`, `up`, `ssh`, `snapshot save/restore`, `halt`, `up` again, `destroy`,
with `vagrant status` after each step. The Vagrantfile names only the box (and a longer boot
timeout for CPU emulation); the box's own Vagrantfile turns the /vagrant synced folder off.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from tests.integration.world import World, WorldUnavailable

ROOT = Path(__file__).resolve().parents[3]
BOX_NAME = "vboxpy/debian12"
STEP_TIMEOUT = 900           # `vagrant up` under REM on a loaded 2-core machine (about 2 min when idle)


def _missing() -> str | None:
    if shutil.which("vagrant") is None:
        return "Vagrant is not installed (scripts/install.sh --test installs Debian's)"
    if importlib.util.find_spec("vmm.guest.debian_disk") is None:
        return "the full Debian disk builder (vmm.guest.debian_disk) is not in the tree"
    from frontends.vboxmanage.main import COMMANDS
    if "import" not in COMMANDS:
        return "VBoxManage import (OVF appliances) is not in the tree"
    from frontends.vboxmanage.modifyvm_opts import INDEXED
    if "natpf" not in INDEXED:
        return "NAT port forwarding (modifyvm --natpf) is not in the tree"
    if shutil.which("qemu-img") is None:
        return "qemu-img is not installed (qemu-utils)"
    return None


pytestmark = [pytest.mark.timeout(2 * STEP_TIMEOUT), pytest.mark.skipif(_missing() is not None,
                                                                         reason=_missing() or "")]


@pytest.fixture(scope="module")
def box() -> Path:
    from vmm.guest import debian_disk, vagrant_box
    from vmm.guest.builder import cache_dir

    disk = debian_disk.find_debian_disk() or debian_disk.build_debian_disk(cache_dir())
    return vagrant_box.build_box(disk.raw, Path(os.environ.get("VBOXPY_BOX_CACHE", ROOT / ".cache" / "box")))


class Vagrant:
    def __init__(self, world: World, project: Path):
        self.world, self.project = world, project

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> tuple[int, str]:
        proc = self.world.run(["vagrant", *args], cwd=self.project, timeout=timeout)
        text = proc.stdout + proc.stderr
        if check:
            assert proc.returncode == 0, f"vagrant {' '.join(args)} failed ({proc.returncode}):\n{text[-4000:]}"
        return proc.returncode, text

    def state(self) -> str:
        _, out = self("status", "--machine-readable")
        return next(line.split(",")[3] for line in out.splitlines() if ",default,state," in line)

    def ssh(self, command: str) -> str:
        return self("ssh", "-c", command, timeout=300)[1]


@pytest.fixture(scope="module")
def vagrant_world(box, tmp_path_factory):
    """One world with the box added; each test attempt gets its own project (and so its own VM)."""
    try:
        world = World.current(home=tmp_path_factory.mktemp("vagrant-home"))
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    bin_dir = world.base / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "VBoxManage"
    wrapper.write_text(f'#!/bin/sh\nexec {world.python} -m frontends.vboxmanage.main "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    world.env.update(PATH=f"{bin_dir}:{world.env.get('PATH', '/usr/bin:/bin')}", VAGRANT_CHECKPOINT_DISABLE="1",
                     VAGRANT_DEFAULT_PROVIDER="virtualbox", VAGRANT_HOME=str(world.base / "vagrant.d"))
    (world.base / "add").mkdir()
    world.give(bin_dir)
    world.give(world.base / "add")
    Vagrant(world, world.base / "add")("box", "add", "--name", BOX_NAME, str(box), timeout=900)
    yield world
    world.cleanup()


@pytest.fixture
def vagrant(vagrant_world):
    project = Path(tempfile.mkdtemp(prefix="project-", dir=vagrant_world.base))
    (project / "Vagrantfile").write_text(f'Vagrant.configure("2") do |config|\n  config.vm.box = "{BOX_NAME}"\n'
                                         f'  config.vm.boot_timeout = {STEP_TIMEOUT}\nend\n')
    vagrant_world.give(project)
    v = Vagrant(vagrant_world, project)
    yield v
    v("destroy", "-f", check=False, timeout=600)


def test_up_ssh_snapshot_halt_up_destroy(vagrant):
    assert vagrant.state() == "not_created"
    vagrant("up", "--provider", "virtualbox", timeout=STEP_TIMEOUT)
    assert vagrant.state() == "running"
    out = vagrant.ssh("uname -a; sudo id")
    assert "Linux vboxpy-debian" in out and "uid=0(root)" in out

    vagrant.ssh("echo before > ~/marker; sync")
    vagrant("snapshot", "save", "s1", timeout=900)
    assert vagrant.state() == "running"
    vagrant.ssh("echo after > ~/marker; sync")
    assert "after" in vagrant.ssh("cat ~/marker")
    vagrant("snapshot", "restore", "s1", timeout=STEP_TIMEOUT)
    assert vagrant.state() == "running"
    assert "before" in vagrant.ssh("cat ~/marker")

    vagrant("halt", timeout=900)          # the guest's own `systemctl poweroff` (ACPI S5)
    assert vagrant.state() == "poweroff"
    vagrant("up", timeout=STEP_TIMEOUT)
    assert vagrant.state() == "running"
    assert "uid=0(root)" in vagrant.ssh("sudo id")
    vagrant("destroy", "-f", timeout=900)
    assert vagrant.state() == "not_created"
