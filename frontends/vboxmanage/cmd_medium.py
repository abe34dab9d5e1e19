"""Media commands (VBoxManageDisk.cpp): createmedium, closemedium, showmediuminfo,
clonemedium, modifymedium, convertfromraw (and their createhd/clonehd/convertdd/... aliases)."""

import json
import os
import re
import sys

import click

from . import names, render_list
from .api import Api, call, is_api_error, progress_error, wait
from .cli import CONTEXT, choice, parse_bool, uint
from .output import ArgumentFailure, CommandFailed, SyntaxFailure, msg_lines

_FILE = "VBoxManageDisk.cpp"
_UUID = re.compile(r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$")
_EXT = {"VDI": ".vdi", "VMDK": ".vmdk", "VHD": ".vhd", "RAW": ".img", "QED": ".qed", "QCOW": ".qcow",
        "PARALLELS": ".hdd"}


def variants(text: str | None, cmd: str) -> list:
    """--variant Standard,Fixed,... -> [MediumVariant] of single bits (Standard = [])."""
    from vboxsvc.api.enums import MediumVariant

    bits = 0
    for word in (text or "").split(","):
        word = word.strip().lower()
        if not word:
            continue
        if word not in names.VARIANT_BITS:
            raise SyntaxFailure(f"Invalid medium variant '{text}'", cmd)
        bits |= names.VARIANT_BITS[word]
    return [MediumVariant(1 << i) for i in range(32) if bits & (1 << i)]


def split_kind(args: tuple[str, ...], cmd: str) -> tuple[int, list[str]]:
    """Leading `disk|dvd|floppy` word (default disk) and the remaining positional args."""
    rest = list(args)
    kind = 3
    if rest and rest[0].lower() in names.MEDIUM_KIND_BY_ARG:
        kind = names.MEDIUM_KIND_BY_ARG[rest.pop(0).lower()]
    return kind, rest


def open_medium(vbox, arg: str, kind: int, write: bool = True, line: int = 0):
    """VBoxManage's openMedium(): a UUID or a path (made absolute)."""
    from vboxsvc.api import enums as e

    location = arg if _UUID.match(arg) else os.path.abspath(arg)
    access = e.AccessMode.ReadWrite if write and kind == 3 else e.AccessMode.ReadOnly
    if location is arg:  # a UUID: look among the registered media first (not every service resolves it)
        found = find_registered(vbox, arg.strip("{}").lower(), kind)
        if found is not None:
            return found
    with call("OpenMedium(Bstr(pszFilenameOrUuid).raw(), enmDevType, enmAccessMode, fForceNewUuidOnOpen, "
              "pMedium.asOutParam())", line or 140, _FILE):
        return vbox.open_medium(location, e.DeviceType(kind), access, False)


def find_registered(vbox, uuid: str, kind: int):
    """The registered medium (base or child) of device type `kind` with this UUID, or None."""
    attr = {3: "hard_disks", 2: "dvd_images", 1: "floppy_images"}[kind]
    with call(f"COMGETTER({attr})(ComSafeArrayAsOutParam(media))", 120, _FILE):
        pending = list(getattr(vbox, attr))
        while pending:
            medium = pending.pop()
            if medium.id == uuid:
                return medium
            pending += list(medium.children)
    return None


@click.command("createmedium", context_settings=CONTEXT)
@click.argument("kind_word", nargs=-1)
@click.option("--filename", "-filename")
@click.option("--size", "-size")
@click.option("--sizebyte")
@click.option("--diffparent")
@click.option("--format", "-format", "fmt")
@click.option("--variant", "-variant")
@click.option("--property", "props", multiple=True)
@click.option("--property-file", "prop_files", multiple=True)
def createmedium(kind_word, filename, size, sizebyte, diffparent, fmt, variant, props, prop_files):
    cmd = "createmedium"
    kind, rest = split_kind(kind_word, cmd)
    if rest:
        raise SyntaxFailure(f"Invalid parameter '{rest[0]}'", cmd)
    if not filename:
        raise SyntaxFailure("Parameter --filename is required", cmd)
    if size is None and sizebyte is None and not diffparent:
        raise SyntaxFailure("Parameter --size is required", cmd)
    size_bytes = uint("--sizebyte", sizebyte, cmd, hi=2**63) if sizebyte else (
        uint("--size", size, cmd, hi=2**43) << 20 if size else 0)
    var = variants(variant, cmd)
    from vboxsvc.api import enums as e

    vbox = Api.vbox()
    parent = open_medium(vbox, diffparent, 3, line=330) if diffparent else None
    if not fmt:
        fmt = parent.format if parent is not None else ("VDI" if kind == 3 else "RAW")
    fmt = fmt.upper()
    path = filename
    if not os.path.splitext(path)[1]:
        path += _EXT.get(fmt, ".vdi") if kind == 3 else (".iso" if kind == 2 else ".img")
    path = os.path.abspath(path)
    with call("a->virtualBox->CreateMedium(Bstr(format).raw(), Bstr(filename).raw(), AccessMode_ReadWrite, "
              "DeviceType, pMedium.asOutParam())", 360, _FILE):
        medium = vbox.create_medium(fmt, path, e.AccessMode.ReadWrite, e.DeviceType(kind))
    for prop in props:
        key, _, value = prop.partition("=")
        with call("pMedium->SetProperty(Bstr(pszKey).raw(), Bstr(pszValue).raw())", 380, _FILE):
            medium.set_property(key, value)
    for prop in prop_files:
        key, _, file = prop.partition("=")
        with open(file, encoding="utf-8") as handle:
            value = handle.read()
        with call("pMedium->SetProperty(Bstr(pszKey).raw(), Bstr(pszValue).raw())", 390, _FILE):
            medium.set_property(key, value)
    if parent is not None:
        with call("pParentMedium->CreateDiffStorage(pMedium, ComSafeArrayAsInParam(l_variants), "
                  "pProgress.asOutParam())", 420, _FILE):
            progress = parent.create_diff_storage(medium, var)
    else:
        with call("pMedium->CreateBaseStorage(size, ComSafeArrayAsInParam(l_variants), "
                  "pProgress.asOutParam())", 430, _FILE):
            progress = medium.create_base_storage(size_bytes, var)
    wait(progress, "Failed to create medium", '"RTEXITCODE handleCreateMedium(HandlerArg*)"')
    sys.stdout.write(f"Medium created. UUID: {medium.id}\n")
    return 0


@click.command("closemedium", context_settings=CONTEXT)
@click.argument("args", nargs=-1)
@click.option("--delete", "-delete", is_flag=True)
def closemedium(args, delete):
    cmd = "closemedium"
    kind, rest = split_kind(args, cmd)
    if len(rest) != 1:
        raise SyntaxFailure("Medium name or UUID required" if not rest else f"Invalid parameter '{rest[1]}'",
                            cmd)
    medium = open_medium(Api.vbox(), rest[0], kind, line=1790)
    if delete:
        with call("medium->DeleteStorage(progress.asOutParam())", 1800, _FILE):
            progress = medium.delete_storage()
        wait(progress, "Failed to delete medium", '"RTEXITCODE handleCloseMedium(HandlerArg*)"')
        try:  # VBoxManage closes the (now NotCreated) object too; a service that already dropped it is fine
            medium.close()
        except Exception as exc:
            if not is_api_error(exc):
                raise
        return 0
    with call("medium->Close()", 1815, _FILE):
        medium.close()
    return 0


def medium_info_dict(vbox, medium) -> dict:
    from .listing import medium_dict

    data = medium_dict(medium, with_children=False)
    data["child_ids"] = [c.id for c in medium.children]
    if data["state"] == 4:
        data["access_error"] = medium.last_access_error
    in_use = []
    for machine_id in medium.machine_ids:
        with call("FindMachine(machineIds[i], pMachine.asOutParam())", 1650, _FILE):
            machine = vbox.find_machine(machine_id)
            snaps = []
            for snap_id in medium.get_snapshot_ids(machine_id):
                if snap_id == machine_id:  # the current state is listed under the machine's own id
                    continue
                try:
                    snaps.append((machine.find_snapshot(snap_id).name, snap_id))
                except Exception as exc:
                    if not is_api_error(exc):
                        raise
        in_use.append((machine.name, machine_id, snaps))
    data["in_use"] = in_use
    return data


@click.command("showmediuminfo", context_settings=CONTEXT)
@click.argument("args", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="print JSON (vboxpy extra)")
def showmediuminfo(args, as_json):
    cmd = "showmediuminfo"
    kind, rest = split_kind(args, cmd)
    if len(rest) != 1:
        raise SyntaxFailure("Medium name or UUID required" if not rest else f"Invalid parameter '{rest[1]}'",
                            cmd)
    vbox = Api.vbox()
    medium = open_medium(vbox, rest[0], kind, write=False, line=1730)
    with call("showMediumInfo(pVirtualBox, pMedium, pszParentUUID, true)", 1740, _FILE):
        data = medium_info_dict(vbox, medium)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(render_list.medium_info(data))
    return 0


@click.command("clonemedium", context_settings=CONTEXT)
@click.argument("args", nargs=-1)
@click.option("--format", "-format", "fmt")
@click.option("--variant", "-variant")
@click.option("--existing", "-existing", is_flag=True)
@click.option("--resize")
@click.option("--resizebyte")
def clonemedium(args, fmt, variant, existing, resize, resizebyte):
    cmd = "clonemedium"
    kind, rest = split_kind(args, cmd)
    if len(rest) != 2:
        raise SyntaxFailure("Mandatory UUID or input file parameter missing" if len(rest) < 2
                            else f"Invalid parameter '{rest[2]}'", cmd)
    var = variants(variant, cmd)
    new_size = (uint("--resizebyte", resizebyte, cmd, hi=2**63) if resizebyte
                else (uint("--resize", resize, cmd, hi=2**43) << 20 if resize else 0))
    from vboxsvc.api import enums as e

    vbox = Api.vbox()
    src = open_medium(vbox, rest[0], kind, write=False, line=1010)
    if existing:
        dst = open_medium(vbox, rest[1], kind, line=1020)
    else:
        fmt = (fmt or src.format).upper()
        path = os.path.abspath(rest[1])
        with call("a->virtualBox->CreateMedium(Bstr(format).raw(), Bstr(pszDst).raw(), AccessMode_ReadWrite, "
                  "enmDevType, pDstMedium.asOutParam())", 1040, _FILE):
            dst = vbox.create_medium(fmt, path, e.AccessMode.ReadWrite, e.DeviceType(kind))
    if new_size:
        with call("pSrcMedium->ResizeAndCloneTo(pDstMedium, cbResize, ComSafeArrayAsInParam(l_variants), "
                  "NULL, pProgress.asOutParam())", 1060, _FILE):
            progress = src.resize_and_clone_to(dst, new_size, var, None)
    else:
        with call("pSrcMedium->CloneTo(pDstMedium, ComSafeArrayAsInParam(l_variants), NULL, "
                  "pProgress.asOutParam())", 1065, _FILE):
            progress = src.clone_to(dst, var, None)
    wait(progress, "Failed to clone medium", '"RTEXITCODE handleCloneMedium(HandlerArg*)"')
    sys.stdout.write(f"Clone medium created in format '{dst.format}'. UUID: {dst.id}\n")
    return 0


@click.command("modifymedium", context_settings=CONTEXT)
@click.argument("args", nargs=-1)
@click.option("--type", "-type", "mtype")
@click.option("--autoreset", "-autoreset")
@click.option("--property", "props", multiple=True)
@click.option("--compact", "-compact", is_flag=True)
@click.option("--resize", "-resize")
@click.option("--resizebyte")
@click.option("--move")
@click.option("--setlocation")
@click.option("--description")
def modifymedium(args, mtype, autoreset, props, compact, resize, resizebyte, move, setlocation, description):
    cmd = "modifymedium"
    kind, rest = split_kind(args, cmd)
    if len(rest) != 1:
        raise SyntaxFailure("Medium name or UUID required" if not rest else f"Invalid parameter '{rest[1]}'",
                            cmd)
    medium_type = choice("--type", mtype, names.MEDIUM_TYPE_BY_ARG, cmd) if mtype else None
    auto = None
    if autoreset is not None:
        auto = parse_bool(autoreset)
        if auto is None:
            raise SyntaxFailure(f"Invalid --autoreset argument '{autoreset}'", cmd)
    new_size = (uint("--resizebyte", resizebyte, cmd, hi=2**63) if resizebyte
                else (uint("--resize", resize, cmd, hi=2**43) << 20 if resize else 0))
    if not any((mtype, autoreset, props, compact, new_size, move, setlocation, description is not None)):
        raise SyntaxFailure("No operation specified", cmd)
    from vboxsvc.api import enums as e

    medium = open_medium(Api.vbox(), rest[0], kind, line=760)
    ctx = '"RTEXITCODE handleModifyMedium(HandlerArg*)"'
    if medium_type is not None:
        with call("pMedium->COMSETTER(Type)(enmMediumType)", 790, _FILE):
            medium.type = e.MediumType(medium_type)
    if auto is not None:
        with call("pMedium->COMSETTER(AutoReset)(fAutoReset)", 800, _FILE):
            medium.auto_reset = auto
    for prop in props:
        key, _, value = prop.partition("=")
        with call("pMedium->SetProperty(Bstr(pszKey).raw(), Bstr(pszValue).raw())", 815, _FILE):
            medium.set_property(key, value)
    if compact:
        with call("pMedium->Compact(pProgress.asOutParam())", 830, _FILE):
            progress = medium.compact()
        wait(progress, "Failed to compact medium", ctx)
    if new_size:
        with call("pMedium->Resize(cbResize, pProgress.asOutParam())", 850, _FILE):
            progress = medium.resize(new_size)
        wait(progress, "Failed to resize medium", ctx)
    if move:
        with call("pMedium->MoveTo(Bstr(pszNewLocation).raw(), pProgress.asOutParam())", 870, _FILE):
            progress = medium.move_to(os.path.abspath(move))
        wait(progress, "Failed to move medium", ctx)
        sys.stdout.write(f"Move medium with UUID {medium.id} finished\n")
    if setlocation:
        with call("pMedium->COMSETTER(Location)(Bstr(pszNewLocation).raw())", 890, _FILE):
            medium.location = os.path.abspath(setlocation)
        sys.stdout.write(f"Set new location of medium with UUID {medium.id} finished\n")
    if description is not None:
        with call("pMedium->COMSETTER(Description)(Bstr(pszDescription).raw())", 905, _FILE):
            medium.description = description
        sys.stdout.write("Medium description has been changed.\n")
    return 0


@click.command("convertfromraw", context_settings=CONTEXT)
@click.argument("args", nargs=-1)
@click.option("--format", "-format", "-o", "fmt", default="VDI")
@click.option("--variant", "-variant", "-m")
@click.option("--uuid", "-uuid", "-u")
def convertfromraw(args, fmt, variant, uuid):
    """VBoxManage convertfromraw (VBoxManageDisk.cpp handleConvertFromRaw). VirtualBox runs the VD
    library in-process; here the service converts: the raw source (stdin first spooled to a file
    beside the target) is opened as a medium, cloned to the target and both are closed again, so
    the result is not registered, as with VirtualBox."""
    cmd = "convertfromraw"
    rest = list(args)
    from_stdin = bool(rest) and rest[0] in ("stdin", "-")
    if len(rest) < 2 or (from_stdin and len(rest) < 3):
        raise SyntaxFailure("Incorrect number of parameters", cmd)
    if len(rest) > (3 if from_stdin else 2):
        raise SyntaxFailure(f"Invalid parameter '{rest[3 if from_stdin else 2]}'", cmd)
    if uuid is not None and not _UUID.match(uuid):
        raise SyntaxFailure(f"Invalid UUID '{uuid}'", cmd)
    try:
        var = variants(variant, cmd)
    except SyntaxFailure:
        raise ArgumentFailure(f"Invalid medium variant '{variant}'") from None
    src_name, dst_name = rest[0], rest[1]
    fmt = fmt.upper()
    sys.stderr.write(f'Converting from raw image file="{src_name}" to file="{dst_name}"...\n')
    dst_path = os.path.abspath(dst_name)
    spool = None
    try:
        if from_stdin:
            try:
                size = int(rest[2])
            except ValueError:
                size = 0
            spool = dst_path + f".{os.getpid()}.raw"
            size = _spool_stdin(spool, size)
            src_path = spool
        else:
            src_path = os.path.abspath(src_name)
            try:
                size = os.stat(src_path).st_size
            except OSError as exc:
                code = "VERR_FILE_NOT_FOUND" if isinstance(exc, FileNotFoundError) else "VERR_ACCESS_DENIED"
                raise CommandFailed(msg_lines("error: ", f'Cannot open file "{src_name}": {code}')) from None
        fixed = any(int(v) == 0x10000 for v in var)
        sys.stderr.write(f"Creating {'fixed' if fixed else 'dynamic'} image with size {size} bytes "
                         f"({(size + (1 << 20) - 1) >> 20}MB)...\n")
        if size % 512:
            raise CommandFailed(msg_lines("error: ",
                                          f"VD: The given disk size {size} is not aligned on a sector "
                                          "boundary (512 bytes)\nCannot create the disk image "
                                          f'"{dst_name}": VERR_VD_INVALID_SIZE'))
        _convert_via_service(src_path, dst_path, fmt, var, uuid)
    finally:
        if spool is not None and os.path.exists(spool):
            os.unlink(spool)
    return 0


def _spool_stdin(path: str, size: int) -> int:
    """Copy up to `size` bytes of stdin into `path` (a short stream leaves the rest zero, as
    VirtualBox's loop stops at end of input); returns the disk size."""
    src = sys.stdin.buffer
    left = size
    with open(path, "wb") as out:
        while left > 0:
            chunk = src.read(min(left, 1 << 20))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)
        out.truncate(size)
    return size


