"""Usage texts of the commands we implement, in VBoxManage's `Usage - <brief>:` layout.

Printed for `help`, `<command> --help`, a command given without arguments, and after
syntax errors (errorSyntax shows the brief usage of the current command).
"""

_V = "VBoxManage"

USAGE = {
    "list": ("List system information and configuration", [
        "list [--long] [--sorted] [--platform-arch=x86|arm] vms | runningvms | ostypes | hostinfo |"
        " systemproperties | hdds | dvds | floppies"]),
    "showvminfo": ("Show configuration information or log file contents for a virtual machine", [
        "showvminfo <uuid|vmname> [--details] [--machinereadable] [--password-id id] [--password file|-]",
        "showvminfo <uuid|vmname> --log=index"]),
    "registervm": ("Register a virtual machine", ["registervm filename [--password file]"]),
    "unregistervm": ("Unregister a virtual machine",
                     ["unregistervm <uuid|vmname> [--delete] [--delete-all]"]),
    "createvm": ("Create a new virtual machine", [
        "createvm --name=name [--basefolder=basefolder] [--default] [--groups=group-ID[,...]]"
        " [--ostype=ostype] [--register] [--uuid=uuid] [--platform-architecture=x86|arm]"
        " [--cipher=cipher] [--password-id=password-id] [--password=file]"]),
    "modifyvm": ("Change settings for a virtual machine that is stopped", [
        "modifyvm <uuid|vmname> [--name=name] [--groups=group[,group...]] [--description=description]"
        " [--os-type=OS-type] [--memory=size-in-MB] [--vram=size-in-MB] [--cpus=CPU-count]"
        " [--cpu-execution-cap=percentage] [--firmware=bios|efi|efi32|efi64|efidual]"
        " [--acpi=on|off] [--ioapic=on|off] [--hwvirtex=on|off] [--nested-paging=on|off]"
        " [--large-pages=on|off] [--vtx-vpid=on|off]"
        " [--paravirt-provider=none|default|legacy|minimal|hyperv|kvm] [--paravirt-debug=keyword=value...]"
        " [--graphicscontroller=none|vboxvga|vmsvga|vboxsvga]"
        " [--boot1=disk|dvd|floppy|net|none] [--boot2=...] [--boot3=...] [--boot4=...]"
        " [--nicN=none|null|nat|bridged|intnet|hostonly|hostonlynet|generic|natnetwork|cloud]"
        " [--nic-typeN=Am79C970A|Am79C973|Am79C960|82540EM|82543GC|82545EM|virtio]"
        " [--cable-connectedN=on|off] [--mac-addressN=auto|MAC-address]"
        " [--uartN=off|IO-base IRQ] [--uart-modeN=disconnected|server pipe|client pipe|tcpserver port|"
        "tcpclient hostname:port|file filename|device-name] [--uart-typeN=16450|16550A|16750]"
        " [--boot-kernel=file|none] [--boot-initrd=file|none] [--boot-cmdline=arguments]"]),
    "storagectl": ("Manage a storage controller", [
        "storagectl <uuid|vmname> --name=controller-name [--add=floppy|ide|pcie|sas|sata|scsi|usb|"
        "virtio-scsi] [--controller=BusLogic|I82078|ICH6|IntelAhci|LSILogic|LSILogicSAS|NVMe|PIIX3|PIIX4|USB|"
        "virtio-scsi] [--bootable=on|off] [--hostiocache=on|off] [--portcount=count] "
        "[--rename=new-controller-name]",
        "storagectl <uuid|vmname> --name=controller-name --remove"]),
    "storageattach": ("Attach, remove, and modify storage media used by a virtual machine", [
        "storageattach <uuid|vmname> --storagectl=name [--device=number] [--discard=on|off]"
        " [--medium=none|emptydrive|additions|uuid|filename|host:drive] [--mtype=normal|writethrough|"
        "immutable|shareable|readonly|multiattach] [--nonrotational=on|off] [--port=number]"
        " [--hotpluggable=on|off] [--passthrough=on|off] [--tempeject=on|off] [--forceunmount]"
        " [--type=dvddrive|fdd|hdd] [--setuuid=uuid] [--setparentuuid=uuid]"]),
    "createmedium": ("Create a new medium", [
        "createmedium [disk | dvd | floppy] --filename=filename [--size=megabytes | --sizebyte=bytes]"
        " [--diffparent=UUID | filename] [--format=VDI | VMDK | VHD] [--variant Standard,Fixed,Split2G,"
        "Stream,ESX,Formatted,RawDisk] [--property name=value...]"]),
    "closemedium": ("Remove a hard disk, DVD, or floppy image from the media registry", [
        "closemedium [disk | dvd | floppy] <uuid | filename> [--delete]"]),
    "showmediuminfo": ("Show information about a medium", [
        "showmediuminfo [disk | dvd | floppy] <uuid | filename>"]),
    "clonemedium": ("Create a clone of a medium", [
        "clonemedium [disk | dvd | floppy] <uuid | source-medium> <uuid | target-medium>"
        " [--existing] [--format=VDI | VMDK | VHD | RAW | other]"
        " [--variant=Standard,Fixed,Split2G,Stream,ESX]"
        " [--resize=megabytes | --resizebyte=bytes]"]),
    "convertfromraw": ("Convert a raw disk image to a virtual disk image", [
        "convertfromraw <inputfile> <outputfile> [--format=VDI | VMDK | VHD] [--uuid=uuid]"
        " [--variant=Standard,Fixed,Split2G,Stream,ESX]",
        "convertfromraw stdin <outputfile> <bytes> [--format=VDI | VMDK | VHD] [--uuid=uuid]"
        " [--variant=Standard,Fixed,Split2G,Stream,ESX]"]),
    "import": ("Import a virtual appliance (OVA/OVF)", [
        "import <ovfname | ovaname> [--dry-run] [--options=keepallmacs | keepnatmacs | importtovdi]"
        " [--vsys=n] [--ostype=ostype] [--vmname=name] [--settingsfile=file] [--basefolder=folder]"
        " [--group=group] [--memory=MB] [--cpus=n] [--description=text] [--eula=show | accept]"
        " [--unit=n] [--ignore] [--scsitype=BusLogic | LsiLogic] [--disk=path]"]),
    "export": ("Export one or more virtual machines to a virtual appliance (OVA/OVF)", [
        "export <machines> --output=name [--legacy09 | --ovf09 | --ovf10 | --ovf20] [--manifest]"
        " [--options=option[,option...]] [--vsys=number] [--description=description-info]"
        " [--eula=license-text] [--eulafile=filename] [--product=product-name]"
        " [--producturl=product-URL] [--vendor=vendor-name] [--vendorurl=vendor-URL]"
        " [--version=version-info] [--vmname=vmname]"]),
    "modifymedium": ("Change the characteristics of a disk image", [
        "modifymedium [disk | dvd | floppy] <uuid | filename> [--autoreset=on | off] [--compact]"
        " [--description=description] [--move=pathname] [--property=name=[value]]"
        " [--resize=megabytes | --resizebyte=bytes] [--setlocation=pathname]"
        " [--type=normal | writethrough | immutable | shareable | readonly | multiattach]"]),
    "startvm": ("Start a virtual machine", [
        "startvm <uuid|vmname...> [--putenv=name[=value]] [--type=[gui | headless | sdl | separate]]"]),
    "controlvm": ("Change state and settings for a running virtual machine", [
        "controlvm <uuid|vmname> pause", "controlvm <uuid|vmname> resume", "controlvm <uuid|vmname> reset",
        "controlvm <uuid|vmname> poweroff", "controlvm <uuid|vmname> savestate",
        "controlvm <uuid|vmname> acpipowerbutton",
        "controlvm <uuid|vmname> keyboardputscancode <hex> [<hex>...]",
        "controlvm <uuid|vmname> keyboardputstring <string1> [<string2>...]",
        "controlvm <uuid|vmname> keyboardputfile <filename>",
        "controlvm <uuid|vmname> screenshotpng <filename> [display]"]),
    "discardstate": ("Discard the saved state of a virtual machine", ["discardstate <uuid|vmname>"]),
    "snapshot": ("Manage virtual machine snapshots", [
        "snapshot <uuid|vmname> take <snapshot-name> [--description=description] [--live]"
        " [--uniquename Number,Timestamp,Space,Force]",
        "snapshot <uuid|vmname> delete <snapshot-name>",
        "snapshot <uuid|vmname> restore <snapshot-name>",
        "snapshot <uuid|vmname> restorecurrent",
        "snapshot <uuid|vmname> edit <snapshot-name | --current> [--description=description]"
        " [--name=new-name]",
        "snapshot <uuid|vmname> list [[--details] | [--machinereadable]]",
        "snapshot <uuid|vmname> showvminfo <snapshot-name>"]),
    "clonevm": ("Create a clone of an existing virtual machine", [
        "clonevm <vmname|uuid> [--basefolder=basefolder] [--groups=group,...]"
        " [--mode=machine | machineandchildren | all] [--name=name] [--options=option,...]"
        " [--register] [--snapshot=snapshot-name] [--uuid=uuid]"]),
    "getextradata": ("View keyword values that are associated with a virtual machine or configuration", [
        "getextradata <global | uuid | vmname> <keyword | enumerate>"]),
    "setextradata": ("Set a keyword value that is associated with a virtual machine or configuration", [
        "setextradata <global | uuid | vmname> <keyword> [value]"]),
    "guestproperty": ("Manage virtual machine guest properties", [
        "guestproperty get <uuid | vmname> <property-name> [--verbose]",
        "guestproperty enumerate <uuid | vmname> [--no-timestamp] [--no-flags] [--relative] [--old-format]"
        " [pattern...]",
        "guestproperty set <uuid | vmname> <property-name> [property-value [--flags=flags]]",
        "guestproperty unset <uuid | vmname> <property-name>",
        "guestproperty wait <uuid | vmname> <patterns> [--timeout=msec] [--fail-on-timeout]"]),
    "sharedfolder": ("Add and remove shared folders", [
        "sharedfolder add <uuid | vmname> --name=name --hostpath=hostpath [--readonly] [--transient]"
        " [--automount] [--auto-mount-point=path]",
        "sharedfolder remove <uuid | vmname> --name=name [--transient]"]),
    "setproperty": ("Change global settings", [
        "setproperty machinefolder <default | folder>",
        "setproperty hwvirtexclusive <on | off>", "setproperty loghistorycount <count>",
        "setproperty defaultfrontend <default | name>"]),
}

ALIASES = {
    "createhd": "createmedium", "createvdi": "createmedium",
    "clonehd": "clonemedium", "clonevdi": "clonemedium",
    "modifyhd": "modifymedium", "modifyvdi": "modifymedium",
    "showhdinfo": "showmediuminfo", "showvdiinfo": "showmediuminfo",
    "convertdd": "convertfromraw",
}


def usage(command: str) -> str:
    brief, lines = USAGE[command]
    body = "\n".join(f"  {_V} {line}" for line in lines)
    return f"Usage - {brief}:\n\n{body}\n"


def full_usage() -> str:
    return "Usage:\n\n" + "\n".join(usage(c) for c in USAGE)
