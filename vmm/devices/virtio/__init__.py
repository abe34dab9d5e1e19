"""Virtio in three layers: queue mechanics (queue.py), devices (scsi.py), transport (pci.py)."""
