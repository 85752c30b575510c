/*
 * cxlvmm-lat: latency and bandwidth of (timed) CXL memory, measured by the
 * guest itself. Reference: docs/timed-mode.md, "The guest tools".
 *
 *   cxlvmm-lat chase  [-s SIZE] [-n NODE_BYTES] [-l LOADS] [-w WARMUP] [--per-load] [--chunk N]
 *                     [--rounds R [--until-node N] [--round-gap NS]] [COMMON]
 *   cxlvmm-lat bw     [-s SIZE] [-T THREADS] [-m read,write,copy] [-i ITERS] [COMMON]
 *   cxlvmm-lat loaded [-s SIZE] [-n NODE_BYTES] [-l LOADS] [-w WARMUP] [--per-load] [--chunk N]
 *                     [-k THREADS] [-d NS,NS,...] [-b SIZE] [--load-stride BYTES] [--exp-delay]
 *                     [COMMON]
 *   COMMON: [-c CPULIST] [-t MHZ] [--node N [--unbind] | --devdax /dev/daxX.Y | --file PATH]
 *           [--label TEXT] [--seed N]
 *
 * chase: a random single cycle through the SIZE buffer cut into NODE_BYTES
 * nodes; each load depends on the one before. Timed with lfence-fenced
 * rdtsc, per chunk of N loads, or around every load with --per-load.
 * bw: THREADS threads stream over their own SIZE buffers with 8-byte loads
 * and/or stores. loaded: one chaser (on the first CPU of -c) while K threads
 * read their own buffers sequentially, one 8-byte load per stride, spinning
 * D ns after each (--exp-delay: a delay drawn from an exponential
 * distribution of mean D, as fabric-sweep --loaded-latency's model does);
 * one point per D. chase --rounds R times R chases one
 * after the other over the same buffer and reports each (with where its
 * pages are): with --node N --unbind the buffer is placed on N and then
 * released to the default policy, so the kernel may move it (memory
 * tiering's promotion) while the rounds run; --until-node N ends the rounds
 * early, once SETTLED_ROUNDS rounds in a row after the first have started
 * and ended with every sampled page on node N (R is then the most), so
 * that a test waits for the kernel's migration as long as it takes and no
 * longer. --round-gap NS spins NS on the TSC before each round after the
 * first (a program's work between passes over its data): NUMA balancing
 * scans a task's memory
 * every scan period of the task's own CPU time (kernel/sched/fair.c,
 * task_tick_numa), and rounds over DRAM alone take microseconds.
 *
 * The measured buffers are touched only through the asm moves below
 * (8-byte mov, never SSE/AVX and never glibc's memset/memcpy): memory that
 * the VMM serves access by access is run by KVM's instruction emulator,
 * which cannot run vector moves. Everything that touches them is in a
 * measured_* function; guest-images/build checks those for vector registers.
 * Only the buffers are placed (--node binds them with mbind): code, stack
 * and samples stay in ordinary memory. Buffers are faulted in with 8-byte
 * stores before anything is timed; --devdax and --file contents are
 * overwritten.
 *
 * Times are TSC ticks converted at the kernel's TSC rate (see tsc_rate();
 * -t overrides), with a CLOCK_MONOTONIC cross-check over the timed part.
 * Prints one JSON object on stdout, a summary on stderr. Exit status 0, or
 * 2 on bad usage or setup failure.
 */
#include "lat-buffers.h"
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>

#define TOOL LAT_TOOL
#define MAX_THREADS 64
#define MAX_POINTS 64
#define MAX_ROUNDS 10000
#define SETTLED_ROUNDS 5
#define COPY_SKEW (17 * 4096 + 320)

/* ------------------------------------------------------------------ options */

struct opts {
	const char *cmd, *label, *devdax, *file, *ops;
	int node, unbind, until_node, exp_delay, ncpus, cpus[MAX_CPUS], per_load, threads, k, npoints;
	size_t size, node_bytes, loads, warmup, chunk, load_size, load_stride, rounds;
	uint64_t round_gap_ns;
	unsigned iters;
	uint64_t seed, delays[MAX_POINTS];
	double tsc_override;
	/* derived */
	double tsc_mhz, tick_ns, overhead_ticks;
	const char *tsc_source;
	int tsc_unstable;
	char clocksource[64];
};

static void usage(int rc)
{
	fprintf(rc ? stderr : stdout,
		"usage: " TOOL " chase  [-s SIZE] [-n NODE_BYTES] [-l LOADS] [-w WARMUP] [--per-load] [--chunk N] [--rounds R [--until-node N] [--round-gap NS]] [COMMON]\n"
		"       " TOOL " bw     [-s SIZE] [-T THREADS] [-m read,write,copy] [-i ITERS] [COMMON]\n"
		"       " TOOL " loaded [chase options] [-k THREADS] [-d NS,NS,...] [-b SIZE] [--load-stride BYTES] [--exp-delay] [COMMON]\n"
		"COMMON: [-c CPULIST] [-t TSC_MHZ] [--node N [--unbind] | --devdax PATH | --file PATH] [--label TEXT] [--seed N]\n"
		"SIZE takes K, M, G suffixes (powers of 1024).\n");
	exit(rc);
}

