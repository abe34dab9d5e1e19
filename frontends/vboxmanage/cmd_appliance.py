"""Appliance commands (VBoxManageAppliance.cpp): `import` (with `--dry-run` listing the
interpretation clients parse) and `export`, as front-ends of IAppliance.

Options after `--vsys N` (and `--unit N`) apply to that virtual system (and entry), so the
arguments are parsed in order by hand, as VirtualBox's getopt loop does.
"""

from __future__ import annotations

import os
import re
import sys

import click

from .api import Api, call, find_machine, wait
from .output import ArgumentFailure, CommandFailed, SyntaxFailure, msg_lines

_FILE = "VBoxManageAppliance.cpp"
_UUID = re.compile(r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$")
CONTEXT = {"help_option_names": [], "ignore_unknown_options": True}

# VirtualSystemDescriptionType values (vboxsvc.api.enums) the listing distinguishes
OS, NAME, PRODUCT, VENDOR, VERSION, PRODUCT_URL, VENDOR_URL, DESCRIPTION, LICENSE = 2, 3, 4, 5, 6, 7, 8, 9, 10
(CPU, MEMORY, IDE, SATA, SCSI, SAS,
 DISK, FLOPPY, CDROM, NIC, USB, SOUND) = 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23
SETTINGS_FILE, BASE_FOLDER, GROUP, VIRTIO_SCSI, NVME = 24, 25, 26, 60, 61

_IMPORT_OPTS = {  # option -> (key, takes a value)
    "--dry-run": ("dryrun", False), "-dry-run": ("dryrun", False), "--dryrun": ("dryrun", False),
    "-dryrun": ("dryrun", False), "-n": ("dryrun", False),
    "--detailed-progress": ("detailed", False), "-detailed-progress": ("detailed", False),
    "-P": ("detailed", False),
    "--vsys": ("vsys", True), "-vsys": ("vsys", True), "-s": ("vsys", True),
    "--ostype": ("ostype", True), "-ostype": ("ostype", True), "-o": ("ostype", True),
    "--vmname": ("vmname", True), "-vmname": ("vmname", True), "-V": ("vmname", True),
    "--settingsfile": ("settingsfile", True), "-S": ("settingsfile", True),
    "--basefolder": ("basefolder", True), "-p": ("basefolder", True),
    "--group": ("group", True), "-g": ("group", True),
    "--memory": ("memory", True), "-memory": ("memory", True), "-m": ("memory", True),
    "--cpus": ("cpus", True), "-c": ("cpus", True),
    "--description": ("description", True), "-d": ("description", True),
    "--eula": ("eula", True), "-eula": ("eula", True), "-L": ("eula", True),
    "--unit": ("unit", True), "-unit": ("unit", True), "-u": ("unit", True),
    "--ignore": ("ignore", False), "-ignore": ("ignore", False), "-x": ("ignore", False),
    "--scsitype": ("scsitype", True), "-scsitype": ("scsitype", True), "-T": ("scsitype", True),
    "--type": ("scsitype", True), "-type": ("scsitype", True),
    "--disk": ("disk", True), "-D": ("disk", True),
    "--options": ("options", True), "-O": ("options", True),
}
_PER_VSYS = ("ostype", "vmname", "settingsfile", "basefolder", "group", "memory", "cpus", "description",
             "eula")


def _split(arg: str) -> tuple[str, str | None]:
    if arg.startswith("--") and "=" in arg:
        name, _, value = arg.partition("=")
        return name, value
    return arg, None


def _uint(opt: str, value: str, cmd: str) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise SyntaxFailure(f"{opt}: VERR_GETOPT_INVALID_ARGUMENT_FORMAT", cmd) from None
    if n < 0 or n > 0xFFFFFFFF:
        raise SyntaxFailure(f"{opt}: VERR_GETOPT_INVALID_ARGUMENT_FORMAT", cmd)
    return n


def _import_options(text: str) -> list[int]:
    out = []
    for word in filter(None, text.split(",")):
        w = word.lower()
        matched = [v for k, v in (("keepallmacs", 1), ("keepnatmacs", 2), ("importtovdi", 3))
                   if k.startswith(w)]
        if not matched:
            raise ArgumentFailure(f"Invalid import options '{text}'\n")
        out.append(matched[0])
    return out


@click.command("import", context_settings=CONTEXT)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def import_(args):
    cmd = "import"
    args = list(args)
    ovf = None
    dry = False
    options: list[int] = []
    vsys_args: dict[int, dict[str, str]] = {}
    ignores: dict[int, set[int]] = {}
    cur_vsys = cur_unit = None
    i = 0
    while i < len(args):
        raw = args[i]
        i += 1
        name, inline = _split(raw)
        if name not in _IMPORT_OPTS:
            if raw.startswith("-") and len(raw) > 1:
                raise SyntaxFailure(f"Unknown option: {raw}", cmd)
            if ovf is None:
                ovf = raw
                continue
            raise SyntaxFailure(f"Invalid parameter '{raw}'", cmd)
        key, takes = _IMPORT_OPTS[name]
        value = inline
        if takes and value is None:
            if i >= len(args):
                raise SyntaxFailure(f"Missing the 1st value for option {name}", cmd)
            value = args[i]
            i += 1
        if key == "dryrun":
            dry = True
        elif key == "detailed":
            from .output import State
            State.detailed_progress = True
        elif key == "vsys":
            cur_vsys, cur_unit = _uint(name, value, cmd), None
        elif key == "unit":
            cur_unit = _uint(name, value, cmd)
        elif key == "options":
            options += _import_options(value)
        elif key in _PER_VSYS:
            if cur_vsys is None:
                raise SyntaxFailure(f'Option "{name}" requires preceding --vsys argument.', cmd)
            vsys_args.setdefault(cur_vsys, {})[key] = value
        else:   # ignore, scsitype, disk: per entry
            if cur_vsys is None:
                raise SyntaxFailure(f'Option "{name}" requires preceding --vsys argument.', cmd)
            if cur_unit is None:
                raise SyntaxFailure(f'Option "{name}" requires preceding --unit argument.', cmd)
            if key == "ignore":
                ignores.setdefault(cur_vsys, set()).add(cur_unit)
            else:
                vsys_args.setdefault(cur_vsys, {})[f"{key}{cur_unit}"] = value
    if ovf is None:
        raise SyntaxFailure('Not enough arguments for "import" command.', cmd)
    return _run_import(os.path.abspath(ovf), dry, options, vsys_args, ignores)


def _run_import(path: str, dry: bool, options: list[int], vsys_args: dict, ignores: dict) -> int:
    ctx = '"RTEXITCODE handleImportAppliance(HandlerArg*)"'
    vbox = Api.vbox()
    with call("CreateAppliance(pAppliance.asOutParam())", 330, _FILE):
        appliance = vbox.create_appliance()
    with call("Read(Bstr(pszAbsFilePath).raw(), progressRead.asOutParam())", 360, _FILE):
        progress = appliance.read(path)
    wait(progress, "Appliance read failed", ctx)
    with call("COMGETTER(Path)(path.asOutParam())", 366, _FILE):
        shown_path = appliance.path
    sys.stderr.write(f"Interpreting {shown_path}...\n")
    sys.stderr.flush()
    try:
        appliance.interpret()
    finally:
        with call("GetWarnings(ComSafeArrayAsOutParam(aWarnings))", 380, _FILE):
            for w in appliance.get_warnings():
                sys.stderr.write(msg_lines("warning: ", f"{w}."))
    sys.stderr.write("OK.\n")
    with call("COMGETTER(Disks)(ComSafeArrayAsOutParam(retDisks))", 400, _FILE):
        disks = list(appliance.disks)
    out = sys.stdout
    if disks:
        out.write("Disks:\n")
        for d in disks:
            out.write(f"  {d}\n")
        out.write("\n")
    with call("COMGETTER(VirtualSystemDescriptions)(ComSafeArrayAsOutParam(aVirtualSystemDescriptions))",
              410, _FILE):
        vsds = list(appliance.virtual_system_descriptions)
    for n in vsys_args:
        if n >= len(vsds):
            raise SyntaxFailure(f"Invalid index {n} with -vsys option; the OVF contains only {len(vsds)} "
                                "virtual system(s).", "import")
    licenses = 0
    for i, vsd in enumerate(vsds):
        with call("GetDescription(...)", 440, _FILE):
            types, _refs, ovf_values, vbox_values, extra = vsd.get_description()
        out.write(f"Virtual system {i}:\n")
        enabled, finals, licenses_here = _describe(i, types, ovf_values, vbox_values, extra,
                                                   dict(vsys_args.get(i, {})), ignores.get(i, set()), options,
                                                   out)
        licenses += licenses_here
        if not dry:
            with call("SetFinalValues(ComSafeArrayAsInParam(aEnabled), ComSafeArrayAsInParam(aFinalValues), "
                      "ComSafeArrayAsInParam(aExtraConfigValues))", 640, _FILE):
                vsd.set_final_values(enabled, finals, list(extra))
    out.flush()
    if licenses:
        raise CommandFailed(msg_lines("error: ", "Cannot import until the license agreement listed above is "
                                                 "accepted." if licenses == 1 else
                                      f"Cannot import until the {licenses} license agreements listed above "
                                      "are accepted."))
    if dry:
        return 0
    with call("ImportMachines(ComSafeArrayAsInParam(options), progress.asOutParam())", 660, _FILE):
        progress = appliance.import_machines(options)
    wait(progress, "Appliance import failed", ctx)
    out.write("Successfully imported the appliance.\n")
    return 0


def _describe(i, types, ovf_values, vbox_values, extra, args, ignored, options, out):
    """Print one virtual system as VBoxManage does and return (enabled, final values, unaccepted licenses)."""
    enabled, finals = [], []
    licenses = 0

    def w(text):
        out.write(text + "\n")

    for a, t in enumerate(types):
        t = int(t)
        final = vbox_values[a]
        on = True
        ignore = a in ignored
        n = f"{a:2d}"
        if t == OS:
            if "ostype" in args:
                final = args.pop("ostype")
                w(f'{n}: OS type specified with --ostype: "{final}"')
            else:
                w(f'{n}: Suggested OS type: "{final}"\n    (change with "--vsys {i} --ostype <type>"; '
                  'use "list ostypes" to list all possible values)')
        elif t == NAME:
            if "vmname" in args:
                final = args.pop("vmname")
                w(f'{n}: VM name specified with --vmname: "{final}"')
            else:
                w(f'{n}: Suggested VM name "{final}"\n    (change with "--vsys {i} --vmname <name>")')
        elif t in (PRODUCT, PRODUCT_URL, VENDOR, VENDOR_URL, VERSION):
            label = {PRODUCT: "Product", PRODUCT_URL: "ProductUrl", VENDOR: "Vendor", VENDOR_URL: "VendorUrl",
                     VERSION: "Version"}[t]
            w(f"{n}: {label} (ignored): {vbox_values[a]}")
        elif t == DESCRIPTION:
            if "description" in args:
                final = args.pop("description")
                w(f'{n}: Description specified with --description: "{final}"')
            else:
                w(f'{n}: Description "{final}"\n    (change with "--vsys {i} --description <desc>")')
        elif t == LICENSE:
            licenses += 1
            choice = args.pop("eula", None)
            if choice == "show":
                w(f'{n}: End-user license agreement\n    (accept with "--vsys {i} --eula accept"):\n\n'
                  f'{final}\n')
            elif choice == "accept":
                w(f"{n}: End-user license agreement (accepted)")
                licenses -= 1
            elif choice is not None:
                raise SyntaxFailure('Argument to --eula must be either "show" or "accept".', "import")
            else:
                w(f'{n}: End-user license agreement\n    (display with "--vsys {i} --eula show";\n    '
                  f'accept with "--vsys {i} --eula accept")')
        elif t == CPU:
            if "cpus" in args:
                value = args.pop("cpus")
                if not value.isdigit() or not 1 <= int(value) <= 64:
                    raise SyntaxFailure("Argument to --cpus option must be a number greater than 0 and less "
                                        "than 65.", "import")
                final = value
                w(f"{n}: No. of CPUs specified with --cpus: {final}")
            else:
                w(f'{n}: Number of CPUs: {final}\n    (change with "--vsys {i} --cpus <n>")')
        elif t == MEMORY:
            if "memory" in args:
                value = args.pop("memory")
                if not value.isdigit():
                    raise SyntaxFailure("Argument to --memory option must be a non-negative number.",
                                        "import")
                final = value
                w(f"{n}: Guest memory specified with --memory: {final} MB")
            else:
                w(f'{n}: Guest memory: {final} MB\n    (change with "--vsys {i} --memory <MB>")')
        elif t in (IDE, SATA, SAS, VIRTIO_SCSI, NVME):
            label = {IDE: "IDE", SATA: "SATA", SAS: "SAS", VIRTIO_SCSI: "VirtioSCSI", NVME: "NVMe"}[t]
            if ignore:
                w(f"{n}: {label} controller, type {vbox_values[a]} -- disabled")
                on = False
            else:
                w(f'{n}: {label} controller, type {vbox_values[a]}\n    (disable with "--vsys {i} --unit {a} '
                  '--ignore")')
        elif t == SCSI:
            if ignore:
                w(f"{n}: SCSI controller, type {vbox_values[a]} -- disabled")
                on = False
            elif f"scsitype{a}" in args:
                final = args.pop(f"scsitype{a}")
                w(f'{n}: SCSI controller, type set with --unit {a} --scsitype: "{final}"')
            else:
                w(f'{n}: SCSI controller, type {vbox_values[a]}\n    (change with "--vsys {i} --unit {a} '
                  f'--scsitype {{BusLogic|LsiLogic}}";\n    disable with "--vsys {i} --unit {a} --ignore")')
        elif t == DISK:
            if ignore:
                w(f"{n}: Hard disk image: source image={ovf_values[a]} -- disabled")
                on = False
            elif f"disk{a}" in args:
                if 3 in options:
                    raise SyntaxFailure("Option --ImportToVDI shall not be used together with manually set "
                                        "target path.", "import")
                final = args.pop(f"disk{a}")
                if not _UUID.match(final) and not os.path.isabs(final):
                    final = os.path.join(os.getcwd(), final)
                w(f"{n}: Hard disk image: source image={ovf_values[a]}, target path={final}, {extra[a]}")
            else:
                if 3 in options and not final.lower().endswith((".iso", ".img", ".raw")):
                    final = os.path.splitext(final)[0] + ".vdi"
                w(f"{n}: Hard disk image: source image={ovf_values[a]}, target path={final}, {extra[a]}\n"
                  f'    (change target path with "--vsys {i} --unit {a} --disk path";\n    disable with '
                  f'"--vsys {i} --unit {a} --ignore")')
        elif t == CDROM:
            if ignore:
                w(f"{n}: CD-ROM -- disabled")
                on = False
            else:
                w(f'{n}: CD-ROM\n    (disable with "--vsys {i} --unit {a} --ignore")')
        elif t == FLOPPY:
            if ignore:
                w(f"{n}: Floppy -- disabled")
                on = False
            else:
                w(f'{n}: Floppy\n    (disable with "--vsys {i} --unit {a} --ignore")')
        elif t == NIC:
            w(f"{n}: Network adapter: orig {ovf_values[a]}, config {vbox_values[a]}, extra {extra[a]}")
        elif t == USB:
            if ignore:
                w(f"{n}: USB controller -- disabled")
                on = False
            else:
                w(f'{n}: USB controller\n    (disable with "--vsys {i} --unit {a} --ignore")')
        elif t == SOUND:
            if ignore:
                w(f'{n}: Sound card "{ovf_values[a]}" -- disabled')
                on = False
            else:
                w(f'{n}: Sound card (appliance expects "{ovf_values[a]}", can change on import)\n    '
                  f'(disable with "--vsys {i} --unit {a} --ignore")')
        elif t == SETTINGS_FILE:
            if "settingsfile" in args:
                final = args.pop("settingsfile")
                w(f'{n}: VM settings file name specified with --settingsfile: "{final}"')
            else:
                w(f'{n}: Suggested VM settings file name "{final}"\n    (change with "--vsys {i} '
                  '--settingsfile <filename>")')
        elif t == BASE_FOLDER:
            if "basefolder" in args:
                final = args.pop("basefolder")
                w(f'{n}: VM base folder specified with --basefolder: "{final}"')
            else:
                w(f'{n}: Suggested VM base folder "{final}"\n    '
                  f'(change with "--vsys {i} --basefolder <path>")')
        elif t == GROUP:
            if "group" in args:
                final = args.pop("group")
                w(f'{n}: VM group specified with --group: "{final}"')
            else:
                w(f'{n}: Suggested VM group "{final}"\n    (change with "--vsys {i} --group <group>")')
        enabled.append(on)
        finals.append(final)
    return enabled, finals, licenses


_EXPORT_OPTS = {
    "--output": ("output", True), "-o": ("output", True),
    "--legacy09": ("fmt09", False), "--ovf09": ("fmt09", False), "--ovf10": ("fmt10", False),
    "--ovf20": ("fmt20", False), "--opc10": ("opc", False),
    "--manifest": ("manifest", False), "-m": ("manifest", False),
    "--iso": ("iso", False), "-I": ("iso", False),
    "--vsys": ("vsys", True), "-s": ("vsys", True),
    "--vmname": ("vmname", True), "-V": ("vmname", True),
    "--product": ("product", True), "-p": ("product", True),
    "--producturl": ("producturl", True), "-P": ("producturl", True),
    "--vendor": ("vendor", True), "-n": ("vendor", True),
    "--vendorurl": ("vendorurl", True), "-N": ("vendorurl", True),
    "--version": ("version", True), "-v": ("version", True),
    "--description": ("description", True), "-d": ("description", True),
    "--eula": ("eula", True), "-e": ("eula", True),
    "--eulafile": ("eulafile", True), "-E": ("eulafile", True),
    "--options": ("options", True), "-O": ("options", True),
}
# VSD type of each per-system export option
_EXPORT_TYPES = {"vmname": NAME, "product": PRODUCT, "producturl": PRODUCT_URL, "vendor": VENDOR,
                 "vendorurl": VENDOR_URL, "version": VERSION, "description": DESCRIPTION, "eula": LICENSE}


def _export_options(text: str) -> list[int]:
    words = {"createmanifest": 1, "manifest": 1, "exportdvdimages": 2, "iso": 2, "stripallmacs": 3,
             "nomacs": 3, "stripallnonnatmacs": 4, "nomacsbutnat": 4}
    out = []
    for word in filter(None, text.split(",")):
        w = word.lower()
        found = [v for k, v in words.items() if k.startswith(w)]
        if not found:
            raise ArgumentFailure(f"Invalid export options '{text}'\n")
        out.append(found[0])
    return out


@click.command("export", context_settings=CONTEXT)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def export(args):
    cmd = "export"
    args = list(args)
    output = None
    fmt = "ovf-1.0"
    manifest = False
    options: list[int] = []
    vms: list[str] = []
    per: dict[int, dict[str, str]] = {}
    cur = None
    i = 0
    while i < len(args):
        raw = args[i]
        i += 1
        name, inline = _split(raw)
        if name not in _EXPORT_OPTS:
            if raw.startswith("-") and len(raw) > 1:
                raise SyntaxFailure(f"unknown option: {raw}", cmd)
            vms.append(raw)
            continue
        key, takes = _EXPORT_OPTS[name]
        value = inline
        if takes and value is None:
            if i >= len(args):
                raise SyntaxFailure(f"Missing the 1st value for option {name}", cmd)
            value = args[i]
            i += 1
        if key == "output":
            if output is not None:
                raise SyntaxFailure("You can only specify --output once.", cmd)
            output = value
        elif key in ("fmt09", "fmt10", "fmt20"):
            fmt = {"fmt09": "ovf-0.9", "fmt10": "ovf-1.0", "fmt20": "ovf-2.0"}[key]
        elif key == "opc":
            raise CommandFailed(msg_lines("error: ", "Exporting to the Oracle Public Cloud format (--opc10) "
                                                     "is not supported by vboxpy"))
        elif key == "manifest":
            manifest = True
        elif key == "iso":
            options.append(2)
        elif key == "options":
            options += _export_options(value)
        elif key == "vsys":
            cur = _uint(name, value, cmd)
        else:
            if cur is None:
                raise SyntaxFailure(f'Option "{name}" requires preceding --vsys argument.', cmd)
            per.setdefault(cur, {})[key] = value
    if not vms:
        raise SyntaxFailure("At least one machine must be specified with the export command.", cmd)
    if output is None:
        raise SyntaxFailure("Missing --output argument with export command.", cmd)
    for n in per:
        if n >= len(vms):
            raise SyntaxFailure(f"Invalid index {n} with -vsys option; you specified only {len(vms)} virtual "
                                "system(s).", cmd)
    machines = [find_machine(vm, 1010, _FILE) for vm in vms]
    path = os.path.abspath(output)
    vbox = Api.vbox()
    with call("CreateAppliance(pAppliance.asOutParam())", 1040, _FILE):
        appliance = vbox.create_appliance()
    for n, machine in enumerate(machines):
        with call("ExportTo(pAppliance, Bstr(pszAbsFilePath).raw(), pVSD.asOutParam())", 1070, _FILE):
            vsd = machine.export_to(appliance, path)
        for key, value in per.get(n, {}).items():
            if key == "eulafile":
                try:
                    with open(value, encoding="utf-8") as f:
                        value, key = f.read(), "eula"
                except OSError:
                    raise CommandFailed(msg_lines("error: ",
                                                  f'Cannot read license file "{value}" which should '
                                                  f"be included in the virtual system {n}.")) from None
            with call("AddDescription(...)", 1090, _FILE):
                vsd.add_description(_EXPORT_TYPES[key], value, "")
    if manifest:
        options.append(1)
    with call("Write(Bstr(strOvfFormat).raw(), ComSafeArrayAsInParam(options), Bstr(pszAbsFilePath).raw(), "
              "progress.asOutParam())", 1180, _FILE):
        progress = appliance.write(fmt, options, path)
    wait(progress, "Appliance write failed", '"RTEXITCODE handleExportAppliance(HandlerArg*)"')
    sys.stdout.write(f"Successfully exported {len(machines)} machine(s).\n")
    return 0
