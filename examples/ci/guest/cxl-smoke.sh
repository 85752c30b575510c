# A CXL smoke test printing KTAP (one result per check), for kernels x
# topologies: what the stock drivers enumerate, and on kernels with RAM
# region support (6.3+) a RAM region created, onlined and released.
echo "KTAP version 1"
echo "1..4"
n=0
result() { # ok(0/1), name, detail
    n=$((n + 1))
    [ -n "$3" ] && echo "# $2: $3"
    if [ "$1" = 0 ]; then echo "ok $n $2"; else echo "not ok $n $2"; fi
}
skip() { n=$((n + 1)); echo "ok $n $1 # SKIP $2"; }

memdevs=$(cxl list -M | grep -c '"memdev"')
[ "$memdevs" -gt 0 ]; result $? memdevs "$memdevs memory devices"

decoders=$(cxl list -D -d root | grep -c '"decoder"')
[ "$decoders" -gt 0 ]; result $? root-decoders "$decoders root decoders (CFMWS windows)"

errors=$(dmesg -r | grep -E '^<[0-3]>' | grep -ci cxl)
[ "$errors" = 0 ]; result $? no-cxl-errors "$errors cxl error lines in dmesg"

decoder=$(cxl list -D -d root | awk '/"decoder":/ { gsub(/[",]/, ""); split($0, a, ":"); d = a[2] }
                                     /"volatile_capable":true/ { print d }' | head -1)
mem=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); m = a[2] } /"ram_size":/ { print m }' | head -1)
modprobe -q dax_cxl 2>/dev/null
if [ -z "$decoder" ] || [ -z "$mem" ] || [ ! -d /sys/bus/cxl/drivers/cxl_dax_region ]; then
    skip ram-region "no RAM window, RAM capacity or RAM region support (dax_cxl) here"
else
    region=$(cxl create-region -m -t ram -d "$decoder" -w 1 "$mem" 2>/dev/null |
        sed -n 's/.*"region":"\(region[0-9]*\)".*/\1/p')
    ok=1
    # Left offline (memhp_default_state=offline), the region can go again.
    [ -n "$region" ] && cxl destroy-region -f "$region" >/dev/null 2>&1 &&
        ! cxl list -R | grep -q "\"$region\"" && ok=0
    result $ok ram-region "created and destroyed ${region:-no region} on $decoder over $mem"
fi
