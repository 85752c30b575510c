/*
 * cxlvmm-clockcheck: is CLOCK_MONOTONIC monotonic across CPUs?
 *
 *   cxlvmm-clockcheck [-c CPULIST] [-n READS] [-s SECONDS] [--label TEXT] [--skew NS]
 *
 *   -c CPULIST  one thread pinned to each CPU (default: every CPU we may run on)
 *   -n READS    stop after this many clock reads, all threads together
 *               (default 10000000 unless -s is given)
 *   -s SECONDS  stop after this long (with -n too: whichever comes first)
 *   --skew NS   the thread on the i-th CPU of the list takes i x NS off its
 *               readings: a clock skewed on purpose, which must fail
 *
 * Every thread loops: load the largest reading any thread has published
 * (a 64-bit atomic), then read clock_gettime(CLOCK_MONOTONIC) (the vDSO
 * where the clocksource allows), then publish its reading if larger (CAS).
 * The clock is read after the load, so it is causally after the reading
 * that was published: a reading below the published one is a backward step.
 * Each thread also compares with its own previous reading (a same-CPU step
 * back). Reports the clocksource before and after, and the kernel's log
 * lines about clocksources or the TSC that appeared during the run.
 *
 * Prints one JSON object on stdout: "tool", "label", "clocksource",
 * "clocksource_end", "vdso", "cpus", "reads", "seconds", "reads_per_s",
 * "advances" (readings that raised the published maximum),
 * "backward_steps", "max_backward_ns", "same_cpu_backward_steps",
 * "max_same_cpu_backward_ns", "threads" (the same per thread, with the CPU
 * it asked for, the CPUs it was seen on and "migrations"), "kernel_messages",
 * "ok". Exit status 0 if no reading went backward, 1 if one did, 2 on bad
 * usage or setup failure.
 */
#include "common.h"
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/auxv.h>

#define TOOL "cxlvmm-clockcheck"
#define MAX_MESSAGES 16

static _Atomic uint64_t published;  /* largest reading so far */
static _Atomic uint64_t reads_left; /* shared -n budget, taken in batches */
static atomic_int stop;
static uint64_t deadline_ns; /* 0: none */
static uint64_t skew_ns;
static pthread_barrier_t start_line;

#define BATCH 1024

struct checker {
	pthread_t tid;
	int index, cpu, first_cpu, last_cpu;
	uint64_t reads, advances, back, max_back, same_back, max_same_back, migrations;
};

static void *check_main(void *arg)
{
	struct checker *c = arg;
	if (pin_self(c->cpu))
		die(TOOL, "-c: cannot run on CPU %d", c->cpu);
	c->first_cpu = c->last_cpu = sched_getcpu();
	pthread_barrier_wait(&start_line);
	uint64_t prev = 0, skew = skew_ns * (uint64_t)c->index;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		/* Take BATCH reads from the budget; the last taker stops everyone. */
		uint64_t left = atomic_load(&reads_left);
		do {
			if (left == 0) {
				atomic_store(&stop, 1);
				break;
			}
		} while (!atomic_compare_exchange_weak(&reads_left, &left, left > BATCH ? left - BATCH : 0));
		if (left == 0)
			break;
		uint64_t n = left > BATCH ? BATCH : left, t = 0;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t m = atomic_load_explicit(&published, memory_order_acquire);
			t = mono_ns() - skew;
			if (t < m) {
				c->back++;
				if (m - t > c->max_back)
					c->max_back = m - t;
			}
			if (t < prev) {
				c->same_back++;
				if (prev - t > c->max_same_back)
					c->max_same_back = prev - t;
			}
			prev = t;
			while (t > m) {
				if (atomic_compare_exchange_weak_explicit(&published, &m, t, memory_order_acq_rel,
									  memory_order_acquire)) {
					c->advances++;
					break;
				}
			}
		}
		c->reads += n;
		int cpu = sched_getcpu();
		if (cpu != c->cpu)
			c->migrations++;
		c->last_cpu = cpu;
		if (deadline_ns && t >= deadline_ns)
			atomic_store(&stop, 1);
	}
	return NULL;
}

struct kmsg_lines {
	int count;
	char text[MAX_MESSAGES][256];
};

/* Keeps log lines about clocksources or the TSC. */
static void clock_line(const char *msg, void *ctx)
{
	struct kmsg_lines *k = ctx;
	if (!strcasestr(msg, "clocksource") && !strstr(msg, "TSC") && strncmp(msg, "tsc:", 4))
		return;
	if (k->count < MAX_MESSAGES)
		snprintf(k->text[k->count], sizeof k->text[0], "%s", msg);
	k->count++;
}

