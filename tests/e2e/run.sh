#!/usr/bin/env bash
# The end-to-end suite: Linux guests under cxlvmm, as `cxlvmm test` runs
# them from tests/e2e/manifest.toml (docs/runner.md). Needs the guest images
# (guest-images/build), a release build and a /dev/kvm that can run a stock
# kernel: run it through the nested rig (`scripts/rig -- tests/e2e/run.sh`)
# on hosts without VT-x/AMD-V.
#
#   tests/e2e/run.sh [CASE|JOB-ID...] [cxlvmm test options]
#
# e.g. `tests/e2e/run.sh region-4way hostile`, `tests/e2e/run.sh cxl/6.12/direct`,
# `tests/e2e/run.sh --list`, `tests/e2e/run.sh --filter '^region-'`. Names
# select the jobs of those cases (or those job ids); the cases of
# tests/e2e/by-name.toml (timed-full, timed-program-trapped,
# timed-stack-repeat, big-guest, console-flood) run only when named this way.
#
# Results: build/e2e/jobs/<case>/<kernel>/<topology>/ per job,
# build/e2e/junit.xml and build/e2e/result.json. Exit status: cxlvmm
# test's (0 all passed; docs/runner.md lists the others).
#
# In the rig (RIG=1), a job that ends in a guest crash or a stall is run
# again, up to four times more (--retries 4 --infra-crashes): L0's QEMU can
# give an L2 vCPU the wrong state around VMRUN/#VMEXIT (docs/rig.md, "Known
# trouble"; the rig works around the race behind most of it). Such a run
# says nothing about cxlvmm; every retry is listed in the report. Elsewhere
# a crash fails at once. One job runs at a time; CXLVMM_E2E_JOBS=N runs N
# (the cases that must not have a neighbour say `alone = true` in
# tests/e2e/manifest.toml). In the rig on two host cores, two at a time
# saved at most a tenth of the time, and slowed two jobs 3 and 7 times
# (docs/performance.md, "End-to-end jobs side by side").
set -euo pipefail
cd "$(dirname "$0")/../.."
CXLVMM=${CXLVMM:-$PWD/target/release/cxlvmm}
tests/e2e/setup.sh
# The virtiofsd scripts/test builds (Debian 12 packages none).
[ -x build/tools/bin/virtiofsd ] && export CXLVMM_VIRTIOFSD=${CXLVMM_VIRTIOFSD:-$PWD/build/tools/bin/virtiofsd}
retry=()
[ "${RIG:-}" = 1 ] && retry=(--retries 4 --infra-crashes)
names=()
while [ $# -gt 0 ] && [[ $1 != -* ]]; do names+=("$1"); shift; done
manifest=tests/e2e/manifest.toml
select=()
if [ ${#names[@]} -gt 0 ]; then
    # The by-name cases live in their own manifest; one run reads one.
    by_name=$(tests/e2e/list-cases.py tests/e2e/by-name.toml)
    for n in "${names[@]}"; do
        grep -qxF "${n%%/*}" <<<"$by_name" && manifest=tests/e2e/by-name.toml
    done
    select=(--filter "^($(printf '%s\n' "${names[@]}" | sed 's/[.]/\\./g' | paste -sd'|'))(/|\$)")
fi
exec "$CXLVMM" test "$manifest" --jobs "${CXLVMM_E2E_JOBS:-1}" --out build/e2e/jobs \
    --junit build/e2e/junit.xml --json build/e2e/result.json "${retry[@]}" "${select[@]}" "$@"
