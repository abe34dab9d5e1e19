"""ISystemProperties: global limits and defaults; the settable ones live in VirtualBox.xml."""

from __future__ import annotations

from settings import paths as spaths
from settings.errors import SettingsError

from ..api import errors as rc
from ..api.enums import ChipsetType, DeviceType, PlatformArchitecture, StorageBus, StorageControllerType
from ..api.errors import VBoxError

# per bus: (min ports, max ports, devices per port, max instances)
BUS_LIMITS = {
    StorageBus.IDE: (2, 2, 2, 1),
    StorageBus.SATA: (1, 30, 1, 8),
    StorageBus.SCSI: (16, 16, 1, 8),
    StorageBus.Floppy: (1, 1, 2, 1),
    StorageBus.SAS: (1, 255, 1, 8),
    StorageBus.USB: (8, 8, 1, 8),
    StorageBus.PCIe: (1, 255, 1, 1),
    StorageBus.VirtioSCSI: (1, 256, 1, 8),
}
CONTROLLERS_OF_BUS = {
    StorageBus.IDE: [StorageControllerType.PIIX4, StorageControllerType.PIIX3, StorageControllerType.ICH6],
    StorageBus.SATA: [StorageControllerType.IntelAhci],
    StorageBus.SCSI: [StorageControllerType.LsiLogic, StorageControllerType.BusLogic],
    StorageBus.Floppy: [StorageControllerType.I82078],
    StorageBus.SAS: [StorageControllerType.LsiLogicSas],
    StorageBus.USB: [StorageControllerType.USB],
    StorageBus.PCIe: [StorageControllerType.NVMe],
    StorageBus.VirtioSCSI: [StorageControllerType.VirtioSCSI],
}
BUS_OF_CONTROLLER = {c: b for b, cs in CONTROLLERS_OF_BUS.items() for c in cs}


def bus_limits(bus: int) -> tuple[int, int, int, int]:
    try:
        return BUS_LIMITS[StorageBus(bus)]
    except (KeyError, ValueError):
        raise VBoxError(rc.E_INVALIDARG, f"Invalid storage bus {int(bus)}") from None


class SystemProperties:
    __interface__ = "ISystemProperties"
    __component__ = "SystemPropertiesWrap"

    min_guest_ram = 4
    max_guest_ram = 2097152
    min_guest_vram = 0
    max_guest_vram = 256
    min_guest_cpu_count = 1
    max_guest_cpu_count = 64
    max_guest_monitors = 64
    info_vd_size = 2 * 1024 ** 4  # bytes; the limit VirtualBox reports for new VDI images
    serial_port_count = 4
    parallel_port_count = 2
    max_boot_position = 4
    default_audio_driver = "Null"
    supported_platform_architectures = [PlatformArchitecture.x86]

    def __init__(self, vbox):
        self._vbox = vbox

    @property
    def _p(self):
        return self._vbox.main.settings.system_properties

    def _set(self, field: str, value) -> None:
        old = getattr(self._p, field)
        try:
            setattr(self._p, field, value)
            self._vbox.save_main()
        except (SettingsError, ValueError) as e:
            setattr(self._p, field, old)
            raise VBoxError(rc.E_INVALIDARG, str(e)) from None

    @property
    def default_machine_folder(self) -> str:
        return str(spaths.default_machine_folder(self._p.default_machine_folder))

    @default_machine_folder.setter
    def default_machine_folder(self, value: str) -> None:
        if value:
            try:
                spaths.validate_machine_folder(value)
            except SettingsError as e:
                raise VBoxError(rc.E_INVALIDARG, e.problem) from None
        self._set("default_machine_folder", value)

    def _str_prop(name):  # noqa: N805 - helper building properties
        def get(self):
            return getattr(self._p, name)

        def set_(self, value):
            self._set(name, value)
        return property(get, set_)

    logging_level = _str_prop("logging_level")
    vrde_auth_library = _str_prop("vrde_auth_library")
    web_service_auth_library = _str_prop("web_service_auth_library")
    default_vrde_ext_pack = _str_prop("default_vrde_ext_pack")
    autostart_database_path = _str_prop("autostart_database_path")
    default_frontend = _str_prop("default_frontend")

    @property
    def default_hard_disk_format(self) -> str:
        return self._p.default_hard_disk_format or "VDI"

    @default_hard_disk_format.setter
    def default_hard_disk_format(self, value: str) -> None:
        if value.upper() not in ("VDI", "RAW", ""):
            raise VBoxError(rc.E_INVALIDARG, f"Invalid medium storage format '{value}'")
        self._set("default_hard_disk_format", value or "VDI")

    @property
    def log_history_count(self) -> int:
        return self._p.log_history_count

    @log_history_count.setter
    def log_history_count(self, value: int) -> None:
        self._set("log_history_count", value)

    # not stored in our VirtualBox.xml model: fixed values, as a fresh VirtualBox reports them
    free_disk_space_warning = 2 * 1024 ** 3
    free_disk_space_percent_warning = 5
    free_disk_space_error = 500 * 1024 ** 2
    free_disk_space_percent_error = 1
    default_additions_iso = ""

    # --- methods ------------------------------------------------------------------------
    def get_max_network_adapters(self, chipset: ChipsetType) -> int:
        return 36 if chipset == ChipsetType.ICH9 else 8

    def get_max_devices_per_port_for_storage_bus(self, bus: StorageBus) -> int:
        return bus_limits(bus)[2]

    def get_min_port_count_for_storage_bus(self, bus: StorageBus) -> int:
        return bus_limits(bus)[0]

    def get_max_port_count_for_storage_bus(self, bus: StorageBus) -> int:
        return bus_limits(bus)[1]

    def get_max_instances_of_storage_bus(self, chipset: ChipsetType, bus: StorageBus) -> int:
        return bus_limits(bus)[3]

    def get_device_types_for_storage_bus(self, bus: StorageBus) -> list:
        bus_limits(bus)
        if bus == StorageBus.Floppy:
            return [DeviceType.Floppy]
        if bus in (StorageBus.IDE, StorageBus.SATA, StorageBus.SCSI, StorageBus.SAS, StorageBus.USB,
                   StorageBus.VirtioSCSI):
            return [DeviceType.DVD, DeviceType.HardDisk]
        return [DeviceType.HardDisk]

    def get_storage_bus_for_controller_type(self, storage_controller_type: StorageControllerType):
        bus = BUS_OF_CONTROLLER.get(storage_controller_type)
        if bus is None:
            raise VBoxError(rc.E_INVALIDARG,
                            f"Invalid storage controller type {int(storage_controller_type)}")
        return bus

    def get_storage_controller_types_for_bus(self, storage_bus: StorageBus) -> list:
        bus_limits(storage_bus)
        return list(CONTROLLERS_OF_BUS[storage_bus])

    def get_default_io_cache_setting_for_storage_controller(
        self, controller_type: StorageControllerType
    ) -> bool:
        return BUS_OF_CONTROLLER.get(controller_type) in (StorageBus.IDE, StorageBus.Floppy)

