/*
 * The measured buffers of cxlvmm-lat (lat.c): 8-byte access, placement
 * (anonymous memory, a NUMA node, a device-dax device or a file), where the
 * pages landed, and latency percentiles.
 *
 * Every access to a buffer goes through ld64/st64, one 8-byte mov each:
 * memory the VMM serves access by access is run by KVM's instruction
 * emulator, which cannot run the vector moves a compiler or glibc's
 * memset/memcpy would use. Functions that touch buffers are named
 * measured_*; guest-images/build checks them for vector registers.
 */
#ifndef CXLVMM_TOOLS_LAT_BUFFERS_H
#define CXLVMM_TOOLS_LAT_BUFFERS_H

#include "common.h"
#include <math.h> /* isfinite (a macro: no libm) */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define LAT_TOOL "cxlvmm-lat"
/* Buffers start on 2 MiB boundaries (a device-dax mapping's usual alignment). */
#define ALIGN (2ul << 20)

/* ------------------------------------------------------------------ access */

static inline uint64_t ld64(const uint64_t *p)
{
	uint64_t v;
	__asm__ volatile("movq %1, %0" : "=r"(v) : "m"(*p) : "memory");
	return v;
}

static inline void st64(uint64_t *p, uint64_t v)
{
	__asm__ volatile("movq %1, %0" : "=m"(*p) : "r"(v) : "memory");
}

/* One store per 4 KiB page: every page is faulted in before timing. */
__attribute__((noinline)) static void measured_touch(uint8_t *buf, size_t len)
{
	for (size_t off = 0; off < len; off += 4096)
		st64((uint64_t *)(buf + off), 0);
}

/* ------------------------------------------------------------------ placement */

#define MAX_BUFFERS 160

static struct {
	const char *kind;
	uint8_t *base;
	size_t len, used; /* mapped; carved so far */
	size_t nbuf, buf_len[MAX_BUFFERS], buf_off[MAX_BUFFERS], buf_total;
} mem;

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/*
 * Maps LEN bytes (rounded up) from DEVDAX, FILE, or anonymous memory bound
 * to NODE (>= 0) or not; mem_alloc carves the buffers out of it.
 */
