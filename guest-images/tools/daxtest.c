/*
 * cxlvmm-daxtest: data-verifying test of a device-dax mapping with plain
 * 8-byte loads and stores.
 *
 *   cxlvmm-daxtest /dev/daxX.Y SIZE_KIB [PASSES]
 *
 * For regions the VMM serves by trapping every access, the guest's ordinary
 * memory instructions are emulated by KVM one at a time; vector moves (as
 * libc's memset/memcpy use) cannot be, so this tool touches the mapping only
 * through volatile 64-bit accesses. Each pass writes an address- and
 * pass-dependent pattern, then verifies it, so stale data cannot pass.
 * Exit status: 0 verified, 1 mismatch, 2 usage or mapping error.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t pattern(uint64_t index, uint64_t pass)
{
	uint64_t z = index * 0x9e3779b97f4a7c15ull + pass * 0xbf58476d1ce4e5b9ull + 1;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s /dev/daxX.Y SIZE_KIB [PASSES]\n", argv[0]);
		return 2;
	}
	size_t kib = strtoull(argv[2], NULL, 0);
	uint64_t passes = argc > 3 ? strtoull(argv[3], NULL, 0) : 2;
	/* device-dax mappings must be whole multiples of the device alignment. */
	size_t align = 2u << 20;
	size_t len = ((kib << 10) + align - 1) / align * align;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0 || kib == 0) {
		perror("daxtest: open");
		return 2;
	}
	volatile uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("daxtest: mmap");
		return 2;
	}
	size_t words = (kib << 10) / sizeof *p;
	for (uint64_t pass = 0; pass < passes; pass++) {
		for (size_t i = 0; i < words; i++)
			p[i] = pattern(i, pass);
		for (size_t i = 0; i < words; i++) {
			uint64_t got = p[i];
			if (got != pattern(i, pass)) {
				printf("daxtest: MISMATCH pass %llu word %zu: %016llx != %016llx\n",
				       (unsigned long long)pass, i, (unsigned long long)got,
				       (unsigned long long)pattern(i, pass));
				return 1;
			}
		}
	}
	printf("daxtest: %zu KiB x %llu passes verified on %s\n", kib, (unsigned long long)passes, argv[1]);
	return 0;
}
