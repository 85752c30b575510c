/*
 * cxlvmm-stackcheck [--stack PATH] [ROUNDS]: ordinary compiled code whose
 * stack lives on memory the VMM serves access by access.
 *
 * Every push, pop, call, ret, leave and spill to such a stack is an MMIO
 * exit that KVM's instruction emulator completes (arch/x86/kvm/emulate.c),
 * and the SSE moves it cannot complete cxlvmm does (vmm/src/vector_mmio).
 * The workloads are what a C program does with its stack: deep recursion
 * through function pointers, frame locals and arrays, doubles spilled
 * around calls, glibc's string functions and qsort on stack buffers,
 * setjmp/longjmp and varargs.
 *
 * --stack PATH: each workload runs on a stack at the top of the first
 * 2 MiB of PATH (a devdax device of a trapped or timed region), reached by
 * switching RSP; the rest of the process stays in ordinary RAM. Without it
 * they run on the process's own stack: start it under `numactl --membind`
 * to put the whole process (stack, heap, data) on a NUMA node.
 *
 * With --stack, each round runs every workload on an ordinary stack first
 * (a static buffer in the process's data) and then on the stack under
 * test; the results must be equal. Either way the JSON line ends with a
 * digest of every result: a run under `numactl --membind` must print the
 * same digest as a run in ordinary RAM. Exits 0 if all matched, 3 on the
 * first mismatch (naming the workload, the round and both values), 2 on a
 * usage or mapping error.
 */
#include "common.h"

#include <setjmp.h>
#include <sys/mman.h>

#define TOOL "cxlvmm-stackcheck"
#define MAP_BYTES (2u << 20)
#define REF_STACK_BYTES (256u << 10)

typedef uint64_t (*workload_fn)(uint64_t);

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdull;
}

/* Recursion through a table of functions, each with locals in memory. */
static uint64_t rec_a(uint64_t n, uint64_t s);
static uint64_t rec_b(uint64_t n, uint64_t s);
static uint64_t (*const volatile rec_table[2])(uint64_t, uint64_t) = { rec_a, rec_b };

__attribute__((noinline)) static uint64_t rec_a(uint64_t n, uint64_t s)
{
	volatile uint64_t local[4] = { n, s, n ^ s, n + s };
	if (n == 0)
		return s;
	uint64_t r = rec_table[(s >> 7) & 1](n - 1, mix(s, local[2]));
	return mix(r, local[0] + local[3]);
}

__attribute__((noinline)) static uint64_t rec_b(uint64_t n, uint64_t s)
{
	volatile uint32_t local[8];
	for (int i = 0; i < 8; i++)
		local[i] = (uint32_t)(s >> (i * 4)) + (uint32_t)i;
	if (n == 0)
		return s ^ local[7];
	uint64_t r = rec_table[(s >> 11) & 1](n - 1, s + local[n & 7]);
	return r ^ ((uint64_t)local[3] << 32 | local[5]);
}

static uint64_t w_recursion(uint64_t seed)
{
	return rec_table[seed & 1](120, seed);
}

/* Doubles live across calls: the compiler spills them with movsd/movaps. */
__attribute__((noinline)) static double fold(double a, double b, int k)
{
	volatile double t[4] = { a * 0.5, b * 0.25, a - b, a + b };
	return t[k & 3] + t[(k + 1) & 3] * 1e-3;
}

static uint64_t w_doubles(uint64_t seed)
{
	double x[12];
	for (int i = 0; i < 12; i++)
		x[i] = (double)((seed >> (i * 5)) & 1023) + i * 0.125;
	double acc = 1.0;
	for (int r = 0; r < 16; r++)
		for (int i = 0; i < 12; i++) {
			x[i] = fold(x[i], x[(i + 5) % 12], r + i);
			acc = acc * 0.999 + x[i];
		}
	uint64_t bits;
	memcpy(&bits, &acc, sizeof bits);
	return bits;
}

/* glibc's string functions (their SSE2 paths) on stack buffers. */
static uint64_t w_strings(uint64_t seed)
{
	char a[512], b[512];
	memset(a, 'a' + (int)(seed % 26), sizeof a);
	a[sizeof a - 1] = 0;
	a[(seed >> 8) % 500] = 0;
	memcpy(b, a, sizeof b);
	size_t la = strlen(a);
	snprintf(b + la, sizeof b - la, "-%llu-%zu", (unsigned long long)seed, la);
	uint64_t h = mix(la, strlen(b));
	h = mix(h, (uint64_t)(strcmp(a, b) < 0));
	const char *c = memchr(b, '-', sizeof b);
	h = mix(h, c ? (uint64_t)(c - b) : 999);
	return mix(h, (uint64_t)strncmp(b, a, la));
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	return (a > b) - (a < b);
}

static uint64_t w_qsort(uint64_t seed)
{
	uint32_t v[96];
	uint64_t s = seed;
	for (int i = 0; i < 96; i++) {
		s = mix(s, (uint64_t)i);
		v[i] = (uint32_t)(s >> 32);
	}
	qsort(v, 96, sizeof v[0], cmp_u32);
	uint64_t h = 0;
	for (int i = 0; i < 96; i++)
		h = mix(h, v[i]);
	return h;
}

