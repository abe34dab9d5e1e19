"""The Main API interfaces carried by the bus, written with VirtualBox.xidl's member names.

Format: an interface name at column 0, then indented members:
    attributeName: type [rw]            (read-only unless `rw`)
    methodName(param: type [= default], ...) [-> type]
Types: str int bool bytes any, an enum of vboxsvc.api.enums, an interface name (an object
reference, may be null), IEvent (an event value), and [T] for arrays. Members marked
`vboxpy` in a comment are ours (VirtualBox keeps them in internal interfaces).
"""

SCHEMA_TEXT = """
IVirtualBoxClient:
    virtualBox: IVirtualBox
    session: ISession                       # a new ISession on every read

IVirtualBox:
    version: str
    versionNormalized: str
    revision: int
    packageType: str
    APIVersion: str
    APIRevision: int
    homeFolder: str
    settingsFilePath: str
    host: IHost
    systemProperties: ISystemProperties
    machines: [IMachine]
    machineGroups: [str]
    hardDisks: [IMedium]
    DVDImages: [IMedium]
    floppyImages: [IMedium]
    progressOperations: [IProgress]
    guestOSTypes: [IGuestOSType]
    guestOSFamilies: [str]
    eventSource: IEventSource
    composeMachineFilename(name: str, group: str = "", createFlags: str = "", baseFolder: str = "") -> str
    createMachine(settingsFile: str, name: str, platform: PlatformArchitecture = 1, groups: [str] = [], osTypeId: str = "", flags: str = "", cipher: str = "", passwordId: str = "", password: str = "") -> IMachine
    openMachine(settingsFile: str, password: str = "") -> IMachine
    registerMachine(machine: IMachine)
    findMachine(nameOrId: str) -> IMachine
    getMachinesByGroups(groups: [str]) -> [IMachine]
    getMachineStates(machines: [IMachine]) -> [MachineState]
    createMedium(format: str, location: str, accessMode: AccessMode, deviceTypeType: DeviceType) -> IMedium
    openMedium(location: str, deviceType: DeviceType, accessMode: AccessMode = 2, forceNewUuid: bool = False) -> IMedium
    getGuestOSType(id: str) -> IGuestOSType
    getExtraDataKeys() -> [str]
    getExtraData(key: str) -> str
    setExtraData(key: str, value: str)
    findProgressById(id: str) -> IProgress
    createAppliance() -> IAppliance

IHost:
    processorCount: int
    processorOnlineCount: int
    processorCoreCount: int
    processorOnlineCoreCount: int
    memorySize: int
    memoryAvailable: int
    operatingSystem: str
    OSVersion: str
    UTCTime: int
    acceleration3DAvailable: bool
    getProcessorFeature(feature: ProcessorFeature) -> bool
    getProcessorDescription(cpuId: int) -> str
    getProcessorSpeed(cpuId: int) -> int

ISystemProperties:
    minGuestRAM: int
    maxGuestRAM: int
    minGuestVRAM: int
    maxGuestVRAM: int
    minGuestCPUCount: int
    maxGuestCPUCount: int
    maxGuestMonitors: int
    infoVDSize: int
    serialPortCount: int
    parallelPortCount: int
    maxBootPosition: int
    defaultMachineFolder: str rw
    loggingLevel: str rw
    defaultHardDiskFormat: str rw
    freeDiskSpaceWarning: int
    freeDiskSpacePercentWarning: int
    freeDiskSpaceError: int
    freeDiskSpacePercentError: int
    VRDEAuthLibrary: str rw
    webServiceAuthLibrary: str rw
    defaultVRDEExtPack: str rw
    logHistoryCount: int rw
    defaultAudioDriver: str
    autostartDatabasePath: str rw
    defaultAdditionsISO: str
    defaultFrontend: str
    supportedPlatformArchitectures: [PlatformArchitecture]
    getMaxNetworkAdapters(chipset: ChipsetType) -> int
    getMaxDevicesPerPortForStorageBus(bus: StorageBus) -> int
    getMinPortCountForStorageBus(bus: StorageBus) -> int
    getMaxPortCountForStorageBus(bus: StorageBus) -> int
    getMaxInstancesOfStorageBus(chipset: ChipsetType, bus: StorageBus) -> int
    getDeviceTypesForStorageBus(bus: StorageBus) -> [DeviceType]
    getStorageBusForControllerType(storageControllerType: StorageControllerType) -> StorageBus
    getStorageControllerTypesForBus(storageBus: StorageBus) -> [StorageControllerType]
    getDefaultIoCacheSettingForStorageController(controllerType: StorageControllerType) -> bool

IGuestOSType:
    familyId: str
    familyDescription: str
    OSSubtype: str
    id: str
    description: str
    platformArchitecture: PlatformArchitecture
    is64Bit: bool
    recommendedIOAPIC: bool
    recommendedVirtEx: bool
    recommendedRAM: int
    recommendedGraphicsController: GraphicsControllerType
    recommendedVRAM: int
    recommendedHDD: int
    adapterType: NetworkAdapterType
    recommendedPAE: bool
    recommendedDVDStorageController: StorageControllerType
    recommendedDVDStorageBus: StorageBus
    recommendedHDStorageController: StorageControllerType
    recommendedHDStorageBus: StorageBus
    recommendedFirmware: FirmwareType
    recommendedUSBHID: bool
    recommendedRTCUseUTC: bool
    recommendedChipset: ChipsetType
    recommendedCPUCount: int

IMachine:
    parent: IVirtualBox
    accessible: bool
    accessError: IVirtualBoxErrorInfo
    name: str rw
    description: str rw
    id: str
    groups: [str] rw
    OSTypeId: str rw
    hardwareVersion: str rw
    hardwareUUID: str rw
    CPUCount: int rw
    CPUHotPlugEnabled: bool rw
    CPUExecutionCap: int rw
    CPUIDPortabilityLevel: int
    CPUProfile: str rw
    memorySize: int rw
    memoryBalloonSize: int
    pageFusionEnabled: bool rw
    graphicsAdapter: IGraphicsAdapter
    platform: IPlatform
    firmwareSettings: IFirmwareSettings
    pointingHIDType: PointingHIDType rw
    keyboardHIDType: KeyboardHIDType rw
    snapshotFolder: str rw
    mediumAttachments: [IMediumAttachment]
    storageControllers: [IStorageController]
    settingsFilePath: str
    settingsAuxFilePath: str
    settingsModified: bool
    sessionState: SessionState
    sessionName: str
    sessionPID: int
    state: MachineState
    lastStateChange: int
    stateFilePath: str
    logFolder: str
    currentSnapshot: ISnapshot
    snapshotCount: int
    currentStateModified: bool
    paravirtProvider: ParavirtProvider rw
    paravirtDebug: str
    defaultFrontend: str
    VMProcessPriority: VMProcPriority
    VMExecutionEngine: VMExecutionEngine
    autostartEnabled: bool
    autostartDelay: int
    lockMachine(session: ISession, lockType: LockType)
    launchVMProcess(session: ISession, name: str = "", environmentChanges: [str] = []) -> IProgress
    setBootOrder(position: int, device: DeviceType)
    getBootOrder(position: int) -> DeviceType
    addStorageController(name: str, connectionType: StorageBus) -> IStorageController
    getStorageControllerByName(name: str) -> IStorageController
    getStorageControllerByInstance(connectionType: StorageBus, instance: int) -> IStorageController
    removeStorageController(name: str)
    setStorageControllerBootable(name: str, bootable: bool)
    attachDevice(name: str, controllerPort: int, device: int, type: DeviceType, medium: IMedium)
    attachDeviceWithoutMedium(name: str, controllerPort: int, device: int, type: DeviceType)
    detachDevice(name: str, controllerPort: int, device: int)
    mountMedium(name: str, controllerPort: int, device: int, medium: IMedium, force: bool = False)
    unmountMedium(name: str, controllerPort: int, device: int, force: bool = False)
    getMedium(name: str, controllerPort: int, device: int) -> IMedium
    getMediumAttachment(name: str, controllerPort: int, device: int) -> IMediumAttachment
    getMediumAttachmentsOfController(name: str) -> [IMediumAttachment]
    nonRotationalDevice(name: str, controllerPort: int, device: int, nonRotational: bool)
    setAutoDiscardForDevice(name: str, controllerPort: int, device: int, discard: bool)
    setHotPluggableForDevice(name: str, controllerPort: int, device: int, hotPluggable: bool)
    passthroughDevice(name: str, controllerPort: int, device: int, passthrough: bool)
    temporaryEjectDevice(name: str, controllerPort: int, device: int, temporaryEject: bool)
    getNetworkAdapter(slot: int) -> INetworkAdapter
    getSerialPort(slot: int) -> ISerialPort
    getExtraDataKeys() -> [str]
    getExtraData(key: str) -> str
    setExtraData(key: str, value: str)
    saveSettings()
    discardSettings()
    unregister(cleanupMode: CleanupMode) -> [IMedium]
    deleteConfig(media: [IMedium] = []) -> IProgress
    getEffectiveParavirtProvider() -> ParavirtProvider
    queryLogFilename(idx: int) -> str
    readLog(idx: int, offset: int, size: int) -> bytes
    applyDefaults(flags: str = "")
    discardSavedState(removeFile: bool = True)
    updateState(state: MachineState)          # vboxpy: IInternalMachineControl::updateState for the VM process
    takeSnapshot(name: str, description: str = "", pause: bool = True) -> any   # [out id, IProgress]
    deleteSnapshot(id: str) -> IProgress
    restoreSnapshot(snapshot: ISnapshot) -> IProgress
    findSnapshot(nameOrId: str) -> ISnapshot
    cloneTo(target: IMachine, mode: CloneMode, options: [CloneOptions] = []) -> IProgress
    USBControllers: [IUSBController]
    addUSBController(name: str, type: USBControllerType) -> IUSBController
    removeUSBController(name: str)
    getUSBControllerCountByType(type: USBControllerType) -> int
    audioSettings: IAudioSettings
    clipboardMode: ClipboardMode rw
    clipboardFileTransfersEnabled: bool rw
    dnDMode: DnDMode rw
    VRDEServer: IVRDEServer
    sharedFolders: [ISharedFolder]
    createSharedFolder(name: str, hostPath: str, writable: bool, automount: bool, autoMountPoint: str = "")
    removeSharedFolder(name: str)
    getGuestProperty(name: str) -> any          # [value, timestamp, flags]
    getGuestPropertyValue(property: str) -> str
    getGuestPropertyTimestamp(property: str) -> int
    setGuestProperty(property: str, value: str, flags: str)
    setGuestPropertyValue(property: str, value: str)
    deleteGuestProperty(name: str)
    enumerateGuestProperties(patterns: str = "") -> any   # [names, values, timestamps, flags]
    pushGuestProperty(name: str, value: str, timestamp: int, flags: str)   # vboxpy: IInternalMachineControl::pushGuestProperty for the VM process
    exportTo(appliance: IAppliance, location: str) -> IVirtualSystemDescription

IUSBController:
    name: str
    type: USBControllerType
    USBStandard: int

IAudioSettings:
    adapter: IAudioAdapter

IAudioAdapter:
    enabled: bool rw
    enabledIn: bool rw
    enabledOut: bool rw
    audioController: AudioControllerType rw
    audioCodec: AudioCodecType rw
    audioDriver: AudioDriverType rw

IVRDEServer:
    enabled: bool rw
    authType: AuthType rw
    authTimeout: int rw
    allowMultiConnection: bool rw
    reuseSingleConnection: bool rw
    VRDEExtPack: str rw
    authLibrary: str rw
    VRDEProperties: [str]
    setVRDEProperty(key: str, value: str)
    getVRDEProperty(key: str) -> str

ISharedFolder:
    name: str
    hostPath: str
    accessible: bool
    writable: bool
    autoMount: bool
    autoMountPoint: str
    lastAccessError: str

ISnapshot:
    id: str
    name: str rw
    description: str rw
    timeStamp: int
    online: bool
    machine: IMachine
    parent: ISnapshot
    children: [ISnapshot]
    childrenCount: int
    getChildrenCount() -> int

IPlatform:
    architecture: PlatformArchitecture
    chipsetType: ChipsetType rw
    iommuType: IommuType
    RTCUseUTC: bool rw
    x86: IPlatformX86

IPlatformX86:
    HPETEnabled: bool rw
    getCPUProperty(property: CPUPropertyTypeX86) -> bool
    setCPUProperty(property: CPUPropertyTypeX86, value: bool)
    getHWVirtExProperty(property: HWVirtExPropertyType) -> bool
    setHWVirtExProperty(property: HWVirtExPropertyType, value: bool)

IFirmwareSettings:
    firmwareType: FirmwareType rw
    logoFadeIn: bool rw
    logoFadeOut: bool rw
    logoDisplayTime: int rw
    logoImagePath: str rw
    bootMenuMode: FirmwareBootMenuMode rw
    ACPIEnabled: bool rw
    IOAPICEnabled: bool rw
    APICMode: APICMode rw
    timeOffset: int rw
    PXEDebugEnabled: bool
    SMBIOSUuidLittleEndian: bool

IGraphicsAdapter:
    graphicsControllerType: GraphicsControllerType rw
    VRAMSize: int rw
    monitorCount: int rw
    accelerate3DEnabled: bool rw

IStorageController:
    name: str rw
    maxDevicesPerPortCount: int
    minPortCount: int
    maxPortCount: int
    instance: int rw
    portCount: int rw
    bus: StorageBus
    controllerType: StorageControllerType rw
    useHostIOCache: bool rw
    bootable: bool

IMediumAttachment:
    machine: IMachine
    medium: IMedium
    controller: str
    port: int
    device: int
    type: DeviceType
    passthrough: bool
    temporaryEject: bool
    isEjected: bool
    nonRotational: bool
    discard: bool
    hotPluggable: bool

INetworkAdapter:
    adapterType: NetworkAdapterType rw
    slot: int
    enabled: bool rw
    MACAddress: str rw
    attachmentType: NetworkAttachmentType rw
    bridgedInterface: str rw
    hostOnlyInterface: str rw
    internalNetwork: str rw
    NATNetwork: str rw
    genericDriver: str rw
    cableConnected: bool rw
    lineSpeed: int rw
    promiscModePolicy: NetworkAdapterPromiscModePolicy rw
    traceEnabled: bool rw
    traceFile: str rw
    bootPriority: int rw
    NATEngine: INATEngine

INATEngine:
    network: str rw
    hostIP: str rw
    TFTPPrefix: str rw
    TFTPBootFile: str rw
    TFTPNextServer: str rw
    aliasMode: int rw
    DNSPassDomain: bool rw
    DNSProxy: bool rw
    DNSUseHostResolver: bool rw
    localhostReachable: bool rw
    redirects: [str]
    setNetworkSettings(mtu: int, sockSnd: int, sockRcv: int, TcpWndSnd: int, TcpWndRcv: int)
    getNetworkSettings() -> [int]            # [mtu, sockSnd, sockRcv, TcpWndSnd, TcpWndRcv]
    addRedirect(name: str, proto: NATProtocol, hostIP: str, hostPort: int, guestIP: str, guestPort: int)
    removeRedirect(name: str)

ISerialPort:
    slot: int
    enabled: bool rw
    IOAddress: int rw
    IRQ: int rw
    hostMode: PortMode rw
    server: bool rw
    path: str rw
    uartType: UartType rw

IMedium:
    id: str
    description: str rw
    state: MediumState
    variant: [MediumVariant]
    location: str
    name: str
    deviceType: DeviceType
    hostDrive: bool
    size: int
    format: str
    type: MediumType rw
    allowedTypes: [MediumType]
    parent: IMedium
    children: [IMedium]
    base: IMedium
    readOnly: bool
    logicalSize: int
    autoReset: bool rw
    lastAccessError: str
    machineIds: [str]
    setIds(setImageId: bool, imageId: str, setParentId: bool, parentId: str)
    refreshState() -> MediumState
    getSnapshotIds(machineId: str) -> [str]
    close()
    getProperty(name: str) -> str
    setProperty(name: str, value: str)
    createBaseStorage(logicalSize: int, variant: [MediumVariant] = []) -> IProgress
    deleteStorage() -> IProgress
    createDiffStorage(target: IMedium, variant: [MediumVariant] = []) -> IProgress
    mergeTo(target: IMedium) -> IProgress
    cloneTo(target: IMedium, variant: [MediumVariant] = [], parent: IMedium = None) -> IProgress
    cloneToBase(target: IMedium, variant: [MediumVariant] = []) -> IProgress
    compact() -> IProgress
    resize(logicalSize: int) -> IProgress

ISession:
    state: SessionState
    type: SessionType
    name: str rw
    machine: IMachine
    console: IConsole
    unlockMachine()
    registerConsole(console: IConsole)        # vboxpy: the VM process publishes its IConsole

IConsole:
    machine: IMachine
    state: MachineState
    display: IDisplay
    keyboard: IKeyboard
    VRDEServerInfo: IVRDEServerInfo
    powerUp() -> IProgress
    powerDown() -> IProgress
    reset()
    pause()
    resume()
    powerButton()
    sleepButton()
    saveState() -> IProgress
    getPowerButtonHandled() -> bool
    getGuestEnteredACPIMode() -> bool
    takeSnapshotOnline(stateFile: str, disks: any, pause: bool = True) -> any   # vboxpy: the VM process's part of an online snapshot (disks: [[parent path, diff path, diff uuid]])
    sharedFolders: [ISharedFolder]
    createSharedFolder(name: str, hostPath: str, writable: bool, automount: bool, autoMountPoint: str = "")
    removeSharedFolder(name: str)
    accessGuestProperty(name: str, value: str, flags: str, accessMode: int) -> any   # vboxpy: IInternalSessionControl::accessGuestProperty (0 get, 1 set, 2 delete) -> [value, timestamp, flags]
    enumerateGuestProperties(patterns: str) -> any   # vboxpy: IInternalSessionControl::enumerateGuestProperties -> [names, values, timestamps, flags]
    onNATRedirectRuleChange(slot: int, remove: bool, name: str, proto: NATProtocol, hostIP: str, hostPort: int, guestIP: str, guestPort: int)   # vboxpy: IInternalSessionControl's, a port forward changed while the VM runs
    onNetworkAdapterChange(slot: int, cableConnected: bool)   # vboxpy: IInternalSessionControl's, the cable was plugged or pulled while the VM runs
    onMediumChange(controller: str, port: int, device: int, location: str)   # vboxpy: a DVD drive of the running VM gets another disc ("" = none), as IInternalSessionControl::OnMediumChange
    mergeSnapshotOnline(jobs: any, known: any) -> any   # vboxpy: the VM process runs the merges of deleting a snapshot of the running machine (jobs: [[kind, source, target, relink]], known: [[uuid, path]])

IDisplay:
    getScreenResolution(screenId: int) -> any   # [width, height, bitsPerPixel, xOrigin, yOrigin, GuestMonitorStatus] (VirtualBox's out parameters)
    takeScreenShotToArray(screenId: int, width: int, height: int, bitmapFormat: BitmapFormat) -> bytes

IVRDEServerInfo:
    active: bool
    port: int
    numberOfClients: int
    beginTime: int
    endTime: int

IKeyboard:
    putScancode(scancode: int)
    putScancodes(scancodes: [int]) -> int
    putCAD()
    releaseKeys()

IProgress:
    id: str
    description: str
    initiator: any
    cancelable: bool
    percent: int
    timeRemaining: int
    completed: bool
    canceled: bool
    resultCode: int
    errorInfo: IVirtualBoxErrorInfo
    operationCount: int
    operation: int
    operationDescription: str
    operationPercent: int
    operationWeight: int
    timeout: int rw
    waitForCompletion(timeout: int = -1)
    waitForOperationCompletion(operation: int, timeout: int = -1)
    cancel()

IVirtualBoxErrorInfo:
    resultCode: int
    resultDetail: int
    interfaceID: str
    component: str
    text: str
    next: IVirtualBoxErrorInfo

IEventSource:
    createListener() -> IEventListener
    registerListener(listener: IEventListener, interesting: [VBoxEventType], active: bool)
    unregisterListener(listener: IEventListener)
    fireEvent(event: IEvent, timeout: int = 0) -> bool
    getEvent(listener: IEventListener, timeout: int) -> IEvent
    eventProcessed(listener: IEventListener, event: IEvent)

IEventListener:
    handleEvent(event: IEvent)

IAppliance:
    path: str
    disks: [str]
    virtualSystemDescriptions: [IVirtualSystemDescription]
    machines: [str]
    read(file: str) -> IProgress
    interpret()
    importMachines(options: [ImportOptions] = []) -> IProgress
    write(format: str, options: [ExportOptions], path: str) -> IProgress
    getWarnings() -> [str]
    getPasswordIds() -> [str]
    getMediumIdsForPasswordId(passwordId: str) -> [str]
    addPasswords(identifiers: [str], passwords: [str])
    createVirtualSystemDescriptions(requested: int) -> int

IVirtualSystemDescription:
    count: int
    getDescription() -> any                 # [types, refs, OVFValues, VBoxValues, extraConfigValues]
    getDescriptionByType(type: VirtualSystemDescriptionType) -> any
    removeDescriptionByType(type: VirtualSystemDescriptionType)
    getValuesByType(type: VirtualSystemDescriptionType, which: VirtualSystemDescriptionValueType) -> [str]
    setFinalValues(enabled: [bool], VBoxValues: [str], extraConfigValues: [str])
    addDescription(type: VirtualSystemDescriptionType, VBoxValue: str, extraConfigValue: str = "")
"""
