#!/bin/sh
# prepare: the rig's guests cannot calibrate their TSC (no PIT, HPET or PM
# timer that works) and fall back to jiffies; their TSC runs at L1's rate,
# which cxlvmm-lat is told (TSC_MHZ for the guest). Elsewhere: nothing.
[ "${RIG:-}" = 1 ] && awk '/^cpu MHz/ { print "TSC_MHZ=" $4; exit }' /proc/cpuinfo
exit 0
