# Runs inside the guest. Writes the same 80 KiB (about what a many-device
# guest's dmesg dump is) to the console twice: from the CPU that takes the
# console UART's interrupt, then from the other CPU, with the soft-lockup
# watchdog at its most sensitive (watchdog_thresh=2: a CPU that schedules
# nothing for 4 s is reported). Shows why the runner dumps dmesg from the
# interrupt's CPU (docs/runner.md, "What a job does").
# Prints "FLOOD <where>: <seconds> s, <n> soft lockups" and
# "FLOOD-CHECK same-cpu: ok|FAILED"; exits 7 when the write from the
# interrupt's CPU caused no soft lockup.
echo 2 >/proc/sys/kernel/watchdog_thresh
dmesg -n 1
dmesg >/tmp/flood
while [ "$(wc -c </tmp/flood)" -lt 81920 ]; do cat /tmp/flood /tmp/flood >/tmp/flood.2; mv /tmp/flood.2 /tmp/flood; done
head -c 81920 /tmp/flood >/tmp/flood.80k
irq_cpu=
for irq in /proc/irq/*/ttyS0; do
    irq_cpu=$(cut -d, -f1 "${irq%/*}/effective_affinity_list" | cut -d- -f1)
done
[ -n "$irq_cpu" ] || { echo "FLOOD-CHECK same-cpu: FAILED (no ttyS0 interrupt in /proc/irq)"; exit 1; }
other_cpu=$(( (irq_cpu + 1) % $(nproc) ))
lockups() { dmesg | grep -c 'soft lockup'; }
report=
flood() { # label cpu
    before=$(lockups) t0=$(cut -d' ' -f1 /proc/uptime)
    taskset "$(printf %x $((1 << $2)))" cat /tmp/flood.80k
    t1=$(cut -d' ' -f1 /proc/uptime)
    # A report is printed when the watchdog fires next: give it one period.
    sleep 1
    n=$(( $(lockups) - before ))
    report="$report
FLOOD $1 (CPU $2, UART interrupt on CPU $irq_cpu): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, $n soft lockups"
    [ "$1" = same-cpu ] && same_cpu_lockups=$n
}
flood same-cpu "$irq_cpu"
flood other-cpu "$other_cpu"
echo "$report"
if [ "$same_cpu_lockups" = 0 ]; then
    echo "FLOOD-CHECK same-cpu: ok"
    exit 7
fi
echo "FLOOD-CHECK same-cpu: FAILED"
exit 1
