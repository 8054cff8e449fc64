// SPDX-License-Identifier: GPL-2.0
/*
 * doorbell - a misc device that counts signals exactly
 *
 * Each open file of /dev/doorbell is a doorbell with a 64-bit counter.  It is
 * rung by the DOORBELL_RING ioctl or by signalling an attached eventfd.  An
 * attached eventfd is consumed in the kernel the way KVM's irqfd and vfio's
 * virqfd do it: a wait queue entry with a custom wake function reads and
 * clears the eventfd count under the eventfd's wait queue lock, so a signal
 * is neither lost nor counted twice.
 *
 * Lock discipline:
 *
 * - doorbell->count is an atomic64_t and needs no lock.
 *
 * - doorbell->lock (mutex) serialises ATTACH_EVENTFD and DETACH_EVENTFD of
 *   one doorbell, and the detach done by release.
 *
 * - The eventfd's wait queue lock, ctx->wqh.lock, is held (irqs off) around
 *   every call of doorbell_wakeup().  A doorbell_efd's wait entry is added
 *   and removed only under it, and the eventfd count is only consumed under
 *   it, which is what makes the count exact.
 *
 * - doorbell->efd_lock (spinlock, irq-safe) protects doorbell->efd.  It
 *   nests inside ctx->wqh.lock; ctx->wqh.lock is never taken under it.
 *
 * Teardown: whoever clears doorbell->efd under efd_lock owns the
 * doorbell_efd and frees it.  DETACH_EVENTFD and release then unhook the
 * wait entry with eventfd_ctx_remove_wait_queue(), which takes
 * ctx->wqh.lock and so waits for a running doorbell_wakeup(); after it the
 * wake function can no longer run and the doorbell may be freed.  On
 * EPOLLHUP (the eventfd file is being released) doorbell_wakeup() itself
 * takes ownership if it still can, unhooks the entry under the wait queue
 * lock it already holds and frees it; the eventfd file holds a reference to
 * the eventfd context across that wakeup, so ours is not the last one.
 *
 * A wait entry is on a wait queue only while its doorbell file is open, which
 * pins the module.  A doorbell_wakeup() that is still returning after a
 * hangup let the file close runs under a spinlock, so in an RCU read-side
 * critical section, and module unloading waits for it in synchronize_rcu().
 * No work is queued, so module exit has nothing to flush.
 */

#include <linux/atomic.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "doorbell.h"

/**
 * struct doorbell - one open file of /dev/doorbell
 * @count: signals counted so far
 * @lock: serialises attaching and detaching
 * @efd_lock: protects @efd, nests inside the eventfd's wait queue lock
 * @efd: the attached eventfd, NULL if none
 */
struct doorbell {
	atomic64_t count;
	struct mutex lock;		/* outer; may sleep */
	spinlock_t efd_lock;		/* inside ctx->wqh.lock, irq-safe */
	struct doorbell_efd *efd;
};

/**
 * struct doorbell_efd - an eventfd attached to a doorbell
 * @db: the doorbell its signals are added to
 * @ctx: our reference to the eventfd context
 * @wait: entry on the eventfd's wait queue, woken on every signal
 * @pt: poll table used once, to add @wait to that wait queue
 */
struct doorbell_efd {
	struct doorbell *db;
	struct eventfd_ctx *ctx;
	wait_queue_entry_t wait;
	poll_table pt;
};

static void doorbell_efd_free(struct doorbell_efd *efd)
{
	eventfd_ctx_put(efd->ctx);
	kfree(efd);
}

/* Clear db->efd if it is still @efd; true if the caller now owns @efd. */
static bool doorbell_efd_claim(struct doorbell *db, struct doorbell_efd *efd)
{
	unsigned long flags;
	bool owner;

	spin_lock_irqsave(&db->efd_lock, flags);
	owner = db->efd == efd;
	if (owner)
		db->efd = NULL;
	spin_unlock_irqrestore(&db->efd_lock, flags);

	return owner;
}

/* Called with ctx->wqh.lock held, irqs off. */
static void doorbell_efd_hangup(struct doorbell_efd *efd)
{
	/*
	 * If detach or release got here first, it owns @efd and is waiting
	 * for ctx->wqh.lock to unhook it; leave it alone.
	 */
	if (!doorbell_efd_claim(efd->db, efd))
		return;

	/* Like autoremove_wake_function(); the waker tolerates it. */
	list_del_init(&efd->wait.entry);
	doorbell_efd_free(efd);
}

/* Called with ctx->wqh.lock held, irqs off. */
static int doorbell_wakeup(wait_queue_entry_t *wait, unsigned int mode,
			   int sync, void *key)
{
	struct doorbell_efd *efd = container_of(wait, struct doorbell_efd, wait);
	__poll_t events = key_to_poll(key);
	u64 cnt;

	if (events & EPOLLIN) {
		eventfd_ctx_do_read(efd->ctx, &cnt);
		atomic64_add(cnt, &efd->db->count);
	}

	if (events & EPOLLHUP)
		doorbell_efd_hangup(efd);

	return 0;
}

/*
 * Called by vfs_poll() on the eventfd.  Adding the entry and consuming the
 * count already pending happen under one hold of the wait queue lock, so a
 * signal that came before the attach is counted, and one that comes after it
 * wakes us; none is missed or counted twice.
 */
