# Runs inside the guest (6.12, examples/accelerators.toml: gpu0 and gpu1
# below switch sw0, gpu2 on another root port, type-3 mem0 below sw0).
# Finds the three accelerators by their PCI IDs and drives them with
# cxlvmm-accel: DMA host RAM -> VRAM -> host RAM checked byte for byte,
# kernels checked bit-exact on the CPU, peer-to-peer VRAM copies, DMA to and
# from a CXL RAM region (kept offline, so only the accelerator touches it),
# an error status for a bad descriptor, INTx through uio_pci_generic, and
# the DMA bandwidth/latency figures of every path ("ACCEL-BENCH" lines),
# and DMA timed by the guest's own clock on the virtual clock. Prints the tool's JSON
# and "ACCEL-CHECK <name>: ok|FAILED (...)" lines. Exits 7 if all pass.
fail=0
check() { if [ "$2" = 0 ]; then echo "ACCEL-CHECK $1: ok ($3)"; else echo "ACCEL-CHECK $1: FAILED ($3)"; fail=1; fi; }
json_field() { grep -o "\"$1\":\"\{0,1\}[^\",}]*" | head -1 | sed 's/^[^:]*://; s/"//g'; }
# run NAME ARGS...: cxlvmm-accel ARGS, its JSON in /tmp/NAME.json, and
# on the console; the exit status is the tool's.
run() {
    name=$1; shift
    cxlvmm-accel "$@" >/tmp/"$name".json 2>/tmp/"$name".err
    rc=$?
    sed "s/^/ACCEL-JSON $name: /" /tmp/"$name".json; sed "s/^/ACCEL-STDERR $name: /" /tmp/"$name".err
    return $rc
}
ok() { grep -q '"ok":true' /tmp/"$1".json; }

accels=
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d"/vendor)" = 0x1af4 ] && [ "$(cat "$d"/device)" = 0x10f0 ] &&
        [ "$(cat "$d"/class)" = 0x120000 ] && accels="$accels ${d##*/}"
