#!/bin/sh
# prepare of hostile's second boot: what the first boot left on the
# persistent device, as it reported it (HOSTILE-STATE lines), for
# guest/hostile-reboot.sh to find again.
set -u
state() { grep -a "^HOSTILE-STATE $1 " "$CXLVMM_CONSOLE" | tr -d '\r' | tail -1 | cut -d' ' -f3-; }
memdevs=$(state memdevs) lsa=$(state lsa)
[ -n "$memdevs" ] && [ -n "$lsa" ] || { echo "the first boot reported no HOSTILE-STATE" >&2; exit 1; }
echo "EXPECT_MEMDEVS=$memdevs"
echo "LSA_SERIAL=${lsa% *}"
echo "LSA_MD5=${lsa#* }"
