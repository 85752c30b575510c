# Runs inside the guest (6.12, tests/e2e/hostile.toml) booted a second time
# over the persistent device's backing files that the hostile guest
# (hostile.sh) left. The manifest exports what the first boot reported:
# EXPECT_MEMDEVS (serial, ram and pmem size of every memdev, in serial
# order: memdev names follow probe order, which varies) and LSA_SERIAL / LSA_MD5 (the persistent
# device's serial and its label storage area's md5). The memdevs must
# enumerate alike and the label area must read back the same bytes.
#   HOSTILE <check> ok | HOSTILE <check> FAILED <why>
# Exits 7 when both checks passed.
fail=0
check() { # name, status (0 = pass), detail
    if [ "$2" = 0 ]; then echo "HOSTILE $1 ok${3:+ ($3)}"; else echo "HOSTILE $1 FAILED ${3:-}"; fail=1; fi
}
memdevs() { cxl list -M | sed -n 's/.*"memdev":"\(mem[0-9]*\)".*/\1/p'; }
memdev_summary() { # serial, ram and pmem size of every memdev, by serial
    for d in /sys/bus/cxl/devices/mem*; do
        [ -e "$d/serial" ] || continue
        echo "serial=$(($(cat "$d/serial"))) ram=$(($(cat "$d/ram/size"))) pmem=$(($(cat "$d/pmem/size")))"
    done | sort | tr '\n' ' '
}
i=0
while [ $i -lt 100 ] && [ "$(memdev_summary)" != "$EXPECT_MEMDEVS" ]; do
    sleep 0.1
    i=$((i + 1))
done
got=$(memdev_summary)
check reboot-enumerates $([ -n "$got" ] && [ "$got" = "$EXPECT_MEMDEVS" ]; echo $?) "$got"

pm=
for m in $(memdevs); do
    [ $(($(cat /sys/bus/cxl/devices/$m/serial))) = "$LSA_SERIAL" ] && pm=$m
done
# Through the nvdimm's nmem when the nvdimm subsystem owns the labels (as
# in hostile.sh), which may come up a little after the memdev.
lsa= i=0
while [ $i -lt 50 ] && [ -n "$pm" ]; do
    n=$(ls -d /sys/bus/nd/devices/nmem* 2>/dev/null)
    if [ "$(echo $n | wc -w)" = 1 ]; then set -- ndctl "${n##*/}"; else set -- cxl "$pm"; fi
    "$1" read-labels "$2" -o /tmp/lsa-out 2>/dev/null && lsa=$(md5sum </tmp/lsa-out | cut -d' ' -f1)
    [ -n "$lsa" ] && break
    sleep 0.2
    i=$((i + 1))
done
check reboot-lsa $([ -n "$lsa" ] && [ "$lsa" = "$LSA_MD5" ]; echo $?) \
    "${pm:-no memdev} serial $LSA_SERIAL: md5 '$lsa', the first boot left $LSA_MD5"
[ "$fail" = 0 ] && exit 7
exit 1
