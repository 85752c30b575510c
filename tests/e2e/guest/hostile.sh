# Runs inside the guest (6.12, 2 vCPUs, tests/e2e/hostile.toml: a root
# port, a switch with two downstream ports, a persistent type-3 and a
# volatile one; `iomem=relaxed` so that /dev/mem reaches device
# registers). The manifest exports RANDOM_OPS, RACE_ROUNDS and PORT_OPS.
#
# A hostile driver: with cxl_pci unbound from a type-3 function, it drives
# the function's registers directly (busybox devmem, sysfs config) the way no
# correct driver would, and checks each answer is what hardware gives:
#   mailbox   (CXL 3.1 8.2.8.4): unknown opcodes, payload lengths beyond the
#             payload area, short payloads, the doorbell rung twice, then
#             RANDOM_OPS random opcodes with random lengths and payloads;
#             then both vCPUs ring the same doorbell at once, RACE_ROUNDS
#             commands each;
#   HDM       (8.2.4.20): decoders committed over guest RAM, above every
#             window, with size 0, with a reserved interleave-ways
#             encoding, overlapping a committed one; a locked decoder's
#             registers written;
#   DOE       (PCIe 6.0 6.30): garbage objects and a length beyond any
#             object, then an abort and a valid discovery request;
#   config    random dwords over the whole config space (BARs included),
#             then the saved space written back.
# Then, with pcieport unbound from each CXL root port and switch port in
# turn, the same for the port: random values into its header (command,
# BAR, bus numbers, windows, bridge control), into every capability and
# over its whole config space, the saved space written back; PORT_OPS
# random writes into its component registers (BAR0: capability headers,
# RAS, link, HDM decoders committed at random), each undone.
# Then cxl_pci is bound again (it probes through the same mailbox) and the
# memdevs must enumerate with the sizes and serials they had; a RAM pattern
# written before must be intact, and so must the persistent device's label
# storage area, written with random bytes at the start. The harness boots a
# second guest over the same backing files (hostile-reboot.sh) with what
# the HOSTILE-STATE lines say. One line per check:
#   HOSTILE <check> ok | HOSTILE <check> FAILED <why>
# Exits 7 when every check passed. The harness checks the VMM's log for
# the slots it refused.
fail=0
say() { echo "HOSTILE $*"; }
check() { # name, status (0 = pass), detail
    if [ "$2" = 0 ]; then say "$1 ok${3:+ ($3)}"; else say "$1 FAILED ${3:-}"; fail=1; fi
}
hex() { printf '0x%x' "$1"; }
rd32() { echo $(($(devmem "$(hex "$1")" 32))); }
wr32() { devmem "$(hex "$1")" 32 "$(hex "$2")"; }
rnd32() { echo $((($(od -An -tu4 -N4 /dev/urandom)) & 0xffffffff)); }

dev=
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/class")" = 0x050210 ] && { dev=$d; break; }
done
[ -n "$dev" ] || { say "setup FAILED no CXL memory device"; exit 1; }
bdf=${dev##*/}
cfg=$dev/config
cfg_rd32() { echo $((0x$(od -An -tx4 -j "$1" -N4 "$cfg" | tr -d ' '))); }
cfg_wr32() { # offset value: one aligned 4-byte write
    v=$2
    printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((v & 255)) $((v >> 8 & 255)) $((v >> 16 & 255)) $((v >> 24 & 255)))" |
        dd of="$cfg" bs=4 seek=$(($1 / 4)) count=1 conv=notrunc 2>/dev/null
}
bar() { echo $(($(sed -n "$(($1 + 1))p" "$dev/resource" | cut -d' ' -f1))); }
# The CXL fixed memory windows (root decoders); the first is the one
# decoders are committed in, and `past` lies above all of them.
windows= past=0
for d in /sys/bus/cxl/devices/decoder0.*; do
    st=$(cat "$d/start") sz=$(cat "$d/size")
    windows="$windows $st+$sz"
    [ $((st + sz)) -gt $past ] && past=$((st + sz))
