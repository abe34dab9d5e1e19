"""VirtualBox's settings files: where they live, what they hold, how they are read and written.

Imports nothing else of ours. Public API:

settings.errors
    SettingsError(problem, path=None, line=None, message=None): `.problem`, `.path`, `.line`;
    str() is VirtualBox's "Error in <file> (line N) -- <problem>" (malformed XML: libxml2's text
    plus "Location: '<file>', line N (N), column C.").

settings.paths
    user_home_dir() -> Path                  $HOME; root: from the account database
    vbox_user_home(create=True) -> Path      VBOX_USER_HOME | ~/.VirtualBox | XDG .../VirtualBox (0700)
    default_machine_folder(stored) -> Path   stored value, or <home>/VirtualBox VMs ("" / "Machines")
    validate_machine_folder(path) -> Path    absolute only, else SettingsError with VirtualBox's text
    sanitise_name(name) -> str
    compose_machine_filename(name, group="/", base_folder=None, default_folder=None, uuid=None,
                             directory_includes_uuid=False) -> Path
    machine_folder(settings_file), log_folder(settings_file), snapshot_folder(settings_file,
    configured="Snapshots"), resolve_location(base, location), relative_location(base, location)

settings.models (pydantic v2; enum values are Main API member names; media/state paths absolute)
    MainSettings(extra_data, machine_registry: [MachineRegistryEntry(uuid, src)],
                 system_properties: SystemProperties, media_registry: MediaRegistry)
    MachineSettings(uuid, name, name_sync, directory_includes_uuid, os_type, description, groups,
                    state_file, current_snapshot, snapshot_folder, current_state_modified,
                    last_state_change, aborted, extra_data, media_registry, hardware: Hardware,
                    snapshot: Snapshot | None)  + .persisted_state, .snapshots(), .find_snapshot(uuid)
    Hardware(memory_mb, cpu_count, cpu_execution_cap, hw_virt_ex, nested_paging, vpid, large_pages,
             unrestricted_execution, pae, long_mode, ioapic, acpi, hpet, apic, x2apic,
             triple_fault_reset, paravirt_provider, boot_order, firmware, vram_mb,
             graphics_controller, chipset, network_adapters: [NetworkAdapter] (all slots),
             uarts: [SerialPort] (4 slots), storage_controllers: [StorageController], ...)
    NetworkAdapter, NatRule, SerialPort, StorageController (bus <-> controller_type filled in),
    AttachedDevice, Medium (children = diffs), MediaRegistry, Snapshot(uuid, name, description,
    time_stamp, state_file, hardware, children)

settings.main_file.MainFile      .load(path) / .new(path); .settings; .version; .path; .save();
                                 .machine_path(entry) resolves a (legacy relative) src
settings.machine_file.MachineFile .load(path) / .new(path, settings); .settings; .version; .path;
                                 .folder; .save(path=None)
settings.version                 SettingsVersion(minor, platform, full, future), parse_version()
settings.xmlio                   parse_file(), serialize(), atomic_write() (<f>-tmp, fsync, old ->
                                 <f>-prev, rename, fsync dir), backup_name(), remove_backups()

Files are edited in place: the parsed tree is kept and model changes are written back into it, so
content we do not model survives a load-change-save.
"""
