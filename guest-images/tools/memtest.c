/*
 * cxlvmm-memtest: data-verifying memory stress for the guest.
 *
 *   cxlvmm-memtest SIZE [PASSES]
 *
 * SIZE is in MiB, or in KiB with a K suffix (trapped regions are slow).
 * Maps SIZE of anonymous memory, and for each pass writes a pattern that
 * depends on the pass and on every 8-byte word's address, then reads it all
 * back. Different passes use different patterns so stale data cannot pass.
 * At the end it prints its own /proc/self/numa_maps lines for its text,
 * stack and the test buffer, so a caller can check which NUMA node held them
 * (run under `numactl --membind=N` from a copy on a tmpfs, the program's
 * code, stack, heap and page tables all come from node N).
 *
 * Exit status: 0 if every word verified, 1 on a mismatch, 2 on bad usage or
 * an allocation failure.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t pattern(uint64_t index, uint64_t pass)
{
	/* splitmix64 of (index, pass): every word and pass differs. */
	uint64_t z = index * 0x9e3779b97f4a7c15ull + pass * 0xbf58476d1ce4e5b9ull + 1;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void show_numa_maps(const void *buf)
{
	char line[512], want[32];
	FILE *f = fopen("/proc/self/numa_maps", "r");
	if (!f)
		return;
	snprintf(want, sizeof want, "%lx ", (unsigned long)(uintptr_t)buf);
	while (fgets(line, sizeof line, f)) {
		if (strstr(line, "stack") || strstr(line, "file=") || strncmp(line, want, strlen(want)) == 0)
			printf("numa_maps: %s%s", strncmp(line, want, strlen(want)) == 0 ? "buffer " : "", line);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s SIZE[K] [PASSES]\n", argv[0]);
		return 2;
	}
	char *unit;
	uint64_t n = strtoull(argv[1], &unit, 0);
	uint64_t kib = (*unit == 'K' || *unit == 'k') ? n : n << 10;
	uint64_t passes = argc > 2 ? strtoull(argv[2], NULL, 0) : 2;
	size_t len = (size_t)kib << 10;
	uint64_t *buf = len ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
	if (buf == MAP_FAILED) {
		fprintf(stderr, "memtest: cannot map %s\n", argv[1]);
		return 2;
	}
	size_t words = len / sizeof *buf;
	for (uint64_t p = 0; p < passes; p++) {
		for (size_t i = 0; i < words; i++)
			buf[i] = pattern(i, p);
		for (size_t i = 0; i < words; i++) {
			if (buf[i] != pattern(i, p)) {
				printf("memtest: MISMATCH pass %llu word %zu: %016llx != %016llx\n",
				       (unsigned long long)p, i, (unsigned long long)buf[i],
				       (unsigned long long)pattern(i, p));
				return 1;
			}
		}
	}
	show_numa_maps(buf);
	printf("memtest: %llu KiB x %llu passes verified\n", (unsigned long long)kib, (unsigned long long)passes);
	return 0;
}