/* Unsigned number with optional K/M/G suffix; dies naming OPT if bad. */
static uint64_t parse_num(const char *opt, const char *s, int suffix)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 0);
	if (end == s || errno || *s == '-')
		die(TOOL, "%s: not a number: '%s'", opt, s);
	int shift = 0;
	if (suffix && *end) {
		const char *units = "KMG", *u = strchr(units, *end & ~0x20);
		if (u && *end)
			shift = 10 * (int)(u - units + 1), end++;
	}
	if (*end || (shift && n > (~0ull >> shift)))
		die(TOOL, "%s: bad value '%s'", opt, s);
	return n << shift;
}

/* A NUMA node number (mbind's mask here holds nodes 0..1023). */
static int parse_node(const char *opt, const char *s)
{
	uint64_t n = parse_num(opt, s, 0);
	if (n > 1023)
		die(TOOL, "%s: %s is beyond 1023", opt, s);
	return (int)n;
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_NODE = 256, O_DEVDAX, O_FILE, O_LABEL, O_SEED, O_PER_LOAD, O_CHUNK, O_STRIDE, O_ROUNDS, O_UNBIND, O_UNTIL_NODE, O_ROUND_GAP, O_EXP_DELAY };
	static const struct option longs[] = {
		{"node", 1, 0, O_NODE},	      {"devdax", 1, 0, O_DEVDAX}, {"file", 1, 0, O_FILE},
		{"label", 1, 0, O_LABEL},     {"seed", 1, 0, O_SEED},	  {"per-load", 0, 0, O_PER_LOAD},
		{"chunk", 1, 0, O_CHUNK},     {"load-stride", 1, 0, O_STRIDE},
		{"rounds", 1, 0, O_ROUNDS},   {"unbind", 0, 0, O_UNBIND},
		{"until-node", 1, 0, O_UNTIL_NODE}, {"round-gap", 1, 0, O_ROUND_GAP},
		{"exp-delay", 0, 0, O_EXP_DELAY},
		{"help", 0, 0, 'h'},	      {0, 0, 0, 0},
	};
	*o = (struct opts){.label = "", .ops = "read,write,copy", .node = -1, .until_node = -1, .threads = 1, .size = 64 << 20,
			   .node_bytes = 64, .loads = 0, .warmup = SIZE_MAX, .chunk = 1024, .load_size = 64 << 20,
			   .load_stride = 64, .iters = 3, .seed = 1, .npoints = 1, .rounds = 1};
	if (argc < 2 || argv[1][0] == '-')
		usage(argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2);
	o->cmd = argv[1];
	if (strcmp(o->cmd, "chase") && strcmp(o->cmd, "bw") && strcmp(o->cmd, "loaded"))
		die(TOOL, "unknown command '%s' (chase, bw, loaded)", o->cmd);
	optind = 2;
	int c;
	while ((c = getopt_long(argc, argv, "c:t:s:n:l:w:T:m:i:k:d:b:h", longs, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->ncpus = parse_cpu_list(optarg, o->cpus);
			if (o->ncpus <= 0)
				die(TOOL, "-c: bad CPU list '%s'", optarg);
			break;
		case 't': {
			char *end;
			o->tsc_override = strtod(optarg, &end);
			if (*end || !(o->tsc_override > 0))
				die(TOOL, "-t: bad TSC rate '%s' (MHz)", optarg);
			break;
		}
		case 's': o->size = parse_num("-s", optarg, 1); break;
		case 'n': o->node_bytes = parse_num("-n", optarg, 1); break;
		case 'l': o->loads = parse_num("-l", optarg, 1); break;
		case 'w': o->warmup = parse_num("-w", optarg, 1); break;
		case 'T': o->threads = (int)parse_num("-T", optarg, 0); break;
		case 'm': o->ops = optarg; break;
		case 'i': o->iters = (unsigned)parse_num("-i", optarg, 0); break;
		case 'k': o->k = (int)parse_num("-k", optarg, 0); break;
		case 'b': o->load_size = parse_num("-b", optarg, 1); break;
		case 'd': {
			char *list = strdup(optarg), *save = NULL;
			o->npoints = 0;
			for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				if (o->npoints == MAX_POINTS)
					die(TOOL, "-d: more than %d delays", MAX_POINTS);
				o->delays[o->npoints++] = parse_num("-d", t, 0);
			}
			free(list);
			if (!o->npoints)
				die(TOOL, "-d: empty delay list");
			break;
		}
		case O_NODE: o->node = parse_node("--node", optarg); break;
		case O_DEVDAX: o->devdax = optarg; break;
		case O_FILE: o->file = optarg; break;
		case O_LABEL: o->label = optarg; break;
		case O_SEED: o->seed = parse_num("--seed", optarg, 0); break;
		case O_PER_LOAD: o->per_load = 1; break;
		case O_CHUNK: o->chunk = parse_num("--chunk", optarg, 1); break;
		case O_STRIDE: o->load_stride = parse_num("--load-stride", optarg, 1); break;
		case O_ROUNDS: o->rounds = parse_num("--rounds", optarg, 0); break;
		case O_UNBIND: o->unbind = 1; break;
		case O_UNTIL_NODE: o->until_node = parse_node("--until-node", optarg); break;
		case O_ROUND_GAP: o->round_gap_ns = parse_num("--round-gap", optarg, 0); break;
		case O_EXP_DELAY: o->exp_delay = 1; break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind != argc)
		die(TOOL, "unexpected argument '%s'", argv[optind]);
	if ((o->node >= 0) + !!o->devdax + !!o->file > 1)
		die(TOOL, "--node, --devdax and --file exclude each other");
	if (o->unbind && o->node < 0)
		die(TOOL, "--unbind: only with --node");
	if (o->rounds < 1 || o->rounds > MAX_ROUNDS)
		die(TOOL, "--rounds: %zu (1..%d)", o->rounds, MAX_ROUNDS);
	if (o->rounds > 1 && strcmp(o->cmd, "chase"))
		die(TOOL, "--rounds: only for chase");
	if (o->until_node >= 0 && o->rounds < 2)
		die(TOOL, "--until-node: only with --rounds 2 or more");
	if (o->until_node >= 0 && o->node < 0)
		die(TOOL, "--until-node: only with --node (anonymous memory the kernel may move)");
	if (o->round_gap_ns && o->rounds < 2)
		die(TOOL, "--round-gap: only with --rounds 2 or more");
	if (o->round_gap_ns > 10000000000ull)
		die(TOOL, "--round-gap: %llu ns is over 10 s", (unsigned long long)o->round_gap_ns);
	if (o->node_bytes < 8 || o->node_bytes % 8)
		die(TOOL, "-n: node size %zu is not a multiple of 8 bytes", o->node_bytes);
	if (o->size < 2 * o->node_bytes)
		die(TOOL, "-s: %zu bytes hold fewer than 2 nodes of %zu bytes", o->size, o->node_bytes);
	if (o->size / o->node_bytes > UINT32_MAX)
		die(TOOL, "-s/-n: more than 2^32 nodes");
	if (o->threads < 1 || o->threads > MAX_THREADS)
		die(TOOL, "-T: %d threads (1..%d)", o->threads, MAX_THREADS);
	if (o->k < 0 || o->k > MAX_THREADS)
		die(TOOL, "-k: %d load threads (0..%d)", o->k, MAX_THREADS);
	if (o->iters < 1)
		die(TOOL, "-i: at least one pass");
	if (o->chunk < 1)
		die(TOOL, "--chunk: at least one load");
	if (o->load_stride < 8 || o->load_stride % 8)
		die(TOOL, "--load-stride: %zu is not a multiple of 8 bytes", o->load_stride);
	if (o->load_size < o->load_stride)
		die(TOOL, "-b: %zu bytes is less than one stride", o->load_size);
	if (!strcmp(o->cmd, "bw") && o->size < 32)
		die(TOOL, "-s: bw wants at least 32 bytes per thread");
	size_t nodes = o->size / o->node_bytes;
	if (o->loads == 0)
		o->loads = nodes;
	if (o->warmup == SIZE_MAX)
		o->warmup = !strcmp(o->cmd, "loaded") && nodes > 65536 ? 65536 : nodes;
	if (o->chunk > o->loads)
		o->chunk = o->loads;
}

