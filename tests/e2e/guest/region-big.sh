# Runs inside the guest (6.12, tests/e2e/big-interleave.toml). A 4 GiB RAM
# region interleaved 4 ways at 4 KiB over the four 1 GiB devices, onlined
# (movable) as a CPU-less NUMA node: its data path verified, and cxlvmm-lat's
# pointer chase on it compared with the same chase on the guest's own RAM
# (node 0): a region the VMM maps natively in one piece runs at about RAM
# speed (within 1.5x; a trapped one is 100x slower or worse). In the rig,
# in runs where both sides had a chase in the rig's fast state (below),
# the region's best p50 was 1.01-1.10x RAM's.
# "BIG-CHECK <name>: ok|FAILED (...)" lines; exits 7 if all pass. The
# harness may prepend TSC_MHZ (as for lat-tools).
fail=0
check() { if [ "$2" = 0 ]; then echo "BIG-CHECK $1: ok ($3)"; else echo "BIG-CHECK $1: FAILED ($3)"; fail=1; fi; }
# The first value of KEY in a JSON line (top-level fields come first).
json_field() { grep -o "\"$1\":\"\{0,1\}[^\",}]*" | head -1 | sed 's/^[^:]*://; s/"//g'; }
tsc=${TSC_MHZ:+-t $TSC_MHZ}

memdevs=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); print a[2] }' | tr '\n' ' ')
# shellcheck disable=SC2086 # the memdevs, one word each
cxl create-region -m -t ram -d decoder0.0 -w 4 -g 4096 $memdevs >/tmp/region.json 2>/tmp/region.err
cat /tmp/region.err
size=$(json_field size </tmp/region.json)
[ "$size" = 4294967296 ]; check create $? "$(json_field region </tmp/region.json) over $memdevs, size $size"
dax=$(daxctl list | json_field chardev)
daxctl online-memory --movable "$dax" >/dev/null 2>&1 || daxctl online-memory "$dax" >/dev/null 2>&1
node=$(daxctl list -d "$dax" | json_field target_node)
[ -n "$node" ] && numactl -H | grep -q "^node $node size: 4096 MB"
check numa-node $? "$(numactl -H | grep "^node $node size")"

numactl --membind="$node" cxlvmm-memtest 64 1 >/tmp/memtest.out 2>&1
check data $? "$(tail -1 /tmp/memtest.out)"

# Rounds of one chase each, RAM and region alternated, and the best p50 of
# each side compared, until that is within 1.5x or after ten rounds: in the
# rig a whole chase on either kind of memory runs in one of two states,
# p50 ~370 ns or ~700 ns, and 31 of 50 chases in five runs of the case
# were slow (RAM 17, the region 14), so five fixed rounds left the region
# all slow in about one run in twenty (0.56^5) and failed it; ten leave
# one in 300. Wherever both sides had a fast chase their bests were
# within 10 % of each other (docs/performance.md, "region commit").
within_bound() { # RAM_NS REGION_NS
    awk -v r="$1" -v c="$2" 'BEGIN { exit !(r > 0 && c > 0 && c <= 1.5 * r) }'
}
rm -f /tmp/p50-ram /tmp/p50-cxl
round=0
while [ "$round" -lt 10 ]; do
    round=$((round + 1))
    for where in ram:0 cxl:$node; do
        name=${where%%:*} n=${where#*:} out=/tmp/$name-$round.json
        # shellcheck disable=SC2086 # $tsc: none or two words
        cxlvmm-lat chase -s 64M -c 0 --node "$n" $tsc --label "chase-$name-$round" >"$out" 2>/tmp/"$name".err
        rc=$?
        cat "$out"
        [ "$rc" = 0 ] && grep -q "\"page_nodes\":{\"$n\":64}" "$out"
        ok=$?
        p50=$(json_field p50_ns <"$out")
        check "chase-$name-$round" "$ok" "p50 $p50 ns on node $n"
        [ -z "$p50" ] || echo "$p50" >>/tmp/p50-"$name"
    done
    ram=$(sort -g /tmp/p50-ram | head -1) cxl=$(sort -g /tmp/p50-cxl | head -1)
    # A failed check fails the case; more rounds cannot change that.
    [ "$fail" = 0 ] || break
    within_bound "$ram" "$cxl" && break
done
within_bound "$ram" "$cxl"
check chase-vs-ram $? "best p50 RAM $ram ns (of $(tr '\n' ' ' </tmp/p50-ram)), region $cxl ns (of $(tr '\n' ' ' </tmp/p50-cxl)), RAM/region $(awk -v r="$ram" -v c="$cxl" 'BEGIN { if (c > 0) printf "%.3f", r / c }'), $round round(s)"

[ "$fail" = 0 ] && exit 7
exit 1
