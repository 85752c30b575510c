# Runs inside the guest (6.12, 2 vCPUs, tests/e2e/timed.toml: mem0's RAM
# window in timed mode, media read latency 5 us, no CPU cache model).
# Memory tiering's promotion (mm/memory-tiers.c, kernel/sched/fair.c,
# mm/migrate.c): with NUMA balancing in tiering mode
# (kernel.numa_balancing = 2) the kernel samples the pages of a lower tier
# with hint faults and moves those in use to DRAM. A pointer chase whose
# buffer starts on the timed node runs round after round; its pages must
# move to node 0, /proc/vmstat must count them promoted, and the chase's
# latency measured by the guest's own clock must drop with them.
# The scanner comes back every scan period of the task's own CPU time
# (kernel/sched/fair.c, task_tick_numa), in guest time; a round is 7-26
# ms of it on the timed node (what the exits cost the host, 0.1
# to 0.2 s a round, is hidden from the guest's clock) and tens of us on
# DRAM. So every round after the first starts with 10 ms of spinning
# (--round-gap, a program's work between passes), and the rounds go on
# until five in a row after the first have started and ended with the
# pages on node 0 (--until-node), at most ROUNDS_MAX. With 40 rounds and
# no gap, pages that a failed first migration left on the timed node could
# stay there for the rest of the run (docs/timed-mode.md).
# "TIER-CHECK <name>: ok|FAILED (...)" lines; exits 7 if all pass.
fail=0
check() { if [ "$2" = 0 ]; then echo "TIER-CHECK $1: ok ($3)"; else echo "TIER-CHECK $1: FAILED ($3)"; fail=1; fi; }
json_field() { grep -o "\"$1\":\"\{0,1\}[^\",}]*" | head -1 | sed 's/^[^:]*://; s/"//g'; }
mount -t debugfs none /sys/kernel/debug 2>/dev/null

memdev=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); print a[2]; exit }')
cxl create-region -m -t ram -d decoder0.0 -w 1 -g 4096 "$memdev" >/tmp/region.json 2>/tmp/region.err
region=$(json_field region </tmp/region.json)
dax=$(daxctl list | json_field chardev)
# The region's struct pages go to DRAM (see guest/timed.sh), then it is
# onlined as movable system RAM: a CPU-less node of its own.
echo 0 >/sys/bus/dax/devices/"$dax"/memmap_on_memory 2>/dev/null
daxctl reconfigure-device --mode=system-ram --no-online --force "$dax" >/dev/null 2>&1
daxctl online-memory --movable "$dax" >/dev/null 2>&1
node=$(daxctl list -d "$dax" | json_field target_node)
[ -n "$node" ] && [ "$node" != 0 ] && numactl -H | grep -q "^node $node size: [1-9]"
check region $? "$region on $memdev online as node '$node'"

tier_of() {
    local t
    for t in /sys/devices/virtual/memory_tiering/memory_tier*; do
        case ",$(cat "$t/nodelist")," in
            *",$1,"* | *",$1-"* | *"-$1,"*) echo "${t##*memory_tier}"; return ;;
        esac
    done
}
dram_tier=$(tier_of 0) cxl_tier=$(tier_of "$node")
[ -n "$dram_tier" ] && [ -n "$cxl_tier" ] && [ "$cxl_tier" -gt "$dram_tier" ]
check lower-tier $? "DRAM (node 0) in memory_tier$dram_tier, timed CXL (node $node) in memory_tier$cxl_tier"

# Tiering mode; the scanner starts at once and comes back every 100 ms of
# guest time (kernel/sched/debug.c's numa_balancing knobs), so that the
# test does not wait for the defaults (1 s, then 1 s to 60 s).
echo 2 >/proc/sys/kernel/numa_balancing
nb=$(cat /proc/sys/kernel/numa_balancing)
k=/sys/kernel/debug/sched/numa_balancing
echo 0 >$k/scan_delay_ms; echo 100 >$k/scan_period_min_ms; echo 200 >$k/scan_period_max_ms
[ "$nb" = 2 ]
check tiering-mode $? "kernel.numa_balancing = $nb; scan delay $(cat $k/scan_delay_ms) ms, period $(cat $k/scan_period_min_ms)-$(cat $k/scan_period_max_ms) ms, hot threshold $(cat $k/hot_threshold_ms 2>/dev/null) ms"

