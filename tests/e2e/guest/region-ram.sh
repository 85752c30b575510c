# Runs inside the guest (6.12). The manifest exports WAYS, GRAN, DECODER,
# MEMTEST (a test size: cxlvmm-memtest's, e.g. 64 for MiB; KiB for daxtest)
# and PHASES: "full", or "dax" for trapped regions, where every access exits
# to the VMM and is emulated one instruction at a time — vector moves cannot
# be, so there the region is tested as device-dax with plain 8-byte accesses
# (cxlvmm-daxtest) rather than onlined as system RAM. Creates a RAM region over the first WAYS memdevs that have
# volatile capacity (or those SERIALS names), and checks it end to end:
#   1. it commits, onlines (movable) as a CPU-less NUMA node of exactly the
#      region's size, without qos_class_mismatch, and a data-verifying
#      stress passes over the node;
#   2. it is offlined, destroyed and re-created; onlined as normal (not
#      movable) memory the data path verifies again, and a program copied to
#      tmpfs under --membind runs with its code, stack and heap on the node
#      (page tables follow the same policy).
# Prints "REGION-CHECK <name>: ok|FAILED (...)" lines and exits 7 if all pass.
fail=0
check() { if [ "$2" = 0 ]; then echo "REGION-CHECK $1: ok ($3)"; else echo "REGION-CHECK $1: FAILED ($3)"; fail=1; fi; }
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" | head -1; }

# With EXPECT_VCPUS (the harness's --vcpus): every one of them is online.
if [ -n "${EXPECT_VCPUS:-}" ]; then
    [ "$(nproc)" = "$EXPECT_VCPUS" ]; check vcpus $? "nproc $(nproc), --vcpus $EXPECT_VCPUS"
fi

# With EXPECT_MEM_MIB (the harness's --memory): the guest has that RAM, and
# every CXL window (top-level "CXL Window N" in /proc/iomem) starts at or
# above 4 GiB and above the end of System RAM.
if [ -n "${EXPECT_MEM_MIB:-}" ]; then
    mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    want_kib=$((EXPECT_MEM_MIB * 1024))
    [ "$mem_kib" -le "$want_kib" ] && [ "$mem_kib" -ge $((want_kib * 85 / 100)) ]
    check memtotal $? "MemTotal = $mem_kib kB for --memory ${EXPECT_MEM_MIB}M"
    ram_end=0 first_window=0 windows=0
    grep -v '^ ' /proc/iomem >/tmp/iomem
    while read -r range _ name; do
        start=$((0x${range%-*})) end=$((0x${range#*-} + 1))
        case $name in
            "System RAM") [ "$end" -gt "$ram_end" ] && ram_end=$end ;;
            "CXL Window"*)
                windows=$((windows + 1))
                { [ "$first_window" = 0 ] || [ "$start" -lt "$first_window" ]; } && first_window=$start ;;
        esac
    done </tmp/iomem
    [ "$windows" -ge 1 ] && [ "$first_window" -ge $((1 << 32)) ] && [ "$first_window" -ge "$ram_end" ]
    check window-layout $? "$windows CXL windows from $(printf %#x "$first_window"), System RAM ends $(printf %#x "$ram_end")"
fi

memdevs=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); m = a[2] }
                             /"ram_size":/ { print m }' | head -n "$WAYS" | tr '\n' ' ')
# SERIALS (optional): the memdevs to use, by serial number, in interleave
# position order (a multi-level interleave accepts only that order).
if [ -n "${SERIALS:-}" ]; then
    memdevs=
    for s in $SERIALS; do
        for d in /sys/bus/cxl/devices/mem*; do
            [ "$(($(cat "$d/serial")))" = "$((s))" ] && memdevs="$memdevs$(basename "$d") "
        done
    done
fi
echo "memdevs with ram: $memdevs"

create() { # -> region name
    cxl create-region -m -t ram -d "$DECODER" -w "$WAYS" -g "$GRAN" $memdevs >/tmp/region.json 2>/tmp/region.err
    cat /tmp/region.err >&2
    json_field region </tmp/region.json
}

online() { # dax device, movable|no-movable
    daxctl online-memory "--$2" "$1" >/dev/null 2>&1 || daxctl online-memory "$1" >/dev/null 2>&1
}