static void jump_back(jmp_buf *env, int v)
{
	longjmp(*env, v);
}

/* Called through a pointer, so the compiler cannot see dive never returns. */
static void (*volatile jumper)(jmp_buf *, int) = jump_back;

__attribute__((noinline)) static void dive(jmp_buf *env, int depth, uint64_t v)
{
	volatile uint64_t keep = v * 3;
	if (depth > 0)
		dive(env, depth - 1, keep + (uint64_t)depth);
	else
		jumper(env, (int)(keep & 0xffff) | 1);
}

static uint64_t w_longjmp(uint64_t seed)
{
	jmp_buf env;
	volatile uint64_t h = seed;
	for (int i = 0; i < 6; i++) {
		int r = setjmp(env);
		if (r == 0)
			dive(&env, 10 + i, h);
		h = mix(h, (uint64_t)r);
	}
	return h;
}

__attribute__((noinline)) static uint64_t sum_args(int n, ...)
{
	va_list ap;
	va_start(ap, n);
	uint64_t h = 0;
	for (int i = 0; i < n; i++)
		h = mix(h, va_arg(ap, uint64_t));
	double d = va_arg(ap, double);
	va_end(ap);
	return h + (uint64_t)(d * 1000.0);
}

static uint64_t w_varargs(uint64_t seed)
{
	return sum_args(9, seed, seed + 1, seed + 2, seed + 3, seed + 4, seed + 5, seed + 6,
			seed + 7, seed + 8, (double)(seed & 0xfff) / 7.0);
}

static const struct {
	const char *name;
	workload_fn fn;
} workloads[] = {
	{ "recursion", w_recursion }, { "doubles", w_doubles }, { "strings", w_strings },
	{ "qsort", w_qsort },	      { "longjmp", w_longjmp }, { "varargs", w_varargs },
};

/*
 * Calls fn(arg) with RSP at `top` (16-byte aligned), and restores it. Every
 * register the SysV ABI lets fn change is declared clobbered.
 */
static uint64_t call_on_stack(void *top, workload_fn fn, uint64_t arg)
{
	uint64_t r;
	__asm__ volatile("mov %%rsp, %%rbx\n\t"
			 "mov %[top], %%rsp\n\t"
			 "call *%[fn]\n\t"
			 "mov %%rbx, %%rsp"
			 : "=a"(r), "+D"(arg)
			 : [top] "r"(top), [fn] "r"(fn)
			 : "rbx", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0",
			   "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
			   "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	return r;
}

static _Alignas(64) unsigned char ref_stack[REF_STACK_BYTES];

int main(int argc, char **argv)
{
	const char *path = NULL;
	long rounds = 8;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--stack") && i + 1 < argc)
			path = argv[++i];
		else if (argv[i][0] >= '0' && argv[i][0] <= '9')
			rounds = atol(argv[i]);
		else
			die(TOOL, "usage: %s [--stack DEVDAX] [ROUNDS]", TOOL);
	}
	unsigned char *test_top = NULL;
	if (path) {
		int fd = open(path, O_RDWR);
		if (fd < 0)
			die(TOOL, "%s: %s", path, strerror(errno));
		unsigned char *p = mmap(0, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			die(TOOL, "mmap %s: %s", path, strerror(errno));
		test_top = p + MAP_BYTES - 64;
	}
	unsigned char *ref_top = ref_stack + REF_STACK_BYTES - 64;
	long calls = 0;
	uint64_t digest = 0;
	for (long r = 0; r < rounds; r++) {
		for (size_t w = 0; w < sizeof workloads / sizeof workloads[0]; w++) {
			uint64_t seed = mix((uint64_t)r + 1, w);
			uint64_t got, want;
			if (path) {
				want = call_on_stack(ref_top, workloads[w].fn, seed);
				got = call_on_stack(test_top, workloads[w].fn, seed);
				calls += 2;
			} else {
				got = want = workloads[w].fn(seed);
				calls += 1;
			}
			digest = mix(digest, got);
			if (got != want) {
				printf("{\"tool\":\"%s\",\"ok\":false,\"stack\":\"%s\",\"workload\":\"%s\","
				       "\"round\":%ld,\"want\":\"%#llx\",\"got\":\"%#llx\"}\n",
				       TOOL, path ? path : "own", workloads[w].name, r,
				       (unsigned long long)want, (unsigned long long)got);
				return 3;
			}
		}
	}
	printf("{\"tool\":\"%s\",\"ok\":true,\"stack\":\"%s\",\"rounds\":%ld,\"workloads\":%zu,"
	       "\"calls\":%ld,\"digest\":\"%016llx\"}\n",
	       TOOL, path ? path : "own", rounds, sizeof workloads / sizeof workloads[0], calls,
	       (unsigned long long)digest);
	return 0;
}
