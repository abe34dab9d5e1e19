"""Debian's Vagrant (2.3.x) runs its own VirtualBox version gate (the provider's driver/meta.rb:
`VBoxManage --version`, then a driver per supported branch) against vboxpy's VBoxManage: the
default identity passes it, the 7.1 identity is refused exactly as real VirtualBox 7.1 is."""

import shutil

import pytest

from tests.integration.clients.client_world import put_vboxmanage_on_path
from tests.integration.world import World, WorldUnavailable

pytestmark = pytest.mark.skipif(shutil.which("vagrant") is None,
                                reason="Vagrant is not installed (scripts/install.sh --test "
                                "installs Debian's)")

VAGRANTFILE = 'Vagrant.configure("2") do |config|\n  config.vm.box = "vboxpy-none"\nend\n'


@pytest.fixture
def world(tmp_path):
    try:
        w = World.current()
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    put_vboxmanage_on_path(w)
    project = w.base / "project"
    project.mkdir()
    (project / "Vagrantfile").write_text(VAGRANTFILE)
    w.env.update(VAGRANT_DEFAULT_PROVIDER="virtualbox",
                 VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_HOME=str(w.base / "vagrant.d"))
    w.project = project
    yield w
    w.cleanup()


def test_default_identity_passes_vagrants_version_gate(world):
    version = world.vbm("--version", check=0)[1].strip()
    assert version.startswith("7.0.") and version != "7.0.0"
    proc = world.run(["vagrant", "status", "--machine-readable"], cwd=world.project, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ",default,provider-name,virtualbox" in proc.stdout
    assert ",default,state,not_created" in proc.stdout


def test_the_71_identity_is_refused_like_virtualbox_71(world):
    world.env["VBOXPY_VBOX_VERSION"] = "7.1"
    assert world.vbm("--version", check=0)[1].startswith("7.1.")
    proc = world.run(["vagrant", "up", "--provider", "virtualbox"], cwd=world.project, timeout=300)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "not supported by this version of Vagrant" in text and "6.1, 7.0" in text
