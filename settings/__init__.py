"""VirtualBox's settings files: where they live, what they hold, how they are read and written.

Imports nothing else of ours. Public API:

settings.errors
    SettingsError(problem, path=None, line=None, message=None): `.problem`, `.path`, `.line`;
    str() is VirtualBox's "Error in <file> (line N) -- <problem>"; malformed XML gives libxml2's
    text plus "Location: '<file>', line N (N), column C.".

settings.home
    user_home_dir() -> str, vbox_user_home(create=True) -> str   as below, as strings (no pathlib)

settings.paths
    user_home_dir() -> Path                  $HOME; root: from the account database
    vbox_user_home(create=True) -> Path      VBOX_USER_HOME (absolute) | ~/.VirtualBox if it exists |
                                             $XDG_CONFIG_HOME/VirtualBox or ~/.config/VirtualBox (0700)
    default_machine_folder(stored) -> Path   stored value, or <home>/VirtualBox VMs for "" / "Machines"
    validate_machine_folder(path) -> Path    absolute only ("Given default machine folder '%s' is not
                                             fully qualified")
    sanitise_name(name) -> str
    compose_machine_filename(name, group="/", base_folder=None, default_folder=None, uuid=None,
                             directory_includes_uuid=False) -> Path
    machine_folder(f), log_folder(f) (VBOX_USER_LOGHOME aware), snapshot_folder(f, configured="Snapshots")
    state_file_name(when=None), diff_image_name(uuid), nvram_file_name(f)
    resolve_location(base, location), relative_location(base, location)

settings.models (pydantic v2, assignments validated; enum values are Main API member names, e.g.
"IntelAhci", "I82540EM", "NAT", "U16550A", boot device "Null"; media/state paths absolute;
timestamps UTC-aware)
    MainSettings(extra_data, machine_registry: [MachineRegistryEntry(uuid, src)],
                 system_properties: SystemProperties, media_registry: MediaRegistry)
    MachineSettings(uuid, name, name_sync, directory_includes_uuid, os_type, description, groups,
                    state_file, current_snapshot, snapshot_folder, current_state_modified,
                    last_state_change, aborted, extra_data, media_registry, hardware, snapshot)
        .persisted_state -> "PoweredOff" | "Saved" | "Aborted" | "AbortedSaved"
        .snapshots(), .find_snapshot(uuid)
    Hardware(memory_mb, cpu_count, cpu_execution_cap, hw_virt_ex, nested_paging, vpid, large_pages,
             unrestricted_execution, pae, long_mode (None = follow OS type), ioapic, acpi, hpet, apic,
             x2apic, triple_fault_reset, paravirt_provider, chipset, boot_order, firmware, vram_mb,
             graphics_controller, network_adapters (every slot), uarts (4 slots),
             storage_controllers, ...)   defaults = a new machine (Machine::init in MachineImpl.cpp)
    NetworkAdapter, NatRule, SerialPort, StorageController (bus <-> controller_type filled in, port
    count / host I/O cache defaults per bus), AttachedDevice, Medium (children = diffs),
    MediaRegistry (.find(uuid), .all_media()), Snapshot(uuid, name, description, time_stamp,
    state_file, hardware, children), generate_mac()

settings.main_file.MainFile       .load(path) / .new(path) (fresh file: 1.12, default DHCP server);
                                  .settings; .version; .path; .folder; .save();
                                  .machine_path(entry) resolves a (legacy, relative) src
settings.machine_file.MachineFile .load(path) / .new(path, settings) (new: 1.19); .settings; .version;
                                  .path; .folder; .save(path=None)
settings.version                  SettingsVersion(minor, platform, full, future), parse_version()
settings.xmlio                    parse_file(), serialize(), atomic_write() (<f>-tmp, fsync, old ->
                                  <f>-prev, rename, fsync dir), backup_name(), remove_backups()

How files are written: the parsed tree is kept and the models are written back into it (a value is
only touched when it changed), so content we do not model survives load-change-save byte for byte.
An existing file keeps its version unless a setting in use needs a newer one
(`bumpSettingsVersionIfNeeded` for what we model; unlike VirtualBox 7 we do not force 1.19 for
every machine); then the file is copied once to `<base>-<oldversion>.<ext>` and the tree is moved to
the newer layout (StorageControllers into Hardware at 1.17, Platform/Firmware at 1.20, drives of
pre-1.9 files into controllers). Versions newer than 1.20 load best effort and are written as 1.20.
"""
