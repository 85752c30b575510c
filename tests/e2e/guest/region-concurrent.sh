# Runs inside the guest (6.12, 4 vCPUs, tests/e2e/four-devices.toml, booted
# with memhp_default_state=offline). The manifest exports ROUNDS and KIB.
#
# One loop per memdev, each pinned to a CPU of its own, all started at
# once; every round creates a 1-way RAM region over its device (the kernel
# commits the device's HDM decoder from that CPU), turns it into device-dax,
# writes and verifies KIB KiB of it with plain 8-byte accesses
# (cxlvmm-daxtest) and destroys it (the decoder is reset). Decoders of
# different regions are committed and reset from different vCPUs while the
# other vCPUs use their own regions, so each commit's mapping must be in
# place before its vCPU touches the region, and no other region's mapping
# may be disturbed. A loop goes on past ROUNDS until every loop has done
# ROUNDS, so all four run alongside each other. Each loop reports
#   REGION-LOOP <memdev> cpu=<pinned> ran_on=<cpu seen> rounds=<ok>/<done> start=<s> end=<s> decoder=<root>
# and the script exits 7 when every round of every loop passed. Before the
# loops, each device's root decoder is found (REGION-DECODER lines; one
# found by "trial" costs one more region created and destroyed).
mkdir -p /tmp/rc
memdevs=$(cxl list -M | sed -n 's/.*"memdev":"\(mem[0-9]*\)".*/\1/p' | tr '\n' ' ')
roots=$(cxl list -D -d root | sed -n 's/.*"decoder":"\(decoder[0-9.]*\)".*/\1/p' | tr '\n' ' ')
n=$(echo $memdevs | wc -w)
echo "REGION-SETUP cpus=$(nproc) memdevs=$n ($memdevs) root decoders ($roots) rounds=$ROUNDS KiB=$KIB"
[ "$(nproc)" -ge 4 ] && [ "$n" -ge 4 ] || { echo "REGION-SETUP FAILED (need 4 CPUs and 4 memdevs)"; exit 1; }

create() { # memdev root-decoder -> region name
    cxl create-region -m -t ram -d "$2" -w 1 -g 4096 "$1" 2>>/tmp/rc/$1.err |
        sed -n 's/.*"region":"\(region[0-9]*\)".*/\1/p' | head -n 1
}
# Each device's root decoder (its host bridge's window), before the loops
# start, so that no two loops ever use the same one: the one `cxl list`
# puts it under, or else the one create-region accepts it under.
for m in $memdevs; do
    dec=
    for d in $roots; do
        cxl list -M -d "$d" | grep -q "\"memdev\":\"$m\"" && dec="$dec $d"
    done
    set -- $dec
    how=listed
    if [ "$#" != 1 ]; then
        how=trial dec=
        for d in $roots; do
            grep -qw "$d" /tmp/rc/taken 2>/dev/null && continue
            region=$(create "$m" "$d")
            [ -n "$region" ] || continue
            cxl destroy-region -f "$region" >/dev/null 2>&1
            dec=$d
            break
        done
        set -- $dec
    fi
    echo "REGION-DECODER $m ${1:-none} $how"
    [ -n "${1:-}" ] || { echo "REGION-SETUP FAILED (no root decoder takes $m)"; exit 1; }
    echo "$m $1" >>/tmp/rc/taken
done

cat >/tmp/rc/loop.sh <<'LOOP'
m=$1 cpu=$2 rounds=$3 kib=$4 dec=$5 loops=$6
ok=0
while [ ! -e /tmp/rc/go ]; do :; done
start=$(cut -d' ' -f1 /proc/uptime)
r=0
# At least `rounds` rounds, and on until every loop has done as many, so
# that a loop that starts late still runs alongside all the others.
while :; do
    r=$((r + 1))
    region=$(cxl create-region -m -t ram -d "$dec" -w 1 -g 4096 "$m" 2>>/tmp/rc/$m.err |
        sed -n 's/.*"region":"\(region[0-9]*\)".*/\1/p' | head -n 1)
    if [ -z "$region" ]; then
        echo "REGION-ROUND $m round $r FAILED: no region ($(tail -n 1 /tmp/rc/$m.err))"
    else
        # The region's dax device: the one whose sysfs path runs through it.
        dax=
        for d in /sys/bus/dax/devices/dax*; do
            case $(readlink -f "$d") in */$region/*) dax=$(basename "$d") ;; esac
        done
        if daxctl reconfigure-device -m devdax -f "$dax" >/dev/null 2>>/tmp/rc/$m.err &&
           cxlvmm-daxtest "/dev/$dax" "$kib" 2 >/tmp/rc/$m.out 2>&1; then
            ok=$((ok + 1))
        else
            echo "REGION-ROUND $m round $r FAILED: $region $dax: $(tail -n 1 /tmp/rc/$m.out)"
        fi
        cxl destroy-region -f "$region" >/dev/null 2>>/tmp/rc/$m.err ||
            echo "REGION-ROUND $m round $r FAILED: destroying $region"
    fi
    # (A sibling that died must not keep this loop going for ever.)
    [ "$r" -ge $((rounds * 10)) ] && break
    [ "$r" -ge "$rounds" ] || continue
    touch /tmp/rc/done.$m
    [ "$(ls /tmp/rc | grep -c '^done\.')" -ge "$loops" ] && break
done
end=$(cut -d' ' -f1 /proc/uptime)
ran_on=$(awk '{ print $39 }' /proc/self/stat)
echo "REGION-LOOP $m cpu=$cpu ran_on=$ran_on rounds=$ok/$r start=$start end=$end decoder=$dec"
[ "$ok" = "$r" ]
LOOP

rm -f /tmp/rc/go /tmp/rc/done.*
cpu=0 pids=
for m in $memdevs; do
    [ "$cpu" -lt 4 ] || break
    dec=$(awk -v m="$m" '$1 == m { print $2 }' /tmp/rc/taken)
    taskset "$(printf %x $((1 << cpu)))" sh /tmp/rc/loop.sh "$m" "$cpu" "$ROUNDS" "$KIB" "$dec" 4 &
    pids="$pids $!"
    cpu=$((cpu + 1))
done
touch /tmp/rc/go
rc=0
for p in $pids; do wait "$p" || rc=1; done
# Every region is gone again.
left=$(cxl list -R | grep -c '"region"')
echo "REGION-AFTER regions left: $left"
[ "$left" = 0 ] || rc=1
[ "$rc" = 0 ] && exit 7
exit 1
