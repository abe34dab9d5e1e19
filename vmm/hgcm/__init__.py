"""HGCM: the host side of VirtualBox's Host-Guest Communication Manager (services behind VMMDev)."""
