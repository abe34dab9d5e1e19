"""showvminfo layouts on plain data: key order, quoting, storage/NIC/UART keys, human columns."""

from frontends.vboxmanage.render_vminfo import human, machine_readable, state_time

from .samples import DISK, UUID, vm_info


def mr_lines(**kw):
    return machine_readable(vm_info(**kw)).splitlines()


def test_machine_readable_starts_in_virtualbox_key_order():
    lines = mr_lines()
    assert lines[:13] == [
        'name="vm1"', 'encryption="disabled"', 'groups="/"', 'platformArchitecture="x86"',
        'ostype="Ubuntu (64-bit)"', f'UUID="{UUID}"', 'CfgFile="/h/VirtualBox VMs/vm1/vm1.vbox"',
        'SnapFldr="/h/VirtualBox VMs/vm1/Snapshots"', 'LogFldr="/h/VirtualBox VMs/vm1/Logs"',
        f'hardwareuuid="{UUID}"', "memory=1024", 'pagefusion="off"', "vram=16"]
    assert "platformArchitecture" not in "".join(mr_lines(platform_arch=""))  # the 7.0 layout
    keys = [line.split("=", 1)[0] for line in lines]
    for before, after in [("cpus", "hpet"), ("vtxvpid", "vtxux"), ("boot4", "acpi"),
                          ("VMState", "graphicscontroller"),
                          ("vmprocpriority", "storagecontrollername0"), ("nic1", "nictype1"),
                          ("hidkeyboard", "uart1"), ("uarttype1", "uart2")]:
        assert keys.index(before) < keys.index(after)


def test_integers_unquoted_and_hand_printed_ones_quoted():
    lines = mr_lines()
    assert "cpus=2" in lines and "cpuexecutioncap=100" in lines and "monitorcount=1" in lines
    assert "biossystemtimeoffset=0" in lines and "cpuid-portability-level=0" in lines
    assert 'storagecontrollerinstance0="0"' in lines and 'storagecontrollerportcount0="2"' in lines
    assert 'nicspeed1="0"' in lines and 'mtu="0"' in lines


def test_boot_state_and_paravirt_values():
    lines = mr_lines()
    assert lines[lines.index('boot1="floppy"'):][:4] == ['boot1="floppy"', 'boot2="dvd"', 'boot3="disk"',
                                                         'boot4="none"']
    assert 'VMState="poweroff"' in lines
    assert 'VMStateChangeTime="2024-05-01T12:34:56.789000000"' in lines
    assert 'paravirtprovider="default"' in lines and 'effparavirtprovider="kvm"' in lines
    assert 'firmware="BIOS"' in lines and 'chipset="piix3"' in lines


def test_storage_attachment_keys_are_quoted_and_empty_ports_print_none():
    lines = mr_lines()
    i = lines.index('"SATA-0-0"="/h/VirtualBox VMs/vm1/vm1.vdi"')
    assert lines[i:i + 6] == [
        '"SATA-0-0"="/h/VirtualBox VMs/vm1/vm1.vdi"', f'"SATA-ImageUUID-0-0"="{DISK}"',
        '"SATA-hot-pluggable-0-0"="off"', '"SATA-nonrotational-0-0"="on"', '"SATA-discard-0-0"="off"',
        '"SATA-1-0"="none"']


def test_hot_pluggable_only_for_controllers_named_sata_or_usb():
    info = vm_info()
    info["controllers"][0]["name"] = "AHCI"
    text = machine_readable(info)
    assert "hot-pluggable" not in text and '"AHCI-nonrotational-0-0"="on"' in text


def test_empty_dvd_drive():
    info = vm_info()
    info["controllers"][0]["attachments"] = [{"port": 1, "device": 0, "type": 2, "medium": None,
                                              "hotpluggable": False, "nonrotational": False, "discard": False,
                                              "passthrough": False, "temp_eject": False, "is_ejected": False}]
    lines = machine_readable(info).splitlines()
    assert '"SATA-0-0"="none"' in lines
    i = lines.index('"SATA-1-0"="emptydrive"')
    assert lines[i + 1] == '"SATA-IsEjected-1-0"="off"'


def test_nics_and_uarts():
    lines = mr_lines()
    i = lines.index('natnet1="nat"')
    assert lines[i:i + 11] == ['natnet1="nat"', 'macaddress1="080027AABBCC"', 'cableconnected1="on"',
                               'nic1="nat"',
                               'nictype1="82540EM"', 'nicspeed1="0"', 'mtu="0"', 'sockSnd="64"',
                               'sockRcv="64"',
                               'tcpWndSnd="64"', 'tcpWndRcv="64"']
    assert 'nic2="none"' in lines and 'nic8="none"' in lines
    assert lines[lines.index('uart1="0x03f8,4"') + 1:][:2] == ['uartmode1="file,/tmp/ser.log"',
                                                               'uarttype1="16550A"']
    assert 'uart2="off"' in lines and "uartmode2" not in "".join(lines)


