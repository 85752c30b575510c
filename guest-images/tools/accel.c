/*
 * cxlvmm-accel: a user-space driver and test tool for the cxlvmm
 * accelerator (docs/accelerator.md), for stock kernels without P2PDMA or
 * VFIO no-IOMMU. Registers and VRAM through the sysfs resource0/resource2
 * files, interrupts (INTx) through uio_pci_generic, DMA buffers from huge
 * pages with physical addresses from /proc/self/pagemap. Prints JSON.
 *
 *   cxlvmm-accel [-d BDF] [-q QUEUE] [--irq] COMMAND [ARGS]
 *
 *   info
 *   copy SRC DST LEN [SEED]   SRC, DST: host | vram[+OFF] | peer:BDF[+OFF] | phys:ADDR
 *                             a CPU-visible SRC is filled from SEED first (unless
 *                             SEED is "keep"); a CPU-visible DST is checked
 *                             against SEED's pattern, and its CRC-32C printed
 *   fill DST LEN PATTERN
 *   saxpy N [A]               y = A*x + y in VRAM, checked bit-exact on the CPU
 *   gemm M N K                C = A*B in VRAM, checked bit-exact on the CPU
 *   checksum LEN              CRC32C and SUM_F32 of VRAM data, checked on the CPU
 *   p2p BDF LEN               own VRAM -> peer VRAM, checked through the peer's BAR
 *   bench [--size N] [--batch-mib M] [PATH...]
 *                             bandwidth vs size and small-transfer latency per path
 *                             (64 B .. 4 MiB, or only N bytes; each size also as
 *                             one batch of M MiB, default 512, at most 1536 copies);
 *                             PATH: h2d | d2h | peer:BDF | cxl:ADDR (default h2d d2h)
 *   bad                       an unknown opcode, then a good command
 *
 * -d picks the device (default: the first 1af4:10f0); -q the queue (0).
 * --irq binds the device to uio_pci_generic and waits for INTx instead of
 * polling the fence, counting interrupts.
 *
 * Exit status: 0 if every check passed, 1 on a mismatch or device error,
 * 2 on bad usage or a setup failure.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* docs/accelerator.md section 3 */
#define R_ID 0x000
#define R_CAPS 0x008
#define R_VRAM_SIZE 0x010
#define R_COMPUTE_MOPS 0x018
#define R_STATUS 0x024
#define R_INT_STATUS 0x028
#define R_INT_ENABLE 0x02c
#define R_CLOCK 0x030
#define R_ERR_STATUS 0x040
#define R_ERR_CODE 0x044
#define R_ERR_INDEX 0x048
#define R_ERR_COUNT 0x04c
#define R_ERR_ADDR 0x050
#define Q_REG(q, r) (0x1000 + 0x80 * (q) + (r))
#define Q_BASE 0x00
#define Q_SIZE 0x08
#define Q_CTRL 0x0c
#define Q_STATUS 0x10
#define Q_HEAD 0x14
#define Q_TAIL 0x18
#define Q_LAST_STATUS 0x2c
#define DOORBELL(q) (0x8000 + 0x1000 * (q))
#define ID_VALUE 0x63617863u

/* section 5 */
#define OP_NOP 0x00
#define OP_COPY 0x01
#define OP_FILL 0x02
#define OP_FENCE 0x03
#define OP_TIMESTAMP 0x04
#define OP_SAXPY 0x10
#define OP_SUM_F32 0x11
#define OP_CRC32C 0x12
#define OP_GEMM 0x13
#define F_IRQ 1
#define F_STATUS_WB 2
#define RING_ENTRIES 4096
#define HUGE (2u << 20)

struct desc {
	uint8_t op, flags;
	uint16_t rsvd0;
	uint32_t rsvd1;
	uint64_t a, b, c;
	uint32_t d, e, f;
	uint8_t pad[16];
	uint32_t status;
};
_Static_assert(sizeof(struct desc) == 64, "descriptor is 64 bytes");

struct buf {
	uint8_t *va;
	size_t len;
	uint64_t *pa; /* physical address of every 4 KiB page */
};

struct dev {
	char bdf[32];
	volatile uint8_t *regs;
	uint8_t *vram;
	uint64_t vram_bus, vram_size;
	unsigned queues;
};

