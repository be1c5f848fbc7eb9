// SPDX-License-Identifier: MIT OR Apache-2.0
//
// svmkit oracle probe: /dev/svmkit_loop (oracle/kernel/svmkit_loop.c) refuses bad input
// with an errno and never takes the kernel down. One line per case, "name: ok ..." or
// "name: FAIL ...": the errno each bad call gets, and that a good call still works after
// all of them. oracle/boot reports any WARNING/BUG of the guest's dmesg.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kernel/svmkit_loop.h"

static int failures;

static void report(const char *name, int want_errno, int rc, int err)
{
	int got = rc == 0 ? 0 : err;

	if (got == want_errno)
		printf("%s: ok (%s)\n", name, got ? strerror(got) : "success");
	else {
		printf("%s: FAIL want %s, got %s\n", name,
		       want_errno ? strerror(want_errno) : "success",
		       got ? strerror(got) : "success");
		failures++;
	}
}

static int atomic_call(int fd, uint64_t addr, uint32_t max_passes, uint32_t flags,
		       struct svl_atomic *a)
{
	memset(a, 0, sizeof(*a));
	a->addr = addr;
	a->delta = 1;
	a->max_passes = max_passes;
	a->flags = flags;
	return ioctl(fd, SVL_IOC_ATOMIC, a);
}

int main(void)
{
	static struct svl_atomic a;
	int fd = open("/dev/svmkit_loop", O_RDWR);
	char *rw, *ro, *shared, *none;
	int rc;

	if (fd < 0) {
		printf("open: FAIL %s\n", strerror(errno));
		return 1;
	}
	rw = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	rw[0] = 1;
	shared[0] = 1;

	rc = atomic_call(fd, (uintptr_t)rw + 4, 4, 0, &a);
	report("misaligned", EINVAL, rc, errno);
	rc = atomic_call(fd, 0, 4, 0, &a);
	report("address-0", EINVAL, rc, errno);
	rc = atomic_call(fd, 0xffffffff81000000ull, 4, 0, &a);
	report("kernel-address", EINVAL, rc, errno);
	rc = atomic_call(fd, (uintptr_t)rw, 0, 0, &a);
	report("max-passes-0", EINVAL, rc, errno);
	rc = atomic_call(fd, (uintptr_t)rw, SVL_MAX_PASSES + 1, 0, &a);
	report("max-passes-65", EINVAL, rc, errno);
	rc = atomic_call(fd, (uintptr_t)rw, 4, 0x80, &a);
	report("unknown-flag", EINVAL, rc, errno);
	rc = ioctl(fd, SVL_IOC_ATOMIC, (void *)8);
	report("bad-pointer", EFAULT, rc, errno);
	rc = ioctl(fd, _IO('S', 0x7f), 0);
	report("unknown-ioctl", ENOTTY, rc, errno);
	rc = ioctl(fd, SVL_IOC_QUERY, (void *)8);
	report("query-bad-pointer", EFAULT, rc, errno);

	/* GUP's FOLL_WRITE fails (read-only, PROT_NONE, unmapped): no page, EINVAL */
	rc = atomic_call(fd, (uintptr_t)ro, 4, 0, &a);
	report("read-only", EINVAL, rc, errno);
	rc = atomic_call(fd, (uintptr_t)none, 4, 0, &a);
	report("prot-none", EINVAL, rc, errno);
	munmap(none, 4096);
	rc = atomic_call(fd, (uintptr_t)none, 4, 0, &a);
	report("unmapped", EINVAL, rc, errno);
	/* not anonymous: folio_make_device_exclusive() refuses, no page, EINVAL */
	rc = atomic_call(fd, (uintptr_t)shared, 4, 0, &a);
	report("map-shared", EINVAL, rc, errno);

	/* a forked child holding the fd is another mm: EINVAL, the parent unharmed */
	rc = atomic_call(fd, (uintptr_t)rw, 4, 0, &a);
	report("good-before-fork", 0, rc, errno);
	pid_t pid = fork();
	if (pid == 0) {
		static struct svl_atomic c;
		int r = atomic_call(fd, (uintptr_t)rw, 4, 0, &c);
		_exit(r == -1 && errno == EINVAL ? 0 : 1);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	report("forked-child", 0, WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1, EIO);

	/* after all that, a good call still works and the value is right */
	rc = atomic_call(fd, (uintptr_t)rw, 4, 0, &a);
	report("good-after", 0, rc, errno);
	if (rc == 0)
		printf("good-after: old %llu, passes %u\n", (unsigned long long)a.old,
		       a.npasses);
	printf("value: %d (want 3: 1 written, two atomics in the parent, after fork a"
	       " CoW copy may take the page)\n", rw[0]);

	/* a second open is a second device; closing with a live mapping is fine */
	int fd2 = open("/dev/svmkit_loop", O_RDWR);
	rc = atomic_call(fd2, (uintptr_t)rw, 4, 0, &a);
	printf("second-device: rc %d passes %u old %llu\n", rc == 0 ? 0 : errno, a.npasses,
	       (unsigned long long)a.old);
	close(fd2);
	close(fd);
	printf("summary: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
