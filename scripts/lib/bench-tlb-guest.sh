# Guest side of scripts/bench-tlb (6.12 guest, tests/e2e/big-interleave.toml).
# The harness prepends RUNS, SIZE, LOADS and TSC (L1's TSC MHz in the rig, or
# empty). Creates the 4 GiB 4-way x 4 KiB RAM region over the four devices,
# onlines it (movable) as a CPU-less node, then RUNS times chases SIZE of
# random 64-byte nodes (cxlvmm-lat chase: each load depends on the one
# before, so every load that misses the TLB pays a page walk) on guest RAM
# (node 0) and on the region's node, alternating. One JSON line per chase;
# "TLB-..." lines say what else happened. Exits 7 if every chase ran.
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" | head -1; }
memdevs=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); print a[2] }' | tr '\n' ' ')
# shellcheck disable=SC2086 # one word per memdev
if ! cxl create-region -m -t ram -d decoder0.0 -w 4 -g 4096 $memdevs >/tmp/region.json 2>/tmp/region.err; then
    echo "TLB-FAILED create-region over $memdevs: $(cat /tmp/region.err)"
    exit 1
fi
dax=$(daxctl list | json_field chardev)
daxctl online-memory --movable "$dax" >/dev/null 2>&1 || daxctl online-memory "$dax" >/dev/null 2>&1
node=$(daxctl list -d "$dax" | json_field target_node)
if [ -z "$node" ] || ! numactl -H | grep -q "^node $node size: [1-9]"; then
    echo "TLB-FAILED region did not come online"
    exit 1
fi
echo "TLB-REGION $(json_field region </tmp/region.json) over $memdevs, node $node; guest THP $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
fail=0
for r in $(seq "$RUNS"); do
    for where in ram:0 cxl:$node; do
        # shellcheck disable=SC2086 # $TSC: none or two words
        cxlvmm-lat chase -s "$SIZE" -l "$LOADS" -c 0 --node "${where#*:}" ${TSC:+-t $TSC} \
            --label "${where%%:*}" 2>/tmp/chase.err </dev/null || { echo "TLB-FAILED ${where%%:*} run $r: $(tail -1 /tmp/chase.err)"; fail=1; }
    done
done
[ "$fail" = 0 ] && exit 7
exit 1
