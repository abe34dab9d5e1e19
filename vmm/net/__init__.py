"""Host-side network backends (NAT through libslirp, internal networks, null) and the frame
interface the guest-visible NICs in vmm.devices.net talk through."""
