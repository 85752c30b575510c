# Runs inside the guest for scripts/bench-accel (6.12,
# examples/accelerators.toml): finds the three accelerators (the two below
# one switch, the one on its own root port, as tests/e2e/guest/accel.sh
# does), makes a 1-way RAM region on mem0 and leaves it offline (only the
# accelerator touches it), and prints cxlvmm-accel's bench JSON for gpu0's
# paths on one line after "ACCEL-BENCH-JSON ". Exits 7 if it got them.
accels=
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d"/vendor)" = 0x1af4 ] && [ "$(cat "$d"/device)" = 0x10f0 ] &&
        [ "$(cat "$d"/class)" = 0x120000 ] && accels="$accels ${d##*/}"
done
set -- $accels
[ $# = 3 ] || { echo "bench-accel: found accelerators:$accels, want 3"; exit 1; }
up() { basename "$(dirname "$(dirname "$(readlink -f /sys/bus/pci/devices/"$1")")")"; }
a=$1 b=$2 c=$3
if [ "$(up "$a")" != "$(up "$b")" ]; then
    if [ "$(up "$a")" = "$(up "$c")" ]; then b=$3 c=$2; else a=$2 b=$3 c=$1; fi
fi
memdev=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, x, ":"); print x[2]; exit }')
region=$(cxl create-region -m -t ram -d decoder0.0 -w 1 -g 4096 "$memdev" 2>/dev/null |
    grep -o '"region":"[^"]*"' | head -1 | cut -d'"' -f4)
hpa=$(cat /sys/bus/cxl/devices/"$region"/resource 2>/dev/null)
paths="h2d d2h peer:$b peer:$c"
[ -n "$hpa" ] && [ "$hpa" != 0 ] && paths="$paths cxl:$hpa"
echo "bench-accel: $a, peers $b (below the switch) and $c (root complex), region $region at $hpa"
cxlvmm-accel -d "$a" bench $paths >/tmp/bench.json || { echo "bench-accel: cxlvmm-accel bench failed: $(cat /tmp/bench.json)"; exit 1; }
echo "ACCEL-BENCH-JSON $(tr -d '\n' </tmp/bench.json)"
exit 7