done
window=$(cat /sys/bus/cxl/devices/decoder0.0/start)
# What the driver learnt from the device (IDENTIFY and partition info
# through the mailbox): the same after everything below.
memdev_summary() { # serial, ram and pmem size of every memdev, by serial
    for d in /sys/bus/cxl/devices/mem*; do
        [ -e "$d/serial" ] || continue
        echo "serial=$(($(cat "$d/serial"))) ram=$(($(cat "$d/ram/size"))) pmem=$(($(cat "$d/pmem/size")))"
    done | sort | tr '\n' ' '
}
memdevs() { cxl list -M | sed -n 's/.*"memdev":"\(mem[0-9]*\)".*/\1/p'; }
# Every type-3 function's memdev, however long the drivers take to probe.
functions=$(grep -l 0x050210 /sys/bus/pci/devices/*/class | wc -l)
i=0
while [ $i -lt 100 ] && [ "$(memdevs | wc -l)" -lt "$functions" ]; do
    sleep 0.1
    i=$((i + 1))
done
summary_before=$(memdev_summary)
say "setup $bdf windows=$windows memdev $summary_before"

# The persistent device's label storage area, filled with random bytes
# now; the same bytes must be there at the end and in the second boot.
# A CXL nvdimm's labels belong to the nvdimm subsystem: through its nmem
# with ndctl (the only one here), as cxl-enumerate.sh does.
pm=
for m in $(memdevs); do
    [ $(($(cat /sys/bus/cxl/devices/$m/pmem/size))) -gt 0 ] && { pm=$m; break; }
done
[ -n "$pm" ] || { say "setup FAILED no persistent memdev"; exit 1; }
pm_serial=$(($(cat /sys/bus/cxl/devices/$pm/serial)))
lsa_size=$(cat /sys/bus/cxl/devices/$pm/label_storage_size)
label_tool() {
    n=$(ls -d /sys/bus/nd/devices/nmem* 2>/dev/null)
    if [ "$(echo $n | wc -w)" = 1 ]; then echo "ndctl ${n##*/}"; else echo "cxl $pm"; fi
}
lsa_md5() { # the label area's md5, or nothing when it cannot be read
    set -- $(label_tool)
    "$1" read-labels "$2" -o /tmp/lsa-out 2>/dev/null && md5sum </tmp/lsa-out | cut -d' ' -f1
}
head -c "$lsa_size" /dev/urandom >/tmp/lsa-in
lsa_want=$(md5sum </tmp/lsa-in | cut -d' ' -f1)
set -- $(label_tool)
"$1" write-labels "$2" -i /tmp/lsa-in 2>/dev/null
lsa=$(lsa_md5)
check lsa-written $([ "$lsa" = "$lsa_want" ]; echo $?) "$pm serial $pm_serial, $lsa_size bytes via $* md5 $lsa"

# A pattern in guest RAM that no decoder may come to shadow.
head -c 4194304 /dev/urandom >/tmp/ram-pattern
ram_sum=$(md5sum </tmp/ram-pattern)

echo "$bdf" >/sys/bus/pci/drivers/cxl_pci/unbind
# Memory decode on (unbinding may leave it as the driver left it).
cfg_wr32 4 $(($(cfg_rd32 4) & 0xffff | 0x6))
bar0=$(bar 0) bar2=$(bar 2)

# ---- mailbox: the device capability array (8.2.8.2) finds it.
mb=
n=$(($(rd32 $((bar2 + 4))) & 0xffff))
i=0
while [ $i -lt $n ]; do
    h=$((bar2 + 0x10 + 0x10 * i))
    [ $(($(rd32 $h) & 0xffff)) = 2 ] && mb=$((bar2 + $(rd32 $((h + 4)))))
    i=$((i + 1))
done
[ -n "$mb" ] || { say "mailbox FAILED no primary mailbox capability"; exit 1; }
# opcode, length, [payload dwords]: rings the doorbell; prints the return
# code, or "stuck" when the doorbell never clears.
mbox() {
    op=$1 len=$2
    shift 2
    at=$((mb + 0x20))
    for w in "$@"; do wr32 $at "$w"; at=$((at + 4)); done
    wr32 $((mb + 8)) $((op | (len & 0xffff) << 16))
    wr32 $((mb + 0xc)) $((len >> 16))
    wr32 $((mb + 4)) 1
    tries=0
    while [ $(($(rd32 $((mb + 4))) & 1)) = 1 ]; do
        tries=$((tries + 1))
        [ $tries -lt 1000 ] || { echo stuck; return; }
    done
    echo $(($(rd32 $((mb + 0x14))) & 0xffff))
}
rc=$(mbox 0x4000 0)
check mbox-identify $([ "$rc" = 0 ]; echo $?) "rc=$rc"
rc=$(mbox 0xffff 0)
check mbox-unknown-opcode $([ "$rc" = 3 ]; echo $?) "rc=$rc, want 3 Unsupported"
payload=$(($(rd32 $mb) & 0x1f))
for len in $((1 << payload + 1)) 0x1fffff; do
    rc=$(mbox 0x4102 $len)
    check "mbox-length-$(hex $len)" $([ "$rc" = 22 ]; echo $?) "rc=$rc, want 0x16 Invalid Payload Length"
