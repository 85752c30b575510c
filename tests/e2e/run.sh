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
# Per guest run. A hung guest is stopped by cxlvmm itself (--timeout), which
# prints each vCPU's registers; coreutils timeout is only a backstop.
TIMEOUT=${E2E_TIMEOUT:-300}
BACKSTOP=$((TIMEOUT + 60))
passed=0; failed=0; failures=(); retried=()
# Extra guest kernel command line for every scenario. E2E_GUEST_CMDLINE=nokaslr
# makes the addresses in a hung guest's vCPU state (cxlvmm prints RIP and the
# kernel-text words on each stack at --timeout) the same in every boot, so
# scripts/guest-symbols can name them; it is not the default because in the
# rig the stalls it is meant to explain came more often with it (3 of 6 runs
# of the 6.1 enumeration vs about 1 in 8 without; small samples).
GUEST_CMDLINE=${E2E_GUEST_CMDLINE:-}
# Interleaved regions are stitched from one host mapping per interleave
# granule (a 1 GiB 4-way region at 4 KiB: 262144), beyond the default
# vm.max_map_count; cxlvmm would fall back to the trapped path. Raise it
# where we may (the rig's throwaway L1 runs us as root).
if [ -w /proc/sys/vm/max_map_count ] && [ "$(cat /proc/sys/vm/max_map_count)" -lt 1048576 ]; then
    echo 1048576 >/proc/sys/vm/max_map_count
fi