node_size_mb() { numactl -H | awk -v n="$1" '$1 == "node" && $2 == n && $3 == "size:" { print $4 }'; }
node_free_mb() { numactl -H | awk -v n="$1" '$1 == "node" && $2 == n && $3 == "free:" { print $4 }'; }
node_cpus() { numactl -H | awk -v n="$1" '$1 == "node" && $2 == n && $3 == "cpus:" { $1 = $2 = $3 = ""; print }' | tr -d ' '; }

verify_node() { # label node
    numactl --membind="$2" cxlvmm-memtest "$MEMTEST" 2 >/tmp/memtest.out 2>&1
    check "$1 stress" $? "$(tail -1 /tmp/memtest.out), node $2 had $(node_free_mb "$2") MB free"
}

region=$(create)
[ -n "$region" ]; check create $? "cxl create-region -w $WAYS -g $GRAN -d $DECODER $memdevs -> $region"
[ -n "$region" ] || { echo "no region, giving up"; exit 1; }
cxl list -R -r "$region" >/tmp/r.json
size=$(json_field size </tmp/r.json)
grep -q '"decode_state":"commit"' /tmp/r.json; check committed $? "$region decode_state commit, size $size"
! grep -q qos_class_mismatch /tmp/r.json; check qos-class $? "no qos_class_mismatch"
dax=$(daxctl list | json_field chardev)
if [ "$PHASES" = dax ]; then
    daxctl reconfigure-device -m devdax -f "$dax" >/dev/null 2>&1
    daxctl list -d "$dax" | grep -q '"mode":"devdax"'; check devdax $? "$dax in devdax mode"
    cxlvmm-daxtest "/dev/$dax" "$MEMTEST" 2 >/tmp/daxtest.out 2>&1
    check dax-data $? "$(tail -1 /tmp/daxtest.out)"
    cxl destroy-region -f "$region" >/dev/null 2>&1
    ! cxl list -R | grep -q "\"$region\""; check destroy $? "$region gone"
    [ "$fail" = 0 ] && exit 7
    exit 1
fi
online "$dax" movable
node=$(daxctl list -d "$dax" | json_field target_node)
# The performance the kernel computed for the region from HMAT, CDAT and
# the links (ns, MB/s; published once the memory is online), for the
# harness to set beside the fabric model's.
a=/sys/bus/cxl/devices/$region/access0
[ -r "$a/read_latency" ] && echo "REGION-PERF read_latency=$(cat $a/read_latency) write_latency=$(cat $a/write_latency) read_bandwidth=$(cat $a/read_bandwidth) write_bandwidth=$(cat $a/write_bandwidth)"
mb=$(node_size_mb "$node")
[ "$((mb * 1024 * 1024))" = "$size" ]; check numa-node $? "node $node size ${mb} MB, region $size bytes"
[ -z "$(node_cpus "$node")" ]; check cpu-less $? "node $node cpus: '$(node_cpus "$node")'"
verify_node first "$node"

# Offline, destroy, re-create: the VMM must drop the old mapping and install
# the new one; the data path is verified again below.
daxctl offline-memory "$dax" >/dev/null 2>&1
cxl destroy-region -f "$region" 2>&1
! cxl list -R | grep -q "\"$region\""; check destroy $? "$region gone"
region=$(create)
[ -n "$region" ]; check re-create $? "$region"
dax=$(daxctl list | json_field chardev)
online "$dax" no-movable
node=$(daxctl list -d "$dax" | json_field target_node)
verify_node second "$node"

# Code, stack and heap on the CXL node: copy the program to tmpfs under the
# policy (so its text pages come from the node), then run it there.
numactl --membind="$node" cp /usr/bin/cxlvmm-memtest /tmp/memtest.cxl
numactl --membind="$node" /tmp/memtest.cxl 16 2 >/tmp/bind.out 2>&1
rc=$?
cat /tmp/bind.out
text_ok=$(grep -c "file=/tmp/memtest.cxl.* N$node=" /tmp/bind.out)
other=$(grep "file=/tmp/memtest.cxl\|stack\|buffer" /tmp/bind.out | grep -v " N$node=[0-9]* kernelpagesize" | wc -l)
[ "$rc" = 0 ] && [ "$text_ok" -ge 1 ] && [ "$other" = 0 ]
check membind-code $? "exit $rc, text/stack/heap only on node $node ($text_ok text mappings)"

[ "$fail" = 0 ] && exit 7
exit 1