static void doorbell_queue_proc(struct file *file, wait_queue_head_t *wqh,
				poll_table *pt)
{
	struct doorbell_efd *efd = container_of(pt, struct doorbell_efd, pt);
	unsigned long flags;
	u64 cnt;

	spin_lock_irqsave(&wqh->lock, flags);
	__add_wait_queue(wqh, &efd->wait);
	eventfd_ctx_do_read(efd->ctx, &cnt);
	atomic64_add(cnt, &efd->db->count);
	/* As eventfd_read() does: a writer may wait for room in the count. */
	if (cnt && waitqueue_active(wqh))
		wake_up_locked_poll(wqh, EPOLLOUT);
	spin_unlock_irqrestore(&wqh->lock, flags);
}

/* Called with db->lock held. */
static int doorbell_attach(struct doorbell *db,
			   struct doorbell_eventfd __user *uarg)
{
	struct doorbell_eventfd arg;
	struct doorbell_efd *efd;
	struct fd f;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags)
		return -EINVAL;

	f = fdget(arg.fd);
	if (!fd_file(f))
		return -EBADF;

	efd = kzalloc_obj(*efd, GFP_KERNEL_ACCOUNT);
	if (!efd) {
		ret = -ENOMEM;
		goto err_fdput;
	}

	efd->ctx = eventfd_ctx_fileget(fd_file(f));
	if (IS_ERR(efd->ctx)) {
		ret = PTR_ERR(efd->ctx);
		goto err_free;
	}

	efd->db = db;
	init_waitqueue_func_entry(&efd->wait, doorbell_wakeup);
	INIT_LIST_HEAD(&efd->wait.entry);
	init_poll_funcptr(&efd->pt, doorbell_queue_proc);

	spin_lock_irq(&db->efd_lock);
	if (db->efd) {
		spin_unlock_irq(&db->efd_lock);
		ret = -EBUSY;
		goto err_put;
	}
	db->efd = efd;
	spin_unlock_irq(&db->efd_lock);

	vfs_poll(fd_file(f), &efd->pt);

	/*
	 * Drop the file only now: its release sends the EPOLLHUP that may
	 * free @efd, and that must find the entry on the wait queue.
	 */
	fdput(f);
	return 0;

err_put:
	eventfd_ctx_put(efd->ctx);
err_free:
	kfree(efd);
err_fdput:
	fdput(f);
	return ret;
}

/* Called with db->lock held. */
static int doorbell_detach(struct doorbell *db)
{
	struct doorbell_efd *efd;
	u64 cnt;

	spin_lock_irq(&db->efd_lock);
	efd = db->efd;
	db->efd = NULL;
	spin_unlock_irq(&db->efd_lock);

	if (!efd)
		return -ENOENT;

	/*
	 * Takes ctx->wqh.lock, so a running doorbell_wakeup() is finished and
	 * no new one can start.  Whatever count is still pending is ours.
	 */
	eventfd_ctx_remove_wait_queue(efd->ctx, &efd->wait, &cnt);
	atomic64_add(cnt, &db->count);
	doorbell_efd_free(efd);
	return 0;
}

static int doorbell_reset(struct doorbell *db, u64 __user *uptr)
{
	u64 old = atomic64_xchg(&db->count, 0);

	if (put_user(old, uptr)) {
		/* Give the signals back rather than lose them. */
		atomic64_add(old, &db->count);
		return -EFAULT;
	}
	return 0;
}

static long doorbell_ioctl(struct file *file, unsigned int cmd,
			   unsigned long arg)
{
	struct doorbell *db = file->private_data;
	void __user *argp = (void __user *)arg;
	int ret;

	switch (cmd) {
	case DOORBELL_RING:
		atomic64_inc(&db->count);
		return 0;
	case DOORBELL_ATTACH_EVENTFD:
		mutex_lock(&db->lock);
		ret = doorbell_attach(db, argp);
		mutex_unlock(&db->lock);
		return ret;
	case DOORBELL_DETACH_EVENTFD:
		mutex_lock(&db->lock);
		ret = doorbell_detach(db);
		mutex_unlock(&db->lock);
		return ret;
	case DOORBELL_GET_COUNT:
		return put_user((u64)atomic64_read(&db->count),
				(u64 __user *)argp);
	case DOORBELL_RESET:
		return doorbell_reset(db, argp);
	default:
		return -ENOTTY;
	}
}

static int doorbell_open(struct inode *inode, struct file *file)
{
	struct doorbell *db;

	db = kzalloc_obj(*db, GFP_KERNEL_ACCOUNT);
	if (!db)
		return -ENOMEM;

	atomic64_set(&db->count, 0);
	mutex_init(&db->lock);
	spin_lock_init(&db->efd_lock);
	file->private_data = db;
	return 0;
}

static int doorbell_release(struct inode *inode, struct file *file)
{
	struct doorbell *db = file->private_data;

	/* No ioctl can run any more; an EPOLLHUP can. */
	mutex_lock(&db->lock);
	doorbell_detach(db);
	mutex_unlock(&db->lock);

	mutex_destroy(&db->lock);
	kfree(db);
	return 0;
}

static const struct file_operations doorbell_fops = {
	.owner = THIS_MODULE,
	.open = doorbell_open,
	.release = doorbell_release,
	.unlocked_ioctl = doorbell_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice doorbell_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "doorbell",
	.fops = &doorbell_fops,
	.mode = 0600,
};
module_misc_device(doorbell_misc);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Doorbell that counts RING ioctls and eventfd signals exactly");