static struct dev D;
static unsigned Q;
static int use_irq, uio_fd = -1;
static unsigned long irqs;
static struct buf ctl; /* ring at 0, fences and timestamps at 64 KiB */
static uint32_t tail;
static uint64_t seqno;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cxlvmm-accel: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static uint32_t rd32(uint32_t off) { return *(volatile uint32_t *)(D.regs + off); }
static uint64_t rd64(uint32_t off) { return *(volatile uint64_t *)(D.regs + off); }
static void wr32(uint32_t off, uint32_t v) { *(volatile uint32_t *)(D.regs + off) = v; }
static void wr64(uint32_t off, uint64_t v) { *(volatile uint64_t *)(D.regs + off) = v; }

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int sysfs_read(const char *bdf, const char *file, char *out, size_t n)
{
	char path[256];
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/%s", bdf, file);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(out, n, f))
		out[0] = 0;
	fclose(f);
	return 0;
}

static void sysfs_write(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY);
	if (fd >= 0) {
		if (write(fd, v, strlen(v)) < 0)
			fprintf(stderr, "cxlvmm-accel: %s: %s\n", path, strerror(errno));
		close(fd);
	}
}

static int is_accel(const char *bdf)
{
	char v[32], d[32];
	return sysfs_read(bdf, "vendor", v, sizeof v) == 0 && sysfs_read(bdf, "device", d, sizeof d) == 0 &&
	       strtoul(v, NULL, 16) == 0x1af4 && strtoul(d, NULL, 16) == 0x10f0;
}

static void first_accel(char *out, size_t n)
{
	DIR *dir = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	out[0] = 0;
	while (dir && (e = readdir(dir))) {
		if (e->d_name[0] != '.' && is_accel(e->d_name) && (!out[0] || strcmp(e->d_name, out) < 0))
			snprintf(out, n, "%.*s", (int)n - 1, e->d_name);
	}
	if (dir)
		closedir(dir);
	if (!out[0])
		die("no accelerator (1af4:10f0) on the PCI bus");
}

/* Start address and size of BAR `bar` from the sysfs resource file. */
static void bar_range(const char *bdf, int bar, uint64_t *start, uint64_t *size)
{
	char path[256], line[256];
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource", bdf);
	FILE *f = fopen(path, "r");
	if (!f)
		die("%s: %s", path, strerror(errno));
	for (int i = 0; i <= bar; i++)
		if (!fgets(line, sizeof line, f))
			die("%s: no BAR %d", path, bar);
	fclose(f);
	unsigned long long s, e, fl;
	if (sscanf(line, "%llx %llx %llx", &s, &e, &fl) != 3 || !s)
		die("%s: BAR %d not assigned", path, bar);
	*start = s;
	*size = e - s + 1;
}

static void *map_bar(const char *bdf, int bar, uint64_t size)
{
	char path[256];
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource%d", bdf, bar);
	int fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		die("mmap %s: %s", path, strerror(errno));
	return p;
}

/* Memory Space and Bus Master on (Command bits 1 and 2). */
static void enable_device(const char *bdf)
{
	char path[256];
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/enable", bdf);
	sysfs_write(path, "1");
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/config", bdf);
	int fd = open(path, O_RDWR);
	uint16_t cmd;
	if (fd < 0 || pread(fd, &cmd, 2, 4) != 2)
		die("%s: %s", path, strerror(errno));
	cmd |= 0x6;
	if (pwrite(fd, &cmd, 2, 4) != 2)
		die("%s: %s", path, strerror(errno));
	close(fd);
}

/* Hand the function to uio_pci_generic and open its /dev/uioN. */
static void bind_uio(const char *bdf)
{
	char path[256], drv[256] = "";
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver", bdf);
	ssize_t n = readlink(path, drv, sizeof drv - 1);
	if (n < 0 || !strstr(drv, "uio_pci_generic")) {
		if (n >= 0) {
			snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver/unbind", bdf);
			sysfs_write(path, bdf);
		}
		snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver_override", bdf);
		sysfs_write(path, "uio_pci_generic");
		sysfs_write("/sys/bus/pci/drivers_probe", bdf);
	}
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/uio", bdf);
	DIR *dir = opendir(path);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		if (strncmp(e->d_name, "uio", 3) == 0) {
			char dev[64];
			snprintf(dev, sizeof dev, "/dev/%.50s", e->d_name);
			uio_fd = open(dev, O_RDWR);
		}
	}
	if (dir)
		closedir(dir);
	if (uio_fd < 0)
		die("%s is not bound to uio_pci_generic", bdf);
}

/* uio_pci_generic masks INTx in its handler (pci_check_and_mask_intx sets
 * Command.Interrupt Disable) and has no irqcontrol for write(): the user
 * unmasks by clearing that bit (Command bit 10) in config space. */
