#!/bin/busybox sh
# /init of the rig's L1 initramfs (PID 1, busybox sh).  Built into
# build/rig/l1/initrd.img by scripts/rig; the per-run files under /rig/ arrive
# in a second cpio appended to that initramfs for each run:
#
#   /rig/run.sh   bash script that sets the environment, cd's and execs CMD
#   /rig/share    the checkout's absolute path (mounted read-write there)
#   /rig/stdin    "tty" to give CMD the console as stdin, else /dev/null
#
# PID 1 stays in the initramfs (chroot, not switch_root) so that it can still
# report CMD's exit status after CMD is gone.  The console protocol with
# scripts/lib/rig-console.py: everything before the \036rig-start\036 marker is
# boot noise, everything after it is CMD's output until \036rig-exit=N\036.

export PATH=/bin

# Anything going wrong before CMD starts ends here: the message reaches the
# console log, and powering off without writing port 0xf4 makes the rig
# report an L1 failure (exit 125) rather than a made-up CMD status.
die() {
    echo "rig-init: $*"
    poweroff -f
    sleep 10
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

# Modules in dependency order (resolved from modules.dep at build time).
while read -r mod args; do
    [ -n "$mod" ] || continue
    # shellcheck disable=SC2086  # args are deliberately word-split
    insmod "/lib/modules/$mod" $args || die "insmod $mod failed"
done </etc/rig-modules
[ -c /dev/kvm ] || die "/dev/kvm did not appear (is svm missing from -cpu?)"

# The host's / as L1's userland.  cache=loose is safe because it is read-only
# and nothing changes it under us for the life of the run (the checkout, which
# does change, is mounted separately below).
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts,cache=loose,ro" hostroot /newroot || die "cannot mount the host root over 9p"

R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
# KVM's exit and entry tracepoints, which timed memory's virtual clock reads
# (docs/timed-mode.md), are found through tracefs.
mount -t tracefs nodev $R/sys/kernel/tracing 2>/dev/null
for d in /tmp /run /var/tmp; do
    mount -t tmpfs -o mode=1777 tmpfs "$R$d" || die "cannot mount tmpfs on $d"
done

# The checkout read-write at the same path.  cache=mmap keeps it coherent with
# the host (no data cache for ordinary I/O) while still allowing shared
# writable mmaps, which linkers and rustc's incremental cache use.
[ -s /rig/share ] && [ -s /rig/run.sh ] || die "the per-run files are missing from the initramfs"
share=$(cat /rig/share)
mkdir -p "$R$share" 2>/dev/null
mount -t 9p -o "$opts,cache=mmap" checkout "$R$share" || die "cannot mount the checkout at $share"

mkdir -p $R/run/rig
cp /rig/run.sh $R/run/rig/run.sh
ip link set lo up 2>/dev/null
hostname rig

# Let CMD's "\n" reach the host as "\n" (the serial tty would add "\r").
stty -onlcr 2>/dev/null

# Our own fds are the initramfs's /dev/console; CMD gets the devtmpfs one it
# can see, or ttyname() inside fails to name its terminal.
in=$R/dev/null
[ "$(cat /rig/stdin)" = tty ] && in=$R/dev/console
# CMD, and every KVM vCPU thread it starts, runs off CPU 0. QEMU's TCG
# (target/i386/tcg/system/fpu_helper.c, cpu_clear_ignne(), called from
# cpu_set_fpus() on every FXRSTOR/XRSTOR/FRSTOR/FLDENV of any vCPU) clears
# HF2_IGNNE_MASK in the *first* CPU's hflags2 with a plain
# read-modify-write from whichever vCPU thread restores an FPU state. When
# CPU 0 itself is switching between L1 and L2 at that moment (VMRUN,
# #VMEXIT, CLGI and STGI rewrite the same word: nested paging on/off, GIF),
# its update can be lost: L1 then runs with L2's nested paging or GIF left
# set, or L2 without them (docs/rig.md, "Known trouble"). A CPU 0 that
# never enters a guest has nothing in that word to lose.
cpus=$(grep -c '^processor' /proc/cpuinfo)
pin=
# rig.cpu0=1 on L1's command line (RIG_APPEND) leaves CPU 0 in, to show the race.
[ "$cpus" -gt 1 ] && ! grep -qw 'rig.cpu0=1' /proc/cmdline && pin="taskset -c 1-$((cpus - 1))"
printf '\036rig-start\036'
# shellcheck disable=SC2086  # pin is a command and its arguments, or empty
chroot $R $pin /bin/bash /run/rig/run.sh <"$in" >$R/dev/console 2>&1
rc=$?

# Push shared-mmap writes to the host before QEMU goes away.
sync
printf '\036rig-exit=%d\036' "$rc"
# isa-debug-exit: QEMU exits with ((rc << 1) | 1) & 0xff, i.e. only rc's low 7
# bits survive; the marker above carries the full value.
printf "\\$(printf %o "$rc")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
# Only reached without the isa-debug-exit device.
poweroff -f
