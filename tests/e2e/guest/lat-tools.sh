# Runs inside the guest (6.12, 2 vCPUs, examples/direct.toml). Checks the
# timing tools on ordinary memory: cxlvmm-lat's chase, bw and loaded on
# node 0 and on a native 1-way CXL RAM region onlined (movable) as a NUMA
# node, on a tmpfs file, and cxlvmm-clockcheck across both CPUs (plus once
# with a deliberate skew, which it must catch). The JSON lines go to the
# console for the harness; "LAT-CHECK <name>: ok|FAILED (...)" lines say
# what was checked. Exits 7 if all pass. The case's prepare may export TSC_MHZ:
# the TSC rate for cxlvmm-lat's -t, where the guest kernel has none (it
# could not calibrate the TSC and runs on jiffies).
fail=0
check() { if [ "$2" = 0 ]; then echo "LAT-CHECK $1: ok ($3)"; else echo "LAT-CHECK $1: FAILED ($3)"; fail=1; fi; }
# The first value of KEY in a JSON line (top-level fields come first).
json_field() { grep -o "\"$1\":\"\{0,1\}[^\",}]*" | head -1 | sed 's/^[^:]*://; s/"//g'; }
tsc=${TSC_MHZ:+-t $TSC_MHZ}
echo "LAT-GUEST clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource), $(nproc) CPUs"
dmesg | grep -i -e 'tsc' -e 'clocksource' | sed 's/^/LAT-DMESG /'

memdev=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); print a[2]; exit }')
cxl create-region -m -t ram -d decoder0.0 -w 1 -g 4096 "$memdev" >/tmp/region.json 2>/tmp/region.err
dax=$(daxctl list | json_field chardev)
daxctl online-memory --movable "$dax" >/dev/null 2>&1 || daxctl online-memory "$dax" >/dev/null 2>&1
cxl_node=$(daxctl list -d "$dax" | json_field target_node)
[ -n "$cxl_node" ] && numactl -H | grep -q "^node $cxl_node size: [1-9]"
check region $? "$(json_field region </tmp/region.json) on $memdev online as node '$cxl_node'"

# lat LABEL ARGS...: runs cxlvmm-lat, keeps its JSON in /tmp/LABEL.json.
lat() {
    label=$1; shift
    # shellcheck disable=SC2086 # $tsc: none or two words
    cxlvmm-lat "$@" $tsc --label "$label" >/tmp/"$label".json 2>/tmp/"$label".err
    rc=$?
    cat /tmp/"$label".json; sed "s/^/LAT-STDERR $label: /" /tmp/"$label".err
    return $rc
}
# on LABEL NODE ARGS...: the run's buffers all landed on NODE (64 pages sampled).
on() { grep -q "\"page_nodes\":{\"$2\":64}" /tmp/"$1".json; }

for where in ram:0 cxl:$cxl_node; do
    name=${where%%:*} node=${where#*:}
    lat "chase-$name" chase -s 64M -c 0 --node "$node" && on "chase-$name" "$node"
    check "chase-$name" $? "p50 $(json_field p50_ns </tmp/chase-"$name".json) ns, mean $(json_field mean_ns </tmp/chase-"$name".json) ns on node $node"
    lat "chase-load-$name" chase -s 64M -l 200000 --per-load -c 0 --node "$node" && on "chase-load-$name" "$node" &&
        [ "$(json_field samples </tmp/chase-load-"$name".json)" = 200000 ] &&
        [ "$(json_field backward_loads </tmp/chase-load-"$name".json)" = 0 ]
    check "chase-per-load-$name" $? "p50 $(json_field p50_ns </tmp/chase-load-"$name".json) ns, p99 $(json_field p99_ns </tmp/chase-load-"$name".json) ns, $(json_field backward_loads </tmp/chase-load-"$name".json) loads stepped back"
    lat "bw-$name" bw -s 16M -T 2 -c 0,1 --node "$node" && on "bw-$name" "$node" &&
        [ "$(grep -o '"GBps":[0-9.e+-]*' /tmp/bw-"$name".json | grep -vc '"GBps":0$')" = 3 ]
    check "bw-$name" $? "$(grep -o '"op":"[a-z]*"\|"GBps":[0-9.e+-]*' /tmp/bw-"$name".json | tr '\n' ' ')"
    lat "loaded-$name" loaded -s 32M -l 100000 -k 1 -b 32M -d 0,100,1000 -c 0,1 --node "$node" &&
        on "loaded-$name" "$node" && [ "$(grep -o '"delay_ns"' /tmp/loaded-"$name".json | wc -l)" = 3 ]
    check "loaded-$name" $? "$(grep -o '"delay_ns":[0-9]*\|"load_GBps":[0-9.e+-]*\|"p50_ns":[0-9.e+-]*' /tmp/loaded-"$name".json | tr '\n' ' ')"
done

lat chase-file chase -s 8M -c 0 --file /tmp/lat.buf && [ "$(json_field mem_kind </tmp/chase-file.json)" = file ]
check chase-file $? "p50 $(json_field p50_ns </tmp/chase-file.json) ns on $(json_field mem_path </tmp/chase-file.json)"
# --until-node: pages already on node 0 end the rounds after the first and
# five settled ones; pages bound to node 0 never reach the CXL node, so
# every round allowed runs.
lat rounds-settled chase -s 256K -n 4096 -l 1024 -c 0 --node 0 --unbind --rounds 50 --until-node 0 &&
    [ "$(json_field rounds_run </tmp/rounds-settled.json)" = 6 ] &&
    [ "$(grep -o '"round":' /tmp/rounds-settled.json | wc -l)" = 6 ] &&
    lat rounds-max chase -s 256K -n 4096 -l 1024 -c 0 --node 0 --rounds 12 --until-node "$cxl_node" &&
    [ "$(json_field rounds_run </tmp/rounds-max.json)" = 12 ] && on rounds-max 0 &&
    { cxlvmm-lat chase --rounds 3 --until-node 0 >/dev/null 2>/tmp/until.err; [ $? = 2 ]; } &&
    grep -q -- '--until-node: only with --node' /tmp/until.err
check rounds-until-node $? "rounds run: $(json_field rounds_run </tmp/rounds-settled.json) until node 0 (6 expected), $(json_field rounds_run </tmp/rounds-max.json) of 12 until node $cxl_node; without --node: $(cat /tmp/until.err)"
cxlvmm-lat chase -n 12 >/dev/null 2>/tmp/bad.err
[ $? = 2 ] && grep -q -- '-n: node size 12' /tmp/bad.err
check bad-usage $? "$(cat /tmp/bad.err)"

cxlvmm-clockcheck -c 0,1 -n 10000000 --label clock >/tmp/clock.json 2>/tmp/clock.err
rc=$?
cat /tmp/clock.json /tmp/clock.err
[ "$rc" = 0 ] && [ "$(json_field reads </tmp/clock.json)" = 10000000 ]
check clockcheck $? "exit $rc, $(json_field backward_steps </tmp/clock.json) steps back, clocksource $(json_field clocksource </tmp/clock.json)"
# One thread's readings 1 s behind: the checker must see it and fail.
cxlvmm-clockcheck -c 0,1 -n 200000 --skew 1000000000 >/tmp/skew.json 2>/dev/null
rc=$?
[ "$rc" = 1 ] && [ "$(json_field backward_steps </tmp/skew.json)" -gt 0 ]
check clockcheck-skew $? "exit $rc, $(json_field backward_steps </tmp/skew.json) steps back with --skew 1 s"

[ "$fail" = 0 ] && exit 7
exit 1
