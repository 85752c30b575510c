#!/bin/sh
# check of region-concurrent: every loop's rounds passed at the same time
# on four CPUs (check_loops.py), and the VMM mapped natively, and removed
# again, one region per round of every loop and one per device whose root
# decoder the guest found by trial; nothing was trapped.
set -u
python3 host/check_loops.py "$CXLVMM_CONSOLE" REGION "$ROUNDS" || exit 1
rounds=$(grep -a '^REGION-LOOP' "$CXLVMM_CONSOLE" | sed -n 's/.* rounds=[0-9]*\/\([0-9]*\) .*/\1/p' | tr -d '\r' | awk '{ s += $1 } END { print s + 0 }')
trials=$(grep -ac '^REGION-DECODER .* trial' "$CXLVMM_CONSOLE")
want=$((rounds + trials))
native=$(grep -ac '1-way x 4096 B: Native' "$CXLVMM_VMM_LOG")
removed=$(grep -ac 'regions\] region .* removed' "$CXLVMM_VMM_LOG")
trapped=$(grep -ac ': Trapped' "$CXLVMM_VMM_LOG")
echo "VMM mapped $native regions natively, removed $removed, trapped $trapped (want $want, $want, 0)"
[ "$native" = "$want" ] && [ "$removed" = "$want" ] && [ "$trapped" = 0 ]
