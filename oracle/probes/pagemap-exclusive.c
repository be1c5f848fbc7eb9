// SPDX-License-Identifier: MIT OR Apache-2.0
//
// svmkit oracle probe: what /proc/self/pagemap shows for device-exclusive entries made
// by test_hmm (dmirror) through HMM_DMIRROR_EXCLUSIVE, and after the CPU touch that
// restores them. Prints one line per observation; no pfns or addresses (those differ
// per boot), only whether a swap entry's offset equals the pfn the page had before.
//
// Built by oracle/probe with -I <kernel tree>, for <lib/test_hmm_uapi.h>.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lib/test_hmm_uapi.h>

#define NPAGES 4

static long page_size;
static int pagemap_fd;

static uint64_t pagemap(void *addr)
{
	uint64_t e = 0;
	off_t off = (off_t)((uintptr_t)addr / page_size) * sizeof(e);

	if (pread(pagemap_fd, &e, sizeof(e), off) != sizeof(e)) {
		perror("pread pagemap");
		exit(2);
	}
	return e;
}

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PM_MMAP_EXCLUSIVE (1ULL << 56)
#define PM_SOFT_DIRTY (1ULL << 55)
#define PM_PFN_MASK ((1ULL << 55) - 1)

static void show(const char *cas, const char *when, int i, uint64_t e, uint64_t pfn_before)
{
	printf("%s %s page=%d present=%d swap=%d file=%d excl_mapped=%d soft_dirty=%d",
	       cas, when, i, !!(e & PM_PRESENT), !!(e & PM_SWAP), !!(e & PM_FILE),
	       !!(e & PM_MMAP_EXCLUSIVE), !!(e & PM_SOFT_DIRTY));
	if (e & PM_SWAP) {
		uint64_t type = e & 0x1f;
		uint64_t offset = (e & PM_PFN_MASK) >> 5;

		printf(" swap_type=%llu offset_is_old_pfn=%d", (unsigned long long)type,
		       pfn_before && offset == pfn_before);
	} else if (e & PM_PRESENT) {
		uint64_t pfn = e & PM_PFN_MASK;

		printf(" pfn_is_old_pfn=%d", pfn_before && pfn == pfn_before);
	}
	printf("\n");
}

static int dmirror(int fd, unsigned long req, void *addr, void *mirror, uint64_t npages,
		   struct hmm_dmirror_cmd *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->addr = (uintptr_t)addr;
	cmd->ptr = (uintptr_t)mirror;
	cmd->npages = npages;
	if (ioctl(fd, req, cmd) < 0)
		return -errno;
	return 0;
}

static void run(const char *cas, int fd, int prot, int flags, int touch)
{
	size_t size = NPAGES * page_size;
	char *p = mmap(NULL, size, prot, flags | MAP_ANONYMOUS, -1, 0);
	char *mirror = malloc(size);
	uint64_t pfn[NPAGES] = { 0 };
	struct hmm_dmirror_cmd cmd;
	int ret, i;

	if (p == MAP_FAILED || !mirror) {
		perror("mmap");
		exit(2);
	}
	for (i = 0; i < NPAGES; i++) {
		if (touch == 2)
			p[i * page_size] = (char)(i + 1);
		else if (touch == 1)
			(void)*(volatile char *)&p[i * page_size];
		uint64_t e = pagemap(p + i * page_size);

		if (e & PM_PRESENT)
			pfn[i] = e & PM_PFN_MASK;
		show(cas, "before", i, e, 0);
	}
	ret = dmirror(fd, HMM_DMIRROR_EXCLUSIVE, p, mirror, NPAGES, &cmd);
	printf("%s exclusive ret=%d (%s) cpages=%llu\n", cas, ret, ret ? strerror(-ret) : "ok",
	       (unsigned long long)cmd.cpages);
	for (i = 0; i < NPAGES; i++) {
		uint64_t e = pagemap(p + i * page_size);

		show(cas, "after-exclusive", i, e, pfn[i]);
	}
	if (!ret) {
		ret = dmirror(fd, HMM_DMIRROR_CHECK_EXCLUSIVE, p, mirror, NPAGES, &cmd);
		printf("%s check_exclusive(held) ret=%d (%s)\n", cas, ret,
		       ret ? strerror(-ret) : "ok");
	}
	/* CPU read of page 0 only: restores that entry, leaves the others */
	printf("%s cpu-read page=0 value=%d\n", cas, *(volatile char *)p);
	for (i = 0; i < NPAGES; i++)
		show(cas, "after-cpu-read0", i, pagemap(p + i * page_size), pfn[i]);
	ret = dmirror(fd, HMM_DMIRROR_CHECK_EXCLUSIVE, p, mirror, NPAGES, &cmd);
	printf("%s check_exclusive(after read0) ret=%d (%s)\n", cas, ret,
	       ret ? strerror(-ret) : "ok");
	munmap(p, size);
	free(mirror);
}

int main(void)
{
	const char *dev = "/dev/hmm_dmirror0";
	int fd = open(dev, O_RDWR);

	page_size = sysconf(_SC_PAGESIZE);
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0 || pagemap_fd < 0) {
		perror(fd < 0 ? dev : "/proc/self/pagemap");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	run("private-written", fd, PROT_READ | PROT_WRITE, MAP_PRIVATE, 2);
	run("private-zeropage", fd, PROT_READ | PROT_WRITE, MAP_PRIVATE, 1);
	run("private-untouched", fd, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0);
	run("private-prot-read", fd, PROT_READ, MAP_PRIVATE, 1);
	run("shared-written", fd, PROT_READ | PROT_WRITE, MAP_SHARED, 2);
	return 0;
}