static void mem_map(const char *devdax, const char *file, int node, size_t len)
{
	int fd = -1, flags = MAP_SHARED;
	mem.len = round_up(len, ALIGN);
	if (devdax) {
		char path[256], buf[64];
		mem.kind = "devdax";
		/* A device-dax mapping must be a multiple of the device's alignment. */
		snprintf(path, sizeof path, "/sys/bus/dax/devices/%s/align", strrchr(devdax, '/') ? strrchr(devdax, '/') + 1 : devdax);
		read_line(path, buf, sizeof buf);
		if (atol(buf) > 0)
			mem.len = round_up(len, (size_t)atol(buf));
		fd = open(devdax, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			die(LAT_TOOL, "--devdax: cannot open %s: %s", devdax, strerror(errno));
	} else if (file) {
		struct stat st;
		mem.kind = "file";
		fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0 || fstat(fd, &st) != 0)
			die(LAT_TOOL, "--file: cannot open %s: %s", file, strerror(errno));
		if ((size_t)st.st_size < mem.len && ftruncate(fd, (off_t)mem.len) != 0)
			die(LAT_TOOL, "--file: cannot grow %s to %zu bytes: %s", file, mem.len, strerror(errno));
	} else {
		mem.kind = node >= 0 ? "node" : "anon";
		flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	}
	void *p = mmap(NULL, mem.len, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (p == MAP_FAILED)
		die(LAT_TOOL, "cannot map %zu bytes of %s memory%s%s: %s", mem.len, mem.kind,
		    fd >= 0 ? " from " : "", devdax ? devdax : file ? file : "", strerror(errno));
	if (fd >= 0)
		close(fd);
	mem.base = p;
	if (node >= 0) {
		unsigned long mask[1024 / 64] = {0};
		mask[node / 64] = 1ul << (node % 64);
		/* MPOL_BIND before the first touch: every page comes from the node. */
		if (syscall(SYS_mbind, p, mem.len, 2ul, mask, 1025ul, 0ul) != 0)
			die(LAT_TOOL, "--node %d: mbind: %s", node, strerror(errno));
	}
}

/* LEN bytes starting LEAD bytes after the next 2 MiB boundary. */
static uint8_t *mem_alloc(size_t lead, size_t len)
{
	if (mem.nbuf == MAX_BUFFERS || mem.used + lead + len > mem.len)
		die(LAT_TOOL, "internal: buffer %zu of %zu bytes does not fit", mem.nbuf, len);
	uint8_t *p = mem.base + mem.used + lead;
	mem.buf_off[mem.nbuf] = mem.used + lead, mem.buf_len[mem.nbuf++] = len, mem.buf_total += len;
	mem.used += round_up(lead + len, ALIGN);
	return p;
}

/* The pages sampled for where the buffers live: up to this many, spread
 * evenly over them. */
#define PAGE_SAMPLES 64

/* The node of each sampled page (move_pages(2)'s status: a node, or a
 * negative errno) into STATUS; returns how many were sampled, 0 when the
 * kernel could not say. */
static size_t page_nodes(int status[PAGE_SAMPLES])
{
	void *pages[PAGE_SAMPLES];
	size_t step = mem.buf_total / PAGE_SAMPLES < 4096 ? 4096 : mem.buf_total / PAGE_SAMPLES, n = 0, b = 0, base = 0;
	for (size_t at = 0; at < mem.buf_total && n < PAGE_SAMPLES; at += step) {
		while (at >= base + mem.buf_len[b])
			base += mem.buf_len[b++];
		pages[n++] = mem.base + mem.buf_off[b] + (at - base);
	}
	return syscall(SYS_move_pages, 0, n, pages, NULL, status, 0) == 0 ? n : 0;
}

/* Whether all N sampled pages of STATUS are on NODE (and there are some). */
static int all_on(const int *status, size_t n, int node)
{
	for (size_t i = 0; i < n; i++)
		if (status[i] != node)
			return 0;
	return n > 0;
}

/* The N sampled pages of STATUS per node, as a JSON object {"NODE":COUNT,...}. */
static void print_node_counts(FILE *f, const int *status, size_t n)
{
	int count[PAGE_SAMPLES] = {0}, key[PAGE_SAMPLES], keys = 0;
	for (size_t i = 0; i < n; i++) {
		int j = 0;
		while (j < keys && key[j] != status[i])
			j++;
		if (j == keys)
			key[keys++] = status[i];
		count[j]++;
	}
	fputc('{', f);
	for (int j = 0; j < keys; j++)
		fprintf(f, "%s\"%d\":%d", j ? "," : "", key[j], count[j]);
	fputc('}', f);
}

/* Where the sampled pages live now, as print_node_counts prints it. */
static void print_page_nodes(FILE *f)
{
	int status[PAGE_SAMPLES];
	print_node_counts(f, status, page_nodes(status));
}

/* ------------------------------------------------------------------ statistics */

struct stats {
	size_t count;
	double min, p10, p50, p90, p99, max, mean; /* ns per load */
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Percentiles (nearest rank) of N samples of PER loads each (ticks); sorts them. */
static struct stats stats_of(uint64_t *t, size_t n, size_t per, double tick_ns)
{
	struct stats s = {.count = n};
	if (!n)
		return s;
	qsort(t, n, sizeof *t, cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (double)t[i];
	s.mean = sum * tick_ns / (double)per / (double)n;
#define PCT(p) ((double)t[((p) * n + 99) / 100 - 1] * tick_ns / (double)per)
	s.min = (double)t[0] * tick_ns / (double)per;
	s.p10 = PCT(10), s.p50 = PCT(50), s.p90 = PCT(90), s.p99 = PCT(99);
	s.max = (double)t[n - 1] * tick_ns / (double)per;
#undef PCT
	return s;
}

/* A number, or null where printf would write inf/nan. */
static void jnum(FILE *f, const char *key, double v)
{
	if (isfinite(v))
		fprintf(f, ",\"%s\":%.6g", key, v);
	else
		fprintf(f, ",\"%s\":null", key);
}

static void print_stats(FILE *f, const struct stats *s)
{
	fprintf(f, ",\"samples\":%zu", s->count);
	jnum(f, "min_ns", s->min), jnum(f, "p10_ns", s->p10), jnum(f, "p50_ns", s->p50);
	jnum(f, "p90_ns", s->p90), jnum(f, "p99_ns", s->p99), jnum(f, "max_ns", s->max);
	jnum(f, "sample_mean_ns", s->mean);
}

#endif
