# Guest side of scripts/bench-memory (runs as /cxlvmm/script under cxlvmm or
# QEMU, 6.12 guest). The harness prepends WAYS, GRAN, RUNS, LIMIT and CASES,
# lines "LABEL ram|cxl numactl|mbind CXLVMM-MEMBENCH-ARGS...". Creates a RAM
# region over the first WAYS memdevs with volatile capacity, onlines it
# (movable, as CXL memory usually is: the kernel's own allocations, page
# tables included, stay on node 0), then RUNS times runs every case on node 0
# (ram) or on the region's node (cxl), the whole process bound there with
# `numactl --membind` or just membench's buffers (`-m`, for memory served
# access by access, see membench.c), each bounded by LIMIT seconds.
# cxlvmm-membench prints one JSON line per case; "BENCH-..." lines say what
# else happened. Exits 7 once the region is online, whatever the cases did.
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" | head -1; }

memdevs=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); m = a[2] }
                             /"ram_size":/ { print m }' | head -n "$WAYS" | tr '\n' ' ')
memdevs=${memdevs% }
# shellcheck disable=SC2086 # one word per memdev
if ! cxl create-region -m -t ram -d decoder0.0 -w "$WAYS" -g "$GRAN" $memdevs >/tmp/region.json 2>/tmp/region.err; then
    echo "BENCH-FAILED create-region -w $WAYS -g $GRAN $memdevs: $(cat /tmp/region.err)"
    exit 1
fi
region=$(json_field region </tmp/region.json)
size=$(json_field size </tmp/region.json)
dax=$(daxctl list | json_field chardev)
daxctl online-memory --movable "$dax" >/dev/null 2>&1 || daxctl online-memory "$dax" >/dev/null 2>&1
node=$(daxctl list -d "$dax" | json_field target_node)
if [ -z "$node" ] || ! numactl -H | grep -q "^node $node size: [1-9]"; then
    echo "BENCH-FAILED region $region ($dax) did not come online"
    numactl -H
    exit 1
fi
# The zones that hold the node's memory (Movable unless online-memory
# --movable was refused).
zones=$(awk -v n="$node," '$1 == "Node" { z = ($2 == n) ? $4 : "" }
                           z != "" && $1 == "present" && $2 > 0 { printf "%s ", z; z = "" }' /proc/zoneinfo)
echo "BENCH-REGION $region: $WAYS-way x $GRAN B over $memdevs, size $size, node $node, zone ${zones% }"
echo "BENCH-GUEST THP $(cat /sys/kernel/mm/transparent_hugepage/enabled), clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
numactl -H

for r in $(seq "$RUNS"); do
    echo "$CASES" | while read -r label where bind args; do
        [ -n "$label" ] || continue
        n=0
        [ "$where" = cxl ] && n=$node
        # shellcheck disable=SC2086 # membench arguments, one word each
        if [ "$bind" = mbind ]; then
            timeout "$LIMIT" cxlvmm-membench -m "$n" $args -l "$label" </dev/null
        else
            timeout "$LIMIT" numactl --membind="$n" cxlvmm-membench $args -l "$label" </dev/null
        fi
        rc=$?
        [ "$rc" = 0 ] || echo "BENCH-FAILED $label run $r: exit $rc (143: over the ${LIMIT} s limit)"
    done
done
exit 7
