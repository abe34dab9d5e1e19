"""Debian's Vagrant, unmodified, drives vboxpy end to end with a Debian 12 box built from Debian
packages: `vagrant box add`, `up`, `ssh`, `snapshot save/restore`, `halt`, `up` again, `destroy`,
with `vagrant status` after each step. The Vagrantfile names only the box (and a longer boot
timeout for CPU emulation); the default `/vagrant` synced folder is on, mounted by the guest's own
kernel (vboxsf), and carries files both ways.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.clients.client_world import world_with_vboxmanage
from tests.integration.world import World

ROOT = Path(__file__).resolve().parents[3]
BOX_NAME = "vboxpy/debian12"
STEP_TIMEOUT = 900           # `vagrant up` under REM on a loaded 2-core machine (about 2 min when idle)


def _missing() -> str | None:
    if shutil.which("vagrant") is None:
        return "Vagrant is not installed (scripts/install.sh --test installs Debian's)"
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
            assert proc.returncode == 0, (
                f"vagrant {' '.join(args)} failed ({proc.returncode}):\n{text[-4000:]}"
            )
        return proc.returncode, text

    def state(self) -> str:
        _, out = self("status", "--machine-readable")
        return next(line.split(",")[3] for line in out.splitlines() if ",default,state," in line)

    def ssh(self, command: str) -> str:
        return self("ssh", "-c", command, timeout=300)[1]

    def screenshot(self) -> tuple[int, int, bytes]:
        """`VBoxManage controlvm <id> screenshotpng` of the project's VM, decoded."""
        from vmm.display.png import decode_rgb
        uuid = (self.project / ".vagrant" / "machines" / "default" / "virtualbox" / "id").read_text().strip()
        shot = self.project / "screen.png"
        proc = self.world.run([self.world.python, "-m", "frontends.vboxmanage.main", "controlvm", uuid,
                               "screenshotpng", str(shot)], cwd=self.project, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return decode_rgb(self.world.inside(shot).read_bytes())


# The Linux console's red background (VGA palette entry 4) behind `RED_CELLS` blank cells at the
# top left of the screen, painted by the guest on its first virtual terminal.
RED = bytes((0xAA, 0x00, 0x00))
RED_CELLS = 24
PAINT = ("sudo sh -c 'printf \"\\033[H\\033[2J\\033[41m%{n}s\\033[0m\\n\" \"\" > /dev/tty1'")


def framebuffer_console(vagrant: Vagrant) -> tuple[int, int]:
    """The guest's console on the bochs DRM framebuffer: its mode and a block it painted, as the
    screenshot shows them."""
    vagrant.ssh(PAINT.format(n=RED_CELLS))
    deadline = time.monotonic() + 120
    while True:
        width, height, rgb = vagrant.screenshot()
        row = rgb[8 * width * 3:9 * width * 3]                # the middle scan line of the first text row
        red = [row[x * 3:x * 3 + 3] == RED for x in range(width)]
        if (width, height) != (720, 400) and any(red):
            return width, sum(red)
        assert time.monotonic() < deadline, f"no painted console in a {width}x{height} screenshot"
        time.sleep(2)


@pytest.fixture(scope="module")
def vagrant_world(box, tmp_path_factory):
    """One world with the box added; each test attempt gets its own project (and so its own VM)."""
    world = world_with_vboxmanage(tmp_path_factory, "vagrant-home")
    world.env.update(VAGRANT_CHECKPOINT_DISABLE="1",
                     VAGRANT_DEFAULT_PROVIDER="virtualbox", VAGRANT_HOME=str(world.base / "vagrant.d"))
    (world.base / "add").mkdir()
    world.give(world.base / "add")
    Vagrant(world, world.base / "add")("box", "add", "--name", BOX_NAME, str(box), timeout=900)
    yield world
    world.cleanup()


@pytest.fixture
def vagrant(vagrant_world):
    project = Path(tempfile.mkdtemp(prefix="project-", dir=vagrant_world.base))
    (project / "Vagrantfile").write_text(f'Vagrant.configure("2") do |config|\n  config.vm.box = '
                                         f'"{BOX_NAME}"\n'
                                         f'  config.vm.boot_timeout = {STEP_TIMEOUT}\nend\n')
    vagrant_world.give(project)
    v = Vagrant(vagrant_world, project)
    yield v
    v("destroy", "-f", check=False, timeout=600)


def test_up_ssh_snapshot_halt_up_destroy(vagrant):
    assert vagrant.state() == "not_created"
    (vagrant.project / "from-host.txt").write_text("written on the host\n")
    vagrant.world.give(vagrant.project / "from-host.txt")
    vagrant("up", "--provider", "virtualbox", timeout=STEP_TIMEOUT)
    assert vagrant.state() == "running"
    out = vagrant.ssh("uname -a; sudo id")
    assert "Linux vboxpy-debian" in out and "uid=0(root)" in out

    # Debian's kernel drives the VGA as bochs-drm: the console is a framebuffer, not text mode
    width, red = framebuffer_console(vagrant)
    assert width >= 640 and red >= RED_CELLS * 8 and red % RED_CELLS == 0, (width, red)

    # the default synced folder: the project folder as /vagrant, both ways
    assert "written on the host" in vagrant.ssh("cat /vagrant/from-host.txt")
    vagrant.ssh("echo written in the guest > /vagrant/from-guest.txt")
    assert (vagrant.project / "from-guest.txt").read_text() == "written in the guest\n"

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
    assert "written in the guest" in vagrant.ssh("cat /vagrant/from-guest.txt")
    vagrant("destroy", "-f", timeout=900)
    assert vagrant.state() == "not_created"
