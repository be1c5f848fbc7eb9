/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * svmkit_loop: the user-space interface of the svmkit oracle's nouveau-style
 * atomic fault loop (oracle/kernel/svmkit_loop.c). Written for svmkit; dual
 * licensed MIT or GPL-2.0 so that it can be built into a kernel.
 *
 * One open of /dev/svmkit_loop is one device with its own owner cookie: two
 * opens are two devices. The first ioctl binds the device to the caller's mm.
 * crates/svmkit-guest/src/sys.rs mirrors these structures byte for byte.
 */
#ifndef SVMKIT_LOOP_H
#define SVMKIT_LOOP_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* The most passes one SVL_IOC_ATOMIC may take (and so report). */
#define SVL_MAX_PASSES 64

/* svl_atomic.flags: the owner-blind control variants of the filter. */
/* also skip MMU_NOTIFY_EXCLUSIVE with owner NULL (the restore's event) */
#define SVL_SKIP_NULL_EXCLUSIVE (1u << 0)
/* skip every MMU_NOTIFY_EXCLUSIVE, whatever its owner, in both notifiers
 * (svmkit's `filter_ignores_owner` flaw) */
#define SVL_SKIP_ANY_EXCLUSIVE (1u << 1)
#define SVL_FLAGS_ALL (SVL_SKIP_NULL_EXCLUSIVE | SVL_SKIP_ANY_EXCLUSIVE)

/* svl_pass.what */
#define SVL_PASS_RETRIED (1u << 0)  /* mmu_interval_read_retry said retry */
#define SVL_PASS_SEQ_SET (1u << 1)  /* the callback called mmu_interval_set_seq */
#define SVL_PASS_EINVAL (1u << 2)   /* make_device_exclusive_range gave no page */
#define SVL_PASS_MAPPED (1u << 3)   /* the pass mapped the page on the device */
#define SVL_PASS_TIMEOUT (1u << 4)  /* not run: the 1 s timeout had passed */

/*
 * One pass of the fault loop: what it did and the interval callbacks that ran
 * during it, by event (from just before mmu_interval_read_begin to the
 * mmu_interval_read_retry decision).
 */
struct svl_pass {
	__u32 what;
	__u32 excl_own;   /* MMU_NOTIFY_EXCLUSIVE, owner this device */
	__u32 excl_other; /* MMU_NOTIFY_EXCLUSIVE, owner another device */
	__u32 excl_null;  /* MMU_NOTIFY_EXCLUSIVE, owner NULL (a restore) */
	__u32 clear;      /* MMU_NOTIFY_CLEAR */
	__u32 unmap;      /* MMU_NOTIFY_UNMAP */
	__u32 prot_vma;   /* MMU_NOTIFY_PROTECTION_VMA */
	__u32 other;      /* any other event */
};

/*
 * SVL_IOC_ATOMIC: a device atomic add of `delta` to the u64 at `addr` (8-byte
 * aligned). If the device maps the page, it is done at once (no fault, no pass).
 * Otherwise a device fault runs the loop (at most `max_passes` passes and 1 s),
 * and on success the atomic is replayed; a replay that finds the mapping gone
 * faults again, at most `max_passes` faults in all. The struct is copied back
 * whether the call succeeds or not; the ioctl's return is 0 or -errno (EBUSY at
 * the bound or timeout, EINVAL when make_device_exclusive_range gives no page
 * or on bad arguments).
 */
struct svl_atomic {
	__u64 addr;       /* in */
	__u64 delta;      /* in */
	__u64 old;        /* out: the value before the add */
	__u32 max_passes; /* in: 1 .. SVL_MAX_PASSES */
	__u32 flags;      /* in: SVL_SKIP_* (kept for the device's callbacks) */
	__u32 npasses;    /* out: passes recorded in passes[], over all faults */
	__u32 nfaults;    /* out: device faults taken */
	__s32 result;     /* out: 0 or -errno, as returned */
	__u32 classic_clears; /* out: device mappings the whole-mm notifier cleared during the call */
	struct svl_pass passes[SVL_MAX_PASSES];
};

/* SVL_IOC_QUERY: whether the device maps the page of `addr`, and its pfn. */
struct svl_query {
	__u64 addr;   /* in */
	__u64 pfn;    /* out: the pfn mapped, when mapped */
	__u32 mapped; /* out: 1 if the device maps the page (atomic rights) */
	__u32 npages; /* out: pages the device maps in all */
};

#define SVL_IOC_ATOMIC _IOWR('S', 0x01, struct svl_atomic)
#define SVL_IOC_QUERY _IOWR('S', 0x02, struct svl_query)

#endif
