#!/bin/sh
# prepare: sets vm.max_map_count to $1 where we may (the rig's throwaway L1
# runs us as root). Persistent interleaved regions are stitched from one
# host mapping per interleave granule (a 1 GiB 4-way region at 4 KiB:
# 262144), beyond the default; volatile ones are gathered into one mapping,
# which region-big shows at the default (65530).
f=/proc/sys/vm/max_map_count
[ -w "$f" ] && echo "$1" >"$f"
echo "# vm.max_map_count $(cat "$f")"
