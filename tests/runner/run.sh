#!/usr/bin/env bash
# End-to-end check of `cxlvmm test`: the jobs of tests/runner/rig.toml run
# in two shards (--shard 1/2, then SHARD_INDEX=2 SHARD_NUMBER=2), which must
# cover the matrix exactly once; every job must end with the status its
# case is meant to produce, and each shard's exit status must be the one
# docs/runner.md gives for the worst of them. Needs a /dev/kvm that can boot
# Linux: `scripts/rig -- tests/runner/run.sh` elsewhere.
set -uo pipefail
cd "$(dirname "$0")/../.."
CXLVMM=${CXLVMM:-$PWD/target/release/cxlvmm}
# The share case's daemon (scripts/lib/virtiofsd.sh builds it).
export CXLVMM_VIRTIOFSD=${CXLVMM_VIRTIOFSD:-$PWD/build/tools/bin/virtiofsd}
M=tests/runner/rig.toml
OUT=${OUT:-$PWD/build/runner-e2e}
PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
rm -rf "$OUT"
mkdir -p "$OUT"
fail=0
bad() { echo "runner-e2e: FAIL: $*"; fail=1; }

"$CXLVMM" test "$M" --list >"$OUT/all.txt" || bad "--list"
"$CXLVMM" test "$M" --list --shard 1/2 >"$OUT/shard1.txt" || bad "--list --shard 1/2"
SHARD_INDEX=2 SHARD_NUMBER=2 "$CXLVMM" test "$M" --list >"$OUT/shard2.txt" || bad "--list with SHARD_*"
if [ "$(sort "$OUT/shard1.txt" "$OUT/shard2.txt")" != "$(sort "$OUT/all.txt")" ] ||
    [ -n "$(sort "$OUT/shard1.txt" "$OUT/shard2.txt" | uniq -d)" ]; then
    bad "the shards do not cover the matrix exactly once"
fi
echo "runner-e2e: $(wc -l <"$OUT/all.txt") jobs; shard 1/2: $(wc -l <"$OUT/shard1.txt"), shard 2/2: $(wc -l <"$OUT/shard2.txt")"

for i in 1 2; do
    SHARD_INDEX=$i SHARD_NUMBER=2 "$CXLVMM" test "$M" --out "$OUT/out" \
        --junit "$OUT/shard$i.xml" --json "$OUT/shard$i.json"
    echo $? >"$OUT/shard$i.rc"
done

# Expected status per case, the cause it must name, and the exit statuses
# of docs/runner.md: PASS 0, FAIL 1, SPLAT 3, CRASH 4, TIMEOUT 5, INFRA 6.
"$PYTHON" - "$OUT" <<'PY' || fail=1
import json, sys
out = sys.argv[1]
expect = {
    "pass": ("PASS", ""),
    "fail": ("FAIL", "exit 3, expected 0"),
    "timeout": ("TIMEOUT", "cxlvmm --timeout"),
    "hung-task": ("SPLAT", "INFO: task hung"),
    "panic": ("CRASH", "Kernel panic - not syncing: sysrq triggered crash"),
    "ktap": ("FAIL", "1 KTAP test(s) failed: second"),
    "action": ("PASS", ""),
    "share": ("PASS", ""),
    "disk": ("PASS", ""),
    "infra": ("INFRA", "/nonexistent/virtiofsd"),
    "power-cut": ("PASS", ""),
}
code = {"PASS": 0, "FAIL": 1, "SPLAT": 3, "CRASH": 4, "TIMEOUT": 5, "INFRA": 6}
severity = ["PASS", "SPLAT", "FAIL", "TIMEOUT", "CRASH", "INFRA"]
ok = True
seen = []
for i in (1, 2):
    rep = json.load(open(f"{out}/shard{i}.json"))
    rc = int(open(f"{out}/shard{i}.rc").read())
    listed = open(f"{out}/shard{i}.txt").read().split()
    ids = [c["id"] for c in rep["cases"]]
    if ids != listed:
        print(f"shard {i}: ran {ids}, listed {listed}"); ok = False
    worst = "PASS"
    for c in rep["cases"]:
        seen.append(c["id"])
        want, why = expect[c["case"]]
        splats = ", ".join(f'{s["kind"]}: {s["title"]}' for s in c["splats"])
        print(f'shard {i}: {c["status"]:7} exit {c["exit_code"]!s:4} {c["id"]:24} '
              f'{c["duration_s"]:6.1f}s boot {c["boot_s"]}  {c["reason"]}  [{splats}]')
        if c["status"] != want or why not in c["reason"]:
            print(f'  expected {want} ({why!r})'); ok = False
        if severity.index(want) > severity.index(worst):
            worst = want
    if rc != code[worst] or rep["summary"]["exit_code"] != rc:
        print(f"shard {i}: exit {rc}, summary {rep['summary']['exit_code']}, expected {code[worst]} ({worst})")
        ok = False
    else:
        print(f"shard {i}: exit {rc} ({worst}) as expected")
alljobs = open(f"{out}/all.txt").read().split()
if sorted(seen) != sorted(alljobs):
    print(f"ran {sorted(seen)} but the matrix is {sorted(alljobs)}"); ok = False
sys.exit(0 if ok else 1)
PY
if [ "$fail" = 0 ]; then echo "runner-e2e: 1 passed, 0 failed"; else echo "runner-e2e: 0 passed, 1 failed"; fi
exit "$fail"
