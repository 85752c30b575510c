# Runs inside the guest (6.12, examples/direct.toml, `iomem=relaxed` so that
# /dev/mem reaches device registers). The harness prepends RANDOM_OPS.
#
# A hostile driver: with cxl_pci unbound from the type-3 function, it drives
# the function's registers directly (busybox devmem, sysfs config) the way no
# correct driver would, and checks each answer is what hardware gives:
#   mailbox   (CXL 3.1 8.2.8.4): unknown opcodes, payload lengths beyond the
#             payload area, short payloads, the doorbell rung twice, then
#             RANDOM_OPS random opcodes with random lengths and payloads;
#   HDM       (8.2.4.20): decoders committed over guest RAM, above every
#             window, with size 0, with a reserved interleave-ways
#             encoding, overlapping a committed one; a locked decoder's
#             registers written;
#   DOE       (PCIe 6.0 6.30): garbage objects and a length beyond any
#             object, then an abort and a valid discovery request;
#   config    random dwords over the whole config space (BARs included),
#             then the saved space written back.
# Then cxl_pci is bound again (it probes through the same mailbox) and the
# memdev must enumerate with the sizes and serial it had; a RAM pattern
# written before must be intact. One line per check:
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
memdev_summary() {
    cxl list -M -i | tr ',' '\n' | grep -E '"(ram_size|pmem_size|serial)"' | tr -d ' \n'
}
summary_before=$(memdev_summary)
say "setup $bdf windows=$windows memdev $summary_before"

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
    rc=$(mbox $((r & 0xffff)) $((r >> 16 & 0x1fff)) "$@")
    [ "$rc" = stuck ] && stuck=$((stuck + 1))
    codes="$codes $rc"
    i=$((i + 1))
done
check mbox-random-$RANDOM_OPS $([ $stuck = 0 ]; echo $?) \
    "return codes:$(echo $codes | tr ' ' '\n' | sort -n | uniq -c | tr -s ' \n' ' ')"

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
[ "$fail" = 0 ] && exit 7
exit 1
