# Runs inside the guest. Writes the same 80 KiB (about what a many-device
# guest's dmesg dump is) to the console three times, with the soft-lockup
# watchdog at its most sensitive (watchdog_thresh=2: a CPU that schedules
# nothing for 4 s is reported): from the CPU that takes the console UART's
# interrupt 4 KiB per write (as the runner dumps dmesg), from that CPU in
# one write, and from the other CPU 4 KiB per write. Shows why the runner
# dumps dmesg the way it does (docs/runner.md, "What a job does").
# Prints "FLOOD <how> (...): <seconds> s, <n> soft lockups" and
# "FLOOD-CHECK same-cpu-4k: ok|FAILED"; exits 7 when the runner's way
# caused no soft lockup.
echo 2 >/proc/sys/kernel/watchdog_thresh
dmesg -n 1
dmesg >/tmp/flood
while [ "$(wc -c </tmp/flood)" -lt 81920 ]; do cat /tmp/flood /tmp/flood >/tmp/flood.2; mv /tmp/flood.2 /tmp/flood; done
head -c 81920 /tmp/flood >/tmp/flood.80k
irq_cpu=
for irq in /proc/irq/*/ttyS0; do
    irq_cpu=$(cut -d, -f1 "${irq%/*}/effective_affinity_list" | cut -d- -f1)
done
[ -n "$irq_cpu" ] || { echo "FLOOD-CHECK same-cpu-4k: FAILED (no ttyS0 interrupt in /proc/irq)"; exit 1; }
other_cpu=$(( (irq_cpu + 1) % $(nproc) ))
lockups() { dmesg | grep -c 'soft lockup'; }
report=
flood() { # label cpu block-size
    before=$(lockups) t0=$(cut -d' ' -f1 /proc/uptime)
    taskset "$(printf %x $((1 << $2)))" dd bs="$3" </tmp/flood.80k 2>/dev/null
    t1=$(cut -d' ' -f1 /proc/uptime)
    # A report is printed when the watchdog fires next: give it one period.
    sleep 1
    n=$(( $(lockups) - before ))
    report="$report
FLOOD $1 (CPU $2, UART interrupt on CPU $irq_cpu): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, $n soft lockups"
    [ "$1" = same-cpu-4k ] && same_cpu_lockups=$n
}
flood same-cpu-4k "$irq_cpu" 4096
flood same-cpu-80k "$irq_cpu" 81920
flood other-cpu-4k "$other_cpu" 4096
echo "$report"
if [ "$same_cpu_lockups" = 0 ]; then
    echo "FLOOD-CHECK same-cpu-4k: ok"
    exit 7
fi
echo "FLOOD-CHECK same-cpu-4k: FAILED"
exit 1