def _convert_via_service(src_path: str, dst_path: str, fmt: str, var: list, uuid: str | None) -> None:
    from vboxsvc.api import enums as e

    vbox = Api.vbox()
    with call("OpenMedium(Bstr(pszFilenameOrUuid).raw(), enmDevType, enmAccessMode, fForceNewUuidOnOpen, "
              "pMedium.asOutParam())", 1860, _FILE):
        src = vbox.open_medium(src_path, e.DeviceType.HardDisk, e.AccessMode.ReadOnly, False)
    dst = None
    try:
        with call("VDCreateBase(pDisk, format, dstfilename, cbFile, uImageFlags, pszComment, &PCHS, &LCHS, "
                  "pUuid, VD_OPEN_FLAGS_NORMAL, NULL, NULL)", 1880, _FILE):
            dst = vbox.create_medium(fmt, dst_path, e.AccessMode.ReadWrite, e.DeviceType.HardDisk)
            progress = src.clone_to_base(dst, var)
        progress.wait_for_completion(-1)
        if int(progress.result_code) != 0:
            raise progress_error(progress, f'Cannot create the disk image "{dst_path}"',
                                 '"RTEXITCODE handleConvertFromRaw(HandlerArg*)"')
        if uuid:
            with call("VDCreateBase(...pUuid...)", 1880, _FILE):
                dst.set_ids(True, uuid.strip("{}"), False, "")
    finally:
        for medium in (dst, src):
            if medium is None:
                continue
            try:
                medium.close()
            except Exception as exc:
                if not is_api_error(exc):
                    raise