static void uio_unmask(void)
{
	char path[256];
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/config", D.bdf);
	int fd = open(path, O_RDWR);
	uint16_t cmd;
	if (fd < 0 || pread(fd, &cmd, 2, 4) != 2)
		die("uio unmask: %s: %s", path, strerror(errno));
	cmd &= (uint16_t)~0x400;
	if (pwrite(fd, &cmd, 2, 4) != 2)
		die("uio unmask: %s: %s", path, strerror(errno));
	close(fd);
}

/* Physical addresses of every page of [va, va + len) from pagemap. */
static void phys_pages(struct buf *b)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		die("pagemap: %s", strerror(errno));
	size_t pages = b->len / 4096;
	b->pa = calloc(pages, sizeof *b->pa);
	for (size_t i = 0; i < pages; i++) {
		uint64_t e, vpn = ((uintptr_t)b->va >> 12) + i;
		if (pread(fd, &e, 8, vpn * 8) != 8 || !(e & (1ull << 63)) || !(e & ((1ull << 55) - 1)))
			die("pagemap: page %zu not present (need root)", i);
		b->pa[i] = (e & ((1ull << 55) - 1)) << 12;
	}
	close(fd);
}

/* A DMA buffer: huge pages if the kernel has them, else locked pages. */
static struct buf dma_alloc(size_t len)
{
	struct buf b = {0};
	b.len = (len + HUGE - 1) / HUGE * HUGE;
	b.va = mmap(NULL, b.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
	if (b.va == MAP_FAILED) {
		char want[32];
		snprintf(want, sizeof want, "%zu", b.len / HUGE + 16);
		sysfs_write("/proc/sys/vm/nr_hugepages", want);
		b.va = mmap(NULL, b.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
	}
	if (b.va == MAP_FAILED) {
		b.va = mmap(NULL, b.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE | MAP_LOCKED, -1, 0);
		if (b.va == MAP_FAILED)
			die("cannot allocate %zu bytes of DMA memory", b.len);
	}
	memset(b.va, 0, b.len);
	phys_pages(&b);
	return b;
}

static uint64_t pa_of(const struct buf *b, size_t off)
{
	return b->pa[off / 4096] + off % 4096;
}

/* Bytes from `off` that stay physically contiguous (at most `len`). */
static size_t contiguous(const struct buf *b, size_t off, size_t len)
{
	size_t n = 4096 - off % 4096;
	while (n < len && pa_of(b, off + n) == pa_of(b, off) + n)
		n += 4096 - (off + n) % 4096;
	return n < len ? n : len;
}

/* ---- ring ---- */

/* After the ring (RING_ENTRIES descriptors of 64 bytes). */
#define FENCE_OFF (RING_ENTRIES * 64)
#define TS_OFF (FENCE_OFF + 64)
#define RESULT_OFF (FENCE_OFF + 4096)

static struct desc *slot(uint32_t i) { return (struct desc *)ctl.va + i; }

static void queue_init(void)
{
	ctl = dma_alloc(HUGE);
	if (contiguous(&ctl, 0, RING_ENTRIES * 64) < RING_ENTRIES * 64)
		die("ring memory is not physically contiguous");
	wr32(Q_REG(Q, Q_CTRL), 2); /* queue reset */
	wr64(Q_REG(Q, Q_BASE), pa_of(&ctl, 0));
	wr32(Q_REG(Q, Q_SIZE), RING_ENTRIES);
	wr32(Q_REG(Q, Q_CTRL), 1);
	if (!(rd32(Q_REG(Q, Q_STATUS)) & 1))
		die("queue %u did not enable (error code %#x)", Q, rd32(R_ERR_CODE));
	/* Without --irq nothing handles INTx: keep the causes from asserting it. */
	wr32(R_INT_ENABLE, use_irq ? (1u << Q) | (1u << 31) : 0);
	wr32(R_INT_STATUS, ~0u);
	wr32(R_ERR_STATUS, 1);
	tail = 0;
}

/* Appends a descriptor; returns its ring index. */
static uint32_t push(struct desc d)
{
	uint32_t i = tail;
	if ((tail + 1) % RING_ENTRIES == rd32(Q_REG(Q, Q_HEAD)))
		die("ring full");
	*slot(i) = d;
	tail = (tail + 1) % RING_ENTRIES;
	return i;
}

static struct desc mk(uint8_t op, uint8_t flags) { struct desc d = {0}; d.op = op; d.flags = flags; return d; }

static void push_timestamp(int which)
{
	struct desc d = mk(OP_TIMESTAMP, 0);
	d.b = pa_of(&ctl, TS_OFF + 8 * which);
	push(d);
}

static uint64_t timestamp(int which) { return *(volatile uint64_t *)(ctl.va + TS_OFF + 8 * which); }

/* Rings the doorbell after a FENCE and waits for it; guest ns elapsed. */
static uint64_t run(void)
{
	struct desc f = mk(OP_FENCE, use_irq ? F_IRQ : 0);
	volatile uint64_t *fence = (volatile uint64_t *)(ctl.va + FENCE_OFF);
	f.b = pa_of(&ctl, FENCE_OFF);
	f.d = (uint32_t)++seqno;
	f.e = (uint32_t)(seqno >> 32);
	push(f);
	__sync_synchronize();
	uint64_t t0 = now_ns();
	wr32(DOORBELL(Q), tail);
	uint64_t deadline = t0 + 20ull * 1000000000ull;
	while (*fence < seqno) {
		if (use_irq) {
			struct pollfd p = {.fd = uio_fd, .events = POLLIN};
			uint32_t count;
			if (poll(&p, 1, 1000) > 0 && read(uio_fd, &count, 4) == 4) {
				irqs++;
				wr32(R_INT_STATUS, rd32(R_INT_STATUS));
				uio_unmask();
			}
		}
		if (now_ns() > deadline)
			die("timeout: fence %" PRIu64 " not written (head %u, status %#x, error %#x)", seqno,
			    rd32(Q_REG(Q, Q_HEAD)), rd32(Q_REG(Q, Q_STATUS)), rd32(R_ERR_CODE));
	}
	return now_ns() - t0;
}

/* ---- operands ---- */

struct place {
	char kind; /* h host, v own VRAM, p peer VRAM, x physical */
	uint64_t bus;
	uint8_t *cpu; /* CPU view, or NULL */
	struct buf host;
};

static struct place parse_place(const char *s, size_t len)
{
	struct place p = {0};
	const char *plus = strchr(s, '+');
	uint64_t off = plus ? strtoull(plus + 1, NULL, 0) : 0;
	if (strncmp(s, "host", 4) == 0) {
		p.kind = 'h';
		p.host = dma_alloc(len);
		p.cpu = p.host.va;
	} else if (strncmp(s, "vram", 4) == 0) {
		if (off + len > D.vram_size)
			die("%s: past the end of VRAM", s);
		p.kind = 'v';
		p.bus = D.vram_bus + off;
		p.cpu = D.vram + off;
	} else if (strncmp(s, "peer:", 5) == 0) {
		char bdf[32];
		uint64_t start, size;
		snprintf(bdf, sizeof bdf, "%.*s", (int)(plus ? plus - s - 5 : (long)strlen(s + 5)), s + 5);
		bar_range(bdf, 2, &start, &size);
		if (off + len > size)
			die("%s: past the end of its VRAM", s);
		enable_device(bdf);
		p.kind = 'p';
		p.bus = start + off;
		p.cpu = (uint8_t *)map_bar(bdf, 2, size) + off;
	} else if (strncmp(s, "phys:", 5) == 0) {
		p.kind = 'x';
		p.bus = strtoull(s + 5, NULL, 0);
	} else {
		die("unknown place '%s' (host, vram[+OFF], peer:BDF[+OFF], phys:ADDR)", s);
	}
	return p;
}

/* Pushes COPY descriptors for len bytes, split where host pages are not contiguous. */
static void push_copy(struct place *src, struct place *dst, size_t len)
{
	size_t off = 0;
	while (off < len) {
		size_t n = len - off;
		if (src->kind == 'h')
			n = contiguous(&src->host, off, n);
		if (dst->kind == 'h')
			n = contiguous(&dst->host, off, n);
		struct desc d = mk(OP_COPY, F_STATUS_WB);
		d.a = src->kind == 'h' ? pa_of(&src->host, off) : src->bus + off;
		d.b = dst->kind == 'h' ? pa_of(&dst->host, off) : dst->bus + off;
		d.c = n;
		push(d);
		off += n;
	}
}

static uint8_t pattern_byte(uint64_t seed, uint64_t i)
{
	uint64_t z = (i / 8) * 0x9e3779b97f4a7c15ull + seed * 0xbf58476d1ce4e5b9ull + 1;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (uint8_t)(z >> (8 * (i % 8)));
}

static uint32_t crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = ~0u;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & -(c & 1));
	}
	return ~c;
}

