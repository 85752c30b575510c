# Runs inside the guest (6.12, tests/e2e/big-interleave.toml, --memory 512M).
# Memory tiering, the kernel feature CXL memory exists for
# (mm/memory-tiers.c, mm/vmscan.c): the 4 GiB region, onlined as a
# CPU-less node, must land in a lower memory tier than the guest's DRAM
# (the kernel places it by the performance HMAT and CDAT give it), and
# with demotion enabled, reclaim on DRAM must demote pages to it instead
# of failing: a program bound to node 0 that writes 1.5x what node 0 has
# runs to the end with its data intact, and /proc/vmstat counts the
# demoted pages. "TIER-CHECK <name>: ok|FAILED (...)" lines; exits 7 if all
# pass.
fail=0
check() { if [ "$2" = 0 ]; then echo "TIER-CHECK $1: ok ($3)"; else echo "TIER-CHECK $1: FAILED ($3)"; fail=1; fi; }
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" | head -1; }
memdevs=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); print a[2] }' | tr '\n' ' ')
# shellcheck disable=SC2086 # one word per memdev
cxl create-region -m -t ram -d decoder0.0 -w 4 -g 4096 $memdevs >/tmp/region.json 2>/tmp/region.err
region=$(json_field region </tmp/region.json)
dax=$(daxctl list | json_field chardev)
daxctl online-memory --movable "$dax" >/dev/null 2>&1 || daxctl online-memory "$dax" >/dev/null 2>&1
node=$(daxctl list -d "$dax" | json_field target_node)
[ -n "$node" ] && numactl -H | grep -q "^node $node size: [1-9]"
check region $? "$region over $memdevs online as node '$node'"

# The tier that holds a node: memory_tierN/nodelist lists it.
tier_of() {
    local t
    for t in /sys/devices/virtual/memory_tiering/memory_tier*; do
        # nodelist is a range list ("0", "0-1", "1,3"); the nodes here are 0 and 1.
        case ",$(cat "$t/nodelist")," in
            *",$1,"* | *",$1-"* | *"-$1,"*) echo "${t##*memory_tier}"; return ;;
        esac
    done
}
for t in /sys/devices/virtual/memory_tiering/memory_tier*; do
    echo "TIER-INFO ${t##*/}: nodes $(cat "$t/nodelist")"
done
a=/sys/bus/cxl/devices/$region/access0
echo "TIER-INFO $region access0: read_latency $(cat $a/read_latency 2>/dev/null) ns, read_bandwidth $(cat $a/read_bandwidth 2>/dev/null) MB/s"
dram_tier=$(tier_of 0) cxl_tier=$(tier_of "$node")
[ -n "$dram_tier" ] && [ -n "$cxl_tier" ] && [ "$cxl_tier" -gt "$dram_tier" ]
check lower-tier $? "DRAM (node 0) in memory_tier$dram_tier, CXL (node $node) in memory_tier$cxl_tier"

echo 1 >/sys/kernel/mm/numa/demotion_enabled
check demotion-enabled $? "/sys/kernel/mm/numa/demotion_enabled = $(cat /sys/kernel/mm/numa/demotion_enabled)"
demoted() { awk '/^pgdemote_(kswapd|direct|khugepaged)/ { s += $2 } END { print s + 0 }' /proc/vmstat; }
node_kib() { awk -v n="$1" '$1 == "Node" && $2 == n && $3 == "MemUsed:" { print $4 }' "/sys/devices/system/node/node$1/meminfo"; }
before=$(demoted)
total_mb=$(numactl -H | awk '$1 == "node" && $2 == 0 && $3 == "size:" { print $4 }')
want=$((total_mb * 3 / 2))
cxl_before=$(node_kib "$node")
numactl --membind=0 cxlvmm-memtest "$want" 2 >/tmp/memtest.out 2>&1
rc=$?
after=$(demoted)
cxl_after=$(node_kib "$node")
grep -E '^pgdemote|^pgpromote|^pgmigrate_success' /proc/vmstat | tr '\n' ' ' | sed 's/^/TIER-INFO vmstat: /'; echo
check data-under-pressure $rc "memtest ${want} MiB bound to node 0 (${total_mb} MB): $(tail -1 /tmp/memtest.out)"
[ "$after" -gt "$before" ]
check demoted $? "pgdemote $before -> $after pages; node $node used ${cxl_before} -> ${cxl_after} kB"

[ "$fail" = 0 ] && exit 7
exit 1
