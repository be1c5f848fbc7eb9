// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * svmkit_loop: a nouveau-style device atomic fault loop for the svmkit oracle.
 *
 * Written for svmkit (no kernel code copied); dual licensed MIT or GPL-2.0 so
 * that it may call the GPL-only exports it needs (make_device_exclusive_range,
 * the mmu notifier API). oracle/build copies it into drivers/misc/svmkit/ of
 * the unpacked Debian tree and builds it in (CONFIG_SVMKIT_LOOP=y).
 *
 * Each open of /dev/svmkit_loop is one "device" whose owner cookie is its own
 * state pointer, so two opens on one page are two devices that do not filter
 * each other's MMU_NOTIFY_EXCLUSIVE. The device keeps a small table of pages it
 * maps "atomically" (what a GPU page table would hold), and two notifiers, as
 * nouveau has:
 *
 *  - a whole-mm notifier (nouveau's svmm notifier) that drops table entries in
 *    every invalidated range, skipping only MMU_NOTIFY_MIGRATE of its own owner;
 *  - an interval notifier on the faulting page, inserted for one fault only
 *    (nouveau's svm_notifier), whose callback returns early for
 *    MMU_NOTIFY_EXCLUSIVE carrying this device's owner and otherwise takes the
 *    driver lock and calls mmu_interval_set_seq.
 *
 * The fault loop (nouveau_atomic_range_fault() of the Debian 6.1 and 6.12
 * trees, which unlock and put the folio before retrying): per pass
 * read_begin, make_device_exclusive_range() under mmap_read_lock, driver lock,
 * read_retry; on retry unlock the driver lock, unlock and put the folio and go
 * again; on success record the mapping, unlock. Bounded by a pass count from
 * user space and by nouveau's 1 s (HMM_RANGE_DEFAULT_TIMEOUT).
 *
 * Every pass is reported back with the interval callbacks that ran during it,
 * by event and owner, which is what svmkit's FINDINGS entry 1 is about.
 */
#include <linux/fs.h>
#include <linux/hmm.h>
#include <linux/highmem.h>
#include <linux/jiffies.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pagemap.h>
#include <linux/rmap.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "svmkit_loop.h"

/* Pages one device may map at once; plenty for a scenario file. */
#define SVL_TABLE 16

enum svl_ev {
	SVL_EV_EXCL_OWN,
	SVL_EV_EXCL_OTHER,
	SVL_EV_EXCL_NULL,
	SVL_EV_CLEAR,
	SVL_EV_UNMAP,
	SVL_EV_PROT_VMA,
	SVL_EV_OTHER,
	SVL_EV_N,
};

struct svl_entry {
	unsigned long addr; /* page aligned; 0 = free slot */
	struct page *page;  /* no reference: valid while the entry is (as a GPU PTE) */
};

struct svl_dev {
	/* The driver lock (nouveau: svmm->mutex). Guards table, and is what the
	 * interval callback holds around mmu_interval_set_seq. */
	struct mutex lock;
	/* Serialises ioctls of this device: one fault at a time, like one GPU
	 * fault buffer; the callbacks never take it. */
	struct mutex ioctl_lock;
	struct mm_struct *mm; /* bound at the first ioctl; NULL before */
	struct mmu_notifier mn;
	bool registered;
	bool mm_gone; /* the whole-mm notifier's release ran */
	u32 flags;    /* SVL_SKIP_*, set by each SVL_IOC_ATOMIC */
	struct svl_entry table[SVL_TABLE];
	/* Counters of the pass in progress, written by the interval callback
	 * (atomics, because the skipping path takes no lock, as nouveau's). */
	atomic_t ev[SVL_EV_N];
	atomic_t seq_set;
	atomic_t classic_clears;
};

/* The interval notifier of one fault, on the stack of the ioctl. */
struct svl_fault {
	struct mmu_interval_notifier notifier;
	struct svl_dev *dev;
};

/* Whether this device's filters skip an MMU_NOTIFY_EXCLUSIVE with `owner`. */
static bool svl_skips_exclusive(struct svl_dev *dev, void *owner)
{
	u32 flags = READ_ONCE(dev->flags);

	if (owner == dev)
		return true;
	if (flags & SVL_SKIP_ANY_EXCLUSIVE)
		return true;
	return owner == NULL && (flags & SVL_SKIP_NULL_EXCLUSIVE);
}

/* Drops every table entry in [start, end). Called with dev->lock held. */
static unsigned int svl_table_clear(struct svl_dev *dev, unsigned long start,
				    unsigned long end)
{
	unsigned int i, n = 0;

	for (i = 0; i < SVL_TABLE; i++) {
		struct svl_entry *e = &dev->table[i];

		if (e->addr && e->addr < end && e->addr + PAGE_SIZE > start) {
			e->addr = 0;
			e->page = NULL;
			n++;
		}
	}
	return n;
}

static struct svl_entry *svl_table_find(struct svl_dev *dev, unsigned long addr)
{
	unsigned int i;

	for (i = 0; i < SVL_TABLE; i++)
		if (dev->table[i].addr == addr)
			return &dev->table[i];
	return NULL;
}

static void svl_count(struct svl_dev *dev, const struct mmu_notifier_range *r)
{
	enum svl_ev ev;

	switch (r->event) {
	case MMU_NOTIFY_EXCLUSIVE:
		ev = r->owner == dev ? SVL_EV_EXCL_OWN :
		     r->owner ? SVL_EV_EXCL_OTHER : SVL_EV_EXCL_NULL;
		break;
	case MMU_NOTIFY_CLEAR:
		ev = SVL_EV_CLEAR;
		break;
	case MMU_NOTIFY_UNMAP:
		ev = SVL_EV_UNMAP;
		break;
	case MMU_NOTIFY_PROTECTION_VMA:
		ev = SVL_EV_PROT_VMA;
		break;
	default:
		ev = SVL_EV_OTHER;
		break;
	}
	atomic_inc(&dev->ev[ev]);
}

/* The interval callback (nouveau: nouveau_svm_range_invalidate). */
static bool svl_interval_invalidate(struct mmu_interval_notifier *mni,
				    const struct mmu_notifier_range *range,
				    unsigned long cur_seq)
{
	struct svl_fault *f = container_of(mni, struct svl_fault, notifier);
	struct svl_dev *dev = f->dev;

	svl_count(dev, range);
	/* Our own conversion must not make the pass retry (without this every
	 * pass would: the livelock the filter exists for). */
	if (range->event == MMU_NOTIFY_EXCLUSIVE &&
	    svl_skips_exclusive(dev, range->owner))
		return true;

	if (mmu_notifier_range_blockable(range))
		mutex_lock(&dev->lock);
	else if (!mutex_trylock(&dev->lock))
		return false;
	mmu_interval_set_seq(mni, cur_seq);
	atomic_inc(&dev->seq_set);
	mutex_unlock(&dev->lock);
	return true;
}

static const struct mmu_interval_notifier_ops svl_interval_ops = {
	.invalidate = svl_interval_invalidate,
};

/* The whole-mm notifier (nouveau: nouveau_svmm_invalidate_range_start): the
 * device's mappings in the range go, whatever the event, except a migration
 * the device started itself (never here) and, in the owner-blind variant, any
 * MMU_NOTIFY_EXCLUSIVE. */
static int svl_mn_invalidate_range_start(struct mmu_notifier *mn,
					 const struct mmu_notifier_range *range)
{
	struct svl_dev *dev = container_of(mn, struct svl_dev, mn);

	if (!mmu_notifier_range_blockable(range))
		return -EAGAIN;
	if (range->event == MMU_NOTIFY_MIGRATE && range->owner == dev)
		return 0;
	if (range->event == MMU_NOTIFY_EXCLUSIVE &&
	    (READ_ONCE(dev->flags) & SVL_SKIP_ANY_EXCLUSIVE))
		return 0;
	mutex_lock(&dev->lock);
	atomic_add(svl_table_clear(dev, range->start, range->end),
		   &dev->classic_clears);
	mutex_unlock(&dev->lock);
	return 0;
}

/* nouveau has no release; this one exists so that no table entry can name a
 * page of an exited mm (the pages go right after), and later ioctls fail. */
static void svl_mn_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	struct svl_dev *dev = container_of(mn, struct svl_dev, mn);

	mutex_lock(&dev->lock);
	svl_table_clear(dev, 0, ULONG_MAX);
	dev->mm_gone = true;
	mutex_unlock(&dev->lock);
}

static const struct mmu_notifier_ops svl_mn_ops = {
	.release = svl_mn_release,
	.invalidate_range_start = svl_mn_invalidate_range_start,
};

/* Binds the device to the caller's mm on first use; later calls must come
 * from the same mm (a forked child holding the fd gets EINVAL). */
static int svl_bind(struct svl_dev *dev)
{
	int ret;

	if (!current->mm)
		return -EINVAL;
	if (dev->registered)
		return (dev->mm == current->mm && !READ_ONCE(dev->mm_gone)) ? 0 : -EINVAL;
	ret = mmu_notifier_register(&dev->mn, current->mm);
	if (ret)
		return ret;
	dev->mm = current->mm;
	dev->registered = true;
	return 0;
}

static void svl_pass_begin(struct svl_dev *dev)
{
	int i;

	for (i = 0; i < SVL_EV_N; i++)
		atomic_set(&dev->ev[i], 0);
	atomic_set(&dev->seq_set, 0);
}

static void svl_pass_end(struct svl_dev *dev, struct svl_pass *p)
{
	p->excl_own = atomic_read(&dev->ev[SVL_EV_EXCL_OWN]);
	p->excl_other = atomic_read(&dev->ev[SVL_EV_EXCL_OTHER]);
	p->excl_null = atomic_read(&dev->ev[SVL_EV_EXCL_NULL]);
	p->clear = atomic_read(&dev->ev[SVL_EV_CLEAR]);
	p->unmap = atomic_read(&dev->ev[SVL_EV_UNMAP]);
	p->prot_vma = atomic_read(&dev->ev[SVL_EV_PROT_VMA]);
	p->other = atomic_read(&dev->ev[SVL_EV_OTHER]);
	if (atomic_read(&dev->seq_set))
		p->what |= SVL_PASS_SEQ_SET;
}

/*
 * One device fault on the page at `start`: the nouveau-style loop. Records each
 * pass in a->passes. Returns 0 (the page is in the table) or -errno.
 */
static int svl_fault(struct svl_dev *dev, struct svl_atomic *a,
		     unsigned long start)
{
	unsigned long timeout = jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
	struct mm_struct *mm = dev->mm;
	struct svl_fault f = { .dev = dev };
	unsigned int passes = 0;
	int ret;

	/* The mm may be exiting: do not touch it then (nouveau's svm_fault does
	 * the same with mmget_not_zero). */
	if (!mmget_not_zero(mm))
		return -EINVAL;
	ret = mmu_interval_notifier_insert(&f.notifier, mm, start, PAGE_SIZE,
					   &svl_interval_ops);
	if (ret)
		goto out_mmput;

	for (;;) {
		struct svl_pass *p;
		struct page *page = NULL;
		struct folio *folio;
		struct svl_entry *e;
		unsigned long seq;

		if (passes == a->max_passes || a->npasses == SVL_MAX_PASSES) {
			ret = -EBUSY;
			break;
		}
		if (time_after(jiffies, timeout)) {
			/* nouveau's bound; recorded so that user space can tell it from
			 * the pass bound */
			a->passes[a->npasses++].what = SVL_PASS_TIMEOUT;
			ret = -EBUSY;
			break;
		}
		p = &a->passes[a->npasses++];
		passes++;
		svl_pass_begin(dev);

		seq = mmu_interval_read_begin(&f.notifier);
		mmap_read_lock(mm);
		ret = make_device_exclusive_range(mm, start, start + PAGE_SIZE,
						  &page, dev);
		mmap_read_unlock(mm);
		if (ret <= 0 || !page) {
			/* A tail page, a folio we could not lock, a page the rmap walk
			 * could not convert, or no page at all: nouveau's -EINVAL. */
			svl_pass_end(dev, p);
			p->what |= SVL_PASS_EINVAL;
			ret = -EINVAL;
			break;
		}
		folio = page_folio(page);

		mutex_lock(&dev->lock);
		if (mmu_interval_read_retry(&f.notifier, seq)) {
			mutex_unlock(&dev->lock);
			svl_pass_end(dev, p);
			p->what |= SVL_PASS_RETRIED;
			/* The fix both Debian trees have: drop the folio before the next
			 * pass, whose GUP would otherwise sleep on its lock. */
			folio_unlock(folio);
			folio_put(folio);
			continue;
		}
		e = svl_table_find(dev, start);
		if (!e)
			e = svl_table_find(dev, 0);
		if (!e) {
			/* Table full: evict the first entry (a GPU would evict too). */
			e = &dev->table[0];
		}
		e->addr = start;
		e->page = page;
		mutex_unlock(&dev->lock);
		svl_pass_end(dev, p);
		p->what |= SVL_PASS_MAPPED;
		folio_unlock(folio);
		folio_put(folio);
		ret = 0;
		break;
	}

	mmu_interval_notifier_remove(&f.notifier);
out_mmput:
	mmput(mm);
	return ret;
}

/* The device atomic: on a mapped page at once, else fault and replay. */
static int svl_atomic(struct svl_dev *dev, struct svl_atomic *a)
{
	unsigned long start = a->addr & PAGE_MASK;
	unsigned int faults = 0;
	int ret;

	for (;;) {
		struct svl_entry *e;

		mutex_lock(&dev->lock);
		e = svl_table_find(dev, start);
		if (e && !dev->mm_gone) {
			/* The entry is valid while we hold the lock: every
			 * invalidation of the page takes it to drop the entry
			 * before the CPU page table changes. */
			u64 *v = kmap_local_page(e->page);
			u64 *w = v + (offset_in_page(a->addr) / sizeof(u64));

			a->old = READ_ONCE(*w);
			WRITE_ONCE(*w, a->old + a->delta);
			kunmap_local(v);
			mutex_unlock(&dev->lock);
			return 0;
		}
		mutex_unlock(&dev->lock);
		if (faults == a->max_passes)
			return -EBUSY;
		faults++;
		a->nfaults = faults;
		ret = svl_fault(dev, a, start);
		if (ret)
			return ret;
	}
}

static long svl_ioctl_atomic(struct svl_dev *dev, void __user *uarg)
{
	struct svl_atomic *a;
	long ret;

	a = kzalloc(sizeof(*a), GFP_KERNEL);
	if (!a)
		return -ENOMEM;
	if (copy_from_user(a, uarg, sizeof(*a))) {
		ret = -EFAULT;
		goto out;
	}
	if (a->max_passes < 1 || a->max_passes > SVL_MAX_PASSES ||
	    (a->flags & ~SVL_FLAGS_ALL) || !IS_ALIGNED(a->addr, sizeof(u64)) ||
	    a->addr < PAGE_SIZE || a->addr >= TASK_SIZE) {
		/* page 0 is never mappable, and the table uses address 0 as "free" */
		ret = -EINVAL;
		goto out;
	}
	/* outputs start from zero whatever user space passed in */
	a->old = 0;
	a->npasses = 0;
	a->nfaults = 0;
	memset(a->passes, 0, sizeof(a->passes));

	mutex_lock(&dev->ioctl_lock);
	ret = svl_bind(dev);
	if (!ret) {
		WRITE_ONCE(dev->flags, a->flags);
		atomic_set(&dev->classic_clears, 0);
		ret = svl_atomic(dev, a);
		a->classic_clears = atomic_read(&dev->classic_clears);
	}
	mutex_unlock(&dev->ioctl_lock);
	a->result = ret;
	/* The passes are the point even when the fault failed: copy back always. */
	if (copy_to_user(uarg, a, sizeof(*a)))
		ret = -EFAULT;
out:
	kfree(a);
	return ret;
}

static long svl_ioctl_query(struct svl_dev *dev, void __user *uarg)
{
	struct svl_query q;
	struct svl_entry *e;
	unsigned int i;

	if (copy_from_user(&q, uarg, sizeof(q)))
		return -EFAULT;
	q.mapped = 0;
	q.pfn = 0;
	q.npages = 0;
	mutex_lock(&dev->lock);
	e = (q.addr & PAGE_MASK) ? svl_table_find(dev, q.addr & PAGE_MASK) : NULL;
	if (e) {
		q.mapped = 1;
		q.pfn = page_to_pfn(e->page);
	}
	for (i = 0; i < SVL_TABLE; i++)
		q.npages += dev->table[i].addr != 0;
	mutex_unlock(&dev->lock);
	if (copy_to_user(uarg, &q, sizeof(q)))
		return -EFAULT;
	return 0;
}

static long svl_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct svl_dev *dev = file->private_data;

	switch (cmd) {
	case SVL_IOC_ATOMIC:
		return svl_ioctl_atomic(dev, (void __user *)arg);
	case SVL_IOC_QUERY:
		return svl_ioctl_query(dev, (void __user *)arg);
	default:
		return -ENOTTY;
	}
}

