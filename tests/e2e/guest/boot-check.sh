# Runs inside the guest (run by sh with the manifest exporting
# EXPECT_VCPUS, EXPECT_MEM_MIB, EXPECT_RELEASE). Prints what it sees and
# exits 7 only if everything matches, so a pass cannot be an accident.
fail=0
check() { # name, ok(0/1), detail
    if [ "$2" = 0 ]; then echo "CHECK $1: ok ($3)"; else echo "CHECK $1: FAILED ($3)"; fail=1; fi
}
rel=$(uname -r)
[ "$rel" = "$EXPECT_RELEASE" ]; check uname $? "uname -r = $rel, expected $EXPECT_RELEASE"
n=$(nproc)
[ "$n" = "$EXPECT_VCPUS" ]; check nproc $? "nproc = $n, expected $EXPECT_VCPUS"
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
want_kib=$((EXPECT_MEM_MIB * 1024))
# The kernel keeps its own image and struct pages out of MemTotal: expect
# between 85% and 100% of the configured RAM.
[ "$mem_kib" -le "$want_kib" ] && [ "$mem_kib" -ge $((want_kib * 85 / 100)) ]
check memtotal $? "MemTotal = $mem_kib kB for --memory ${EXPECT_MEM_MIB}M"
year=$(date +%Y)
[ "$year" -ge 2025 ]; check rtc $? "wall clock year $year"
grep -q ' hypervisor' /proc/cpuinfo; hv=$?
[ "$hv" != 0 ]; check no-hypervisor-flag $? "hypervisor flag absent from /proc/cpuinfo"
[ -e /sys/firmware/acpi/tables/FACP ] && [ -e /sys/firmware/acpi/tables/MCFG ]
check acpi $? "FACP and MCFG visible"
ls /sys/bus/pci/devices/ | grep -q '0000:00:00.0'; check pci $? "host bridge 00:00.0 enumerated"
[ "$fail" = 0 ] && exit 7
exit 1
