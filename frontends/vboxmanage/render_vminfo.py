"""showvminfo output (VBoxManageInfo.cpp) from the plain `info` dict built by vminfo.collect.

Two layouts: --machinereadable (key order and quoting of VBoxManageInfo.cpp 7.1) and the
human one (`%-28s %s` lines).  Pure functions of data, so they are unit-tested on dicts.
"""


from .names import (
    BOOT_DEVICES,
    CHIPSET,
    CONTROLLER_TYPES,
    FIRMWARE,
    GRAPHICS,
    GRAPHICS_HUMAN,
    MACHINE_STATES,
    NIC_ATTACHMENTS,
    NIC_TYPES,
    PARAVIRT,
    UART_TYPES,
)
from .output import msg_lines, rt_time_spec
from .render_snapshot import snapshot_human, snapshot_machine_readable


def mr_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def mr_name(name: str) -> str:
    return f'"{mr_escape(name)}"' if "=" in name else name


def mr(key: str, value) -> str:
    """outputMachineReadableString / Bool: quoted value, booleans as on/off."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    return f'{mr_name(key)}="{mr_escape(value)}"\n'


def mr_int(key: str, value: int) -> str:
    """SHOW_ULONG_PROP in machine-readable mode: the number is not quoted."""
    return f"{key}={int(value)}\n"


def state_time(ms: int) -> str:
    """RTTimeSpecToString into a 30-byte buffer: 9 fraction digits, the `Z` cut off."""
    return rt_time_spec(ms)


def _onoff(flag: bool) -> str:
    return "on" if flag else "off"


def _enabled(flag: bool) -> str:
    return "enabled" if flag else "disabled"


def line(label: str, value) -> str:
    return f"{label + ':':<28} {value}\n"


# ---------------------------------------------------------------- machine readable

def machine_readable(info: dict) -> str:
    if not info.get("accessible", True):
        return mr("name", "<inaccessible>") + mr("UUID", info["uuid"])
    out = [mr("name", info["name"]), mr("encryption", "disabled"), mr("groups", ",".join(info["groups"]))]
    if info.get("platform_arch"):  # 7.1 on
        out.append(mr("platformArchitecture", info["platform_arch"]))
    out += [mr("ostype", info["os_type"]), mr("UUID", info["uuid"]), mr("CfgFile", info["cfg_file"]),
           mr("SnapFldr", info["snapshot_folder"]), mr("LogFldr", info["log_folder"]),
           mr("hardwareuuid", info["hardware_uuid"]), mr_int("memory", info["memory"]),
           mr("pagefusion", info["page_fusion"]), mr_int("vram", info["vram"]),
           mr_int("cpuexecutioncap", info["cpu_exec_cap"]), mr("cpu-profile", info["cpu_profile"]),
           mr("chipset", CHIPSET.get(info["chipset"], "unknown")),
           mr("firmware", FIRMWARE.get(info["firmware"], "unknown")), mr_int("cpus", info["cpus"])]
    for key in ("hpet", "pae", "longmode", "triplefaultreset", "apic", "x2apic"):
        out.append(mr(key, info[key]))
    out.append(mr("nested-hw-virt", info["nested_hw_virt"]))
    for key in ("hwvirtex", "nestedpaging", "largepages", "vtxvpid", "vtxux", "virtvmsavevmload"):
        out.append(mr(key, info[key]))
    out.append(mr_int("cpuid-portability-level", info["cpuid_portability_level"]))
    out.append(mr("bootmenu", info["bootmenu"]))
    for i, dev in enumerate(info["boot"], 1):
        out.append(mr(f"boot{i}", BOOT_DEVICES.get(dev, ("none", ""))[0]))
    for key, label in (("boot_kernel", "vboxpy-bootkernel"), ("boot_initrd", "vboxpy-bootinitrd"),
                       ("boot_cmdline", "vboxpy-bootcmdline")):
        if info.get(key):
            out.append(mr(label, info[key]))
    out += [mr("acpi", info["acpi"]), mr("ioapic", info["ioapic"]), mr("biosapic", info["biosapic"]),
            mr_int("biossystemtimeoffset", info["time_offset"])]
    if info.get("nvram_file"):
        out.append(mr("NvramFile", info["nvram_file"]))
    out += [mr("rtcuseutc", info["rtc_utc"]), mr("iommu", info["iommu"]),
            mr("paravirtprovider", PARAVIRT[info["paravirt"]][0]),
            mr("effparavirtprovider", PARAVIRT[info["eff_paravirt"]][0])]
    if info.get("paravirt_debug"):
        out.append(mr("paravirtdebug", info["paravirt_debug"]))
    out += [
            mr("VMState", MACHINE_STATES[info["state"]][0]),
            mr("VMStateChangeTime", state_time(info["state_change_ms"]))]
    if info.get("state_file"):
        out.append(mr("VMStateFile", info["state_file"]))
    out += [mr("graphicscontroller", GRAPHICS.get(info["graphics"], "null")),
            mr_int("monitorcount", info["monitor_count"]), mr("accelerate3d", info["accelerate3d"]),
            mr("teleporterenabled", False), mr_int("teleporterport", 0), mr("teleporteraddress", ""),
            mr("teleporterpassword", ""), mr("tracing-enabled", False), mr("tracing-allow-vm-access", False),
            mr("tracing-config", ""), mr("autostart-enabled", info["autostart_enabled"]),
            mr_int("autostart-delay", info["autostart_delay"]),
            mr("defaultfrontend", info["default_frontend"]),
            mr("vmprocpriority", info["vm_process_priority"])]
    out += _mr_storage(info["controllers"])
    for nic in info["nics"]:
        out += _mr_nic(nic)
    out += [mr("hidpointing", info["hid_pointing"]), mr("hidkeyboard", info["hid_keyboard"])]
    for uart in info["uarts"]:
        out += _mr_uart(uart)
    out += [mr("lpt1", False), mr("lpt2", False)] + _mr_audio_clipboard_dnd(info)
    if info.get("session_name"):
        out.append(mr("SessionName", info["session_name"]))
    out += _mr_vrde(info.get("vrde")) + [mr("usb", info.get("usb_ohci", False)),
                                          mr("ehci", info.get("usb_ehci", False)),
                                          mr("xhci", info.get("usb_xhci", False))]
    out += _shared_folders(info, machine_readable=True)
    if info.get("running"):  # live VRDE info from the VM process; the `==` is VBoxManage's own
        live = info.get("vrde_live") or {}
        out += [mr("VRDEActiveConnection", bool(live.get("active"))),
                f"VRDEClients=={live.get('clients', 0)}\n"]
    if info.get("description"):
        out.append(mr("description", info["description"]))
    if info.get("snapshots"):
        out.append(snapshot_machine_readable(info["snapshots"], info.get("current_snapshot", "")))
    out.append(mr_int("GuestMemoryBalloon", info.get("memory_balloon", 0)))
    return "".join(out)


def _mr_storage(controllers: list[dict]) -> list[str]:
    out = []
    for i, ctl in enumerate(controllers):
        out += [mr(f"storagecontrollername{i}", ctl["name"]),
                mr(f"storagecontrollertype{i}", CONTROLLER_TYPES.get(ctl["type"], "Null")),
                mr(f"storagecontrollerinstance{i}", str(ctl["instance"])),
                mr(f"storagecontrollermaxportcount{i}", str(ctl["max_ports"])),
                mr(f"storagecontrollerportcount{i}", str(ctl["ports"])),
                mr(f"storagecontrollerbootable{i}", ctl["bootable"])]
    for ctl in controllers:
        name = ctl["name"]
        hotplug_key = name.lower() in ("sata", "usb")
        by_slot = {(a["port"], a["device"]): a for a in ctl["attachments"]}
        for port in range(ctl["ports"]):
            for dev in range(ctl["devices_per_port"]):
                att = by_slot.get((port, dev))
                key = f'"{mr_escape(name)}-{port}-{dev}"'
                if att is None:
                    out.append(f'{key}="none"\n')
                    continue
                medium = att.get("medium")
                if medium is None:
                    out.append(f'{key}="emptydrive"\n')
                    if att["type"] == 2:
                        out.append(f'"{mr_escape(name)}-IsEjected-{port}-{dev}"="{_onoff(att["is_ejected"])}"\n')
                    continue
                out.append(f'{key}="{mr_escape(medium["location"])}"\n')
                out.append(f'"{mr_escape(name)}-ImageUUID-{port}-{dev}"="{medium["uuid"]}"\n')
                if att.get("passthrough"):
                    out.append(f'"{mr_escape(name)}-dvdpassthrough-{port}-{dev}"="on"\n')
                if att["type"] == 2:
                    out.append(f'"{mr_escape(name)}-tempeject-{port}-{dev}"="{_onoff(att["temp_eject"])}"\n')
                    out.append(f'"{mr_escape(name)}-IsEjected-{port}-{dev}"="{_onoff(att["is_ejected"])}"\n')
                if hotplug_key:
                    out.append(f'"{mr_escape(name)}-hot-pluggable-{port}-{dev}"="{_onoff(att["hotpluggable"])}"\n')
                out.append(f'"{mr_escape(name)}-nonrotational-{port}-{dev}"="{_onoff(att["nonrotational"])}"\n')
                out.append(f'"{mr_escape(name)}-discard-{port}-{dev}"="{_onoff(att["discard"])}"\n')
    return out


_NIC_MR_KEY = {1: "natnet", 2: "bridgeadapter", 3: "intnet", 4: "hostonlyadapter", 5: "generic",
               6: "nat-network", 7: "cloud-network", 8: "hostonly-network"}


def _mr_nic(nic: dict) -> list[str]:
    slot = nic["slot"] + 1
    if not nic["enabled"]:
        return [mr(f"nic{slot}", "none")]
    kind = nic["attachment"]
    out = []
    if kind in _NIC_MR_KEY:
        out.append(mr(f"{_NIC_MR_KEY[kind]}{slot}", nic.get("network") or ("nat" if kind == 1 else "")))
    out += [mr(f"macaddress{slot}", nic["mac"]), mr(f"cableconnected{slot}", nic["cable"]),
            mr(f"nic{slot}", NIC_ATTACHMENTS[kind][0]),
            mr(f"nictype{slot}", NIC_TYPES.get(nic["type"], "Null")),
            mr(f"nicspeed{slot}", str(nic["speed"]))]
    if kind == 1:
        mtu, snd, rcv, tsnd, trcv = _nat_settings(nic)
        out += [mr("mtu", str(mtu)), mr("sockSnd", str(snd)), mr("sockRcv", str(rcv)),
                mr("tcpWndSnd", str(tsnd)), mr("tcpWndRcv", str(trcv))]
        out += [mr(f"Forwarding({i})", ",".join(r)) for i, r in enumerate(_rules(nic))]
    return out


def _nat_settings(nic: dict) -> tuple[int, int, int, int, int]:
    """NATEngine::GetNetworkSettings as VBoxManageInfo prints it: unset buffer sizes show as 64."""
    mtu, snd, rcv, tsnd, trcv = (nic.get("nat_settings") or [0, 0, 0, 0, 0])[:5]
    return mtu, snd or 64, rcv or 64, tsnd or 64, trcv or 64


def _rules(nic: dict) -> list[list[str]]:
    """INATEngine::redirects ("name,proto#,hostip,hostport,guestip,guestport") with the protocol named."""
    out = []
    for text in nic.get("redirects") or []:
        parts = text.split(",", 5)
        if len(parts) != 6:
            continue
        parts[1] = {"1": "tcp", "0": "udp"}.get(parts[1], "unk")
        out.append(parts)
    return out


def uart_mode_mr(uart: dict) -> str:
    mode, path = uart["mode"], uart.get("path", "")
    if mode == 1:
        return f"{'server' if uart.get('server') else 'client'},{path}"
    if mode == 2:
        return path
    if mode == 3:
        return f"file,{path}"
    if mode == 4:
        return f"{'tcpserver' if uart.get('server') else 'tcpclient'},{path}"
    return "disconnected"


def _mr_uart(uart: dict) -> list[str]:
    slot = uart["slot"] + 1
    if not uart["enabled"]:
        return [mr(f"uart{slot}", False)]
    return [mr(f"uart{slot}", f"{uart['io']:#06x},{uart['irq']}"), mr(f"uartmode{slot}", uart_mode_mr(uart)),
            mr(f"uarttype{slot}", UART_TYPES.get(uart["type"], "16550A"))]


# ---------------------------------------------------------------- human

def human(info: dict, details: bool = False) -> str:
    if not info.get("accessible", True):
        return (f"Name:            <inaccessible!>\nUUID:            {info['uuid']}\n"
                f"Config file:     {info['cfg_file']}\nEncryption:     disabled\nAccess error details:\n"
                + (msg_lines("error: ", info["access_error"]) if info.get("access_error") else "") + "\n")
    state_long = MACHINE_STATES[info["state"]][1]
    out = [line("Name", info["name"]), line("Encryption", "disabled"),
           line("Groups", ",".join(info["groups"]))]
    if info.get("platform_arch"):  # 7.1 on
        out.append(line("Platform Architecture", info["platform_arch"]))
    out += [line("Guest OS", info["os_type"]),
           line("UUID", info["uuid"]), line("Config file", info["cfg_file"]),
           line("Snapshot folder", info["snapshot_folder"]), line("Log folder", info["log_folder"]),
           line("Hardware UUID", info["hardware_uuid"]), line("Memory size", f"{info['memory']}MB"),
           line("Page Fusion", _enabled(info["page_fusion"])), line("VRAM size", f"{info['vram']}MB"),
           line("CPU exec cap", f"{info['cpu_exec_cap']}%"), line("CPUProfile", info["cpu_profile"]),
           line("Chipset", CHIPSET.get(info["chipset"], "unknown")),
           line("Firmware", FIRMWARE.get(info["firmware"], "unknown")),
           line("Number of CPUs", info["cpus"]), line("HPET", _enabled(info["hpet"])),
           line("PAE", _enabled(info["pae"])), line("Long Mode", _enabled(info["longmode"])),
           line("Triple Fault Reset", _enabled(info["triplefaultreset"])),
           line("APIC", _enabled(info["apic"])), line("X2APIC", _enabled(info["x2apic"])),
           line("Nested VT-x/AMD-V", _enabled(info["nested_hw_virt"])), line("CPUID overrides", "None"),
           line("Hardware Virtualization", _enabled(info["hwvirtex"])),
           line("Nested Paging", _enabled(info["nestedpaging"])),
           line("Large Pages", _enabled(info["largepages"])), line("VT-x VPID", _enabled(info["vtxvpid"])),
           line("VT-x Unrestricted Exec.", _enabled(info["vtxux"])),
           line("AMD-V Virt. Vmsave/Vmload", _enabled(info["virtvmsavevmload"])),
           line("CPUID Portability Level", info["cpuid_portability_level"]),
           line("Boot menu mode", _BOOT_MENU_HUMAN.get(info["bootmenu"], info["bootmenu"]))]
    for i, dev in enumerate(info["boot"], 1):
        out.append(line(f"Boot Device {i}", BOOT_DEVICES.get(dev, ("", "Not Assigned"))[1]))
    for key, label in (("boot_kernel", "Boot kernel"), ("boot_initrd", "Boot initrd"),
                       ("boot_cmdline", "Boot cmdline")):
        if info.get(key):
            out.append(line(label, info[key]))
    out += [line("ACPI", _enabled(info["acpi"])), line("IOAPIC", _enabled(info["ioapic"])),
            line("BIOS APIC mode", _APIC_HUMAN.get(info["biosapic"], info["biosapic"])),
            line("Time offset", f"{info['time_offset']}ms")]
    if info.get("nvram_file"):
        out.append(line("BIOS NVRAM File", info["nvram_file"]))
    out += [line("RTC", "UTC" if info["rtc_utc"] else "local time"),
            line("IOMMU", info["iommu"].capitalize()),
            line("Paravirt. Provider", PARAVIRT[info["paravirt"]][1]),
            line("Effective Paravirt. Prov.", PARAVIRT[info["eff_paravirt"]][1])]
    if info.get("paravirt_debug"):
        out.append(line("Paravirt. Debug", info["paravirt_debug"]))
    out += [
            line("State", f"{state_long} (since {state_time(info['state_change_ms'])})")]
    out += [line("Graphics Controller", GRAPHICS_HUMAN.get(info["graphics"], "Null")),
            line("Monitor count", info["monitor_count"]),
            line("3D Acceleration", _enabled(info["accelerate3d"])),
            line("Teleporter Enabled", "disabled"), line("Teleporter Port", 0),
            line("Teleporter Address", ""), line("Teleporter Password", ""),
            line("Tracing Enabled", "disabled"),
            line("Allow Tracing to Access VM", "disabled"), line("Tracing Configuration", ""),
            line("Autostart Enabled", _enabled(info["autostart_enabled"])),
            line("Autostart Delay", info["autostart_delay"]),
            line("Default Frontend", info["default_frontend"]),
            line("VM process priority", info["vm_process_priority"])]
    out += _human_storage(info["controllers"])
    for nic in info["nics"]:
        out += _human_nic(nic, details)
    out += [line("Pointing Device", _HID_HUMAN.get(info["hid_pointing"], info["hid_pointing"])),
            line("Keyboard Device", _HID_HUMAN.get(info["hid_keyboard"], info["hid_keyboard"]))]
    for uart in info["uarts"]:
        out.append(_human_uart(uart))
    out += [line("LPT 1", "disabled"), line("LPT 2", "disabled")] + _human_audio_clipboard_dnd(info)
    if info.get("session_name"):
        out.append(line("Session name", info["session_name"]))
    out += _human_vrde(info.get("vrde")) + [
        line("OHCI USB", _enabled(info.get("usb_ohci", False))),
        line("EHCI USB", _enabled(info.get("usb_ehci", False))),
        line("xHCI USB", _enabled(info.get("usb_xhci", False))), line("USB Device Filters", "<none>"),
        line("Bandwidth groups", "<none>")]
    out += _shared_folders(info, machine_readable=False)
    if info.get("running"):
        live = info.get("vrde_live") or {}
        out += [line("VRDE Connection", "active" if live.get("active") else "not active"),
                line("Clients so far", live.get("clients", 0))]
    if info.get("description"):
        out.append(f"Description:\n{info['description']}\n")
    if info.get("snapshots"):
        out.append("* Snapshots:\n" + snapshot_human(info["snapshots"], info.get("current_snapshot", "")))
    out += ["* Guest:\n", line("Configured memory balloon", f"{info.get('memory_balloon', 0)}MB")]
    return "".join(out)


# AudioDriverType -> (machine-readable, human); MMPM has no name in VBoxManage's table
_AUDIO_DRIVERS = {0: ("default", "Default"), 1: ("null", "Null"), 2: ("oss", "OSS"), 3: ("alsa", "ALSA"),
                  4: ("pulse", "PulseAudio"), 5: ("winmm", "WINMM"), 6: ("dsound", "DirectSound"),
                  7: ("was", "Windows Audio Session (WAS)"), 8: ("coreaudio", "CoreAudio"),
                  10: ("solaudio", "SolAudio")}
_AUDIO_CONTROLLERS = {0: "AC97", 1: "SB16", 2: "HDA"}
_AUDIO_CODECS = {1: "SB16", 2: "STAC9700", 3: "AD1980", 4: "STAC9221"}
_SHARE_MODES = {0: ("disabled", "disabled"), 1: ("hosttoguest", "HostToGuest"),
                2: ("guesttohost", "GuestToHost"), 3: ("bidirectional", "Bidirectional")}
_AUTH = {0: "null", 1: "external", 2: "guest"}


def _mr_audio_clipboard_dnd(info: dict) -> list[str]:
    on = info.get("audio_enabled", False)
    driver = _AUDIO_DRIVERS.get(info.get("audio_driver", 0), ("unknown", "Unknown"))[0]
    return [mr("audio", driver if on else "none"), mr("audio_out", info.get("audio_out", False)),
            mr("audio_in", info.get("audio_in", False)),
            mr("clipboard", _SHARE_MODES.get(info.get("clipboard", 0), ("unknown", ""))[0]),
            mr("draganddrop", _SHARE_MODES.get(info.get("dnd", 0), ("unknown", ""))[0])]


def _human_audio_clipboard_dnd(info: dict) -> list[str]:
    text = "disabled"
    if info.get("audio_enabled", False):
        text = (f"enabled (Driver: {_AUDIO_DRIVERS.get(info.get('audio_driver', 0), ('', 'Unknown'))[1]}, "
                f"Controller: {_AUDIO_CONTROLLERS.get(info.get('audio_controller', 0), 'Unknown')}, "
                f"Codec: {_AUDIO_CODECS.get(info.get('audio_codec', 0), 'Unknown')})")
    return [line("Audio", text), line("Audio playback", _enabled(info.get("audio_out", False))),
            line("Audio capture", _enabled(info.get("audio_in", False))),
            line("Clipboard Mode", _SHARE_MODES.get(info.get("clipboard", 0), ("", "Unknown"))[1]),
            line("Drag and drop Mode", _SHARE_MODES.get(info.get("dnd", 0), ("", "Unknown"))[1])]


def _video_channel(props: dict) -> bool:
    return props.get("VideoChannel/Enabled", "").lower() in ("true", "1")


def _mr_vrde(vrde: dict | None) -> list[str]:
    if not vrde or not vrde.get("enabled"):
        return [mr("vrde", False)]
    props = vrde.get("properties", {})
    out = [mr("vrde", True), "vrdeport=-1\n", mr("vrdeports", props.get("TCP/Ports", "")),
           mr("vrdeaddress", props.get("TCP/Address", "")),
           mr("vrdeauthtype", _AUTH.get(vrde["auth_type"], "unknown")),
           mr("vrdemulticon", vrde["multi_con"]), mr("vrdereusecon", vrde["reuse_con"]),
           mr("vrdevideochannel", _video_channel(props))]
    if _video_channel(props):
        out.append(mr("vrdevideochannelquality", props.get("VideoChannel/Quality", "")))
    for key, value in props.items():
        out.append(f'vrdeproperty[{key}]="{value}"\n' if value else f"vrdeproperty[{key}]=<not set>\n")
    return out


def _human_vrde(vrde: dict | None) -> list[str]:
    if not vrde or not vrde.get("enabled"):
        return [line("VRDE", "disabled")]
    props = vrde.get("properties", {})
    out = [line("VRDE", f"enabled (Address {props.get('TCP/Address') or '0.0.0.0'}, "
                        f"Ports {props.get('TCP/Ports', '')}, "
                        f"MultiConn: {_onoff(vrde['multi_con'])}, "
                        f"ReuseSingleConn: {_onoff(vrde['reuse_con'])}, "
                        f"Authentication type: {_AUTH.get(vrde['auth_type'], 'unknown')})")]
    if _video_channel(props):
        out.append(line("Video redirection", f"enabled (Quality {props.get('VideoChannel/Quality', '')})"))
    else:
        out.append(line("Video redirection", "disabled"))
    for key, value in props.items():
        out.append(f"{'VRDE property':<28}: {key:<10} = " + (f'"{value}"\n' if value else "<not set>\n"))
    return out


def _shared_folders(info: dict, machine_readable: bool) -> list[str]:
    """showSharedFolder over the machine's folders, then the running VM's transient ones."""
    out = [] if machine_readable else [f"{'Shared folders:':<28} "]
    count = 0
    for kind, infix, folders in (
            ("machine mapping", "MachineMapping", info.get("shared_folders") or []),
            ("transient mapping", "TransientMapping", info.get("transient_folders") or [])):
        for i, f in enumerate(folders, 1):
            if machine_readable:
                out += [mr(f"SharedFolderName{infix}{i}", f["name"]),
                        mr(f"SharedFolderPath{infix}{i}", f["host_path"])]
            else:
                if count == 0:
                    out.append("\n\n")
                text = (f"Name: '{f['name']}', Host path: '{f['host_path']}' ({kind}), "
                        f"{'writable' if f['writable'] else 'readonly'}"
                        f"{', auto-mount' if f['auto_mount'] else ''}")
                if f.get("auto_mount_point"):
                    text += f", mount-point: '{f['auto_mount_point']}'"
                out.append(text + "\n")
            count += 1
    if not machine_readable:
        out.append("<none>\n" if count == 0 else "\n")
    return out


_BOOT_MENU_HUMAN = {"disabled": "disabled", "menuonly": "menu only", "messageandmenu": "message and menu"}
_APIC_HUMAN = {"disabled": "Disabled", "apic": "APIC", "x2apic": "x2APIC"}
_HID_HUMAN = {"none": "None", "ps2mouse": "PS/2 Mouse", "usbmouse": "USB Mouse", "usbtablet": "USB Tablet",
              "combomouse": "USB Tablet and PS/2 Mouse", "usbmultitouch": "USB Multi-Touch",
              "ps2kbd": "PS/2 Keyboard", "usbkbd": "USB Keyboard", "combokbd": "USB and PS/2 Keyboard"}


def _human_storage(controllers: list[dict]) -> list[str]:
    if not controllers:
        return [line("Storage Controllers", "<none>")]
    out = ["Storage Controllers:\n"]
    for i, ctl in enumerate(controllers):
        boot = ", Bootable" if ctl["bootable"] else ", Not bootable"
        out.append(f"#{i}: '{ctl['name']}', Type: {CONTROLLER_TYPES.get(ctl['type'], 'Null')}, "
                   f"Instance: {ctl['instance']}, Ports: {ctl['ports']} (max {ctl['max_ports']}){boot}\n")
        for att in sorted(ctl["attachments"], key=lambda a: (a["port"], a["device"])):
            flags = ""
            if att.get("medium") is not None and att.get("passthrough"):
                flags += ", passthrough enabled"
            if att.get("temp_eject"):
                flags += ", temp eject"
            if att.get("is_ejected"):
                flags += ", ejected"
            if att.get("medium") is None:
                out.append(f"  Port {att['port']}, Unit {att['device']}: Empty{flags}\n")
                continue
            if att.get("hotpluggable"):
                flags += ", hot-pluggable"
            if att.get("nonrotational"):
                flags += ", non-rotational (SSD)"
            if att.get("discard"):
                flags += ", discards unused blocks"
            medium = att["medium"]
            out.append(f"  Port {att['port']}, Unit {att['device']}: UUID: {medium['uuid']}{flags}\n")
            out.append(f'    Location: "{medium["location"]}"\n')
    return out


_NIC_HUMAN_NAMED = {2: "Bridged Interface", 3: "Internal Network", 4: "Host-only Interface", 5: "Generic",
                    6: "NAT Network", 7: "Cloud Network", 8: "Host Only Network"}


def _human_nic(nic: dict, details: bool) -> list[str]:
    label = f"NIC {nic['slot'] + 1}"
    if not nic["enabled"]:
        return [line(label, "disabled")]
    kind = nic["attachment"]
    if kind == 1:
        attach = "NAT"
    elif kind == 0:
        attach = "none"
    else:
        attach = f"{_NIC_HUMAN_NAMED[kind]} '{nic.get('network', '')}'"
    text = (f"MAC: {nic['mac']}, Attachment: {attach}, Cable connected: {_onoff(nic['cable'])}, "
            f"Trace: {_onoff(nic.get('trace', False))} (file: {nic.get('trace_file') or 'none'}), "
            f"Type: {NIC_TYPES.get(nic['type'], 'Null')}, "
            f"Reported speed: {nic['speed'] // 1000} Mbps, Boot priority: 0, Promisc Policy: deny, "
            "Bandwidth group: none")
    out = [line(label, text)]
    if kind == 1:
        mtu, snd, rcv, tsnd, trcv = _nat_settings(nic)
        out.append(f"{label} Settings:  MTU: {mtu}, Socket (send: {snd}, receive: {rcv}), "
                   f"TCP Window (send:{tsnd}, receive: {trcv})\n")
        for i, (name, proto, hip, hport, gip, gport) in enumerate(_rules(nic)):
            out.append(f"{label} Rule({i}):   name = {name}, protocol = {proto}, host ip = {hip}, "
                       f"host port = {hport}, guest ip = {gip}, guest port = {gport}\n")
    return out


def _human_uart(uart: dict) -> str:
    label = f"UART {uart['slot'] + 1}"
    if not uart["enabled"]:
        return line(label, "disabled")
    mode, path = uart["mode"], uart.get("path", "")
    if mode == 1:
        how = f"attached to pipe ({'server' if uart.get('server') else 'client'}) '{path}'"
    elif mode == 2:
        how = f"attached to device '{path}'"
    elif mode == 3:  # VBoxManage ends this one with a newline, so the UART type lands on the next line
        how = f"attached to raw file '{path}'\n"
    elif mode == 4:
        how = f"attached to tcp ({'server' if uart.get('server') else 'client'}) '{path}'"
    else:
        how = "disconnected"
    return line(label, f"I/O address: {uart['io']:#06x}, IRQ: {uart['irq']}, {how}"
                       f", {UART_TYPES.get(uart['type'], '16450')}")