static uint64_t rng_state;
static float rand_float(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((rng_state >> 40) % 20001) / 1000.0f - 10.0f;
}

/* Status dwords of the last `n` descriptors from ring index `first`. */
static int statuses_ok(uint32_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t s = slot((first + i) % RING_ENTRIES)->status;
		if (s != 0x80000000u) {
			printf("{\"error\":\"descriptor %u status %#x\",\"err_code\":%u,\"err_addr\":%" PRIu64 "}\n",
			       (first + i) % RING_ENTRIES, s, rd32(R_ERR_CODE), rd64(R_ERR_ADDR));
			return 0;
		}
	}
	return 1;
}

/* ---- commands ---- */

static int cmd_info(void)
{
	uint32_t caps = rd32(R_CAPS);
	printf("{\"bdf\":\"%s\",\"id\":%u,\"id_ok\":%s,\"queues\":%u,\"dma_engines\":%u,\"max_ring\":%u,"
	       "\"vram_size\":%" PRIu64 ",\"vram_bus\":%" PRIu64 ",\"compute_mops\":%u,\"clock_ps\":%" PRIu64
	       ",\"status\":%u,\"err_count\":%u}\n",
	       D.bdf, rd32(R_ID), rd32(R_ID) == ID_VALUE ? "true" : "false", caps & 0xff, (caps >> 8) & 0xff,
	       1u << ((caps >> 16) & 0xff), rd64(R_VRAM_SIZE), D.vram_bus, rd32(R_COMPUTE_MOPS), rd64(R_CLOCK),
	       rd32(R_STATUS), rd32(R_ERR_COUNT));
	return 0;
}

