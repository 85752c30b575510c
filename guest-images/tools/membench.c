/*
 * cxlvmm-membench: memory bandwidth and latency from inside the guest.
 *
 *   cxlvmm-membench [-s SIZE] [-i ITERS] [-c CHASE_SIZE] [-n LOADS] [-l LABEL] [-m NODE]
 *
 *   -s SIZE        bandwidth buffer (default 64M; K/M/G suffixes)
 *   -i ITERS       timed passes over it for each of read and write (default 5)
 *   -c CHASE_SIZE  pointer-chase buffer (default 64M, larger than the LLC)
 *   -n LOADS       dependent loads timed in the chase (default 4 per node)
 *   -l LABEL       copied into the output
 *   -m NODE        bind just the two buffers to NODE (mbind); code, stack
 *                  and page tables stay where the process policy puts them
 *
 * Sequential read and write bandwidth: ITERS passes of 8-byte loads (summed
 * into four accumulators) and of 8-byte stores over SIZE, after one untimed
 * pass that faults the pages in. Latency: the chase buffer is cut into
 * 64-byte nodes linked into one cycle in random order, so every load depends
 * on the previous one and lands on a line the prefetcher cannot guess.
 *
 * Accesses go through volatile pointers: plain 8-byte moves and adds, never
 * vector instructions, so that a VMM that traps the memory (and must emulate
 * every access) can run it too. Run it under `numactl --membind=N` to put
 * the buffers on node N; the output says which node they landed on.
 * Trapped memory is ~1000x slower: give small sizes (e.g. -s 256K -i 1
 * -c 64K -n 1024) there; the sizes used are part of the output.
 *
 * Prints one JSON line: {"tool":"cxlvmm-membench", "label", "node",
 * "size_bytes", "iters", "read_MBps", "write_MBps", "chase_bytes",
 * "chase_nodes", "chase_loads", "latency_ns", "seconds"}. MB = 10^6 bytes.
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
	int opt;
	while ((opt = getopt(argc, argv, "s:i:c:n:l:m:")) != -1) {
		switch (opt) {
		case 's': size = parse_size(optarg); break;
		case 'i': iters = strtoul(optarg, NULL, 0); break;
		case 'c': chase = parse_size(optarg); break;
		case 'n': loads = strtoull(optarg, NULL, 0); break;
		case 'l': label = optarg; break;
		case 'm': bind_node = atoi(optarg) & 63; break;
		default:
			fprintf(stderr, "usage: %s [-s SIZE] [-i ITERS] [-c CHASE_SIZE] [-n LOADS] [-l LABEL] [-m NODE]\n",
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
	uint64_t start = now();

	/* Bandwidth. The first pass writes every word, which faults the pages in. */
	volatile uint64_t *buf = map(words * 8);
	for (size_t i = 0; i < words; i++)
		buf[i] = i;
	uint64_t sum = 0;
	uint64_t t0 = now();
	for (unsigned it = 0; it < iters; it++) {
		uint64_t a = 0, b = 0, c = 0, d = 0;
		for (size_t i = 0; i < words; i += 4) {
			a += buf[i];
			b += buf[i + 1];
			c += buf[i + 2];
			d += buf[i + 3];
		}
		sum += a + b + c + d;
	}
	uint64_t t1 = now();
	for (unsigned it = 0; it < iters; it++)
		for (size_t i = 0; i < words; i++)
			buf[i] = i ^ it;
	uint64_t t2 = now();
	int node = node_of((void *)buf);
	munmap((void *)buf, words * 8);

	/* Latency: the nodes linked into one cycle in a random (Fisher-Yates) order. */
	struct node *chain = map(nodes * sizeof(struct node));
	size_t *order = map(nodes * sizeof(size_t));
	for (size_t i = 0; i < nodes; i++)
		order[i] = i;
	for (size_t i = nodes - 1; i > 0; i--) {
		size_t j = next_random() % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (size_t i = 0; i < nodes; i++)
		chain[order[i]].next = &chain[order[(i + 1) % nodes]];
	munmap(order, nodes * sizeof(size_t));
	struct node *p = chain;
	uint64_t t3 = now();
	for (size_t i = 0; i < loads; i++)
		p = *(struct node *volatile *)&p->next;
	uint64_t t4 = now();
	int chase_node = node_of(chain);

	double bytes = (double)words * 8 * iters; /* bytes per ns = GB/s */
	printf("{\"tool\":\"cxlvmm-membench\",\"label\":\"%s\",\"node\":%d,\"chase_node\":%d,"
	       "\"size_bytes\":%zu,\"iters\":%u,\"read_MBps\":%.1f,\"write_MBps\":%.1f,"
	       "\"chase_bytes\":%zu,\"chase_nodes\":%zu,\"chase_loads\":%zu,\"latency_ns\":%.1f,"
	       "\"seconds\":%.2f,\"checksum\":%llu}\n",
	       label, node, chase_node, words * 8, iters, bytes * 1e3 / (t1 - t0), bytes * 1e3 / (t2 - t1),
	       nodes * sizeof(struct node), nodes, loads, (double)(t4 - t3) / loads, (now() - start) * 1e-9,
	       (unsigned long long)(sum + (uintptr_t)p % 2));
	return 0;
}