int main(int argc, char **argv)
{
	static struct checker ck[MAX_CPUS];
	static const struct option longs[] = {
		{"label", 1, 0, 'L'}, {"skew", 1, 0, 'K'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int cpus[MAX_CPUS], ncpus = 0, opt;
	uint64_t reads = 0;
	double seconds = 0;
	const char *label = "";
	while ((opt = getopt_long(argc, argv, "c:n:s:h", longs, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 'c':
			ncpus = parse_cpu_list(optarg, cpus);
			if (ncpus <= 0)
				die(TOOL, "-c: bad CPU list '%s'", optarg);
			break;
		case 'n':
			reads = strtoull(optarg, &end, 0);
			if (*end || !reads || *optarg == '-')
				die(TOOL, "-n: bad number of reads '%s'", optarg);
			break;
		case 's':
			seconds = strtod(optarg, &end);
			if (*end || !(seconds > 0))
				die(TOOL, "-s: bad number of seconds '%s'", optarg);
			break;
		case 'L': label = optarg; break;
		case 'K':
			skew_ns = strtoull(optarg, &end, 0);
			if (*end || *optarg == '-')
				die(TOOL, "--skew: bad number of ns '%s'", optarg);
			break;
		case 'h':
			printf("usage: " TOOL " [-c CPULIST] [-n READS] [-s SECONDS] [--label TEXT] [--skew NS]\n");
			return 0;
		default:
			fprintf(stderr, "usage: " TOOL " [-c CPULIST] [-n READS] [-s SECONDS] [--label TEXT] [--skew NS]\n");
			return 2;
		}
	}
	if (optind != argc)
		die(TOOL, "unexpected argument '%s'", argv[optind]);
	if (!ncpus) {
		cpu_set_t set;
		if (sched_getaffinity(0, sizeof set, &set) != 0)
			die(TOOL, "sched_getaffinity: %s", strerror(errno));
		for (int c = 0; c < CPU_SETSIZE && ncpus < MAX_CPUS; c++)
			if (CPU_ISSET(c, &set))
				cpus[ncpus++] = c;
	}
	if (!reads && !seconds)
		reads = 10000000;
	atomic_store(&reads_left, reads ? reads : UINT64_MAX);

	char cs_start[64], cs_end[64];
	struct kmsg_lines log = {0};
	int kfd = -1;
	kmsg_scan(&kfd, 1, clock_line, &log); /* from now on */
	current_clocksource(cs_start, sizeof cs_start);
	pthread_barrier_init(&start_line, NULL, (unsigned)ncpus + 1);
	for (int i = 0; i < ncpus; i++) {
		ck[i].cpu = cpus[i], ck[i].index = i;
		if (pthread_create(&ck[i].tid, NULL, check_main, &ck[i]))
			die(TOOL, "cannot start a thread for CPU %d", cpus[i]);
	}
	uint64_t t0 = mono_ns();
	if (seconds)
		deadline_ns = t0 + (uint64_t)(seconds * 1e9);
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < ncpus; i++)
		pthread_join(ck[i].tid, NULL);
	uint64_t t1 = mono_ns();
	current_clocksource(cs_end, sizeof cs_end);
	if (kfd >= 0) {
		kmsg_scan(&kfd, 1, clock_line, &log);
		close(kfd);
	}

	uint64_t total = 0, adv = 0, back = 0, max_back = 0, same = 0, max_same = 0;
	for (int i = 0; i < ncpus; i++) {
		total += ck[i].reads, adv += ck[i].advances, back += ck[i].back, same += ck[i].same_back;
		max_back = ck[i].max_back > max_back ? ck[i].max_back : max_back;
		max_same = ck[i].max_same_back > max_same ? ck[i].max_same_back : max_same;
	}
	double secs = (double)(t1 - t0) * 1e-9;
	int ok = back == 0 && same == 0;
	printf("{\"tool\":\"cxlvmm-clockcheck\",\"label\":");
	json_str(stdout, label);
	printf(",\"clocksource\":");
	json_str(stdout, cs_start);
	printf(",\"clocksource_end\":");
	json_str(stdout, cs_end);
	printf(",\"skew_ns\":%llu,\"vdso\":%s,\"cpus\":", (unsigned long long)skew_ns, getauxval(AT_SYSINFO_EHDR) ? "true" : "false");
	json_int_list(stdout, cpus, ncpus);
	printf(",\"reads\":%llu,\"seconds\":%.3f,\"reads_per_s\":%.0f,\"advances\":%llu,"
	       "\"backward_steps\":%llu,\"max_backward_ns\":%llu,"
	       "\"same_cpu_backward_steps\":%llu,\"max_same_cpu_backward_ns\":%llu,\"threads\":[",
	       (unsigned long long)total, secs, secs > 0 ? (double)total / secs : 0, (unsigned long long)adv,
	       (unsigned long long)back, (unsigned long long)max_back, (unsigned long long)same,
	       (unsigned long long)max_same);
	for (int i = 0; i < ncpus; i++) {
		struct checker *c = &ck[i];
		printf("%s{\"cpu\":%d,\"cpu_first\":%d,\"cpu_last\":%d,\"migrations\":%llu,\"reads\":%llu,"
		       "\"advances\":%llu,\"backward_steps\":%llu,\"max_backward_ns\":%llu,"
		       "\"same_cpu_backward_steps\":%llu,\"max_same_cpu_backward_ns\":%llu}",
		       i ? "," : "", c->cpu, c->first_cpu, c->last_cpu, (unsigned long long)c->migrations,
		       (unsigned long long)c->reads, (unsigned long long)c->advances, (unsigned long long)c->back,
		       (unsigned long long)c->max_back, (unsigned long long)c->same_back,
		       (unsigned long long)c->max_same_back);
	}
	printf("],\"kernel_messages\":[");
	for (int i = 0; i < log.count && i < MAX_MESSAGES; i++) {
		if (i)
			putchar(',');
		json_str(stdout, log.text[i]);
	}
	printf("],\"kernel_messages_total\":%d,\"ok\":%s}\n", log.count, ok ? "true" : "false");
	fprintf(stderr,
		"clockcheck, %d threads: %llu reads in %.2f s (clocksource %s -> %s): %llu cross-CPU steps back (max %llu ns), "
		"%llu same-CPU (max %llu ns), %d kernel clock messages: %s\n",
		ncpus, (unsigned long long)total, secs, cs_start, cs_end, (unsigned long long)back,
		(unsigned long long)max_back, (unsigned long long)same, (unsigned long long)max_same, log.count,
		ok ? "ok" : "FAILED");
	return ok ? 0 : 1;
}