static int cmd_copy(const char *s, const char *d, size_t len, const char *seed_arg)
{
	struct place src = parse_place(s, len), dst = parse_place(d, len);
	int keep = seed_arg && strcmp(seed_arg, "keep") == 0;
	uint64_t seed = seed_arg && !keep ? strtoull(seed_arg, NULL, 0) : 1;
	if (src.cpu && !keep)
		for (size_t i = 0; i < len; i++)
			src.cpu[i] = pattern_byte(seed, i);
	uint32_t first = tail;
	push_timestamp(0);
	push_copy(&src, &dst, len);
	push_timestamp(1);
	uint32_t n = (tail + RING_ENTRIES - first) % RING_ENTRIES - 2;
	uint64_t ns = run();
	int ok = statuses_ok(first + 1, n);
	uint64_t ps = timestamp(1) - timestamp(0);
	printf("{\"op\":\"copy\",\"src\":\"%s\",\"dst\":\"%s\",\"len\":%zu,\"descriptors\":%u,\"device_ps\":%" PRIu64
	       ",\"device_gbps\":%.3f,\"guest_ns\":%" PRIu64,
	       s, d, len, n, ps, ps ? (double)len / ps * 1e3 : 0.0, ns);
	if (dst.cpu) {
		size_t bad = 0;
		if (!keep)
			for (size_t i = 0; i < len; i++)
				bad += dst.cpu[i] != pattern_byte(seed, i);
		printf(",\"crc32c\":%u,\"mismatches\":%zu", crc32c(dst.cpu, len), bad);
		ok = ok && !bad;
	}
	printf(",\"irqs\":%lu,\"ok\":%s}\n", irqs, ok ? "true" : "false");
	return !ok;
}

static int cmd_fill(const char *d, size_t len, uint32_t pat)
{
	struct place dst = parse_place(d, len);
	if (dst.kind == 'h' && contiguous(&dst.host, 0, len) < len)
		die("fill: host buffer not contiguous");
	struct desc f = mk(OP_FILL, F_STATUS_WB);
	uint32_t first = tail;
	f.b = dst.kind == 'h' ? pa_of(&dst.host, 0) : dst.bus;
	f.c = len;
	f.d = pat;
	push(f);
	run();
	int ok = statuses_ok(first, 1);
	size_t bad = 0;
	if (dst.cpu)
		for (size_t i = 0; i + 4 <= len; i += 4)
			bad += memcmp(dst.cpu + i, &pat, 4) != 0;
	printf("{\"op\":\"fill\",\"len\":%zu,\"mismatches\":%zu,\"ok\":%s}\n", len, bad, ok && !bad ? "true" : "false");
	return !(ok && !bad);
}

