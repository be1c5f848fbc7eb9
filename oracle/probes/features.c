// SPDX-License-Identifier: MIT OR Apache-2.0
//
// svmkit oracle probe: do the mm features the oracle corpus needs work in this kernel
// build? One line per feature, "name: ok ..." or "name: FAIL ...".
//   thp          MADV_HUGEPAGE + touch gives a PMD-mapped THP (AnonHugePages in smaps)
//   exclusive-thp HMM_DMIRROR_EXCLUSIVE on the THP's head page
//   pageout      MADV_PAGEOUT of a written page leaves a swap entry (needs swap on)
//   soft-dirty   clear_refs 4 clears the soft-dirty bit; a write sets it again
//   userfaultfd  the userfaultfd syscall exists
//   minflt       getrusage counts minor faults
// Run with swap enabled (oracle/probe ... after `mkswap /dev/ram0; swapon /dev/ram0`).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <lib/test_hmm_uapi.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#define TWOMEG (2UL << 20)

static long page_size;

static uint64_t pagemap(void *addr)
{
	static int fd = -1;
	uint64_t e = 0;

	if (fd < 0)
		fd = open("/proc/self/pagemap", O_RDONLY);
	if (pread(fd, &e, sizeof(e), (off_t)((uintptr_t)addr / page_size) * 8) != 8)
		return 0;
	return e;
}

// AnonHugePages of the smaps entry that contains addr, in kB (-1 if not found)
static long anon_huge_kb(void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[256];
	int in = 0;
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

static char *aligned_2m(size_t size)
{
	char *p = mmap(NULL, size + TWOMEG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	return (char *)(((uintptr_t)p + TWOMEG - 1) & ~(TWOMEG - 1));
}

int main(void)
{
	struct hmm_dmirror_cmd cmd;
	struct rusage ru0, ru1;
	char *p, *mirror;
	uint64_t e;
	long kb;
	int fd, ret;

	page_size = sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);

	p = aligned_2m(TWOMEG);
	ret = p ? madvise(p, TWOMEG, MADV_HUGEPAGE) : -1;
	if (!ret)
		memset(p, 1, TWOMEG);
	kb = anon_huge_kb(p);
	printf("thp: %s madvise=%d AnonHugePages=%ld kB\n", kb == 2048 ? "ok" : "FAIL",
	       ret ? -errno : 0, kb);

	fd = open("/dev/hmm_dmirror0", O_RDWR);
	mirror = malloc(page_size);
	memset(&cmd, 0, sizeof(cmd));
	cmd.addr = (uintptr_t)p;
	cmd.ptr = (uintptr_t)mirror;
	cmd.npages = 1;
	ret = fd >= 0 && ioctl(fd, HMM_DMIRROR_EXCLUSIVE, &cmd) == 0 ? 0 : -errno;
	e = pagemap(p);
	printf("exclusive-thp: %s ret=%d cpages=%llu head: swap=%d type=%llu; AnonHugePages after=%ld kB\n",
	       !ret && (e >> 62 & 1) ? "ok" : "FAIL", ret, (unsigned long long)cmd.cpages,
	       (int)(e >> 62 & 1), (unsigned long long)(e & 0x1f), anon_huge_kb(p));

	p = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p[0] = 7;
	ret = madvise(p, page_size, MADV_PAGEOUT) ? -errno : 0;
	e = pagemap(p);
	printf("pageout: %s madvise=%d swap=%d present=%d; value after=%d\n",
	       !ret && (e >> 62 & 1) ? "ok" : "FAIL", ret, (int)(e >> 62 & 1),
	       (int)(e >> 63 & 1), p[0]);

	p = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p[0] = 1;
	{
		int c = open("/proc/self/clear_refs", O_WRONLY);
		int w = c >= 0 ? (int)write(c, "4", 1) : -1;
		int sd0 = (int)(pagemap(p) >> 55 & 1), sd1;

		p[0] = 2;
		sd1 = (int)(pagemap(p) >> 55 & 1);
		printf("soft-dirty: %s clear_refs=%d after-clear=%d after-write=%d\n",
		       w == 1 && !sd0 && sd1 ? "ok" : "FAIL", w, sd0, sd1);
	}

	ret = (int)syscall(SYS_userfaultfd, 0);
	printf("userfaultfd: %s ret=%d%s%s\n", ret >= 0 ? "ok" : "FAIL", ret >= 0 ? 0 : -errno,
	       ret < 0 ? " " : "", ret < 0 ? strerror(errno) : "");

	getrusage(RUSAGE_SELF, &ru0);
	p = mmap(NULL, 16 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 16; i++)
		p[i * page_size] = 1;
	getrusage(RUSAGE_SELF, &ru1);
	printf("minflt: %s 16 first writes -> %ld minor faults\n",
	       ru1.ru_minflt - ru0.ru_minflt >= 16 ? "ok" : "FAIL", ru1.ru_minflt - ru0.ru_minflt);
	return 0;
}
