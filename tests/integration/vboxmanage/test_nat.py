"""NICs and the NAT engine through the real CLI and service (no VM): modifyvm's NAT options, the
rules in the .vbox as VirtualBox writes them, showvminfo in both formats, errors, list commands."""

from lxml import etree

NS = {"v": "http://www.virtualbox.org/"}


def adapter_xml(vbm, vm: str) -> etree._Element:
    cfg = vbm.machinereadable(vm)["CfgFile"]
    root = etree.parse(cfg).getroot()
    return root.find(".//v:Network/v:Adapter[@slot='0']", NS)


def test_natpf_rules_settings_and_showvminfo(vbm):
    vbm("createvm", "--name", "n1", "--ostype", "Debian_64", "--register", check=0)
    vbm("modifyvm", "n1", "--nic1", "nat", "--nic-type1", "82540EM", "--natpf1", "ssh,tcp,127.0.0.1,2222,,22",
        "--natpf1", "dns,udp,,5353,10.0.2.15,53", "--natnet1", "10.0.5.0/24", "--natdnshostresolver1", "on",
        "--nat-localhostreachable1", "on", "--natsettings1", "1400,128,128,0,0", "--nattftpfile1", "pxe.0",
        "--nictrace1", "on", "--nictracefile1", "/tmp/n1.pcap", check=0)
    info = vbm.machinereadable("n1")
    assert info["nic1"] == "nat" and info["natnet1"] == "10.0.5.0/24" and info["nictype1"] == "82540EM"
    assert info["Forwarding(0)"] == "dns,udp,,5353,10.0.2.15,53"          # a map: sorted by name
    assert info["Forwarding(1)"] == "ssh,tcp,127.0.0.1,2222,,22"
    assert (info["mtu"], info["sockSnd"], info["sockRcv"], info["tcpWndSnd"]) == ("1400", "128", "128", "64")
    human = vbm("showvminfo", "n1", check=0)[1]
    assert ("NIC 1 Rule(1):   name = ssh, protocol = tcp, host ip = 127.0.0.1, host port = 2222, "
            "guest ip = , "
            "guest port = 22\n") in human
    assert ("NIC 1 Settings:  MTU: 1400, Socket (send: 128, receive: 128), TCP Window (send:64, receive: 64)"
            in human)
    assert "Trace: on (file: /tmp/n1.pcap)" in human
    nat = adapter_xml(vbm, "n1").find("v:NAT", NS)
    assert nat.get("network") == "10.0.5.0/24" and nat.get("mtu") == "1400"
    assert nat.get("localhost-reachable") == "true"
    assert nat.find("v:DNS", NS).get("use-host-resolver") == "true"
    assert nat.find("v:TFTP", NS).get("boot-file") == "pxe.0"
    rules = [dict(f.attrib) for f in nat.findall("v:Forwarding", NS)]
    assert rules == [{"name": "dns", "proto": "0", "hostport": "5353", "guestip": "10.0.2.15",
                      "guestport": "53"},
                     {"name": "ssh", "proto": "1", "hostip": "127.0.0.1", "hostport": "2222",
                      "guestport": "22"}]


def test_natpf_errors_keep_the_settings(vbm):
    vbm("createvm", "--name", "n2", "--register", check=0)
    vbm("modifyvm", "n2", "--nic1", "nat", "--natpf1", "packercomm,tcp,127.0.0.1,3022,,22", check=0)
    code, out, err = vbm("modifyvm", "n2", "--natpf1", "packercomm,tcp,127.0.0.1,4022,,22")
    assert code == 1 and "A NAT rule of this name already exists" in err
    code, out, err = vbm("modifyvm", "n2", "--natpf1", "other,tcp,127.0.0.1,3022,,23")
    assert code == 1 and "A NAT rule for this host port and this host IP already exists" in err
    code, out, err = vbm("modifyvm", "n2", "--natpf1", "bad,icmp,,1,,2")
    assert code == 1 and "Invalid proto 'icmp' specified for NIC 1" in err
    code, out, err = vbm("modifyvm", "n2", "--natpf1", "short,tcp,1")
    assert code == 2 and "Missing or invalid argument to '--nat-pf'" in err
    assert vbm.machinereadable("n2")["Forwarding(0)"] == "packercomm,tcp,127.0.0.1,3022,,22"
    assert "Forwarding(1)" not in vbm.machinereadable("n2")
    vbm("modifyvm", "n2", "--natpf1", "delete", "packercomm", check=0)
    assert "Forwarding(0)" not in vbm.machinereadable("n2")
    code, _, err = vbm("modifyvm", "n2", "--natpf1", "delete", "packercomm")
    assert code == 1 and "NS_ERROR_INVALID_ARG" in err
    code, _, err = vbm("controlvm", "n2", "natpf1", "x,tcp,,1,,2")
    assert code == 1 and "is not currently running" in err


def test_nic_kinds_and_list_commands(vbm):
    vbm("createvm", "--name", "n3", "--register", check=0)
    vbm("modifyvm", "n3", "--nic1", "intnet", "--intnet1", "lab", "--nic2", "null", "--nic-type2", "virtio",
        "--nic3", "generic", "--nic-generic-drv3", "VDE", "--nic4", "hostonly",
        "--host-only-adapter4", "vboxnet0",
        check=0)
    info = vbm.machinereadable("n3")
    assert ((info["nic1"], info["intnet1"], info["nic2"], info["nictype2"])
            == ("intnet", "lab", "null", "virtio"))
    assert info["nic3"] == "Generic" and info["nic4"] == "hostonly"
    assert vbm("list", "intnets") == (0, "Name:        lab\n", "")
    for what in ("hostonlyifs", "bridgedifs", "natnets", "dhcpservers"):
        assert vbm("list", what) == (0, "", "")
