#!/usr/bin/env bash
# Self test of scripts/rig (no bats needed): boots L1 four times (~15 s each
# once the L1 image is cached) and exits non-zero on the first mismatch.
#
#   1. /dev/kvm exists inside, the CPU has svm, CMD runs in the caller's cwd,
#      and CMD's exit status (7, then 0) becomes the rig's.
#   2. A file written inside under the checkout is on the host afterwards;
#      arguments with spaces, quotes and $ reach CMD intact; CMD runs in a
#      subdirectory when called from one; stdin may be closed.
#   3. --icount 0 gives L1 a 1 GHz TSC (one instruction per ns) and keeps it
#      on the TSC clocksource; --icount 11 is refused.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
rig=$top/scripts/rig
fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }

cd "$top"

# --- 1: /dev/kvm, svm, cwd, exit status
out=$("$rig" -- sh -c 'ls -l /dev/kvm; grep -c svm /proc/cpuinfo; pwd; exit 7')
rc=$?
printf '%s\n' "$out" | sed 's/^/     | /'
[ "$rc" = 7 ] && pass "exit status 7 passed through" || fail "exit status: want 7, got $rc"
grep -q '^c.* /dev/kvm$' <<<"$out" && pass "/dev/kvm is a character device" || fail "no /dev/kvm"
grep -qx '[1-9][0-9]*' <<<"$out" && pass "L1 CPUs have svm" || fail "no svm count in output"
grep -qx "$top" <<<"$out" && pass "cwd is $top" || fail "cwd is not $top"

"$rig" -q -- true
rc=$?
[ "$rc" = 0 ] && pass "exit status 0 passed through" || fail "exit status: want 0, got $rc"

# --- 2: writes reach the host, argument quoting, subdirectory cwd, closed stdin
token="probe-$$-$RANDOM"
probe=build/rig/probe.txt
rm -f "$probe"
cd "$top/tests"
out=$("$rig" -q -- sh -c 'pwd; printf "<%s>\n" "$2" "$3"; echo "$1" >"../build/rig/probe.txt"' \
    sh "$token" "a  b" "c'd \$HOME \"e\"" 0<&-)
rc=$?
cd "$top"
printf '%s\n' "$out" | sed 's/^/     | /'
[ "$rc" = 0 ] && pass "write run exited 0" || fail "write run: want 0, got $rc"
[ "$(cat "$probe" 2>/dev/null)" = "$token" ] && pass "$probe written inside is visible on the host" ||
    fail "$probe missing or wrong on the host"
grep -qx "$top/tests" <<<"$out" && pass "cwd follows the caller into tests/" || fail "cwd is not $top/tests"
grep -qxF '<a  b>' <<<"$out" && grep -qxF "<c'd \$HOME \"e\">" <<<"$out" &&
    pass "arguments arrive intact" || fail "arguments were mangled"
rm -f "$probe"

# --- 3: --icount: L1 on the instruction counter (builds the patched QEMU
# the first time, ~5 minutes). At shift 0 each instruction is 1 ns, so L1
# calibrates a 1 GHz TSC whatever this host's speed; a bad shift is refused.
"$rig" -q --icount 11 -- true 2>/dev/null
rc=$?
[ "$rc" = 125 ] && pass "--icount 11 refused (125)" || fail "--icount 11: want 125, got $rc"
out=$("$rig" -q --icount 0 -- sh -c 'dmesg | grep -o "Detected [0-9.]* MHz processor"; cat /sys/devices/system/clocksource/clocksource0/current_clocksource')
rc=$?
printf '%s\n' "$out" | sed 's/^/     | /'
[ "$rc" = 0 ] && pass "--icount 0 run exited 0" || fail "--icount 0 run: want 0, got $rc"
grep -Eq '^Detected (999\.9[0-9]*|1000\.0[0-9]*) MHz processor$' <<<"$out" &&
    pass "L1's TSC is 1 GHz under --icount 0" || fail "L1's TSC is not 1 GHz under --icount 0"
grep -qx tsc <<<"$out" && pass "L1 keeps the TSC clocksource" || fail "L1 is not on the TSC clocksource"

if [ "$fails" = 0 ]; then
    echo "rig self test: all passed"
else
    echo "rig self test: $fails failed"
    exit 1
fi
