"""Guest-visible network adapters (Intel PRO/1000 family, virtio-net) over the vmm.net frame interface."""