static int svl_open(struct inode *inode, struct file *file)
{
	struct svl_dev *dev = kzalloc(sizeof(*dev), GFP_KERNEL);

	if (!dev)
		return -ENOMEM;
	mutex_init(&dev->lock);
	mutex_init(&dev->ioctl_lock);
	dev->mn.ops = &svl_mn_ops;
	file->private_data = dev;
	return 0;
}

static int svl_release(struct inode *inode, struct file *file)
{
	struct svl_dev *dev = file->private_data;

	/* No ioctl runs now (the file is going), so no interval notifier of ours
	 * is inserted. Unregistering waits for callbacks in flight and drops the
	 * mm reference mmu_notifier_register took. */
	if (dev->registered)
		mmu_notifier_unregister(&dev->mn, dev->mm);
	kfree(dev);
	return 0;
}

static const struct file_operations svl_fops = {
	.owner = THIS_MODULE,
	.open = svl_open,
	.release = svl_release,
	.unlocked_ioctl = svl_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice svl_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "svmkit_loop",
	.fops = &svl_fops,
	.mode = 0666,
};

static int __init svl_init(void)
{
	return misc_register(&svl_misc);
}
module_init(svl_init);

MODULE_DESCRIPTION("svmkit oracle: a nouveau-style device atomic fault loop");
MODULE_LICENSE("Dual MIT/GPL");