/* ------------------------------------------------------------------ chase */

/* Writes every node's successor pointer, in address order. */
__attribute__((noinline)) static void measured_link(uint8_t *buf, size_t node_bytes, const uint32_t *succ, size_t nodes)
{
	for (size_t i = 0; i < nodes; i++)
		st64((uint64_t *)(buf + i * node_bytes), (uint64_t)(uintptr_t)(buf + (size_t)succ[i] * node_bytes));
}

/* N dependent loads from P, timed as a whole; returns where it ended. */
__attribute__((noinline)) static uintptr_t measured_chase(uintptr_t p, size_t n, uint64_t *ticks)
{
	uint64_t t0 = tsc_fenced();
	for (size_t i = 0; i < n; i++)
		p = (uintptr_t)ld64((const uint64_t *)p);
	*ticks = tsc_fenced() - t0;
	return p;
}

/* N dependent loads from P, each timed on its own into T[]. */
__attribute__((noinline)) static uintptr_t measured_chase_each(uintptr_t p, size_t n, uint64_t *t)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = tsc_fenced();
		p = (uintptr_t)ld64((const uint64_t *)p);
		t[i] = tsc_fenced() - t0;
	}
	return p;
}

static uint64_t rng_state;
static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* Links the buffer into one random cycle (Sattolo's shuffle); returns its start. */
static uintptr_t chase_build(const struct opts *o, uint8_t *buf)
{
	size_t nodes = o->size / o->node_bytes;
	uint32_t *succ = malloc(nodes * sizeof *succ);
	if (!succ)
		die(TOOL, "no memory for %zu successor links", nodes);
	rng_state = o->seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < nodes; i++)
		succ[i] = (uint32_t)i;
	for (size_t i = nodes - 1; i > 0; i--) {
		size_t j = rng_next() % i;
		uint32_t t = succ[i];
		succ[i] = succ[j], succ[j] = t;
	}
	measured_touch(buf, o->size);
	measured_link(buf, o->node_bytes, succ, nodes);
	free(succ);
	return (uintptr_t)buf;
}