done
set -- $accels
[ $# = 3 ]; check enumerate $? "1af4:10f0 class 120000 at:$accels"
# The two below the same switch share their grandparent (the switch's
# upstream port); the third hangs off a root port of its own.
up() { basename "$(dirname "$(dirname "$(readlink -f /sys/bus/pci/devices/"$1")")")"; }
a=$1 b=$2 c=$3
if [ "$(up "$a")" != "$(up "$b")" ]; then
    if [ "$(up "$a")" = "$(up "$c")" ]; then b=$3 c=$2; else a=$2 b=$3 c=$1; fi
fi
[ "$(up "$a")" = "$(up "$b")" ] && [ "$(up "$a")" != "$(up "$c")" ]
check topology $? "$a and $b below one switch, $c on its own root port"

run info -d "$a" info && grep -q '"id_ok":true' /tmp/info.json &&
    [ "$(json_field queues </tmp/info.json)" = 4 ] && [ "$(json_field vram_size </tmp/info.json)" = 67108864 ]
check info $? "queues $(json_field queues </tmp/info.json), vram $(json_field vram_size </tmp/info.json) at $(json_field vram_bus </tmp/info.json)"

# Host RAM -> VRAM -> host RAM: the same bytes come back.
run h2d -d "$a" copy host vram 1048576 11 && ok h2d
check copy-h2d $? "$(json_field device_gbps </tmp/h2d.json) GB/s, crc32c $(json_field crc32c </tmp/h2d.json)"
run d2h -d "$a" copy vram host 1048576 keep && ok d2h &&
    [ "$(json_field crc32c </tmp/d2h.json)" = "$(json_field crc32c </tmp/h2d.json)" ]
check copy-d2h $? "crc32c $(json_field crc32c </tmp/d2h.json) after the round trip"

run saxpy -d "$a" saxpy 65536 2.5 && ok saxpy
check saxpy $? "$(json_field mismatches </tmp/saxpy.json) mismatches, device $(json_field device_ps </tmp/saxpy.json) ps"
run gemm -d "$a" gemm 64 48 32 && ok gemm
check gemm $? "$(json_field mismatches </tmp/gemm.json) mismatches, device $(json_field device_ps </tmp/gemm.json) ps"
run checksum -d "$a" checksum 65536 && ok checksum
check checksum $? "crc32c $(json_field crc32c </tmp/checksum.json) = cpu $(json_field cpu_crc32c </tmp/checksum.json)"

run p2p-switch -d "$a" p2p "$b" 1048576 && ok p2p-switch
check p2p-switch $? "$a -> $b $(json_field device_gbps </tmp/p2p-switch.json) GB/s"
run p2p-rc -d "$a" p2p "$c" 1048576 && ok p2p-rc
check p2p-rc $? "$a -> $c $(json_field device_gbps </tmp/p2p-rc.json) GB/s"
# VRAM to VRAM within one device: never leaves it.
run local -d "$a" copy vram vram+4194304 1048576 13 && ok local
check copy-local $? "$a VRAM -> own VRAM $(json_field device_gbps </tmp/local.json) GB/s"
# The path order, in the device's time (TIMESTAMPs the guest reads):
# local, then below the switch, then through the root complex.
lo=$(json_field device_ps </tmp/local.json) sw=$(json_field device_ps </tmp/p2p-switch.json) rc=$(json_field device_ps </tmp/p2p-rc.json)
[ -n "$lo" ] && [ -n "$sw" ] && [ -n "$rc" ] && [ "$lo" -lt "$sw" ] && [ "$sw" -lt "$rc" ]
check path-order $? "1 MiB: local $lo ps < below the switch $sw ps < through the root complex $rc ps"

run bad -d "$a" bad && ok bad
check bad-descriptor $? "status $(json_field status </tmp/bad.json), err_code $(json_field err_code </tmp/bad.json)"

# A CXL RAM region on mem0, left offline: DMA to and from it.
memdev=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); print a[2]; exit }')
cxl create-region -m -t ram -d decoder0.0 -w 1 -g 4096 "$memdev" >/tmp/region.json 2>/tmp/region.err
region=$(json_field region </tmp/region.json)
hpa=$(cat /sys/bus/cxl/devices/"$region"/resource 2>/dev/null)
[ -n "$hpa" ] && [ "$hpa" != 0 ]; check cxl-region $? "$region on $memdev at $hpa"
if [ -n "$hpa" ]; then
    run to-cxl -d "$a" copy host "phys:$hpa" 1048576 23 && ok to-cxl &&
        run from-cxl -d "$c" copy "phys:$hpa" host 1048576 23 && ok from-cxl
    check cxl-round-trip $? "host -> CXL by $a, CXL -> host by $c: $(json_field mismatches </tmp/from-cxl.json) mismatches"
    run vram-cxl -d "$b" copy vram "phys:$hpa" 65536 31 && ok vram-cxl &&
        run cxl-host -d "$b" copy "phys:$hpa" host 65536 31 && ok cxl-host
    check cxl-p2p $? "$b VRAM -> CXL -> host: $(json_field mismatches </tmp/cxl-host.json) mismatches"
fi