# Base pages only: a transparent huge page on the timed node would be
# zeroed and later copied 8 bytes per VM exit, 2 MiB at a time.
echo never >/sys/kernel/mm/transparent_hugepage/enabled
promoted() { awk '$1 == "pgpromote_success" { print $2 }' /proc/vmstat; }
# The same chase with its pages bound to the timed node and balancing off:
# what the workload sees there.
echo 0 >/proc/sys/kernel/numa_balancing
cxlvmm-lat chase -s 256K -n 4096 -l 1024 -w 0 -c 0 --node "$node" --label on-cxl >/tmp/on-cxl.json 2>/tmp/on-cxl.err
on_cxl=$(json_field mean_ns </tmp/on-cxl.json)
echo 2 >/proc/sys/kernel/numa_balancing
before=$(promoted)
# 64 pages, one chase node per page, 1024 loads a round: every load of a
# round on the timed node is one fabric read; once promoted it is DRAM's.
ROUNDS_MAX=400
cxlvmm-lat chase -s 256K -n 4096 -l 1024 -w 0 --rounds $ROUNDS_MAX --until-node 0 --round-gap 10000000 \
    -c 0 --node "$node" --unbind --label promote \
    >/tmp/promote.json 2>/tmp/promote.err
rc=$?
after=$(promoted)
rounds=$(sed 's/.*"rounds":\[//' /tmp/promote.json)
means=$(echo "$rounds" | grep -o '"mean_ns":[0-9.e+]*' | cut -d: -f2)
first=$(echo "$means" | head -1) last=$(echo "$means" | tail -1)
# What the workload settled to: the median of the last five rounds' means.
# Not the last round's alone: in one local CI run (2026-12-06) the last
# round took 662 us per load with all 64 sampled pages already on node 0,
# where nothing exits: a stall of the rig, not the fabric (the same clone's
# rerun: 7.6 ns). A median of five is still a mean of whole rounds and
# lets up to two rounds hold such a stall.
settled=$(echo "$means" | tail -5 | awk '{ v[NR] = $1 + 0 }
    END { for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          if (NR == 5) print v[3] }')
# Where 64 of the buffer's pages are ({"NODE":COUNT,...}): before the
# first round and after the last.
pages_on() { echo "$2" | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
start_pages=$(grep -o '"start_page_nodes":{[^}]*}' /tmp/promote.json)
last_pages=$(echo "$rounds" | grep -o '"page_nodes":{[^}]*}' | tail -1)
echo "TIER-FIGURE per-round mean ns: $(echo "$means" | awk '{ printf "%.0f ", $1 }')"
echo "TIER-FIGURE $(grep -E '^(pgpromote|numa_hint_faults|numa_pages_migrated|pgmigrate_success)' /proc/vmstat | tr '\n' ' ')"
nrounds=$(echo "$means" | grep -c .)
ended="settled on node 0"
[ "$nrounds" = "$ROUNDS_MAX" ] && ended="did not settle on node 0 in $ROUNDS_MAX"
# A run that settles has run the first round and five more.
[ "$rc" = 0 ] && [ "$nrounds" -ge 6 ] && [ "$nrounds" = "$(json_field rounds_run </tmp/promote.json)" ] &&
    [ "$(pages_on "$node" "$start_pages")" = 64 ]
check chase $? "exit $rc, $nrounds rounds ($ended); pages before the first $start_pages"
[ "$after" -gt "$before" ]
check promoted $? "pgpromote_success $before -> $after"
n0=$(pages_on 0 "$last_pages")
[ "${n0:-0}" -ge 48 ]
check on-dram $? "last round's pages $last_pages (at least 48 of 64 on node 0)"
awk -v f="$on_cxl" -v l="$settled" 'BEGIN { exit !(f > 0 && l > 0 && l * 10 < f) }'
check faster $? "guest-measured mean per load: bound to the timed node $on_cxl ns; while promoting, first round $first ns, median of the last five rounds $settled ns (last round $last ns)"

[ "$fail" = 0 ] && exit 7
exit 1