struct chase_result {
	struct stats st;
	double mean_ns, total_ns, mono_ns;
	uintptr_t end; /* where the chase stopped */
	size_t backward; /* per-load samples whose second rdtsc read below the first */
};

/* Warm-up, then LOADS timed loads from START (per chunk or per load). */
static struct chase_result chase_run(const struct opts *o, uintptr_t start, uint64_t *samples)
{
	struct chase_result r = {0};
	uint64_t ignored, spent = 0;
	uintptr_t p = start;
	for (size_t done = 0; done < o->warmup; done += o->chunk)
		p = measured_chase(p, o->warmup - done < o->chunk ? o->warmup - done : o->chunk, &ignored);
	size_t nsamples = 0;
	uint64_t m0 = mono_ns(), t0 = tsc_fenced();
	if (o->per_load) {
		p = measured_chase_each(p, o->loads, samples);
		nsamples = o->loads;
	} else {
		for (size_t done = 0; done < o->loads; done += o->chunk) {
			size_t n = o->loads - done < o->chunk ? o->loads - done : o->chunk;
			p = measured_chase(p, n, &spent);
			if (n == o->chunk) /* a short last chunk is left out of the percentiles */
				samples[nsamples++] = spent;
		}
	}
	uint64_t t1 = tsc_fenced(), m1 = mono_ns();
	/* What the two rdtsc around each load add is taken off. A sample that
	 * wrapped (the TSC stepped back on this CPU during the load) is counted
	 * and stays in the percentiles as a huge value. */
	if (o->per_load)
		for (size_t i = 0; i < nsamples; i++) {
			r.backward += (int64_t)samples[i] < 0;
			samples[i] = samples[i] > o->overhead_ticks ? samples[i] - (uint64_t)o->overhead_ticks : 0;
		}
	r.st = stats_of(samples, nsamples, o->per_load ? 1 : o->chunk, o->tick_ns);
	r.total_ns = (double)(t1 - t0) * o->tick_ns;
	r.mean_ns = r.total_ns / (double)o->loads;
	r.mono_ns = (double)(m1 - m0);
	r.end = p;
	return r;
}

/* Busy for NS of the TSC's time, on this CPU. */
static void spin_ns(const struct opts *o, uint64_t ns)
{
	uint64_t ticks = (uint64_t)((double)ns / o->tick_ns), t = tsc_now();
	while (tsc_now() - t < ticks)
		;
}

/* The rounds' JSON, kept in memory until the head is printed (the head
 * says where the pages were at the end). */
static char *rounds_text;
static size_t rounds_len;
static FILE *rounds_json(void)
{
	static FILE *f;
	if (!f && !(f = open_memstream(&rounds_text, &rounds_len)))
		die(TOOL, "no memory for the rounds");
	return f;
}

/* One round: its per-load mean and median, its CLOCK_MONOTONIC end since
 * the first round's start, and where its pages are after it. Returns
 * whether every sampled page is on NODE (the sample printed). */
static int print_round(size_t i, const struct chase_result *r, int node)
{
	static uint64_t t0;
	uint64_t now = mono_ns();
	if (i == 0)
		t0 = now - (uint64_t)r->mono_ns;
	FILE *f = rounds_json();
	fprintf(f, "%s{\"round\":%zu", i ? "," : "", i);
	jnum(f, "mean_ns", r->mean_ns);
	jnum(f, "p50_ns", r->st.p50);
	jnum(f, "end_s", (double)(now - t0) / 1e9);
	int status[PAGE_SAMPLES];
	size_t n = page_nodes(status);
	fputs(",\"page_nodes\":", f);
	print_node_counts(f, status, n);
	fputc('}', f);
	fflush(f);
	fprintf(stderr, "round %zu: mean %.1f ns p50 %.1f ns\n", i, r->mean_ns, r->st.p50);
	return all_on(status, n, node);
}

