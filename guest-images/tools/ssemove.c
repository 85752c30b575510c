/*
 * cxlvmm-ssemove PATH [ROUNDS]: SSE moves on memory the VMM serves access
 * by access (a devdax device of a trapped or timed region).
 *
 * KVM's instruction emulator has no entry for movq/movsd/movhps and the
 * other scalar SSE moves compilers emit; cxlvmm completes them itself when
 * CXLVMM_EMULATE_SSE=1 (vmm/src/vector_mmio). Each round stores a value with
 * `movq m64, xmm`, reads it back with a plain load, with `movq xmm, m64`,
 * into a register's high half with `movhps`, and the next word with
 * `movsd`, at a different place of the first 2 MiB each time. Only the
 * measured memory is touched with these instructions; the program's own
 * stack and data stay in ordinary RAM.
 *
 * Prints one JSON line; exits 0 if every round saw its values, 2 on the
 * first mismatch (and says where), 1 on a usage or mapping error.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define MAP_BYTES (2u << 20)

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH [ROUNDS]\n", argv[0]);
        return 1;
    }
    long rounds = argc > 2 ? atol(argv[2]) : 2000;
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    volatile uint64_t *p = mmap(0, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (long i = 0; i < rounds; i++) {
        uint64_t v = 0x1122334455667788ull * (uint64_t)(i + 1), low = 0, high = 0;
        /* A 16-byte-aligned pair of words, somewhere in the first 2 MiB. */
        volatile uint64_t *a = p + (uint64_t)(i * 37 % (MAP_BYTES / 16)) * 2;
        int bad = 0;
        __asm__ volatile("movq %0, %%xmm0\n\tmovq %%xmm0, (%1)" ::"r"(v), "r"(a) : "xmm0", "memory");
        if (a[0] != v)
            bad |= 1;
        a[1] = ~v;
        __asm__ volatile("movq (%1), %%xmm1\n\tmovq %%xmm1, %0" : "=r"(low) : "r"(a) : "xmm1", "memory");
        if (low != v)
            bad |= 2;
        __asm__ volatile("pxor %%xmm2, %%xmm2\n\t"
                         "movhps (%2), %%xmm2\n\t"
                         "movhlps %%xmm2, %%xmm2\n\t"
                         "movq %%xmm2, %0\n\t"
                         "movsd 8(%2), %%xmm3\n\t"
                         "movq %%xmm3, %1"
                         : "=r"(low), "=r"(high)
                         : "r"(a)
                         : "xmm2", "xmm3", "memory");
        if (low != v || high != ~v)
            bad |= 4;
        if (bad) {
            printf("{\"tool\":\"cxlvmm-ssemove\",\"ok\":false,\"round\":%ld,\"failed_steps\":%d,"
                   "\"offset\":%lu,\"want\":\"%#llx\",\"stored\":\"%#llx\"}\n",
                   i, bad, (unsigned long)((uintptr_t)a - (uintptr_t)p), (unsigned long long)v,
                   (unsigned long long)a[0]);
            return 2;
        }
    }
    printf("{\"tool\":\"cxlvmm-ssemove\",\"ok\":true,\"rounds\":%ld,\"moves\":%ld}\n", rounds, rounds * 4);
    return 0;
}