done
# GET_LSA with a 4-byte payload (it needs 8) and one reading far past the LSA.
rc=$(mbox 0x4102 4 0)
check mbox-short-payload $([ "$rc" != 0 ] && [ "$rc" != stuck ]; echo $?) "rc=$rc"
rc=$(mbox 0x4102 8 0x7ffff000 0x100)
check mbox-lsa-past-end $([ "$rc" != 0 ] && [ "$rc" != stuck ]; echo $?) "rc=$rc"
# The doorbell rung twice: two commands, both answered.
wr32 $((mb + 8)) 0x4000
wr32 $((mb + 4)) 1
rc=$(mbox 0x4000 0)
check mbox-doorbell-twice $([ "$rc" = 0 ]; echo $?) "rc=$rc"
stuck=0 codes=
i=0
while [ $i -lt "$RANDOM_OPS" ]; do
    # shellcheck disable=SC2046 # five random words, one read
    set -- $(od -An -tu4 -N20 /dev/urandom)
    r=$1
    shift
    op=$((r & 0xffff))
    # Not SET_LSA: the label area must keep the bytes written above
    # (whatever else a random command does, it is answered).
    [ $op = $((0x4103)) ] && op=$((0x4102))
    rc=$(mbox $op $((r >> 16 & 0x1fff)) "$@")
    [ "$rc" = stuck ] && stuck=$((stuck + 1))
    codes="$codes $rc"
    i=$((i + 1))
done
check mbox-random-$RANDOM_OPS $([ $stuck = 0 ]; echo $?) \
    "return codes:$(echo $codes | tr ' ' '\n' | sort -n | uniq -c | tr -s ' \n' ' ')"

# ---- the doorbell raced: both vCPUs drive the same mailbox at once, each
# with its own command (IDENTIFY, no payload; GET_LSA, 8 bytes), as two
# drivers that do not serialise would. A doorbell write lands between the
# other CPU's command and doorbell writes: a command may run with the other
# one's length (then Invalid Payload Length, 0x16), GET_LSA may take the
# other command's output for its offset and length (Invalid Input, 2), a
# command may run twice; whatever runs must be answered, and the doorbell
# must clear. Valid answers: 0, 2 and 0x16. Each loop is pinned to its CPU
# before the gate opens.
rm -f /tmp/race.go /tmp/race.*
race_loop() { # cpu opcode length payload...
    cpu=$1
    shift
    while [ ! -e /tmp/race.go ]; do :; done
    start=$(cut -d' ' -f1 /proc/uptime)
    j=0 codes=
    while [ $j -lt "$RACE_ROUNDS" ]; do
        codes="$codes $(mbox "$@")"
        j=$((j + 1))
    done
    end=$(cut -d' ' -f1 /proc/uptime)
    echo "$(awk '{ print $39 }' /proc/self/stat) $start $end$codes" >/tmp/race.$cpu
}
race_loop 0 0x4000 0 &
p0=$!
race_loop 1 0x4102 8 0 0x40 &
p1=$!
taskset -p 1 $p0 >/dev/null && taskset -p 2 $p1 >/dev/null
touch /tmp/race.go
wait $p0 $p1
for cpu in 0 1; do
    # shellcheck disable=SC2046 # ran_on start end codes...
    set -- $(cat /tmp/race.$cpu 2>/dev/null)
    ran_on=${1:-none} start=${2:-0} end=${3:-0}
    if [ $# -ge 3 ]; then shift 3; else set --; fi
    n=$# bad=0
    for c in "$@"; do case $c in 0 | 2 | 22) ;; *) bad=$((bad + 1)) ;; esac; done
    eval "start$cpu=$start end$cpu=$end"
    check "mbox-race-cpu$cpu" $([ "$ran_on" = $cpu ] && [ "$n" = "$RACE_ROUNDS" ] && [ $bad = 0 ]; echo $?) \
        "ran on cpu $ran_on, $n commands, $bad bad answers, codes:$(echo "$@" | tr ' ' '\n' | sort -n | uniq -c | tr -s ' \n' ' ')"