static uint64_t *samples_alloc(const struct opts *o)
{
	uint64_t *s = malloc((o->per_load ? o->loads : o->loads / o->chunk + 1) * sizeof *s);
	if (!s)
		die(TOOL, "no memory for the samples of %zu loads", o->loads);
	return s;
}

/* Fields every command prints first. */
static void print_head(FILE *f, const struct opts *o)
{
	fputs("{\"tool\":\"cxlvmm-lat\",\"command\":", f);
	json_str(f, o->cmd);
	fputs(",\"label\":", f);
	json_str(f, o->label);
	jnum(f, "tsc_MHz", o->tsc_mhz);
	fprintf(f, ",\"tsc_source\":\"%s\",\"tsc_marked_unstable\":%s,\"clocksource\":", o->tsc_source,
		o->tsc_unstable ? "true" : "false");
	json_str(f, o->clocksource);
	jnum(f, "timer_overhead_ns", o->overhead_ticks * o->tick_ns);
	fputs(",\"cpus\":", f);
	json_int_list(f, o->cpus, o->ncpus);
	fprintf(f, ",\"mem_kind\":\"%s\",\"mem_node\":", mem.kind);
	if (o->node >= 0)
		fprintf(f, "%d", o->node);
	else
		fputs("null", f);
	fputs(",\"mem_path\":", f);
	json_str(f, o->devdax ? o->devdax : o->file);
	fprintf(f, ",\"map_bytes\":%zu,\"page_nodes\":", mem.len);
	print_page_nodes(f);
	fprintf(f, ",\"seed\":%llu", (unsigned long long)o->seed);
}

static void print_chase_params(FILE *f, const struct opts *o)
{
	fprintf(f, ",\"size_bytes\":%zu,\"node_bytes\":%zu,\"nodes\":%zu,\"loads\":%zu,\"warmup_loads\":%zu,"
		   "\"per_load\":%s,\"chunk_loads\":%zu",
		o->size, o->node_bytes, o->size / o->node_bytes, o->loads, o->warmup, o->per_load ? "true" : "false",
		o->per_load ? 1 : o->chunk);
}

static void cmd_chase(const struct opts *o)
{
	mem_map(o->devdax, o->file, o->node, o->size);
	uint8_t *buf = mem_alloc(0, o->size);
	uint64_t *samples = samples_alloc(o);
	uintptr_t start = chase_build(o, buf);
	if (o->unbind && syscall(SYS_mbind, buf, mem.len, 0ul, NULL, 0ul, 0ul) != 0)
		die(TOOL, "--unbind: mbind(MPOL_DEFAULT): %s", strerror(errno));
	/* Where the pages are before the first round; rounds after the first
	 * start where the one before stopped. */
	if (o->rounds > 1) {
		fputs(",\"start_page_nodes\":", rounds_json());
		print_page_nodes(rounds_json());
	}
	struct chase_result r = chase_run(o, start, samples);
	size_t rounds_run = 1;
	if (o->rounds > 1) {
		struct opts next = *o;
		next.warmup = 0;
		fputs(",\"rounds\":[", rounds_json());
		/* Rounds in a row that started and ended with the pages on
		 * --until-node's node (as sampled after the round before, and
		 * after the round itself): a round during which they moved is
		 * not one of them, nor is the first. */
		size_t settled = 0;
		int on = print_round(0, &r, o->until_node);
		while (rounds_run < o->rounds && !(o->until_node >= 0 && settled >= SETTLED_ROUNDS)) {
			spin_ns(o, o->round_gap_ns);
			r = chase_run(&next, r.end, samples);
			int was_on = on;
			on = print_round(rounds_run++, &r, o->until_node);
			settled = was_on && on ? settled + 1 : 0;
		}
		fputc(']', rounds_json());
	}
	fprintf(stderr, "chase %zu B / %zu B nodes on %s: %zu loads, mean %.1f ns, p50 %.1f p90 %.1f p99 %.1f max %.1f ns (%s)\n",
		o->size, o->node_bytes, mem.kind, o->loads, r.mean_ns, r.st.p50, r.st.p90, r.st.p99, r.st.max,
		o->per_load ? "per load" : "per chunk");
	fprintf(stderr, "  TSC %.3f MHz (%s); CLOCK_MONOTONIC saw %.0f ns for TSC's %.0f ns\n", o->tsc_mhz,
		o->tsc_source, r.mono_ns, r.total_ns);
	print_head(stdout, o);
	print_chase_params(stdout, o);
	fprintf(stdout, ",\"unbind\":%s,\"rounds_run\":%zu,\"round_gap_ns\":%llu,\"until_node\":",
		o->unbind ? "true" : "false", rounds_run, (unsigned long long)o->round_gap_ns);
	if (o->until_node >= 0)
		fprintf(stdout, "%d", o->until_node);
	else
		fputs("null", stdout);
	print_stats(stdout, &r.st);
	fprintf(stdout, ",\"backward_loads\":%zu", r.backward);
	jnum(stdout, "mean_ns", r.mean_ns);
	jnum(stdout, "total_ns", r.total_ns);
	jnum(stdout, "monotonic_ns", r.mono_ns);
	jnum(stdout, "tsc_MHz_vs_monotonic", r.total_ns / o->tick_ns / r.mono_ns * 1e3);
	if (o->rounds > 1)
		fputs(rounds_text, stdout);
	fprintf(stdout, ",\"cpu_seen\":%d}\n", sched_getcpu());
}

