# Runs inside the guest for scripts/bench-timed (prepended: STEPS=N
# LOADS=N, or PART=loaded LOADS=N DELAYS=NS,...). A region on the timed
# device as devdax. PART=loaded: the chaser alone, then beside one loader
# with exponential delays of each mean in DELAYS (small buffers: with the
# bench's slow media every word faulted in costs over a ms of guest time).
# Otherwise, for each step the
# guest prints "BENCH-MARK <step>", the host sets that step's parameters
# through the control socket and answers with an injected event, whose
# interrupt the guest waits for; then one per-load chase (median) and one
# chunked chase (mean: total time / loads, as real tools report).
json_field() { grep -o "\"$1\":\"\{0,1\}[^\",}]*" | head -1 | sed 's/^[^:]*://; s/"//g'; }
memdev=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); print a[2]; exit }')
cxl create-region -m -t ram -d decoder0.0 -w 1 -g 4096 "$memdev" >/dev/null 2>&1 || exit 3
dax=$(daxctl list | json_field chardev)
daxctl reconfigure-device --mode=devdax --force "$dax" >/dev/null 2>&1
[ -c "/dev/$dax" ] || exit 4
if [ "${PART:-}" = loaded ]; then
    common="-s 16K -n 64 -l $LOADS -w 100 --per-load --devdax /dev/$dax"
    cxlvmm-lat loaded -k 0 -d 0 -c 0 $common --label loaded-idle || exit 6
    cxlvmm-lat loaded -k 1 -d "$DELAYS" --exp-delay -b 16K -c 0,1 $common --label loaded || exit 6
    echo "BENCH-MARK end"
    exit 7
fi
pcidev=$(basename "$(readlink -f /sys/bus/cxl/devices/$memdev/..)")
irqs() { awk -v d="$pcidev" 'index($0, d) { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { print s + 0 }' /proc/interrupts; }
step=0
while [ "$step" -lt "$STEPS" ]; do
    before=$(irqs)
    echo "BENCH-MARK $step"
    n=0
    while [ "$(irqs)" -le "$before" ]; do n=$((n + 1)); [ "$n" -gt 20000 ] && exit 5; done
    # A halt before the chases: the clock forgives the debt of the time
    # between steps (the guest's polling above, the host's ctl clients),
    # which would otherwise be paid back from the first chase's loads and
    # pull its median below the model; and the host's last ctl client
    # exits while this vCPU idles, not during a chase.
    sleep 0.1
    cxlvmm-lat chase -s 4M -n 4096 -l "$LOADS" -w 100 --per-load -c 0 --devdax "/dev/$dax" --label "step$step-per-load"
    cxlvmm-lat chase -s 4M -n 4096 -l "$LOADS" -w 100 --chunk 100 -c 0 --devdax "/dev/$dax" --label "step$step-chunked"
    step=$((step + 1))
done
echo "BENCH-MARK end"
exit 7