done
# The two loops ran at the same time, and the mailbox still works.
overlap=$(awk -v a="$start0" -v b="$start1" -v c="$end0" -v d="$end1" \
    'BEGIN { s = a > b ? a : b; e = c < d ? c : d; printf "%.2f", e - s }')
rc=$(mbox 0x4000 0)
check mbox-race-after $([ "$rc" = 0 ] && awk -v o="$overlap" 'BEGIN { exit !(o > 0) }'; echo $?) \
    "loops overlapped for $overlap s; IDENTIFY then rc=$rc"

# ---- HDM decoders: the CXL.cache/mem capability array at 4 KiB (8.2.4).
cm=$((bar0 + 0x1000))
hdm=
n=$(($(rd32 $cm) >> 24))
i=1
while [ $i -le $n ]; do
    e=$(rd32 $((cm + 4 * i)))
    [ $((e & 0xffff)) = 5 ] && hdm=$((cm + (e >> 20)))
    i=$((i + 1))
done
[ -n "$hdm" ] || { say "hdm FAILED no HDM decoder capability"; exit 1; }
wr32 $((hdm + 4)) 2
dec() { echo $((hdm + 0x10 + 0x20 * $1)); }
# decoder base size control-bits: programs and commits; prints committed,
# error or neither.
commit() {
    d=$(dec "$1")
    wr32 $((d + 0x10)) 0
    wr32 $d $(($2 & 0xffffffff))
    wr32 $((d + 4)) $(($2 >> 32))
    wr32 $((d + 8)) $(($3 & 0xffffffff))
    wr32 $((d + 0xc)) $(($3 >> 32))
    wr32 $((d + 0x10)) $(($4 | 1 << 9))
    c=$(rd32 $((d + 0x10)))
    if [ $((c >> 10 & 1)) = 1 ]; then echo committed
    elif [ $((c >> 11 & 1)) = 1 ]; then echo error
    else echo neither; fi
}
uncommit() { wr32 $(($(dec "$1") + 0x10)) 0; }
mib256=$((256 << 20))
s=$(commit 0 0 $mib256 0)
# The device knows no windows: it commits; the VMM must give it no slot.
check hdm-over-ram $([ "$s" = committed ]; echo $?) "$s"
uncommit 0
s=$(commit 0 $past $mib256 0)
check hdm-past-window $([ "$s" = committed ]; echo $?) "$s"
uncommit 0
s=$(commit 0 "$window" 0 0)
check hdm-zero-size $([ "$s" = error ]; echo $?) "$s"
s=$(commit 0 "$window" $mib256 $((0xf << 4)))
check hdm-reserved-ways $([ "$s" = error ]; echo $?) "$s"
s=$(commit 0 "$window" $mib256 0)
check hdm-in-window $([ "$s" = committed ]; echo $?) "$s"
s=$(commit 1 "$window" $mib256 0)
check hdm-overlapping $([ "$s" = error ]; echo $?) "$s"
uncommit 1
uncommit 0
s=$(rd32 $(($(dec 0) + 0x10)))
check hdm-reset $([ $((s >> 10 & 1)) = 0 ]; echo $?) "control=$(hex $s)"

# ---- DOE: the extended capability list from 0x100.
doe= off=0x100
while [ $((off)) != 0 ]; do
    h=$(cfg_rd32 $((off)))
    [ $((h & 0xffff)) = 46 ] && { doe=$((off)); break; }
    off=$((h >> 20))
