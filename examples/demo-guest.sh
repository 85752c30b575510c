# Runs inside the guest for scripts/demo: show what the guest sees.
echo "===== cxlvmm guest: what it sees ====="
echo "kernel:   $(uname -r)"
echo "cpus:     $(nproc)"
awk '/^MemTotal:/ {printf "memory:   %d MiB\n", $2 / 1024}' /proc/meminfo
echo "time:     $(date -u)"
echo "cmdline:  $(cat /proc/cmdline)"
echo "ACPI tables: $(ls /sys/firmware/acpi/tables | tr '\n' ' ')"
echo "PCI functions:"
for d in /sys/bus/pci/devices/*; do
    [ -e "$d" ] || continue
    echo "  ${d##*/} vendor $(cat "$d/vendor") device $(cat "$d/device") class $(cat "$d/class")"
done
echo "NUMA nodes: $(ls -d /sys/devices/system/node/node* 2>/dev/null | sed 's#.*/##' | tr '\n' ' ')"
if command -v cxl >/dev/null; then
    echo "cxl list:"
    cxl list -M -P -D -T -E -u 2>&1 | sed 's/^/  /'
fi
echo "kernel messages about ACPI tables and CXL:"
dmesg | grep -iE 'cxl|acpi.*(error|fail)' | sed 's/^/  /' | head -20
echo "===== end ====="
