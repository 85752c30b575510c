#!/bin/sh
# check of pmem-persist: its four boots over the same backing files were
# write, verify, write then power cut once the guest had synced, verify.
# What each verify read (md5) is what the write before it wrote, the two
# writes differ, every boot mapped its region natively (for 2 ways: the
# mapping stitched from both backing files), and with 2 ways both devices'
# files hold at least 1 MiB of what went through the region (fsdax data,
# namespace metadata, the devdax pass).
#   pmem-check.sh WAYS PMEM0 PMEM1
set -u
ways=$1 f0=$2 f1=$3 o=$CXLVMM_OUT
md5() { grep -a '^PMEM-MD5' "$o/$1" | tr -d '\r' | awk '{ print $2 }' | tail -1; }
w1=$(md5 console.log) v1=$(md5 console-2.log) w2=$(md5 console-3.log) v2=$(md5 console-4.log)
echo "md5 written $w1 read $v1; after the power cut: written $w2 read $v2"
ok=0
[ -n "$w1" ] && [ "$w1" = "$v1" ] && [ -n "$w2" ] && [ "$w2" = "$v2" ] && [ "$w1" != "$w2" ] || ok=1
for log in vmm.log vmm-2.log vmm-3.log vmm-4.log; do
    grep -qa "${ways}-way x 4096 B: Native" "$o/$log" || { echo "$log: region not mapped natively"; ok=1; }
done
blocks() {
    python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); z = bytes(4096)
print(sum(b[i:i + 4096] != z for i in range(0, len(b), 4096)))' "$1" 2>/dev/null || echo 0
}
b0=$(blocks "$f0") b1=$(blocks "$f1")
echo "4 KiB blocks holding data: $f0 $b0, $f1 $b1"
[ "$ways" = 1 ] || { [ "$b0" -ge 256 ] && [ "$b1" -ge 256 ]; } || ok=1
exit $ok