done
[ -n "$doe" ] || { say "doe FAILED no DOE capability"; exit 1; }
doe_send() { for w in "$@"; do cfg_wr32 $((doe + 0x10)) "$w"; done; cfg_wr32 $((doe + 8)) $((1 << 31)); }
doe_status() { cfg_rd32 $((doe + 0xc)); }
doe_send 0xffffffff 0x2 "$(rnd32)"
s1=$(doe_status)
doe_send 0x00000001 0x3ffff 0
s2=$(doe_status)
cfg_wr32 $((doe + 8)) 1
s3=$(doe_status)
check doe-garbage-then-abort $([ $((s3 & 0x80000007)) = 0 ]; echo $?) \
    "status after garbage $(hex $s1), $(hex $s2), after abort $(hex $s3)"
# A discovery request (vendor 1, type 0, 3 dwords, index 0) after all that.
doe_send 0x00000001 3 0
s=$(doe_status)
check doe-discovery-answered $([ $((s >> 31 & 1)) = 1 ] && [ $((s & 4)) = 0 ]; echo $?) "status $(hex $s)"
cfg_wr32 $((doe + 8)) 1

# ---- config space: random dwords anywhere, then the saved space back.
cp "$cfg" /tmp/cfg.save
i=0
while [ $i -lt 192 ]; do
    # shellcheck disable=SC2046
    set -- $(od -An -tu4 -N8 /dev/urandom)
    cfg_wr32 $((($1 & 0x3ff) * 4)) "$2"
    i=$((i + 1))
done
dd if=/tmp/cfg.save of="$cfg" bs=4 conv=notrunc 2>/dev/null
# IDs, command and the BARs read back as saved.
head -c 40 /tmp/cfg.save | od -An -tx4 | tr -s ' \n' ' ' >/tmp/cfg.want
head -c 40 "$cfg" | od -An -tx4 | tr -s ' \n' ' ' >/tmp/cfg.got
check config-random-restored $(cmp -s /tmp/cfg.want /tmp/cfg.got; echo $?) "$(cat /tmp/cfg.got)"

# ---- a locked decoder (over RAM: nothing to map) ignores every write.
wr32 $((hdm + 4)) 2
s=$(commit 0 0 $mib256 $((1 << 8)))
d=$(dec 0)
wr32 $d $((window & 0xffffffff))
wr32 $((d + 4)) $((window >> 32))
wr32 $((d + 0x10)) 0
base=$(($(rd32 $d) | $(rd32 $((d + 4))) << 32))
c=$(rd32 $((d + 0x10)))
check hdm-locked-writes-ignored $([ "$s" = committed ] && [ $base = 0 ] && [ $((c >> 10 & 1)) = 1 ]; echo $?) \
    "base $(hex $base) control $(hex $c)"

