# Runs inside the guest: prints what the stock CXL drivers enumerated, between
# markers the host-side checker (tests/e2e/check_cxl.py) parses, and round-trips
# random data through every memdev's label storage area.
# -i: include idle objects, such as the switch's and endpoints' uncommitted
# decoders. Compressed: every byte on the serial console is an exit, about
# 1 ms each in the nested rig, and the listing of 32 devices is 100 KB
# (gzip makes it 5 KB): printed plain it took CPU 0 long enough in the
# UART's transmit path for the soft-lockup watchdog to fire.
echo "===CXL-LIST-GZ-BEGIN==="
cxl list -M -P -D -T -E -i | gzip -9 | base64
echo "===CXL-LIST-GZ-END==="
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
# INTx through the IOAPIC and the host bridge's _PRT: hand one memdev's PCI
# function to uio_pci_generic (which uses INTx only), enable the mailbox
# doorbell interrupt and run IDENTIFY through the device's own registers.
# The device, its MSI-X now off, raises INTA#; the kernel routed it with
# _PRT; uio's handler masks it (Command.Interrupt Disable), counting 1.
# Unmasking while the device still asserts it must fire again (level
# triggered: 2); after the host acknowledges (a mailbox control write),
# unmasking must not (still 2).
intx_check() {
    local m=$1 d cfg off hdr id dvsec lo hi bir= base regs count i mbox
    d=$(basename "$(readlink -f /sys/bus/cxl/devices/$m/..)")
    cfg=/sys/bus/pci/devices/$d/config
    rd_cfg() { od -An -tu4 -j "$1" -N4 "$cfg" | tr -d ' '; }
    # The Register Locator DVSEC (CXL vendor 0x1e98, id 8) names the BAR and
    # offset of the memory-device register block (block id 3).
    off=256 dvsec=
    while [ "$off" -ne 0 ]; do
        hdr=$(rd_cfg $off)
        [ $((hdr & 0xffff)) = 35 ] && [ $(($(rd_cfg $((off + 4))) & 0xffff)) = $((0x1e98)) ] &&
            [ $(($(rd_cfg $((off + 8))) & 0xffff)) = 8 ] && dvsec=$off
        off=$((hdr >> 20))
    done
    [ -n "$dvsec" ] || { echo "INTX-CHECK $m FAILED (no register locator)"; return 1; }
    i=$((dvsec + 12))
    while [ "$i" -lt $((dvsec + ($(rd_cfg $((dvsec + 4))) >> 20))) ]; do
        lo=$(rd_cfg $i) hi=$(rd_cfg $((i + 4)))
        [ $(((lo >> 8) & 0xff)) = 3 ] && { bir=$((lo & 7)); regs=$(((lo & 0xffff0000) + (hi << 32))); }
        i=$((i + 8))
    done
    [ -n "$bir" ] || { echo "INTX-CHECK $m FAILED (no memory-device registers)"; return 1; }
    # cxl_pci claims the BARs; once it lets go, /dev/mem may reach them.
    echo "$d" >/sys/bus/pci/drivers/cxl_pci/unbind || return 1
    echo uio_pci_generic >/sys/bus/pci/devices/$d/driver_override
    echo "$d" >/sys/bus/pci/drivers_probe
    base=$(sed -n "$((bir + 1))p" /sys/bus/pci/devices/$d/resource | cut -d' ' -f1)
    base=$((base + regs))
    # Device capability array: count at [47:32], 16-byte entries from 0x10;
    # the primary mailbox is capability 2.
    count=$(($(devmem $((base + 4)) 32) & 0xffff)) mbox=
    for i in $(seq 1 "$count"); do
        id=$(($(devmem $((base + 16 * i)) 32) & 0xffff))
        [ "$id" = 2 ] && mbox=$((base + $(devmem $((base + 16 * i + 4)) 32)))
    done
    [ -n "$mbox" ] || { echo "INTX-CHECK $m FAILED (no mailbox)"; return 1; }

    local uio irq
    uio=$(ls /sys/bus/pci/devices/$d/uio 2>/dev/null | head -n 1)
    irq=$(cat /sys/bus/pci/devices/$d/irq)
    [ -n "$uio" ] && [ "$irq" -gt 0 ] || { echo "INTX-CHECK $m FAILED (uio '$uio', irq $irq)"; return 1; }
    count() { awk -v n="$irq:" '$1 == n { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { print s + 0 }' /proc/interrupts; }
    # uio counts interrupts from when /dev/uioN is opened: open it before
    # anything can fire; each read blocks until the next one (bounded wait).
    exec 5</dev/$uio
    wait_irq() { timeout 10 dd bs=4 count=1 <&5 2>/dev/null | od -An -tu4 | tr -d ' '; }
    # uio_pci_generic leaves unmasking to user space: clear Interrupt
    # Disable (Command bit 10: bit 2 of config byte 5), as its HOWTO does.
    unmask() {
        local hi
        hi=$(od -An -tu1 -j5 -N1 "$cfg" | tr -d ' ')
        printf "\\$(printf %o $((hi & ~4 & 255)))" >/tmp/cmd-hi
        dd if=/tmp/cmd-hi of="$cfg" bs=1 seek=5 count=1 conv=notrunc 2>/dev/null
    }
    devmem $((mbox + 8)) 32 $((0x4000))    # IDENTIFY, no input payload
    devmem $((mbox + 12)) 32 0
    devmem $((mbox + 4)) 32 3              # doorbell interrupt enable + doorbell
    local e1 e2 n1 n2 n3 rc_mb
    e1=$(wait_irq); n1=$(count)
    rc_mb=$((($(devmem $((mbox + 20)) 32)) & 0xffff))
    unmask
    e2=$(wait_irq); n2=$(count)
    devmem $((mbox + 4)) 32 2              # acknowledge: control write, no doorbell
    unmask
    # Nothing may arrive now: give a wrongly held line time to show.
    timeout 2 dd bs=4 count=1 <&5 2>/dev/null | od -An -tu4 >/tmp/late
    exec 5<&-
    n3=$(count)
    grep "^ *$irq:" /proc/interrupts | sed 's/^/INTX-IRQ /'
    echo "INTX-COUNTS $m irq=$irq mailbox_rc=$rc_mb events=$e1,$e2 counts=$n1,$n2,$n3 late=$(tr -d ' \n' </tmp/late)"
    if [ "$rc_mb" = 0 ] && [ "$e1" = 1 ] && [ "$e2" = 2 ] && [ "$n1" = 1 ] && [ "$n2" = 2 ] && [ "$n3" = 2 ] && [ ! -s /tmp/late ]; then
        echo "INTX-CHECK $m ok (irq $irq)"
    else
        echo "INTX-CHECK $m FAILED"
        return 1
    fi
}
m=$(cxl list -M | sed -n 's/.*"memdev":"\(mem[0-9]*\)".*/\1/p' | head -n 1)
if [ -n "$m" ]; then intx_check "$m" || rc=1; fi
[ "$rc" = 0 ] && exit 7
exit 1
