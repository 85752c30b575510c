/*
 * cxlvmm-membench: memory bandwidth and latency from inside the guest.
 *
 *   cxlvmm-membench [-s SIZE] [-i ITERS] [-c CHASE_SIZE] [-n LOADS] [-l LABEL] [-m NODE] [-t MHZ]
 *
 *   -s SIZE        bandwidth buffer (default 64M; K/M/G suffixes)
 *   -i ITERS       timed passes over it for each of read and write (default 5)
 *   -c CHASE_SIZE  pointer-chase buffer (default 64M, larger than most LLCs)
 *   -n LOADS       dependent loads timed in the chase (default 4 per node)
 *   -l LABEL       copied into the output
 *   -m NODE        bind just the two buffers to NODE (mbind); code, stack
 *                  and page tables stay where the process policy puts them
 *   -t MHZ         the TSC rate (default: measured against CLOCK_MONOTONIC)
 *
 * Sequential read and write bandwidth: ITERS passes of 8-byte loads (summed
 * into four accumulators) and of 8-byte stores over SIZE, after one untimed
 * pass that faults the pages in. Latency: the chase buffer is cut into
 * 64-byte nodes linked into one cycle in random order, so every load depends
 * on the previous one and lands on a line the prefetcher cannot guess.
 *
 * The buffers are accessed through volatile pointers: plain 8-byte moves
 * and adds, never vector instructions, which KVM cannot emulate when the
 * memory is trapped (every access exits to the VMM). Put the buffers on node
 * N with `numactl --membind=N` (the whole process: stack and heap too) or
 * with -m N (only the buffers). On trapped memory use -m: glibc and the
 * compiler use SSE/AVX moves on the stack and heap, and a process wholly
 * bound there dies of SIGILL. Trapped memory is also 10^3-10^5x slower: give
 * small sizes there (e.g. -s 64K -i 1 -c 16K -n 256); the sizes used are
 * part of the output, and so is the node each buffer landed on.
 *
 * Prints one JSON line: {"tool":"cxlvmm-membench", "label", "node" and
 * "chase_node" (where the buffers landed), "size_bytes", "iters",
 * "segment_bytes", "read_MBps" and "write_MBps" (over all timed passes),
 * "read_MBps_best" and "write_MBps_best" (the fastest segment, see SEGMENT),
 * "chase_bytes", "chase_nodes", "chase_loads", "chunk_loads", "latency_ns"
 * (over all loads), "latency_ns_best" (the fastest chunk), "thp_kib" and
 * "chase_thp_kib" (the process's memory in transparent huge pages while each
 * buffer was in use), "tsc_MHz" (the rate used) and "tsc_MHz_measured"
 * (against CLOCK_MONOTONIC), "seconds", "checksum"}. MB = 10^6 bytes.
 * Exit status 0, or 2 on bad usage or an allocation failure.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

struct node {
	struct node *next;
	uint64_t pad[7]; /* one 64-byte cache line per node */
};

/* Nanoseconds; integers, so that nothing before the final printf needs SSE. */
static uint64_t now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000ull + t.tv_nsec;
}

/*
 * Intervals are timed with the TSC: a guest may have no better clocksource
 * than jiffies (4 ms steps, and slow when the vCPU misses ticks), as the
 * nested rig's guests do. Ticks become seconds at the rate given with -t, or
 * else at the rate measured against CLOCK_MONOTONIC over the whole run.
 */
static uint64_t ticks(void)
{
	return __rdtsc();
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long n = strtoull(s, &end, 0);
	switch (*end) {
	case 'G': case 'g': n <<= 10; /* fall through */
	case 'M': case 'm': n <<= 10; /* fall through */
	case 'K': case 'k': n <<= 10;
	}
	return n;
}

static int bind_node = -1;

/* LEN bytes of anonymous memory, on bind_node if one was given. */
static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "membench: cannot map %zu bytes\n", len);
		exit(2);
	}
	unsigned long mask = 1ul << bind_node;
	/* MPOL_BIND; pages are allocated at the first touch, after this. */
	if (bind_node >= 0 && syscall(SYS_mbind, p, len, 2UL, &mask, 64UL, 0UL) != 0) {
		perror("membench: mbind");
		exit(2);
	}
	return p;
}

/* NUMA node holding the page at ADDR (-1 if unknown). */
static int node_of(void *addr)
{
	int node = -1;
	/* MPOL_F_NODE | MPOL_F_ADDR */
	if (syscall(SYS_get_mempolicy, &node, NULL, 0UL, addr, 3UL) != 0)
		return -1;
	return node;
}

/* Anonymous memory of this process in transparent huge pages, in KiB. */
static long thp_kib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	while (f && fgets(line, sizeof line, f))
		sscanf(line, "AnonHugePages: %ld kB", &kib);
	if (f)
		fclose(f);
	return kib;
}

/*
 * Passes are timed in segments of SEGMENT bytes and the chase in chunks of
 * CHUNK loads: besides the overall rate, the fastest full segment or chunk
 * shows what the memory does while the vCPU is not preempted (on a shared
 * host, or in the nested rig, the overall rate mostly measures the host).
 */
#define SEGMENT (4 << 20)
#define CHUNK 16384

struct timing {
	uint64_t total, best; /* ns: all of it, the fastest full segment or chunk */
};

