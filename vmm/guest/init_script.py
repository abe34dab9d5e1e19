"""The guest's /init and the ACPI power-button handler, as text placed in the initramfs.

/init is PID 1 (a busybox shell script): it mounts the pseudo file systems, loads the
storage modules, starts busybox acpid (in the foreground, as a job: its daemon mode exits
at once here) so the ACPI power button powers the guest off,
brings up the loopback interface, prints the ready marker that tests and benchmarks wait for (on
the console and, when the console is elsewhere, on the VGA text console tty0 too), and keeps a
shell on the console.  busybox `poweroff`/`reboot` signal PID 1 (USR2/TERM), so /init traps
those signals and performs the forced action itself.
"""

READY_MARKER = "VBOXPY-GUEST-READY"

INIT = f"""#!/bin/sh
export PATH=/bin HOME=/root PS1='vboxpy# '
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
case " $(cat /proc/cmdline) " in
*" vboxpy.nomodules "*) ;;
*) while read -r m; do
       insmod "/lib/modules/$m.ko" 2>/dev/null || echo "init: module $m not loaded"
   done < /lib/modules/load-order ;;
esac
mkdir -p /var/log /var/run
ip link set lo up 2>/dev/null
[ -d /dev/input ] && acpid -f -c /etc/acpi -l /dev/null &
trap 'sync; poweroff -f' USR2
trap 'sync; reboot -f' TERM
trap 'sync; halt -f' USR1
echo {READY_MARKER}
for console in $(cat /sys/class/tty/console/active 2>/dev/null); do :; done
[ "$console" = tty0 ] || echo {READY_MARKER} >/dev/tty0 2>/dev/null
while true; do
    setsid cttyhack sh &
    shell=$!
    while kill -0 $shell 2>/dev/null; do wait $shell; done
done
"""

POWER_BUTTON = """#!/bin/sh
exec poweroff
"""

# busybox udhcpc runs this on each lease event: configure the interface, route and resolver.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done ;;
esac
exit 0
"""
