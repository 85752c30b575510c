# Runs inside the guest (6.12, 4 vCPUs, tests/e2e/four-devices.toml). The
# manifest exports ROUNDS.
#
# One loop per memdev, each pinned to a CPU of its own, all started at
# once: every round writes fresh random bytes to its device's label
# storage area and reads them back (`cxl write-labels` / `read-labels`:
# SET_LSA and GET_LSA mailbox commands, a few dozen doorbells each), so
# four vCPUs drive four devices' mailboxes concurrently. A command served
# by the wrong device, a lost or torn payload, or a stuck doorbell fails
# the round. A loop goes on past ROUNDS until every loop has done ROUNDS,
# so that one that starts late (a vCPU woken late in the nested rig) still
# runs alongside all the others. Each loop reports
#   MBOX-LOOP <memdev> cpu=<pinned> ran_on=<cpu seen> rounds=<ok>/<done> start=<s> end=<s>
# (uptime seconds) and the harness checks that all four passed, each on its
# own CPU, and that they overlapped in time. Exits 7 when every loop passed.
mkdir -p /tmp/mbox
memdevs=$(cxl list -M | sed -n 's/.*"memdev":"\(mem[0-9]*\)".*/\1/p' | tr '\n' ' ')
n=$(echo $memdevs | wc -w)
echo "MBOX-SETUP cpus=$(nproc) memdevs=$n ($memdevs) rounds=$ROUNDS"
[ "$(nproc)" -ge 4 ] && [ "$n" -ge 4 ] || { echo "MBOX-SETUP FAILED (need 4 CPUs and 4 memdevs)"; exit 1; }

cat >/tmp/mbox/loop.sh <<'LOOP'
m=$1 cpu=$2 rounds=$3 loops=$4
size=$(cat /sys/bus/cxl/devices/$m/label_storage_size)
ok=0
# Start together: the harness gate opens once every loop is forked.
while [ ! -e /tmp/mbox/go ]; do :; done
start=$(cut -d' ' -f1 /proc/uptime)
r=0
# At least `rounds` rounds, and on until every loop has done as many, so
# that a loop that starts late still runs alongside all the others.
while :; do
    r=$((r + 1))
    head -c "$size" /dev/urandom >/tmp/mbox/$m.in
    if cxl write-labels "$m" -i /tmp/mbox/$m.in 2>/tmp/mbox/$m.err &&
       cxl read-labels "$m" -o /tmp/mbox/$m.out 2>>/tmp/mbox/$m.err &&
       cmp -s /tmp/mbox/$m.in /tmp/mbox/$m.out; then
        ok=$((ok + 1))
    else
        echo "MBOX-ROUND $m round $r FAILED: $(tr '\n' ' ' </tmp/mbox/$m.err)"
    fi
    # (A sibling that died must not keep this loop going for ever.)
    [ "$r" -ge $((rounds * 10)) ] && break
    [ "$r" -ge "$rounds" ] || continue
    touch /tmp/mbox/done.$m
    [ "$(ls /tmp/mbox | grep -c '^done\.')" -ge "$loops" ] && break
done
end=$(cut -d' ' -f1 /proc/uptime)
# The CPU this (pinned) process is on: field 39 of /proc/self/stat.
ran_on=$(awk '{ print $39 }' /proc/self/stat)
echo "MBOX-LOOP $m cpu=$cpu ran_on=$ran_on rounds=$ok/$r start=$start end=$end size=$size"
[ "$ok" = "$r" ]
LOOP

rm -f /tmp/mbox/go /tmp/mbox/done.*
cpu=0 pids=
for m in $memdevs; do
    [ "$cpu" -lt 4 ] || break
    taskset "$(printf %x $((1 << cpu)))" sh /tmp/mbox/loop.sh "$m" "$cpu" "$ROUNDS" 4 &
    pids="$pids $!"
    cpu=$((cpu + 1))
done
touch /tmp/mbox/go
rc=0
for p in $pids; do wait "$p" || rc=1; done

# Afterwards each device still holds its own loop's last pattern.
for m in $memdevs; do
    cxl read-labels "$m" -o /tmp/mbox/$m.final 2>/dev/null
    if [ -e /tmp/mbox/$m.in ] && cmp -s /tmp/mbox/$m.in /tmp/mbox/$m.final; then
        echo "MBOX-FINAL $m ok"
    else
        echo "MBOX-FINAL $m FAILED"
        rc=1
    fi
done
[ "$rc" = 0 ] && exit 7
exit 1