/* ------------------------------------------------------------------ bw */

__attribute__((noinline)) static uint64_t measured_read(const uint64_t *p, size_t words)
{
	uint64_t a = 0, b = 0, c = 0, d = 0;
	for (size_t i = 0; i + 4 <= words; i += 4) {
		a += ld64(p + i);
		b += ld64(p + i + 1);
		c += ld64(p + i + 2);
		d += ld64(p + i + 3);
	}
	return a + b + c + d;
}

__attribute__((noinline)) static void measured_write(uint64_t *p, size_t words, uint64_t v)
{
	for (size_t i = 0; i + 4 <= words; i += 4) {
		st64(p + i, v);
		st64(p + i + 1, v);
		st64(p + i + 2, v);
		st64(p + i + 3, v);
	}
}

__attribute__((noinline)) static void measured_copy(uint64_t *dst, const uint64_t *src, size_t words)
{
	for (size_t i = 0; i + 4 <= words; i += 4) {
		st64(dst + i, ld64(src + i));
		st64(dst + i + 1, ld64(src + i + 1));
		st64(dst + i + 2, ld64(src + i + 2));
		st64(dst + i + 3, ld64(src + i + 3));
	}
}

enum op { OP_READ, OP_WRITE, OP_COPY };
static const char *const op_names[] = {"read", "write", "copy"};

struct bw_thread {
	const struct opts *o;
	pthread_t tid;
	int cpu, cpu_seen;
	uint64_t *src, *dst;
	enum op ops[16];
	int nops;
	uint64_t t0[16], t1[16], sum;
	pthread_barrier_t *barrier;
};

static void *bw_main(void *arg)
{
	struct bw_thread *t = arg;
	size_t words = t->o->size / 32 * 4;
	if (t->cpu >= 0 && pin_self(t->cpu))
		die(TOOL, "-c: cannot run on CPU %d", t->cpu);
	/* The untimed first pass faults the pages in. */
	measured_write(t->src, words, 1);
	if (t->dst)
		measured_write(t->dst, words, 2);
	for (int i = 0; i < t->nops; i++) {
		pthread_barrier_wait(t->barrier);
		t->t0[i] = tsc_fenced();
		for (unsigned it = 0; it < t->o->iters; it++) {
			if (t->ops[i] == OP_READ)
				t->sum += measured_read(t->src, words);
			else if (t->ops[i] == OP_WRITE)
				measured_write(t->src, words, it);
			else
				measured_copy(t->dst, t->src, words);
		}
		t->t1[i] = tsc_fenced();
	}
	t->cpu_seen = sched_getcpu();
	return NULL;
}

