"""Host-side serial port backends: where the bytes a guest UART sends go (files, TCP, pipes, host
devices), apart from the guest-visible 16550A in vmm.devices.uart."""