note() { printf '[e2e %s] %s\n' "$(date +%T)" "$*"; }
result() { # name, ok
    if [ "$2" = 0 ]; then passed=$((passed + 1)); note "PASS $1"
    else
        failed=$((failed + 1)); failures+=("$1"); note "FAIL $1 (log: build/e2e/$1.log)"
        # Enough context in CI's output to see what went wrong.
        # (stdout repeats the serial log, so it is shown only without one).
        local files=("$OUT/$1.stderr" "$OUT/$1.log")
        [ -s "$OUT/$1.log" ] || files+=("$OUT/$1.stdout")
        for f in "${files[@]}"; do
            [ -s "$f" ] && { echo "    --- tail of ${f#"$REPO"/}"; tail -n 15 "$f" | tr -d '\r' | sed 's/^/    /'; }
        done
    fi
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
    timeout "$BACKSTOP" "$CXLVMM" run --timeout "$TIMEOUT" --cmdline "$GUEST_CMDLINE" --guest "$variant" --vcpus "$vcpus" --memory "${mem_mib}M" \
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
    timeout "$BACKSTOP" "$CXLVMM" run --timeout "$TIMEOUT" --cmdline "$GUEST_CMDLINE" --serial-log "$log" <"$fifo" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" &
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

# cxl-<topology>: the stock drivers enumerate examples/<topology>.toml; the
# guest's `cxl list` must match the topology exactly (check_cxl.py), with no
# cxl warnings in dmesg and LSA label round trips.
cxl_enumerate() {
    local topo=$1 variant=${2:-6.12} name="cxl-$1${2:+-$2}" rc
    local expected=$OUT/$name.expected.json
    "$CXLVMM" check --json --topology "examples/$topo.toml" >"$expected" || { result "$name" 1; return; }
    note "$name: cxlvmm run --guest $variant --topology examples/$topo.toml --script cxl-enumerate.sh"
    local start=$SECONDS
    timeout "$BACKSTOP" "$CXLVMM" run --timeout "$TIMEOUT" --cmdline "$GUEST_CMDLINE" --guest "$variant" --topology "examples/$topo.toml" \
        --script tests/e2e/guest/cxl-enumerate.sh --serial-log "$OUT/$name.log" </dev/null >"$OUT/$name.stdout" 2>&1
    rc=$?
    note "$name: exit $rc after $((SECONDS - start))s"
    local msix=; [ "$variant" = 6.12 ] && msix=--msix
    $PYTHON tests/e2e/check_cxl.py "$expected" "$OUT/$name.log" $msix | sed 's/^/    /'
    local checked=${PIPESTATUS[0]}
    [ "$rc" = 7 ] && [ "$checked" = 0 ]
    result "$name" $?
}

# region-<case>: a RAM region through cxl create-region, onlined and stressed
# in the guest (tests/e2e/guest/region-ram.sh); the VMM's log must show the
# mapping mode the case expects (native KVM memory, or the trapped path).
region_ram() { # name topology ways granularity memtest phases expected-mode
    local name=$1 topo=$2 ways=$3 gran=$4 memtest=$5 phases=$6 mode=$7 rc
    local script=$OUT/$name.sh
    { echo "WAYS=$ways GRAN=$gran DECODER=decoder0.0 MEMTEST=$memtest PHASES=$phases"
      cat tests/e2e/guest/region-ram.sh; } >"$script"
    note "$name: $topo, cxl create-region -w $ways -g $gran, expect $mode mapping"
    local start=$SECONDS
    # Trapped regions are slow (every access is an exit): they may ask for more.
    local limit=${REGION_TIMEOUT:-$TIMEOUT}
    RUST_LOG=vmm::cxl::regions=info timeout "$((limit + 60))" "$CXLVMM" run --timeout "$limit" \
        --topology "examples/$topo.toml" --cmdline "memhp_default_state=offline $GUEST_CMDLINE" \
        --script "$script" --serial-log "$OUT/$name.log" </dev/null >"$OUT/$name.stdout" 2>"$OUT/$name.stderr"
    rc=$?
    note "$name: exit $rc after $((SECONDS - start))s"
    grep -a '^REGION-CHECK' "$OUT/$name.log" | tr -d '\r' | sed 's/^/    /'
    # Beside the guest's own estimate, the model's (first device's) latency.
    grep -a '^REGION-PERF' "$OUT/$name.log" | tr -d '\r' | sed 's/^/    guest /'
    "$CXLVMM" check --json --topology "examples/$topo.toml" |
        $PYTHON -c 'import json,sys; d=json.load(sys.stdin)["type3"][0]; print("    model read_latency=%.1f write_latency=%.1f (ns, idle 64 B, device 0)" % (d["read_latency_ps"]/1000, d["write_latency_ps"]/1000))' 2>/dev/null
    grep -a 'vmm::cxl::regions' "$OUT/$name.stderr" | sed 's/.*regions\] /    vmm: /'
    # The last mapping the VMM installed for a region of this shape.
    local last
    last=$(grep -a "${ways}-way x ${gran} B:" "$OUT/$name.stderr" | tail -1)
    [ "$rc" = 7 ] && [[ $last == *": $mode" ]] && ! grep -qa 'REGION-CHECK.*FAILED' "$OUT/$name.log"
    result "$name" $?
}

# pmem-persist: data written through an fsdax namespace on a pmem region in
# one run is read back intact in a second run over the same backing files;
# then again after kill -9 of the VMM once the guest has synced.
pmem_run() { # name variant mode [hold]
    local name=$1 variant=$2 mode=$3
    local script=$OUT/$name.sh
    { echo "MODE=$mode"; cat tests/e2e/guest/pmem.sh; } >"$script"
    # A stale log from an earlier run would satisfy the wait below at once.
    rm -f "$OUT/$name.log" "$OUT/$name.rc"
    # No timeout(1) wrapper: $! must be cxlvmm itself, for the kill -9.
    "$CXLVMM" run --timeout "$TIMEOUT" --cmdline "$GUEST_CMDLINE" --guest "$variant" --topology examples/switch-4.toml \
        --script "$script" --serial-log "$OUT/$name.log" </dev/null >"$OUT/$name.stdout" 2>&1 &
    local pid=$!
    if [ "$mode" = write-hold ]; then
        until grep -qa '^PMEM-SYNCED' "$OUT/$name.log" 2>/dev/null || ! kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
        kill -9 "$pid" 2>/dev/null
    fi
    # (bash would report the kill -9 of the job on stderr: expected here.)
    { wait "$pid"; } 2>/dev/null
    echo $? >"$OUT/$name.rc"
    grep -a '^PMEM-CHECK' "$OUT/$name.log" | tr -d '\r' | sed 's/^/    /'
}
pmem_md5() { grep -a '^PMEM-MD5' "$OUT/$1.log" | tr -d '\r' | awk '{print $2}' | tail -1; }
pmem_persist() { # variant
    local v=$1 name=pmem-persist-$1
    note "$name: write, restart, verify; write, kill -9, verify (guest $v)"
    rm -f build/pmem0.img build/pmem0.img.lsa build/pmem1.img build/pmem1.img.lsa
    pmem_run "$name-write" "$v" write
    pmem_run "$name-verify" "$v" verify
    pmem_run "$name-hold" "$v" write-hold
    pmem_run "$name-reverify" "$v" verify
    local w1 v1 w2 v2
    w1=$(pmem_md5 "$name-write"); v1=$(pmem_md5 "$name-verify")
    w2=$(pmem_md5 "$name-hold"); v2=$(pmem_md5 "$name-reverify")
    note "$name: md5 written $w1 read $v1; after kill -9: written $w2 read $v2"
    [ "$(cat "$OUT/$name-write.rc")" = 7 ] && [ "$(cat "$OUT/$name-verify.rc")" = 7 ] &&
        [ "$(cat "$OUT/$name-reverify.rc")" = 7 ] && [ -n "$w1" ] && [ "$w1" = "$v1" ] &&
        [ -n "$w2" ] && [ "$w2" = "$v2" ] && [ "$w1" != "$w2" ]
    result "$name" $?
}

PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3

scenarios=("$@")
[ ${#scenarios[@]} = 0 ] && scenarios=(boot-6.12 boot-6.1 poweroff reset cxl-direct cxl-two-host-bridges cxl-switch-4 cxl-direct-6.1
    region-1way region-4way region-2hb pmem-persist-6.12 pmem-persist-6.1)
# region-256b (the trapped path) runs by name only: in the nested rig its
# guest still triple-faults or stalls now and then during the data test (a
# CI check on 2026-11-22 saw a triple fault after 4 clean runs; see the
# note on issue 4), and CI must not depend on a coin toss.
run_scenario() {
    local s=$1
    case $s in
        boot-6.12) boot_check 6.12 2 1024 ;;
        boot-6.1) boot_check 6.1 2 1024 ;;
        poweroff) console_cmd poweroff "poweroff -f" "" ;;
        reset) console_cmd reset "reboot -f" "guest reset" ;;
        cxl-direct-6.1) cxl_enumerate direct 6.1 ;;
        region-1way) region_ram region-1way direct 1 4096 128 full Native ;;
        region-4way) region_ram region-4way switch-4 4 4096 256 full Native ;;
        region-2hb) region_ram region-2hb two-host-bridges 2 4096 256 full Native ;;
        region-256b) REGION_TIMEOUT=240 region_ram region-256b switch-4 2 256 512 dax Trapped ;;
        pmem-persist-6.12) pmem_persist 6.12 ;;
        pmem-persist-6.1) pmem_persist 6.1 ;;
        cxl-*) cxl_enumerate "${s#cxl-}" ;;
        *) echo "unknown scenario $s" >&2; failed=$((failed + 1)) ;;
    esac
}

# The nested rig is slow and noisy: a guest that hits --timeout (cxlvmm exit
# 124, its vCPU state shown above) gets one more try, reported as such. Any
# other failure counts at once.
for s in "${scenarios[@]}"; do
    before=$failed
    run_scenario "$s"
    if [ "$failed" != "$before" ] && grep -lqs 'timeout expired' "$OUT/$s"*.stderr "$OUT/$s"*.stdout; then
        note "RETRY $s: its first run timed out"
        # Keep the first try's files, and show where its vCPUs were.
        mkdir -p "$OUT/first-try"
        cp "$OUT/$s"*.log "$OUT/$s"*.stdout "$OUT/$s"*.stderr "$OUT/first-try/" 2>/dev/null
        grep -ah 'cxlvmm: vcpu[0-9]*' "$OUT/$s"*.stderr "$OUT/$s"*.stdout 2>/dev/null | sort -u |
            sed 's/^/    first try: /'
        failed=$before
        unset 'failures[${#failures[@]}-1]'
        retried+=("$s")
        run_scenario "$s"
    fi
done
[ ${#retried[@]} = 0 ] || note "retried after a timeout: ${retried[*]}"
[ ${#failures[@]} = 0 ] || note "failed: ${failures[*]}"
echo "e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