static int cmd_saxpy(size_t n, float a)
{
	if (8 * n > D.vram_size)
		die("saxpy: %zu elements do not fit in VRAM", n);
	float *x = (float *)D.vram, *y = (float *)(D.vram + 4 * n);
	float *ref = malloc(4 * n);
	rng_state = 11;
	for (size_t i = 0; i < n; i++) {
		x[i] = rand_float();
		y[i] = rand_float();
		/* Two roundings, as the device: baseline x86-64 has no FMA to contract into. */
		volatile float p = a * x[i];
		ref[i] = p + y[i];
	}
	struct desc s = mk(OP_SAXPY, F_STATUS_WB);
	uint32_t first = tail;
	s.a = D.vram_bus;
	s.b = D.vram_bus + 4 * n;
	s.c = n;
	memcpy(&s.d, &a, 4);
	push_timestamp(0);
	push(s);
	push_timestamp(1);
	run();
	int ok = statuses_ok(first + 1, 1);
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += memcmp(&y[i], &ref[i], 4) != 0;
	printf("{\"op\":\"saxpy\",\"n\":%zu,\"device_ps\":%" PRIu64 ",\"mismatches\":%zu,\"ok\":%s}\n", n,
	       timestamp(1) - timestamp(0), bad, ok && !bad ? "true" : "false");
	return !(ok && !bad);
}

static int cmd_gemm(size_t m, size_t n, size_t k)
{
	size_t sa = 4 * m * k, sb = 4 * k * n, sc = 4 * m * n;
	if (sa + sb + sc > D.vram_size)
		die("gemm: operands do not fit in VRAM");
	float *A = (float *)D.vram, *B = (float *)(D.vram + sa), *C = (float *)(D.vram + sa + sb);
	rng_state = 12;
	for (size_t i = 0; i < m * k; i++)
		A[i] = rand_float();
	for (size_t i = 0; i < k * n; i++)
		B[i] = rand_float();
	struct desc g = mk(OP_GEMM, F_STATUS_WB);
	uint32_t first = tail;
	g.a = D.vram_bus;
	g.b = D.vram_bus + sa;
	g.c = D.vram_bus + sa + sb;
	g.d = m;
	g.e = n;
	g.f = k;
	push_timestamp(0);
	push(g);
	push_timestamp(1);
	run();
	int ok = statuses_ok(first + 1, 1);
	size_t bad = 0;
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			float s = 0.0f;
			for (size_t p = 0; p < k; p++) {
				volatile float prod = A[i * k + p] * B[p * n + j];
				s = s + prod;
			}
			bad += memcmp(&C[i * n + j], &s, 4) != 0;
		}
	printf("{\"op\":\"gemm\",\"m\":%zu,\"n\":%zu,\"k\":%zu,\"device_ps\":%" PRIu64
	       ",\"mismatches\":%zu,\"ok\":%s}\n",
	       m, n, k, timestamp(1) - timestamp(0), bad, ok && !bad ? "true" : "false");
	return !(ok && !bad);
}

static int cmd_checksum(size_t len)
{
	len &= ~(size_t)3;
	if (!len || len > D.vram_size)
		die("checksum: length must be 4 .. VRAM size");
	rng_state = 13;
	float *v = (float *)D.vram;
	for (size_t i = 0; i < len / 4; i++)
		v[i] = rand_float();
	uint32_t *res = (uint32_t *)(ctl.va + RESULT_OFF);
	res[0] = res[1] = 0;
	uint32_t first = tail;
	struct desc c = mk(OP_CRC32C, F_STATUS_WB);
	c.a = D.vram_bus;
	c.b = pa_of(&ctl, RESULT_OFF);
	c.c = len;
	push(c);
	struct desc s = mk(OP_SUM_F32, F_STATUS_WB);
	s.a = D.vram_bus;
	s.b = pa_of(&ctl, RESULT_OFF + 4);
	s.c = len / 4;
	push(s);
	run();
	int ok = statuses_ok(first, 2);
	uint32_t crc = crc32c(D.vram, len);
	float sum = 0.0f;
	for (size_t i = 0; i < len / 4; i++)
		sum = sum + v[i];
	int match = res[0] == crc && memcmp(&res[1], &sum, 4) == 0;
	printf("{\"op\":\"checksum\",\"len\":%zu,\"crc32c\":%u,\"cpu_crc32c\":%u,\"sum_bits\":%u,\"ok\":%s}\n", len,
	       res[0], crc, res[1], ok && match ? "true" : "false");
	return !(ok && match);
}

static int cmd_p2p(const char *peer, size_t len)
{
	char dst[64];
	snprintf(dst, sizeof dst, "peer:%s", peer);
	return cmd_copy("vram", dst, len, "7");
}