# ---- CXL root ports and switch ports: config space and component
# registers, with the port driver (pcieport) unbound.
std_caps() { # offsets of the capabilities listed from 0x34
    off=$(($(cfg_rd32 52) & 0xfc)) k=0
    while [ $off != 0 ] && [ $k -lt 48 ]; do
        echo $off
        off=$((($(cfg_rd32 $off) >> 8) & 0xfc)) k=$((k + 1))
    done
}
ext_caps() { # offsets of the extended capabilities listed from 0x100
    off=256 k=0
    while [ $off != 0 ] && [ $k -lt 64 ]; do
        h=$(cfg_rd32 $off)
        [ "$h" = 0 ] && break
        echo $off
        off=$((h >> 20)) k=$((k + 1))
    done
}
is_cxl_port() { # a bridge with a CXL DVSEC (vendor 0x1e98)
    case $(cat "$1/class") in 0x0604*) ;; *) return 1 ;; esac
    for c in $(ext_caps); do
        [ $(($(cfg_rd32 $c) & 0xffff)) = 35 ] && [ $(($(cfg_rd32 $((c + 4))) & 0xffff)) = 7832 ] && return 0
    done
    return 1
}
port_kind() { # std-caps: from the PCI Express capability's device/port type
    for c in $1; do
        v=$(cfg_rd32 $c)
        [ $((v & 0xff)) = 16 ] || continue
        case $((v >> 20 & 0xf)) in 4) echo rp ;; 5) echo usp ;; 6) echo dsp ;; *) echo other ;; esac
        return
    done
    echo none
}
# The header's 16 dwords as saved in $1 (a file) with the status halves
# (write-1-to-clear) left out.
header_of() {
    od -An -tx4 -N64 "$1" | awk '{ for (i = 1; i <= NF; i++) { n++; w = $i; if (n == 2 || n == 8) w = substr(w, 5); printf "%s ", w } }'
}
# The component registers' HDM decoders: "<committed bits>" of each.
hdm_committed() { # hdm-capability-address
    [ -n "$1" ] || { echo none; return; }
    enc=$(($(rd32 $1) & 0xf))
    cnt=$((enc == 0 ? 1 : enc * 2)) k=0 out=
    while [ $k -lt $cnt ]; do
        out="$out$(($(rd32 $(($1 + 0x20 + 0x20 * k))) >> 10 & 1))"
        k=$((k + 1))
    done
    echo "$out"
}
ports=0
for p in /sys/bus/pci/devices/*; do
    cfg=$p/config
    is_cxl_port "$p" || continue
    # The capability lists, read once while the space is pristine.
    sc=$(std_caps | tr '\n' ' ') ec=$(ext_caps | tr '\n' ' ')
    pbdf=${p##*/} kind=$(port_kind "$sc")
    ports=$((ports + 1))
    drv=
    [ -e "$p/driver" ] && drv=$(basename "$(readlink "$p/driver")")
    [ -n "$drv" ] && echo "$pbdf" >"/sys/bus/pci/drivers/$drv/unbind"
    cp "$cfg" /tmp/port.save
    pdoe=
    for c in $ec; do [ $(($(cfg_rd32 $c) & 0xffff)) = 46 ] && pdoe="$pdoe $c"; done
    # Header: command, BAR0/1, bus numbers, I/O, memory and prefetchable
    # windows, capability pointer, expansion ROM, bridge control (IDs and
    # class are read-only and are hit by the sweep below); every
    # capability's first two dwords (header and capabilities or control,
    # e.g. MSI's Message Control and address, PCIe's Device Control).
    offsets="4 12 16 20 24 28 32 36 40 44 48 52 56 60"
    for c in $sc $ec; do offsets="$offsets $c $((c + 4))"; done
    # shellcheck disable=SC2046 # one random dword per offset
    set -- $(od -An -tu4 -N$((4 * $(echo $offsets | wc -w))) /dev/urandom)
    for o in $offsets; do
        cfg_wr32 "$o" "$1"
        shift
    done
    # And random bytes over the whole space in one go.
    head -c 4096 /dev/urandom >/tmp/port.rand
    dd if=/tmp/port.rand of="$cfg" bs=4096 count=1 conv=notrunc 2>/dev/null
    dd if=/tmp/port.save of="$cfg" bs=4096 count=1 conv=notrunc 2>/dev/null
    # A DOE mailbox may hold half an object now (its write mailbox reads
    # 0 and was written back): abort, as a driver resets it.
    for c in $pdoe; do cfg_wr32 $((c + 8)) 1; done
    want=$(header_of /tmp/port.save) got=$(header_of "$cfg")
    caps_after="$(std_caps | tr '\n' ' ')/ $(ext_caps | tr '\n' ' ')"
    check "port-$kind-$pbdf-config" $([ "$want" = "$got" ] && [ "$sc/ $ec" = "$caps_after" ]; echo $?) \
        "$(echo $offsets | wc -w) dwords and the whole space written; header $got; capabilities at $caps_after; $(cmp -l /tmp/port.save "$cfg" 2>/dev/null | wc -l) bytes differ from saved"

    # BAR0: the component registers (8.2.4); the CXL.cache/mem capability
    # array at 4 KiB.
    pbar=$(($(sed -n 1p "$p/resource" | cut -d' ' -f1)))
    if [ "$pbar" = 0 ]; then
        check "port-$kind-$pbdf-bar" 1 "BAR0 not assigned"
    else
        cm=$((pbar + 0x1000))
        array=$(rd32 $cm)
        phdm=
        k=1
        while [ $k -le $((array >> 24)) ]; do
            e=$(rd32 $((cm + 4 * k)))
            [ $((e & 0xffff)) = 5 ] && phdm=$((cm + (e >> 20)))
            k=$((k + 1))
        done
        committed_before=$(hdm_committed "$phdm")
        undo= random_commit=
        bar_write() { # address value: remembered, to be undone
            undo="$1:$(rd32 $1) $undo"
            wr32 $1 $2
        }
        # A decoder committed at random (base, size, targets); never
        # locked, so that it can be undone.
        if [ -n "$phdm" ]; then
            bar_write $((phdm + 4)) 2
            # shellcheck disable=SC2046
            set -- $(od -An -tu4 -N28 /dev/urandom)
            for o in 0x10 0x14 0x18 0x1c 0x24 0x28; do
                bar_write $((phdm + o)) "$1"
                shift
            done
            bar_write $((phdm + 0x20)) $(($1 & ~0x100 | 0x200))
            c=$(rd32 $((phdm + 0x20)))
            if [ $((c >> 10 & 1)) = 1 ]; then s=committed
            elif [ $((c >> 11 & 1)) = 1 ]; then s=error
            else s=neither; fi
            random_commit="; decoder 0 committed at random: $s"
        fi
        # PORT_OPS random dwords anywhere in the first 512 bytes of the
        # capability array: headers, RAS, link, HDM decoders.
        # shellcheck disable=SC2046
        set -- $(od -An -tu4 -N$((8 * PORT_OPS)) /dev/urandom)
        while [ $# -ge 2 ]; do
            a=$((cm + ($1 & 0x7f) * 4)) v=$2
            shift 2
            # Decoder control registers: never Lock On Commit.
            [ -n "$phdm" ] && [ $a -ge $((phdm + 0x10)) ] && [ $(((a - phdm - 0x10) % 0x20)) = 16 ] &&
                v=$((v & ~0x100))
            bar_write $a $v
        done
        for u in $undo; do wr32 ${u%%:*} ${u#*:}; done
        committed_after=$(hdm_committed "$phdm")
        array_after=$(rd32 $cm)
        check "port-$kind-$pbdf-bar" $([ "$committed_after" = "$committed_before" ] && [ "$array_after" = "$array" ]; echo $?) \
            "component registers at $(hex $pbar): $(echo $undo | wc -w) writes undone; capability array $(hex $array_after); HDM decoders committed: $committed_after (before: $committed_before)$random_commit"
    fi
    if [ -n "$drv" ]; then
        echo "$pbdf" >"/sys/bus/pci/drivers/$drv/bind"
        now=
        [ -e "$p/driver" ] && now=$(basename "$(readlink "$p/driver")")
        check "port-$kind-$pbdf-rebind" $([ "$now" = "$drv" ]; echo $?) "$drv unbound during the writes, now '$now'"
    fi
done
cfg=$dev/config
# One root port, one upstream and two downstream switch ports.
check ports-found $([ "$ports" = 4 ]; echo $?) "$ports CXL ports"

# ---- the driver again, through the same mailbox and DOE.
echo "$bdf" >/sys/bus/pci/drivers/cxl_pci/bind
i=0
while [ $i -lt 100 ] && [ "$(memdev_summary)" != "$summary_before" ]; do
    sleep 0.1
    i=$((i + 1))
done
summary=$(memdev_summary)
check rebind-enumerates $([ -n "$summary" ] && [ "$summary" = "$summary_before" ]; echo $?) "$summary"
m=$(cxl list -M -i | sed -n 's/.*"memdev":"\(mem[0-9]*\)".*/\1/p' | head -n 1)
fw=$(cat "/sys/bus/cxl/devices/$m/firmware_version" 2>/dev/null)
check rebind-identify $([ -n "$fw" ]; echo $?) "$m firmware '$fw'"
check ram-intact $([ "$(md5sum </tmp/ram-pattern)" = "$ram_sum" ]; echo $?)
# The label area through the rebound driver (its nvdimm comes back a
# little after the memdev).
pm=
for m in $(memdevs); do
    [ $(($(cat /sys/bus/cxl/devices/$m/serial))) = "$pm_serial" ] && pm=$m
done
i=0 lsa=
while [ $i -lt 50 ] && [ -n "$pm" ]; do
    lsa=$(lsa_md5)
    [ -n "$lsa" ] && break
    sleep 0.2
    i=$((i + 1))
done
check lsa-intact $([ "$lsa" = "$lsa_want" ]; echo $?) "${pm:-no memdev} serial $pm_serial md5 '$lsa'"
# For the second boot over the same files (tests/e2e/host/hostile-state.sh).
echo "HOSTILE-STATE memdevs $summary"
echo "HOSTILE-STATE lsa $pm_serial $lsa_want"
[ "$fail" = 0 ] && exit 7
exit 1