# One chain through every kind of path: host -> VRAM of $a -> VRAM of $b
# (below the switch) -> VRAM of $c (through the root complex) -> the CXL
# region -> host, each hop a DMA by the device holding the data; the bytes
# that come back must have the checksum of those that left.
if [ -n "$hpa" ]; then
    run chain-1 -d "$a" copy host vram 1048576 29 && ok chain-1 &&
        run chain-2 -d "$a" copy vram "peer:$b" 1048576 keep && ok chain-2 &&
        run chain-3 -d "$b" copy vram "peer:$c" 1048576 keep && ok chain-3 &&
        run chain-4 -d "$c" copy vram "phys:$hpa" 1048576 keep && ok chain-4 &&
        run chain-5 -d "$c" copy "phys:$hpa" host 1048576 keep && ok chain-5
    rc=$?
    sums="$(json_field crc32c </tmp/chain-1.json) $(json_field crc32c </tmp/chain-2.json) $(json_field crc32c </tmp/chain-3.json) $(json_field crc32c </tmp/chain-5.json)"
    set -- $sums
    [ "$rc" = 0 ] && [ $# = 4 ] && [ "$1" = "$2" ] && [ "$1" = "$3" ] && [ "$1" = "$4" ]
    check chain $? "host -> $a -> $b -> $c -> CXL -> host: crc32c $sums"
else
    check chain 1 "no CXL region"
fi

# INTx: the tool binds uio_pci_generic and waits for the interrupt. The
# copy goes to the CXL region below the same switch, which the model makes
# slow (docs/fabric.md), so it is still running when the tool starts
# waiting. The kernel's own count of the device's IOAPIC line is what is
# checked (uio_pci_generic's handler takes it only if the function's Status
# shows its INTx pending, and then masks it with Interrupt Disable); the
# tool's own "irqs" count is printed too.
if [ -n "$hpa" ]; then
    run irq -d "$b" --irq copy host "phys:$hpa" 4194304 41 && ok irq
    rc=$?
    irq=$(cat /sys/bus/pci/devices/"$b"/irq)
    n=$(awk -v n="$irq:" '$1 == n && /uio_pci_generic/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { print s + 0 }' /proc/interrupts)
    echo "ACCEL-INTX $b irq=$irq command+status=$(od -An -tx4 -j4 -N4 /sys/bus/pci/devices/"$b"/config | tr -d ' ')" \
        "driver=$(basename "$(readlink /sys/bus/pci/devices/"$b"/driver)")"
    grep "^ *$irq:" /proc/interrupts | sed 's/^/ACCEL-INTX /'
    [ "$rc" = 0 ] && [ "$n" -gt 0 ]
    check intx $? "IOAPIC line $irq: $n interrupts taken by uio_pci_generic (tool counted $(json_field irqs </tmp/irq.json)), device $(json_field device_ps </tmp/irq.json) ps"
else
    check intx 1 "no CXL region to copy to"
fi

# DMA bandwidth and latency of every path: COPYs of 64 B, 4 KiB and 1 MiB,
# each checked, with the device's own time (TIMESTAMPs around the COPY) and
# the guest's (doorbell to fence seen).
bench_ok=0 points=0
point() { # path len src dst
    run "bench-$1-$2" -d "$a" copy "$3" "$4" "$2" "$2" && ok "bench-$1-$2" || bench_ok=1
    f=/tmp/bench-$1-$2.json
    echo "ACCEL-BENCH $1 bytes=$2 device_ps=$(json_field device_ps <"$f") device_gbps=$(json_field device_gbps <"$f") guest_ns=$(json_field guest_ns <"$f")"
    points=$((points + 1))
}
for len in 64 4096 1048576; do
    point h2d "$len" host vram
    point d2h "$len" vram host
    point p2p-switch "$len" vram "peer:$b"
    point p2p-rc "$len" vram "peer:$c"
    # Written, then read back and checked against the same pattern.
    if [ -n "$hpa" ]; then
        point cxl-write "$len" vram "phys:$hpa"
        point cxl-read "$len" "phys:$hpa" vram
    fi
done
check bench $bench_ok "$points points"

# Guest time (ACCEL_GUEST_TIME=1: the job runs cxlvmm with
# --virtual-clock, by-name case accel-virtual): the guest's own
# clock, doorbell to fence, over a batch of COPYs of 1 MiB rung at
# once, against the device's time for the same batch (the model's). To
# and from the CXL region the model is slower than the rig's real copy, so
# within 5 % is asked; host -> VRAM the model is 100x faster than the
# rig's copy (what the clock hides), and the guest must see at least two
# thirds of the model's bandwidth (on host time it sees about 1 %; the
# rest is the VM exits around the batch, docs/performance.md).
# Each time is the best of three batches.
batch() { # NAME FIELD: the FIELD of every point of /tmp/NAME.json, one per line
    grep -o "\"$2\":[0-9]*" /tmp/"$1".json | cut -d: -f2
}
within() { # GUEST_NS DEVICE_PS LOW HIGH: LOW <= guest/device <= HIGH
    awk -v g="$1" -v d="$2" -v lo="$3" -v hi="$4" 'BEGIN { r = g * 1000 / d; exit !(d > 0 && r >= lo && r <= hi) }'
}
ratio() { awk -v g="$1" -v d="$2" 'BEGIN { if (d > 0) printf "%.4f", g * 1000 / d; else print "-" }'; }
if [ "${ACCEL_GUEST_TIME:-0}" != 1 ]; then
    :
elif [ -n "$hpa" ]; then
    # 128 copies: 512 gave the same ratios to the fourth decimal, but its
    # batches, three each way at the device's 0.28 GB/s, took about 70 of
    # the job's 131 s in the rig (docs/performance.md, "accelerator DMA").
    run guest-time-cxl -d "$a" bench --size 1048576 --batch-mib 128 "cxl:$hpa"
    set -- $(batch guest-time-cxl batch_guest_ns) $(batch guest-time-cxl batch_device_ps)
    [ $# = 4 ] && within "$1" "$3" 0.95 1.05 && within "$2" "$4" 0.95 1.05
    check guest-time-cxl $? "guest/device: VRAM -> CXL $(ratio "$1" "$3"), CXL -> VRAM $(ratio "$2" "$4") ($(batch guest-time-cxl batch | head -n1) x 1 MiB; guest ns $1 $2, device ps $3 $4)"
else
    check guest-time-cxl 1 "no CXL region"
fi
# Peer to peer, 512 x 1 MiB from gpu0's VRAM (with 128 the switch-local
# batch showed a fixed ~1.25 ms beside its 4.69 ms and the ratio failed,
# docs/performance.md, "accelerator DMA"): below the switch at the x16
# link's rate, through the root complex at its 12 GB/s cap. The guest's
# own clock must order them and see the model's ratio within 5 %.
if [ "${ACCEL_GUEST_TIME:-0}" = 1 ]; then
    run guest-time-p2p -d "$a" bench --size 1048576 "peer:$b" "peer:$c"
    set -- $(batch guest-time-p2p batch_guest_ns) $(batch guest-time-p2p batch_device_ps)
    [ $# = 4 ] && [ "$1" -lt "$2" ] &&
        awk -v gs="$1" -v gr="$2" -v ds="$3" -v dr="$4" 'BEGIN { q = (gr / gs) / (dr / ds); exit !(q >= 0.95 && q <= 1.05) }'
    check guest-time-p2p $? "root complex / switch-local: guest $(ratio "$2" "$(($1 * 1000))"), device $(ratio "$4" "$(($3 * 1000))") ($(batch guest-time-p2p batch | head -n1) x 1 MiB; guest ns $1 $2, device ps $3 $4)"
fi
if [ "${ACCEL_GUEST_TIME:-0}" = 1 ]; then
    run guest-time-h2d -d "$a" bench --size 4194304 h2d
    set -- $(batch guest-time-h2d batch_guest_ns) $(batch guest-time-h2d batch_device_ps)
    [ $# = 2 ] && within "$1" "$2" 0.99 1.5
    check guest-time-h2d $? "guest/device $(ratio "$1" "$2") for 128 x 4 MiB host -> VRAM (guest ns $1, device ps $2)"
fi

[ "$fail" = 0 ] && exit 7
exit 1
