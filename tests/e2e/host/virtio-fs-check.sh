#!/bin/sh
# check of virtio-fs: the host's view of the shares after the guest: the
# 4 MiB file the guest wrote with fsync, its rename, removal and new
# folder, and the read-only share unchanged.
set -u
src=$CXLVMM_OUT/share-src ro=$CXLVMM_OUT/share-ro ok=0
want=$(yes "cxlvmm $CXLVMM_ID e2e" | head -c 4194304 | sha256sum | cut -d' ' -f1)
got=$(sha256sum "$src/written.txt" 2>/dev/null | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "written.txt is ${got:-missing}, want $want"; ok=1; }
if [ -e "$src/dir/b-renamed" ] && [ ! -e "$src/dir/b" ] && [ ! -e "$src/dir/c" ] && [ -d "$src/made-by-guest" ]; then :; else
    echo "dir/ is $(ls "$src/dir" | tr '\n' ' '), made-by-guest $([ -d "$src/made-by-guest" ] && echo present || echo missing)"
    ok=1
fi
[ "$(ls "$ro")" = keep.txt ] || { echo "the read-only share changed: $(ls "$ro" | tr '\n' ' ')"; ok=1; }
[ "$ok" = 0 ] && echo "written.txt, the rename, the removal and the new folder are there; ro unchanged"
exit $ok
