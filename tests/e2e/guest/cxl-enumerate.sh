# Runs inside the guest: prints what the stock CXL drivers enumerated, between
# markers the host-side checker (tests/e2e/check_cxl.py) parses, and round-trips
# random data through every memdev's label storage area.
echo "===CXL-LIST-BEGIN==="
# -i: include idle objects, such as the switch's and endpoints' uncommitted decoders.
cxl list -M -P -D -T -E -i
echo "===CXL-LIST-END==="
echo "===DMESG-BEGIN==="
# Raw records carry their priority: <0>..<4> are emergency to warning.
dmesg -r | grep -E '^<[0-4]>' | grep -iE 'cxl|acpi0016|acpi0017|cedt|cfmws|hdm|dvsec|\bdoe\b|cdat'
echo "===DMESG-END==="
rc=0
for m in $(cxl list -M | sed -n 's/.*"memdev":"\(mem[0-9]*\)".*/\1/p'); do
    size=$(cat /sys/bus/cxl/devices/$m/label_storage_size 2>/dev/null || echo 0)
    [ "$size" -gt 0 ] || continue
    # The whole label area, as ndctl's own label tests do.
    head -c "$size" /dev/urandom >/tmp/lsa-in
    # A persistent device is registered with the nvdimm subsystem, which owns
    # its labels while idle: go through its nmem with ndctl, as ndctl's own
    # cxl-labels test does; otherwise through the memdev with cxl.
    # ndctl names a CXL nvdimm's id by the memdev's serial, in decimal.
    want="\"id\":\"$(($(cat /sys/bus/cxl/devices/$m/serial)))\""
    nmem=$(ndctl list -D | awk -v want="$want" '/"dev":/ { gsub(/[",]/, ""); split($0, a, ":"); dev = a[2] } index($0, want) { print dev }')
    # Older kernels (6.1) give CXL nvdimms no id; with a single nvdimm there
    # is nothing to match.
    if [ -z "$nmem" ] && [ "$(ls -d /sys/bus/nd/devices/nmem* 2>/dev/null | wc -l)" = 1 ] &&
        [ -d "$(readlink -f /sys/bus/cxl/devices/$m)/pmem${m#mem}" ]; then
        nmem=$(basename /sys/bus/nd/devices/nmem*)
    fi
    if [ -n "$nmem" ]; then
        tool="ndctl" dev=$nmem
    else
        tool="cxl" dev=$m
    fi
    if $tool write-labels "$dev" -i /tmp/lsa-in &&
       $tool read-labels "$dev" -o /tmp/lsa-out &&
       cmp /tmp/lsa-in /tmp/lsa-out; then
        echo "LSA-ROUNDTRIP $m ok ($size bytes via $tool $dev)"
    else
        echo "LSA-ROUNDTRIP $m FAILED"
        rc=1
    fi
done
# MSI-X delivery: poisoning a DPA makes the device log an event and raise
# its event vector; the guest's handler must run (its count in
# /proc/interrupts goes up) and drain the log. Needs the debugfs poison
# injector (Linux 6.5+); older guests say so and skip.
mount -t debugfs none /sys/kernel/debug 2>/dev/null
m=$(cxl list -M | sed -n 's/.*"memdev":"\(mem[0-9]*\)".*/\1/p' | head -n 1)
inject=/sys/kernel/debug/cxl/$m/inject_poison
if [ -n "$m" ] && [ -e "$inject" ]; then
    pcidev=$(basename "$(readlink -f /sys/bus/cxl/devices/$m/..)")
    irqs() { awk -v d="$pcidev" 'index($0, d) { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { print s + 0 }' /proc/interrupts; }
    before=$(irqs)
    echo 0x1000 >"$inject"
    n=0
    while [ "$(irqs)" -le "$before" ] && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    after=$(irqs)
    grep -F "$pcidev" /proc/interrupts | sed 's/^/MSIX-IRQ /'
    if [ "$after" -gt "$before" ]; then
        echo "MSIX-EVENT $m ok (interrupts $before -> $after)"
    else
        echo "MSIX-EVENT $m FAILED (interrupts stayed at $before)"
        rc=1
    fi
    echo 0x1000 >"/sys/kernel/debug/cxl/$m/clear_poison"
else
    echo "MSIX-EVENT skipped (no $inject on $(uname -r))"
fi
[ "$rc" = 0 ] && exit 7
exit 1