static void cmd_bw(const struct opts *o)
{
	static struct bw_thread th[MAX_THREADS];
	enum op ops[16];
	int nops = 0, copy = 0;
	char *list = strdup(o->ops), *save = NULL;
	for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		int i = 0;
		while (i < 3 && strcmp(s, op_names[i]))
			i++;
		if (i == 3 || nops == 16)
			die(TOOL, "-m: unknown or too many operations '%s' (read, write, copy)", s);
		ops[nops++] = (enum op)i;
		copy |= i == OP_COPY;
	}
	free(list);
	if (!nops)
		die(TOOL, "-m: no operation");
	size_t words = o->size / 32 * 4;
	mem_map(o->devdax, o->file, o->node,
		(size_t)o->threads * (round_up(words * 8, ALIGN) + (copy ? round_up(words * 8 + COPY_SKEW, ALIGN) : 0)));
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, (unsigned)o->threads);
	for (int i = 0; i < o->threads; i++) {
		th[i] = (struct bw_thread){.o = o, .cpu = o->ncpus ? o->cpus[i % o->ncpus] : -1, .nops = nops,
					   .barrier = &barrier};
		memcpy(th[i].ops, ops, sizeof ops);
		th[i].src = (uint64_t *)mem_alloc(0, words * 8);
		/*
		 * The destination starts 17 pages + 320 B further into its
		 * buffer: source and destination words at the same offset
		 * modulo a large power of two would contend for the same
		 * cache/TLB sets (and 4 KiB store-load aliasing).
		 */
		th[i].dst = copy ? (uint64_t *)mem_alloc(COPY_SKEW, words * 8) : NULL;
		if (pthread_create(&th[i].tid, NULL, bw_main, &th[i]))
			die(TOOL, "cannot start thread %d", i);
	}
	for (int i = 0; i < o->threads; i++)
		pthread_join(th[i].tid, NULL);
	print_head(stdout, o);
	fprintf(stdout, ",\"size_bytes\":%zu,\"threads\":%d,\"iters\":%u,\"cpus_seen\":[", words * 8, o->threads,
		o->iters);
	for (int i = 0; i < o->threads; i++)
		fprintf(stdout, "%s%d", i ? "," : "", th[i].cpu_seen);
	fputs("],\"results\":[", stdout);
	for (int k = 0; k < nops; k++) {
		uint64_t first = UINT64_MAX, last = 0;
		double per = (double)words * 8 * o->iters, sum_rate = 0;
		for (int i = 0; i < o->threads; i++) {
			first = th[i].t0[k] < first ? th[i].t0[k] : first;
			last = th[i].t1[k] > last ? th[i].t1[k] : last;
		}
		double rd = ops[k] == OP_WRITE ? 0 : per * o->threads, wr = ops[k] == OP_READ ? 0 : per * o->threads;
		double secs = (double)(last - first) * o->tick_ns * 1e-9;
		fprintf(stdout, "%s{\"op\":\"%s\",\"bytes_read\":%.0f,\"bytes_written\":%.0f", k ? "," : "",
			op_names[ops[k]], rd, wr);
		jnum(stdout, "seconds", secs);
		jnum(stdout, "GBps", (rd + wr) / secs * 1e-9);
		fputs(",\"thread_GBps\":[", stdout);
		for (int i = 0; i < o->threads; i++) {
			double r = (rd + wr) / o->threads / ((double)(th[i].t1[k] - th[i].t0[k]) * o->tick_ns);
			sum_rate += r;
			fprintf(stdout, "%s%.6g", i ? "," : "", isfinite(r) ? r : 0);
		}
		fputs("]}", stdout);
		fprintf(stderr, "bw %-5s %d thread(s) x %zu B x %u on %s: %.3f GB/s (%.0f B in %.4f s)\n",
			op_names[ops[k]], o->threads, words * 8, o->iters, mem.kind, (rd + wr) / secs * 1e-9, rd + wr,
			secs);
	}
	uint64_t sum = 0;
	for (int i = 0; i < o->threads; i++)
		sum += th[i].sum;
	fprintf(stdout, "],\"checksum\":%llu}\n", (unsigned long long)(sum & 0xffff));
}

/* ------------------------------------------------------------------ loaded */

static atomic_int load_stop, load_quit;

/* Delays a loader spins after its loads, used in turn: all D, or drawn
 * from an exponential distribution of mean D (--exp-delay). Drawn before a
 * point starts, so the measured loop stays integer-only. */
#define DELAY_TABLE 4096

/* One 8-byte load every STRIDE words, wrapping, spinning the next DELAYS tick count after each, until load_stop. */
__attribute__((noinline)) static uint64_t measured_sweep(const uint64_t *p, size_t words, size_t stride,
							const uint64_t *delays, uint64_t *loads)
{
	uint64_t sum = 0, n = 0;
	size_t i = 0;
	while (!atomic_load_explicit(&load_stop, memory_order_relaxed)) {
		for (int j = 0; j < 64; j++) {
			sum += ld64(p + i);
			i += stride;
			if (i >= words)
				i = 0;
			uint64_t delay = delays[(n + (uint64_t)j) % DELAY_TABLE];
			if (delay) {
				uint64_t t = tsc_now();
				while (tsc_now() - t < delay)
					__asm__ volatile("pause");
			}
		}
		n += 64;
	}
	*loads = n;
	return sum;
}

/* Fills T with DELAY_TABLE delays of mean MEAN ticks (fixed, or exponential from SEED). */
static void delay_table(uint64_t *t, double mean, int exponential, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (int i = 0; i < DELAY_TABLE; i++) {
		if (!exponential) {
			t[i] = (uint64_t)mean;
			continue;
		}
		/* splitmix64, then u in (0, 1] */
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		double u = ((double)(z >> 11) + 1.0) / 9007199254740992.0;
		t[i] = (uint64_t)(-log(u) * mean);
	}
}

struct load_thread {
	const struct opts *o;
	pthread_t tid;
	int cpu;
	uint64_t *buf;
	uint64_t delays[DELAY_TABLE], loads, t0, t1, sum;
	pthread_barrier_t *barrier;
};

static void *load_main(void *arg)
{
	struct load_thread *t = arg;
	size_t words = t->o->load_size / 8;
	if (t->cpu >= 0 && pin_self(t->cpu))
		die(TOOL, "-c: cannot run on CPU %d", t->cpu);
	measured_write(t->buf, words, 3);
	pthread_barrier_wait(t->barrier); /* buffer faulted in */
	for (;;) {
		pthread_barrier_wait(t->barrier); /* start of a point (or the end) */
		if (atomic_load(&load_quit))
			return NULL;
		t->t0 = tsc_fenced();
		t->sum += measured_sweep(t->buf, words / 4 * 4, t->o->load_stride / 8, t->delays, &t->loads);
		t->t1 = tsc_fenced();
		pthread_barrier_wait(t->barrier); /* results stored */
	}
}

