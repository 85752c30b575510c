#!/usr/bin/env bash
# End-to-end scenarios: boot real Linux guests under cxlvmm and check what
# they report. Needs a /dev/kvm that can run a stock kernel: run it through
# the nested rig (`scripts/rig -- tests/e2e/run.sh`) on hosts without VT-x/AMD-V.
#
#   tests/e2e/run.sh [SCENARIO...]     default: all
#
# Ends with one line "e2e: N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CXLVMM=${CXLVMM:-$REPO/target/release/cxlvmm}
OUT=$REPO/build/e2e
mkdir -p "$OUT"
TIMEOUT=${E2E_TIMEOUT:-900}
passed=0; failed=0; failures=()

note() { printf '[e2e %s] %s\n' "$(date +%T)" "$*"; }
result() { # name, ok
    if [ "$2" = 0 ]; then passed=$((passed + 1)); note "PASS $1"
    else failed=$((failed + 1)); failures+=("$1"); note "FAIL $1 (log: build/e2e/$1.log)"; fi
}

# boot-<variant>: the injected script checks uname/nproc/MemTotal/RTC/ACPI/PCI
# and exits 7; cxlvmm must exit 7.
boot_check() {
    local variant=$1 vcpus=$2 mem_mib=$3 name="boot-$1"
    local script=$OUT/$name.sh
    {
        echo "EXPECT_VCPUS=$vcpus"
        echo "EXPECT_MEM_MIB=$mem_mib"
        echo "EXPECT_RELEASE=$(cat "build/guest/$variant/kernel-release")"
        cat tests/e2e/guest/boot-check.sh
    } >"$script"
    note "$name: cxlvmm run --guest $variant --vcpus $vcpus --memory ${mem_mib}M --script ..."
    local start=$SECONDS rc
    timeout "$TIMEOUT" "$CXLVMM" run --guest "$variant" --vcpus "$vcpus" --memory "${mem_mib}M" \
        --script "$script" --serial-log "$OUT/$name.log" </dev/null >"$OUT/$name.stdout" 2>&1
    rc=$?
    grep '^CHECK' "$OUT/$name.log" | sed 's/^/    /'
    note "$name: exit $rc after $((SECONDS - start))s"
    [ "$rc" = 7 ] && [ "$(grep -c '^CHECK .*: ok' "$OUT/$name.log")" = 7 ]
    result "$name" $?
}

# poweroff / reset: no script; once the guest's /init announces its shell,
# commands typed on the console (stdin -> COM1) reach it, and it powers off
# (ACPI S5 -> exit 0) or reboots (i8042 reset -> exit 0, "guest reset").
console_cmd() {
    local name=$1 cmd=$2 expect_stderr=$3 rc
    local fifo=$OUT/$name.stdin log=$OUT/$name.log
    rm -f "$fifo" "$log"; mkfifo "$fifo"
    note "$name: cxlvmm run, then type '$cmd' on its console"
    local start=$SECONDS
    timeout "$TIMEOUT" "$CXLVMM" run --serial-log "$log" <"$fifo" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" &
    local pid=$!
    exec 3>"$fifo"
    # Wait for the shell's prompt (or for cxlvmm to die) before typing: the
    # shell flushes input typed before it set up line editing.
    until grep -q '^/ # ' "$log" 2>/dev/null || ! kill -0 "$pid" 2>/dev/null; do
        sleep 0.5
    done
    printf 'echo console-input-%s\n%s\n' reached-shell "$cmd" >&3
    wait "$pid"; rc=$?
    exec 3>&-
    note "$name: exit $rc after $((SECONDS - start))s"
    [ "$rc" = 0 ] && grep -q '^console-input-reached-shell' "$log" &&
        { [ -z "$expect_stderr" ] || grep -q "$expect_stderr" "$OUT/$name.stderr"; }
    result "$name" $?
}

scenarios=("$@")
[ ${#scenarios[@]} = 0 ] && scenarios=(boot-6.12 boot-6.1 poweroff reset)
for s in "${scenarios[@]}"; do
    case $s in
        boot-6.12) boot_check 6.12 2 1024 ;;
        boot-6.1) boot_check 6.1 2 1024 ;;
        poweroff) console_cmd poweroff "poweroff -f" "" ;;
        reset) console_cmd reset "reboot -f" "guest reset" ;;
        *) echo "unknown scenario $s" >&2; failed=$((failed + 1)) ;;
    esac
done
[ ${#failures[@]} = 0 ] || note "failed: ${failures[*]}"
echo "e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