static int cmd_bad(void)
{
	uint32_t first = tail;
	wr32(R_ERR_STATUS, 1);
	push(mk(0x7f, F_STATUS_WB)); /* unknown opcode */
	struct desc f = mk(OP_FILL, F_STATUS_WB);
	f.b = D.vram_bus;
	f.c = 64;
	f.d = 0x600df00d;
	push(f);
	run();
	uint32_t s0 = slot(first)->status, s1 = slot(first + 1)->status;
	uint32_t code = rd32(R_ERR_CODE);
	int ok = s0 == (0x80000000u | 0x01) && s1 == 0x80000000u && (code & 0xffff) == 1 && (code >> 24) == 0x7f &&
		 rd32(R_ERR_INDEX) == first && *(uint32_t *)D.vram == 0x600df00d;
	printf("{\"op\":\"bad\",\"status\":%u,\"next_status\":%u,\"err_code\":%u,\"err_index\":%u,\"ok\":%s}\n", s0, s1,
	       code, rd32(R_ERR_INDEX), ok ? "true" : "false");
	wr32(R_ERR_STATUS, 1);
	wr32(R_INT_STATUS, 1u << 31);
	return !ok;
}

/* COPYs of len bytes, `count` back to back, between two TIMESTAMPs, rung
 * with one doorbell: the device's time between the stamps (ps) and the
 * guest's own from doorbell to fence (ns), best of three. */
static void time_copies(struct place *s, struct place *d, size_t len, uint32_t count, uint64_t *ps_out,
			uint64_t *ns_out)
{
	uint64_t best_ps = UINT64_MAX, best_ns = UINT64_MAX;
	for (int rep = 0; rep < 3; rep++) {
		uint32_t first = tail;
		push_timestamp(0);
		for (uint32_t c = 0; c < count; c++)
			push_copy(s, d, len);
		push_timestamp(1);
		/* COPY descriptors only: counted before run() appends its FENCE. */
		uint32_t n = (tail + RING_ENTRIES - first) % RING_ENTRIES - 2;
		uint64_t ns = run();
		if (!statuses_ok(first + 1, n))
			exit(1);
		uint64_t ps = timestamp(1) - timestamp(0);
		best_ps = ps < best_ps ? ps : best_ps;
		best_ns = ns < best_ns ? ns : best_ns;
	}
	*ps_out = best_ps;
	*ns_out = best_ns;
}

/* Copies in one batch for a size: batch_mib MiB in all (at most 1536: the
 * ring holds 4096 descriptors, and a copy from host memory may take two),
 * so that the batch lasts long enough for the guest's clock to time it as
 * bandwidth tools do (many transfers, one clock read each side): what the
 * guest sees of the VM exits around it is then a small part. At least one
 * copy. */
static size_t batch_mib = 512;

static uint32_t batch_of(size_t len)
{
	size_t n = (batch_mib << 20) / len;
	return n < 1 ? 1 : n > 1536 ? 1536 : (uint32_t)n;
}

/* One path: COPYs of growing size, one alone (latency) and a batch
 * (bandwidth), each timed by the device and by the guest. */
static size_t bench_sizes[] = {64, 256, 1024, 4096, 16384, 65536, 262144, 1 << 20, 4 << 20};
static size_t bench_nsizes = sizeof bench_sizes / sizeof *bench_sizes;

static void bench_path(const char *name, const char *src, const char *dst, int *first_path)
{
	printf("%s{\"path\":\"%s\",\"points\":[", *first_path ? "" : ",", name);
	*first_path = 0;
	struct place s = parse_place(src, 4 << 20), d = parse_place(dst, 4 << 20);
	for (size_t i = 0; i < bench_nsizes; i++) {
		size_t len = bench_sizes[i];
		uint32_t batch = batch_of(len);
		uint64_t ps, ns, batch_ps, batch_ns;
		time_copies(&s, &d, len, 1, &ps, &ns);
		time_copies(&s, &d, len, batch, &batch_ps, &batch_ns);
		printf("%s{\"bytes\":%zu,\"device_ps\":%" PRIu64 ",\"device_gbps\":%.3f,\"guest_ns\":%" PRIu64
		       ",\"batch\":%u,\"batch_device_ps\":%" PRIu64 ",\"batch_guest_ns\":%" PRIu64
		       ",\"batch_guest_gbps\":%.3f}",
		       i ? "," : "", len, ps, (double)len / ps * 1e3, ns, batch, batch_ps, batch_ns,
		       (double)len * batch / batch_ns);
	}
	printf("]}");
}

