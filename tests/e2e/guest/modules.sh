# Runs inside the guest booted with `cxlvmm run --modules` over a tree that
# holds only net/key/af_key.ko.xz and net/xfrm/xfrm_algo.ko.xz (af_key needs
# xfrm_algo; neither is in the image) and no modules.dep. /init must have
# run depmod for the release, over the image's modules and the new ones.
# Exits 7 only if every check passed.
# Loading the compressed modules makes the kernel print "Invalid ELF header
# magic" on the console (an error, above `quiet`'s loglevel) while this
# script's lines go out: a CI run of 2026-12-06 had it land inside one, and
# the harness, counting lines that start with MOD-CHECK, missed that one.
# The messages stay in the dmesg dump.
dmesg -n 1
fail=0
check() { if [ "$2" = 0 ]; then echo "MOD-CHECK $1: ok ($3)"; else echo "MOD-CHECK $1: FAILED ($3)"; fail=1; fi; }

rel=$(uname -r)
dir=/lib/modules/$rel
[ -f "$dir/kernel/net/key/af_key.ko.xz" ] && [ -f "$dir/kernel/net/xfrm/xfrm_algo.ko.xz" ]
check appended $? "$(ls "$dir/kernel/net/key" "$dir/kernel/net/xfrm" 2>&1 | tr '\n' ' ')"
marker=$(cat /cxlvmm/depmod 2>&1)
[ "$marker" = "$rel" ]; check marker $? "/cxlvmm/depmod: $marker, uname -r: $rel"
grep -q '^kernel/net/key/af_key.ko.xz:.*xfrm_algo' "$dir/modules.dep"
check depmod $? "$(grep af_key "$dir/modules.dep")"
grep -q 'cxl_acpi.ko' "$dir/modules.dep"; check image-modules-indexed $? "cxl_acpi in modules.dep"
[ -d /sys/module/cxl_acpi ]; check image-modules-loaded $? "cxl_acpi loaded from /etc/modules-load"
info=$(modinfo af_key 2>&1)
echo "$info" | grep -q 'PF_KEY'; check modinfo $? "$(echo "$info" | grep -m1 description)"
[ ! -d /sys/module/af_key ]; check not-loaded-yet $? "before modprobe"
out=$(modprobe af_key 2>&1); rc=$?
check modprobe $rc "modprobe af_key: rc $rc $out"
[ -d /sys/module/af_key ] && [ -d /sys/module/xfrm_algo ]
check loaded-with-dependency $? "$(lsmod | grep -e af_key -e xfrm_algo | tr '\n' ' ')"

[ "$fail" = 0 ] && exit 7
exit 1
