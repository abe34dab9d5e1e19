"""A medium whose format vboxpy does not handle (the ISO maker's `VBoxIsoMaker` DVD images that
VirtualBox writes for unattended installs) keeps its `format` when its machine is saved: unknown
values are kept, always."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

NS = "{http://www.virtualbox.org/}"
IMAGE = "cccccccc-dddd-4eee-8fff-000000000001"


def test_unknown_medium_format_survives_a_save(world):
    world.vbm("createvm", "--name", "iso", "--ostype", "Debian_64", "--register", check=0)
    world.vbm("storagectl", "iso", "--name", "IDE", "--add", "ide", check=0)
    cfg = world.inside(world.machinereadable("iso")["CfgFile"])
    viso = Path(cfg).parent / "install.viso"
    viso.write_text("--iprt-iso-maker-file-marker-bourne-sh 11111111-2222-3333-4444-555555555555\n")
    world.reap()  # edit the file while no service holds it, as VirtualBox's own tools would
    tree = etree.parse(str(cfg))
    machine = tree.getroot().find(f"{NS}Machine")
    reg = machine.find(f"{NS}MediaRegistry")
    if reg is None:
        reg = etree.Element(f"{NS}MediaRegistry")
        machine.insert(0, reg)
    dvds = etree.SubElement(reg, f"{NS}DVDImages")
    etree.SubElement(dvds, f"{NS}Image", uuid=f"{{{IMAGE}}}", location="install.viso", format="VBoxIsoMaker")
    ctl = next(c for c in tree.iter(f"{NS}StorageController") if c.get("name") == "IDE")
    dev = etree.SubElement(ctl, f"{NS}AttachedDevice", passthrough="false", type="DVD", hotpluggable="false",
                           port="1", device="0")
    etree.SubElement(dev, f"{NS}Image", uuid=f"{{{IMAGE}}}")
    tree.write(str(cfg), xml_declaration=True, encoding="UTF-8")
    world.give(cfg)

    assert world.machinereadable("iso")["IDE-1-0"].endswith("/install.viso")
    world.vbm("modifyvm", "iso", "--memory", "300", "--description", "saved", check=0)
    saved = etree.parse(str(cfg)).getroot()
    images = [e for e in saved.iter(f"{NS}Image") if e.get("location")]
    assert [(e.get("location"), e.get("format")) for e in images] == [("install.viso", "VBoxIsoMaker")]
    assert world.machinereadable("iso")["memory"] == 300
