/*
 * Helpers shared by the guest tools (lat.c, clockcheck.c): the TSC and how
 * fast it runs, the kernel log, CPU lists and pinning, JSON strings.
 *
 * Everything is static inline so that a tool that uses part of it builds
 * cleanly under -Wall -Wextra -Werror.
 */
#ifndef CXLVMM_TOOLS_COMMON_H
#define CXLVMM_TOOLS_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CPUS 256

/* Report a usage or setup error on stderr and exit 2. */
static inline void die(const char *tool, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static inline uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/*
 * TSC read that neither starts before earlier instructions have completed
 * (the first lfence: a load before it has its data) nor lets later ones
 * start before it (the second), so two of them bracket exactly the
 * instructions between them.
 */
static inline uint64_t tsc_fenced(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi) : : "memory");
	return (uint64_t)hi << 32 | lo;
}

/* Plain TSC read, for spin loops. */
static inline uint64_t tsc_now(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* First line of a small sysfs/proc file, newline stripped ("" if none). */
static inline void read_line(const char *path, char *buf, size_t len)
{
	buf[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

static inline void current_clocksource(char *buf, size_t len)
{
	read_line("/sys/devices/system/clocksource/clocksource0/current_clocksource", buf, len);
	if (!buf[0])
		snprintf(buf, len, "unknown");
}

/*
 * Calls FN with the text of every kernel log record (after the "prefix;")
 * that /dev/kmsg still holds. With FROM_END, only records logged after
 * *FD was opened (pass *FD = -1 first to open it; the caller closes it).
 * Returns 0, or -1 if /dev/kmsg cannot be read.
 */
static inline int kmsg_scan(int *fd, int from_end, void (*fn)(const char *msg, void *ctx), void *ctx)
{
	char rec[2048];
	if (*fd < 0) {
		*fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (*fd < 0)
			return -1;
		if (from_end) {
			lseek(*fd, 0, SEEK_END);
			return 0;
		}
	}
	for (;;) {
		ssize_t n = read(*fd, rec, sizeof rec - 1);
		if (n < 0) {
			if (errno == EPIPE) /* a record we had not read yet was overwritten */
				continue;
			if (errno == EINTR)
				continue;
			break; /* EAGAIN: no more records */
		}
		rec[n] = 0;
		char *msg = strchr(rec, ';');
		if (!msg)
			continue;
		msg++;
		msg[strcspn(msg, "\n")] = 0;
		fn(msg, ctx);
	}
	return 0;
}

/*
 * What the kernel said about the TSC: its rate (the refined calibration
 * beats the early one) and whether it gave up on it.
 */
struct tsc_log {
	double refined_mhz, detected_tsc_mhz, detected_cpu_mhz;
	int unstable; /* "Marking TSC unstable" */
};

static inline void tsc_log_line(const char *msg, void *ctx)
{
	struct tsc_log *l = ctx;
	double mhz;
	if (sscanf(msg, "tsc: Refined TSC clocksource calibration: %lf MHz", &mhz) == 1)
		l->refined_mhz = mhz;
	else if (strstr(msg, " MHz TSC") && sscanf(msg, "tsc: Detected %lf MHz TSC", &mhz) == 1)
		l->detected_tsc_mhz = mhz;
	else if (sscanf(msg, "tsc: Detected %lf MHz processor", &mhz) == 1)
		l->detected_cpu_mhz = mhz;
	if (strstr(msg, "Marking TSC unstable"))
		l->unstable = 1;
}

/*
 * TSC rate from CPUID leaf 0x15 (TSC / crystal ratio times the crystal
 * rate), where the CPU (or VMM) reports the crystal; 0 otherwise.
 */
static inline double tsc_cpuid_mhz(void)
{
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
	if (a < 0x15)
		return 0;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x15), "c"(0));
	return a && b && c ? (double)c * b / a / 1e6 : 0;
}

/* TSC ticks per microsecond against CLOCK_MONOTONIC over about MS ms. */
static inline double tsc_measure_mhz(unsigned ms)
{
	uint64_t m0 = mono_ns(), t0 = tsc_fenced(), m1, t1;
	do {
		m1 = mono_ns();
		t1 = tsc_fenced();
	} while (m1 - m0 < ms * 1000000ull);
	return (double)(t1 - t0) * 1e3 / (double)(m1 - m0);
}

/*
 * The TSC rate: -t (OVERRIDE_MHZ > 0), else what the kernel knows
 * (tsc_freq_khz in sysfs where a kernel provides it, else its log:
 * refined calibration, then "Detected ... MHz TSC", then "... processor"),
 * else CPUID leaf 0x15, else measured against CLOCK_MONOTONIC (only as good
 * as that clock: with a jiffies clocksource in a VM, not good at all).
 * SOURCE names the one used; UNSTABLE is set if the kernel marked the TSC
 * unstable.
 */
static inline double tsc_rate(double override_mhz, const char **source, int *unstable)
{
	struct tsc_log log = {0};
	int fd = -1;
	if (kmsg_scan(&fd, 0, tsc_log_line, &log) == 0)
		close(fd);
	*unstable = log.unstable;
	if (override_mhz > 0) {
		*source = "option";
		return override_mhz;
	}
	char buf[64];
	read_line("/sys/devices/system/cpu/cpu0/tsc_freq_khz", buf, sizeof buf);
	if (buf[0] && atof(buf) > 0) {
		*source = "sysfs-tsc_freq_khz";
		return atof(buf) / 1e3;
	}
	if (log.refined_mhz > 0) {
		*source = "kmsg-refined";
		return log.refined_mhz;
	}
	if (log.detected_tsc_mhz > 0) {
		*source = "kmsg-detected-tsc";
		return log.detected_tsc_mhz;
	}
	if (log.detected_cpu_mhz > 0) {
		*source = "kmsg-detected-processor";
		return log.detected_cpu_mhz;
	}
	double mhz = tsc_cpuid_mhz();
	if (mhz > 0) {
		*source = "cpuid-15h";
		return mhz;
	}
	char cs[64];
	current_clocksource(cs, sizeof cs);
	mhz = tsc_measure_mhz(500);
	fprintf(stderr,
		"warning: the kernel gave no TSC rate%s; measured %.3f MHz against CLOCK_MONOTONIC (clocksource %s). "
		"If that clock is not to be trusted, give the rate with -t MHZ.\n",
		log.unstable ? " (it marked the TSC unstable)" : "", mhz, cs);
	*source = "measured";
	return mhz;
}

/*
 * A CPU list such as "0,2-3" into CPUS (at most MAX_CPUS entries, order
 * kept). Returns the count, or -1 if malformed.
 */
static inline int parse_cpu_list(const char *s, int *cpus)
{
	int n = 0;
	while (*s) {
		char *end;
		long a = strtol(s, &end, 10), b = a;
		if (end == s || a < 0 || a >= CPU_SETSIZE)
			return -1;
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			if (end == s + 1 || b < a || b >= CPU_SETSIZE)
				return -1;
			s = end;
		}
		for (long c = a; c <= b; c++) {
			if (n == MAX_CPUS)
				return -1;
			cpus[n++] = (int)c;
		}
		if (*s == ',')
			s++;
		else if (*s)
			return -1;
	}
	return n;
}

/* Pins the calling thread to CPU; 0 or an errno. */
static inline int pin_self(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
}

/* S as a JSON string literal on F. */
static inline void json_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Integer list as a JSON array. */
static inline void json_int_list(FILE *f, const int *v, int n)
{
	fputc('[', f);
	for (int i = 0; i < n; i++)
		fprintf(f, "%s%d", i ? "," : "", v[i]);
	fputc(']', f);
}

#endif