static int cmd_bench(int argc, char **argv)
{
	int first = 1;
	while (argc >= 2 && argv[0][0] == '-') {
		char *end;
		size_t n = strtoull(argv[1], &end, 0);
		if (strcmp(argv[0], "--size") == 0) {
			if (*end || n == 0 || n > (4u << 20))
				die("--size %s: 1 .. 4194304 bytes", argv[1]);
			bench_sizes[0] = n;
			bench_nsizes = 1;
		} else if (strcmp(argv[0], "--batch-mib") == 0) {
			if (*end || n == 0 || n > 6144)
				die("--batch-mib %s: 1 .. 6144", argv[1]);
			batch_mib = n;
		} else {
			die("bench: unknown option %s", argv[0]);
		}
		argc -= 2;
		argv += 2;
	}
	printf("{\"op\":\"bench\",\"bdf\":\"%s\",\"paths\":[", D.bdf);
	if (argc == 0) {
		bench_path("h2d", "host", "vram", &first);
		bench_path("d2h", "vram", "host", &first);
	}
	for (int i = 0; i < argc; i++) {
		char src[96], dst[96];
		if (strcmp(argv[i], "h2d") == 0) {
			bench_path("h2d", "host", "vram", &first);
		} else if (strcmp(argv[i], "d2h") == 0) {
			bench_path("d2h", "vram", "host", &first);
		} else if (strncmp(argv[i], "peer:", 5) == 0) {
			bench_path(argv[i], "vram", argv[i], &first);
		} else if (strncmp(argv[i], "cxl:", 4) == 0) {
			snprintf(dst, sizeof dst, "phys:%s", argv[i] + 4);
			snprintf(src, sizeof src, "%s-write", argv[i]);
			bench_path(src, "vram", dst, &first);
			snprintf(src, sizeof src, "%s-read", argv[i]);
			bench_path(src, dst, "vram", &first);
		} else {
			die("unknown bench path '%s'", argv[i]);
		}
	}
	printf("],\"irqs\":%lu}\n", irqs);
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1;
	D.bdf[0] = 0;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
			snprintf(D.bdf, sizeof D.bdf, "%s", argv[++i]);
		else if (strcmp(argv[i], "-q") == 0 && i + 1 < argc)
			Q = strtoul(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--irq") == 0)
			use_irq = 1;
		else
			die("unknown option %s", argv[i]);
	}
	if (i >= argc)
		die("usage: cxlvmm-accel [-d BDF] [-q QUEUE] [--irq] info|copy|fill|saxpy|gemm|checksum|p2p|bench|bad ...");
	if (!D.bdf[0])
		first_accel(D.bdf, sizeof D.bdf);
	else if (!is_accel(D.bdf))
		die("%s is not an accelerator (1af4:10f0)", D.bdf);
	uint64_t start, size;
	if (use_irq)
		bind_uio(D.bdf);
	enable_device(D.bdf);
	bar_range(D.bdf, 0, &start, &size);
	D.regs = map_bar(D.bdf, 0, size);
	if (rd32(R_ID) != ID_VALUE)
		die("%s: ID register reads %#x, not %#x", D.bdf, rd32(R_ID), ID_VALUE);
	bar_range(D.bdf, 2, &D.vram_bus, &D.vram_size);
	D.vram = map_bar(D.bdf, 2, D.vram_size);
	D.queues = rd32(R_CAPS) & 0xff;
	if (Q >= D.queues)
		die("queue %u: the device has %u", Q, D.queues);
	const char *cmd = argv[i++];
	int rest = argc - i;
	char **a = argv + i;
	if (strcmp(cmd, "info") == 0)
		return cmd_info();
	queue_init();
	if (strcmp(cmd, "copy") == 0 && rest >= 3)
		return cmd_copy(a[0], a[1], strtoull(a[2], NULL, 0), rest > 3 ? a[3] : NULL);
	if (strcmp(cmd, "fill") == 0 && rest == 3)
		return cmd_fill(a[0], strtoull(a[1], NULL, 0), strtoul(a[2], NULL, 0));
	if (strcmp(cmd, "saxpy") == 0 && rest >= 1)
		return cmd_saxpy(strtoull(a[0], NULL, 0), rest > 1 ? strtof(a[1], NULL) : 2.5f);
	if (strcmp(cmd, "gemm") == 0 && rest == 3)
		return cmd_gemm(strtoull(a[0], NULL, 0), strtoull(a[1], NULL, 0), strtoull(a[2], NULL, 0));
	if (strcmp(cmd, "checksum") == 0 && rest == 1)
		return cmd_checksum(strtoull(a[0], NULL, 0));
	if (strcmp(cmd, "p2p") == 0 && rest == 2)
		return cmd_p2p(a[0], strtoull(a[1], NULL, 0));
	if (strcmp(cmd, "bench") == 0)
		return cmd_bench(rest, a);
	if (strcmp(cmd, "bad") == 0)
		return cmd_bad();
	die("unknown command or wrong arguments: %s", cmd);
	return 2;
}