static void cmd_loaded(const struct opts *o)
{
	static struct load_thread th[MAX_THREADS];
	mem_map(o->devdax, o->file, o->node, round_up(o->size, ALIGN) + (size_t)o->k * round_up(o->load_size, ALIGN));
	uint8_t *chase_buf = mem_alloc(0, o->size);
	uint64_t *samples = samples_alloc(o);
	uintptr_t start = chase_build(o, chase_buf);
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, (unsigned)o->k + 1);
	for (int i = 0; i < o->k; i++) {
		th[i] = (struct load_thread){.o = o, .barrier = &barrier,
					     .cpu = o->ncpus ? o->cpus[(1 + i) % o->ncpus] : -1};
		th[i].buf = (uint64_t *)mem_alloc(0, o->load_size);
		if (pthread_create(&th[i].tid, NULL, load_main, &th[i]))
			die(TOOL, "cannot start load thread %d", i);
	}
	pthread_barrier_wait(&barrier);
	print_head(stdout, o);
	print_chase_params(stdout, o);
	fprintf(stdout, ",\"load_threads\":%d,\"load_bytes\":%zu,\"load_stride\":%zu,\"delay_dist\":\"%s\",\"points\":[",
		o->k, o->load_size, o->load_stride, o->exp_delay ? "exponential" : "fixed");
	for (int pt = 0; pt < o->npoints; pt++) {
		double mean_ticks = (double)o->delays[pt] / o->tick_ns;
		for (int i = 0; i < o->k; i++)
			delay_table(th[i].delays, mean_ticks, o->exp_delay, o->seed + 1000 * (uint64_t)pt + (uint64_t)i);
		atomic_store(&load_stop, 0);
		pthread_barrier_wait(&barrier);
		struct chase_result r = chase_run(o, start, samples);
		atomic_store(&load_stop, 1);
		pthread_barrier_wait(&barrier);
		double gbps = 0;
		uint64_t loads = 0;
		for (int i = 0; i < o->k; i++) {
			double ns = (double)(th[i].t1 - th[i].t0) * o->tick_ns;
			gbps += (double)th[i].loads * (double)o->load_stride / ns;
			loads += th[i].loads;
		}
		fprintf(stdout, "%s{\"delay_ns\":%llu,\"load_loads\":%llu", pt ? "," : "",
			(unsigned long long)o->delays[pt], (unsigned long long)loads);
		jnum(stdout, "load_GBps", gbps);
		print_stats(stdout, &r.st);
		fprintf(stdout, ",\"backward_loads\":%zu", r.backward);
		jnum(stdout, "mean_ns", r.mean_ns);
		jnum(stdout, "monotonic_ns", r.mono_ns);
		jnum(stdout, "total_ns", r.total_ns);
		fputc('}', stdout);
		fprintf(stderr, "loaded k=%d delay %llu ns: load %.3f GB/s, chaser p50 %.1f ns mean %.1f ns\n", o->k,
			(unsigned long long)o->delays[pt], gbps, r.st.p50, r.mean_ns);
	}
	atomic_store(&load_quit, 1);
	pthread_barrier_wait(&barrier);
	for (int i = 0; i < o->k; i++)
		pthread_join(th[i].tid, NULL);
	fprintf(stdout, "],\"cpu_seen\":%d}\n", sched_getcpu());
}

/* ------------------------------------------------------------------ main */

/* Median cost of an empty fenced rdtsc pair, in ticks. */
static double timer_overhead(void)
{
	enum { N = 1001 };
	static uint64_t t[N];
	for (int i = 0; i < N; i++) {
		uint64_t t0 = tsc_fenced();
		t[i] = tsc_fenced() - t0;
	}
	qsort(t, N, sizeof *t, cmp_u64);
	return (double)t[N / 2];
}

int main(int argc, char **argv)
{
	static struct opts o;
	parse_opts(argc, argv, &o);
	o.tsc_mhz = tsc_rate(o.tsc_override, &o.tsc_source, &o.tsc_unstable);
	o.tick_ns = 1e3 / o.tsc_mhz;
	current_clocksource(o.clocksource, sizeof o.clocksource);
	/* The chaser runs on the first CPU of -c (bw pins each of its threads). */
	if (o.ncpus && strcmp(o.cmd, "bw") && pin_self(o.cpus[0]))
		die(TOOL, "-c: cannot run on CPU %d", o.cpus[0]);
	o.overhead_ticks = timer_overhead();
	if (!strcmp(o.cmd, "chase"))
		cmd_chase(&o);
	else if (!strcmp(o.cmd, "bw"))
		cmd_bw(&o);
	else
		cmd_loaded(&o);
	return 0;
}