def test_escaping_and_names_with_equals():
    lines = mr_lines(name='a "q" \\ b', description="x=y")
    assert lines[0] == 'name="a \\"q\\" \\\\ b"'
    assert 'description="x=y"' in lines


def test_boot_kernel_extradata_shown_only_when_set():
    assert "vboxpy-bootkernel" not in machine_readable(vm_info())
    lines = mr_lines(boot_kernel="/k/vmlinuz", boot_cmdline="console=ttyS0")
    i = lines.index('boot4="none"')
    assert lines[i + 1:i + 3] == ['vboxpy-bootkernel="/k/vmlinuz"', 'vboxpy-bootcmdline="console=ttyS0"']
    text = human(vm_info(boot_kernel="/k/vmlinuz", boot_initrd="/k/initrd"))
    assert ("Boot kernel:                 /k/vmlinuz\n" in text
            and "Boot initrd:                 /k/initrd\n" in text)


def test_inaccessible_machine():
    info = {"accessible": False, "uuid": UUID, "cfg_file": "/x.vbox", "access_error": "gone"}
    assert machine_readable(info) == f'name="<inaccessible>"\nUUID="{UUID}"\n'
    assert human(info) == (f"Name:            <inaccessible!>\nUUID:            {UUID}\nConfig file:  "
                           f"   /x.vbox\n"
                           "Encryption:     disabled\nAccess error details:\nVBoxManage: error: gone\n\n")


def test_human_layout():
    text = human(vm_info())
    assert text.startswith("Name:                        vm1\nEncryption:                  disabled\n")
    for expected in ("Guest OS:                    Ubuntu (64-bit)\n",
                     "Memory size:                 1024MB\n",
                     "CPU exec cap:                100%\n", "Number of CPUs:              2\n",
                     "State:                       powered off (since 2024-05-01T12:34:56.789000000)\n",
                     "Boot Device 3:               HardDisk\n", "Boot Device 4:               Not Assigned\n",
                     "#0: 'SATA', Type: IntelAhci, Instance: 0, Ports: 2 (max 30), Bootable\n",
                     "Nested VT-x/AMD-V:           disabled\nCPUID overrides:             None\n",
                     "NIC 1 Settings:  MTU: 0, Socket (send: 64, receive: 64), TCP Window (send:64, "
                     "receive: 64)\n",
                     f"  Port 0, Unit 0: UUID: {DISK}, non-rotational (SSD)\n",
                     '    Location: "/h/VirtualBox VMs/vm1/vm1.vdi"\n',
                     "NIC 1:                       MAC: 080027AABBCC, Attachment: NAT, Cable connected: on, "
                     "Trace: off (file: none), Type: 82540EM, Reported speed: 0 Mbps, Boot priority: 0, "
                     "Promisc Policy: deny, Bandwidth group: none\n",
                     "NIC 2:                       disabled\n",
                     # VBoxManage's own quirk: the raw-file UART line breaks before the UART type
                     "UART 1:                      I/O address: 0x03f8, IRQ: 4, attached to raw file "
                     "'/tmp/ser.log'\n, 16550A\n", "UART 2:                      disabled\n"):
        assert expected in text
    assert text.endswith("xHCI USB:                    disabled\nUSB Device Filters:          <none>\n"
                         "Bandwidth groups:            <none>\nShared folders:              <none>\n"
                         "* Guest:\nConfigured memory balloon:   0MB\n")


def test_running_vm_extras_and_tail():
    info = vm_info(running=True, session_name="headless", state=6, memory_balloon=0, paravirt_debug="debug=1")
    text = human(info)
    assert "Drag and drop Mode:          disabled\nSession name:                headless\nVRDE:" in text
    assert "Shared folders:              <none>\nVRDE Connection:             not active\n" in text
    assert "Effective Paravirt. Prov.:   KVM\nParavirt. Debug:             debug=1\n" in text
    lines = machine_readable(info).splitlines()
    assert lines[-3:] == ['VRDEActiveConnection="off"', "VRDEClients==0", "GuestMemoryBalloon=0"]
    assert 'SessionName="headless"' in lines and 'paravirtdebug="debug=1"' in lines


def test_human_storage_flags_and_empty_dvd():
    info = vm_info()
    info["controllers"][0]["bootable"] = False
    info["controllers"][0]["attachments"].append(
        {"port": 1, "device": 0, "type": 2, "medium": None, "hotpluggable": False, "nonrotational": False,
         "discard": False, "passthrough": False, "temp_eject": True, "is_ejected": False})
    text = human(info)
    assert "Ports: 2 (max 30), Not bootable\n" in text and "  Port 1, Unit 0: Empty, temp eject\n" in text


def test_human_no_controllers():
    assert "Storage Controllers:         <none>\n" in human(vm_info(controllers=[]))


def test_state_time_truncates_z():
    assert state_time(0) == "1970-01-01T00:00:00.000000000"
