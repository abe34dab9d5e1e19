"""The guest-facing and client-configured parts of `<Hardware>` (guest properties, shared folders,
USB, audio, clipboard, drag and drop, VRDE, BIOS logo): read from what VirtualBox writes, kept
byte-identical when untouched, written back as VirtualBox writes them."""

from __future__ import annotations

from lxml import etree

from settings.machine_file import MachineFile
from settings.models import GuestProperty, SharedFolder

from . import samples

FRAGMENT = """<x xmlns="http://www.virtualbox.org/">
  <RemoteDisplay enabled="true" authType="External" allowMultiConnection="true">
    <VRDEProperties><Property name="TCP/Address" value="127.0.0.1"/><Property name="TCP/Ports" value="5901"/>
    </VRDEProperties></RemoteDisplay>
  <USB><Controllers><Controller name="OHCI" type="OHCI"/><Controller name="EHCI" type="EHCI"/></Controllers>
    <DeviceFilters/></USB>
  <AudioAdapter codec="AD1980" driver="Pulse" enabled="true" enabledIn="false"/>
  <SharedFolders><SharedFolder name="vagrant" hostPath="/srv/p" writable="true" autoMount="false"/></SharedFolders>
  <Clipboard mode="Bidirectional"/>
  <DragAndDrop mode="GuestToHost"/>
  <GuestProperties><GuestProperty name="/VirtualBox/GuestAdd/Version" value="7.0.22" timestamp="1714566896789000000"
    flags=""/></GuestProperties>
</x>"""  # noqa: E501 - as VirtualBox writes it


def _machine_file(tmp_path):
    root = etree.fromstring(samples.machine_xml(20).encode())
    machine = next(e for e in root if etree.QName(e).localname == "Machine")
    hw = next(e for e in machine if isinstance(e.tag, str) and etree.QName(e).localname == "Hardware")
    for el in etree.fromstring(FRAGMENT.encode()):  # in place of the sample's own
        for old in [c for c in hw if isinstance(c.tag, str) and c.tag == el.tag]:
            hw.remove(old)
        hw.append(el)
    p = tmp_path / "web" / "web.vbox"
    p.parent.mkdir()
    p.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    MachineFile.load(p).save()  # our serialisation from here on
    return p


def _hw_tags(p) -> dict:
    """The current state's `<Hardware>` children by name (the snapshots have their own)."""
    root = etree.parse(str(p)).getroot()
    machine = next(e for e in root if etree.QName(e).localname == "Machine")
    hw = next(e for e in machine if isinstance(e.tag, str) and etree.QName(e).localname == "Hardware")
    return {etree.QName(c).localname: c for c in hw if isinstance(c.tag, str)}


def test_reads_what_virtualbox_writes_and_keeps_it(tmp_path):
    p = _machine_file(tmp_path)
    before = p.read_bytes()
    mf = MachineFile.load(p)
    h = mf.settings.hardware
    assert h.vrde.enabled and h.vrde.auth_type == "External" and h.vrde.allow_multi_connection
    assert h.vrde.properties == {"TCP/Address": "127.0.0.1", "TCP/Ports": "5901"}
    assert h.usb_controllers == ["OHCI", "EHCI"]
    a = h.audio
    assert (a.enabled, a.controller, a.codec, a.driver, a.enabled_in, a.enabled_out) == (
        True, "AC97", "AD1980", "Pulse", False, True)
    assert h.shared_folders == [SharedFolder(name="vagrant", host_path="/srv/p")]
    assert (h.clipboard_mode, h.dnd_mode) == ("Bidirectional", "GuestToHost")
    assert h.guest_properties == [GuestProperty(name="/VirtualBox/GuestAdd/Version", value="7.0.22",
                                                timestamp=1714566896789000000)]
    mf.save()
    assert p.read_bytes() == before


def test_changes_are_written_like_virtualbox(tmp_path):
    p = _machine_file(tmp_path)
    mf = MachineFile.load(p)
    h = mf.settings.hardware
    h.usb_controllers = ["XHCI"]
    h.audio = h.audio.model_copy(update={"enabled": False, "codec": "STAC9700", "driver": "Default",
                                         "enabled_in": True})
    h.guest_properties = h.guest_properties + [GuestProperty(name="/T", value="t", timestamp=1,
                                                             flags="TRANSIENT")]
    h.shared_folders = [SharedFolder(name="a", host_path="/a", writable=False, auto_mount=True,
                                     auto_mount_point="/mnt/a")]
    h.clipboard_mode = "Disabled"
    h.vrde = h.vrde.model_copy(update={"properties": {"TCP/Ports": "5902"}})
    mf.save()
    text = p.read_text()
    tags = _hw_tags(p)
    assert '<Controller name="XHCI" type="XHCI"/>' in text and "<DeviceFilters/>" in text
    assert "AudioAdapter" not in tags and "Clipboard" not in tags
    assert 'name="/T"' not in text  # transient properties are never written
    assert (
        '<SharedFolder name="a" hostPath="/a" writable="false" autoMount="true" autoMountPoint="/mnt/a"/>'
        in text
    )
    assert '<Property name="TCP/Ports" value="5902"/>' in text and "TCP/Address" not in text
    again = MachineFile.load(p).settings.hardware
    assert again.usb_controllers == ["XHCI"] and again.shared_folders == h.shared_folders
    assert [g.name for g in again.guest_properties] == ["/VirtualBox/GuestAdd/Version"]