static void record(struct timing *t, uint64_t ns, int full)
{
	t->total += ns;
	if (full && ns < t->best)
		t->best = ns;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	size_t size = 64 << 20, chase = 64 << 20, loads = 0;
	unsigned iters = 5;
	const char *label = "";
	double tsc_mhz = 0;
	int opt;
	while ((opt = getopt(argc, argv, "s:i:c:n:l:m:t:")) != -1) {
		switch (opt) {
		case 's': size = parse_size(optarg); break;
		case 'i': iters = strtoul(optarg, NULL, 0); break;
		case 'c': chase = parse_size(optarg); break;
		case 'n': loads = strtoull(optarg, NULL, 0); break;
		case 'l': label = optarg; break;
		case 'm': bind_node = atoi(optarg) & 63; break;
		case 't': tsc_mhz = strtod(optarg, NULL); break;
		default:
			fprintf(stderr, "usage: %s [-s SIZE] [-i ITERS] [-c CHASE_SIZE] [-n LOADS] [-l LABEL] [-m NODE] [-t MHZ]\n",
				argv[0]);
			return 2;
		}
	}
	size_t words = size / 32 * 4, nodes = chase / sizeof(struct node);
	if (words == 0 || iters == 0 || nodes < 2) {
		fprintf(stderr, "membench: SIZE must be >= 32 bytes, ITERS >= 1, CHASE_SIZE >= 128 bytes\n");
		return 2;
	}
	if (loads == 0)
		loads = 4 * nodes;
	uint64_t start = now(), start_ticks = ticks();

	/* Bandwidth. The first pass writes every word, which faults the pages in. */
	volatile uint64_t *buf = map(words * 8);
	for (size_t i = 0; i < words; i++)
		buf[i] = i;
	long thp = thp_kib();
	size_t seg = words < SEGMENT / 8 ? words : SEGMENT / 8;
	struct timing rd = {0, UINT64_MAX}, wr = {0, UINT64_MAX};
	uint64_t sum = 0;
	for (unsigned it = 0; it < iters; it++) {
		for (size_t s = 0; s < words; s += seg) {
			size_t end = s + seg < words ? s + seg : words;
			uint64_t a = 0, b = 0, c = 0, d = 0, t = ticks();
			for (size_t i = s; i < end; i += 4) {
				a += buf[i];
				b += buf[i + 1];
				c += buf[i + 2];
				d += buf[i + 3];
			}
			record(&rd, ticks() - t, end - s == seg);
			sum += a + b + c + d;
		}
	}
	for (unsigned it = 0; it < iters; it++) {
		for (size_t s = 0; s < words; s += seg) {
			size_t end = s + seg < words ? s + seg : words;
			uint64_t t = ticks();
			for (size_t i = s; i < end; i++)
				buf[i] = i ^ it;
			record(&wr, ticks() - t, end - s == seg);
		}
	}
	int node = node_of((void *)buf);
	munmap((void *)buf, words * 8);

	/*
	 * Latency: the nodes linked into one cycle in random order. Sattolo's
	 * shuffle of the successor links (each node its own at first) gives a
	 * uniformly random single cycle through all of them.
	 */
	struct node *chain = map(nodes * sizeof(struct node));
	for (size_t i = 0; i < nodes; i++)
		chain[i].next = &chain[i];
	for (size_t i = nodes - 1; i > 0; i--) {
		size_t j = next_random() % i;
		struct node *t = chain[i].next;
		chain[i].next = chain[j].next;
		chain[j].next = t;
	}

	long chase_thp = thp_kib();
	size_t chunk = loads < CHUNK ? loads : CHUNK;
	struct timing lat = {0, UINT64_MAX};
	struct node *p = chain;
	for (size_t done = 0; done < loads; done += chunk) {
		size_t n = loads - done < chunk ? loads - done : chunk;
		uint64_t t = ticks();
		for (size_t i = 0; i < n; i++)
			p = *(struct node *volatile *)&p->next;
		record(&lat, ticks() - t, n == chunk);
	}
	int chase_node = node_of(chain);

	double secs = (now() - start) * 1e-9, measured_mhz = (ticks() - start_ticks) / secs / 1e6;
	double tick_ns = 1e3 / (tsc_mhz > 0 ? tsc_mhz : measured_mhz);
	double bytes = (double)words * 8 * iters, seg_bytes = (double)seg * 8; /* B/ns = GB/s */
	printf("{\"tool\":\"cxlvmm-membench\",\"label\":\"%s\",\"node\":%d,\"chase_node\":%d,"
	       "\"size_bytes\":%zu,\"iters\":%u,\"segment_bytes\":%zu,"
	       "\"read_MBps\":%.6g,\"read_MBps_best\":%.6g,\"write_MBps\":%.6g,\"write_MBps_best\":%.6g,"
	       "\"chase_bytes\":%zu,\"chase_nodes\":%zu,\"chase_loads\":%zu,\"chunk_loads\":%zu,"
	       "\"latency_ns\":%.6g,\"latency_ns_best\":%.6g,\"thp_kib\":%ld,\"chase_thp_kib\":%ld,"
	       "\"tsc_MHz\":%.6g,\"tsc_MHz_measured\":%.6g,\"seconds\":%.2f,\"checksum\":%llu}\n",
	       label, node, chase_node, words * 8, iters, seg * 8,
	       bytes * 1e3 / (rd.total * tick_ns), seg_bytes * 1e3 / (rd.best * tick_ns),
	       bytes * 1e3 / (wr.total * tick_ns), seg_bytes * 1e3 / (wr.best * tick_ns),
	       nodes * sizeof(struct node), nodes, loads, chunk,
	       lat.total * tick_ns / loads, lat.best * tick_ns / chunk, thp, chase_thp,
	       1e3 / tick_ns, measured_mhz, secs, (unsigned long long)(sum + (uintptr_t)p % 2));
	return 0;
}
