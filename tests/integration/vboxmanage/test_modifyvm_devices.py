"""modifyvm's device options as clients pass them (Vagrant, Packer, both spellings) round-trip into
the .vbox as VirtualBox writes it and come back out of showvminfo, human and machine-readable."""

from lxml import etree

from .test_cli import create


def _el(cfg: str, tag: str) -> list:
    root = etree.parse(cfg).getroot()
    return [e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == tag]


def test_packer_and_vagrant_options_round_trip(vbm):
    _, cfg = create(vbm)
    # virtualbox-iso/-ovf and Vagrant pass these
    assert vbm("modifyvm", "vm1", "--usb", "on", "--audio", "none", "--rtcuseutc", "on", "--vrdeaddress",
               "127.0.0.1", "--vrdeauthtype", "null", "--vrde", "on", "--vrdeport", "5959") == (0, "", "")
    assert vbm("modifyvm", "vm1", "--usb-ehci", "on", "--usbxhci", "on", "--audio-enabled", "on",
               "--audio-driver", "pulse", "--audiocontroller", "hda", "--audio-in", "off", "--mouse",
               "usbtablet",
               "--keyboard", "usb", "--chipset", "ich9", "--cpuhotplug", "on", "--pae", "off",
               "--longmode", "on",
               "--hpet", "on", "--x2apic", "on", "--biosbootmenu", "disabled", "--bioslogofadein", "off",
               "--bios-logo-display-time", "500", "--clipboard", "bidirectional", "--drag-and-drop",
               "hosttoguest", "--vram", "64", "--accelerate3d", "on", "--nicspeed1", "1000000",
               "--nic-boot-prio1", "1", "--nicpromisc1", "allow-all", "--vrdemulticon", "on",
               "--vrde-property", "VideoChannel/Quality=80") == (0, "", "")
    usb = _el(cfg, "Controller")
    assert [(c.get("name"), c.get("type")) for c in usb if c.getparent().getparent().tag.endswith("USB")] == [
        ("OHCI", "OHCI"), ("EHCI", "EHCI"), ("XHCI", "XHCI")]
    audio = _el(cfg, "AudioAdapter")[0]
    # controller and codec only when not the defaults, the directions only when off
    assert dict(audio.attrib) == {"controller": "HDA", "driver": "Pulse", "enabled": "true",
                                  "enabledIn": "false"}
    assert _el(cfg, "Clipboard")[0].get("mode") == "Bidirectional"
    assert _el(cfg, "DragAndDrop")[0].get("mode") == "HostToGuest"
    rd = _el(cfg, "RemoteDisplay")[0]
    assert rd.get("enabled") == "true" and rd.get("allowMultiConnection") == "true"
    assert {p.get("name"): p.get("value") for p in _el(cfg, "Property") if p.getparent().tag.endswith(
        "VRDEProperties")} == {"TCP/Address": "127.0.0.1", "TCP/Ports": "5959", "VideoChannel/Quality": "80"}
    logo = _el(cfg, "Logo")[0]
    assert (logo.get("fadeIn"), logo.get("fadeOut"), logo.get("displayTime")) == ("false", "true", "500")
    assert (_el(cfg, "Display")[0].get("accelerate3D") == "true"
            and _el(cfg, "Display")[0].get("VRAMSize") == "64")
    hid = _el(cfg, "HID")[0]
    assert (hid.get("Pointing"), hid.get("Keyboard")) == ("USBTablet", "USBKeyboard")
    assert _el(cfg, "Chipset")[0].get("type") == "ICH9"
    adapter = next(a for a in _el(cfg, "Adapter") if a.get("slot") == "0")
    assert (adapter.get("speed"), adapter.get("bootPriority"), adapter.get("promiscuousModePolicy")) == (
        "1000000", "1", "AllowAll")

    info = vbm.machinereadable("vm1")
    assert (info["usb"], info["ehci"], info["xhci"]) == ("on", "on", "on")
    assert (info["audio"], info["audio_out"], info["audio_in"]) == ("pulse", "on", "off")
    assert "Audio capture:               disabled\n" in vbm("showvminfo", "vm1", check=0)[1]
    assert (info["clipboard"], info["draganddrop"]) == ("bidirectional", "hosttoguest")
    assert ((info["vrde"], info["vrdeport"], info["vrdeports"], info["vrdeaddress"])
            == ("on", -1, "5959", "127.0.0.1"))
    assert (info["vrdeauthtype"], info["vrdemulticon"], info["vrdereusecon"]) == ("null", "on", "off")
    assert (info["hidpointing"], info["hidkeyboard"], info["chipset"]) == ("usbtablet", "usbkbd", "ich9")
    assert (info["pae"], info["hpet"], info["x2apic"], info["rtcuseutc"]) == ("off", "on", "on", "on")
    assert (info["vram"], info["accelerate3d"], info["bootmenu"]) == (64, "on", "disabled")
    assert info["nicspeed1"] == "1000000"
    _, human, _ = vbm("showvminfo", "vm1", check=0)
    assert ("Audio:                       enabled (Driver: PulseAudio, Controller: HDA, Codec: STAC9221)\n"
            in human)
    assert "Clipboard Mode:              Bidirectional\nDrag and drop Mode:          HostToGuest\n" in human
    assert ("VRDE:                        enabled (Address 127.0.0.1, Ports 5959, MultiConn: on, "
            "ReuseSingleConn: off, Authentication type: null)\n") in human
    assert 'VRDE property               : TCP/Ports  = "5959"\n' in human
    assert ("OHCI USB:                    enabled\n" in human
            and "3D Acceleration:             enabled\n" in human)

    # and back off, leaving nothing behind in the file
    assert vbm("modifyvm", "vm1", "--usbohci", "off", "--usbehci", "off", "--usb-xhci", "off",
               "--audio-enabled",
               "off", "--audio-driver", "default", "--audio-controller", "ac97", "--audioin", "on",
               "--clipboard-mode", "disabled", "--draganddrop", "disabled", "--vrde", "off", "--vrdeport", "",
               "--vrdeaddress", "", "--vrde-multi-con", "off", "--vrdeproperty", "VideoChannel/Quality=",
               "--bios-logo-fade-in", "on", "--bioslogodisplaytime", "0") == (0, "", "")
    for tag in ("USB", "AudioAdapter", "Clipboard", "DragAndDrop", "RemoteDisplay", "Logo"):
        assert _el(cfg, tag) == [], tag
    info = vbm.machinereadable("vm1")
    assert (info["usb"], info["audio"], info["vrde"], info["clipboard"]) == ("off", "none", "off", "disabled")


def test_bad_values_get_virtualbox_errors(vbm):
    _, cfg = create(vbm)
    before = open(cfg).read()
    code, _, err = vbm("modifyvm", "vm1", "--audio-controller", "gus")
    assert code == 2 and "'gus'" in err
    code, _, err = vbm("modifyvm", "vm1", "--clipboard", "sideways")
    assert code == 2 and "'sideways'" in err
    code, _, err = vbm("modifyvm", "vm1", "--nicbootprio1", "9")
    assert code != 0
    assert open(cfg).read() == before
