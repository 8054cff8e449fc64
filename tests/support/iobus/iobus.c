// SPDX-License-Identifier: GPL-2.0-only
/*
 * The KVM I/O bus code of a kernel tree, compiled in userspace.
 *
 * iobus.py extracts the io bus functions from the tree's virt/kvm/kvm_main.c
 * (IOBUS_CODE) and struct kvm_io_range/kvm_io_bus from its
 * include/linux/kvm_host.h (IOBUS_STRUCTS), and compiles them here, with
 * the tree's own bsearch() and kvm_iodevice_*() inlines, against stubs for
 * SRCU, RCU and allocation.  The functions below drive one bus with test
 * devices, so a property test can compare two trees' code directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/types.h>
#include <linux/bsearch.h>

struct kvm_vcpu;
struct kvm;
#include <kvm/iodev.h>

#define __always_inline inline
#define likely(x) (x)
#define unlikely(x) (x)
#define GFP_KERNEL_ACCOUNT 0
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define struct_size(p, member, n) (sizeof(*(p)) + (n) * sizeof((p)->member[0]))
#define flex_array_size(p, member, n) ((n) * sizeof((p)->member[0]))
#define kmalloc(size, gfp) malloc(size)
#define kmalloc_flex(obj, member, n, gfp) malloc(struct_size(&(obj), member, n))
#define kfree(p) free(p)
#define lockdep_assert_held(l) do { } while (0)
#define might_fault() do { } while (0)
#define smp_mb__after_srcu_read_lock() do { } while (0)
#define srcu_dereference(p, s) (p)
#define rcu_assign_pointer(p, v) ((p) = (v))
#define synchronize_srcu_expedited(s) do { } while (0)
#define pr_err(...) fprintf(stderr, __VA_ARGS__)
#define EXPORT_SYMBOL_GPL(x)
#define EXPORT_SYMBOL_FOR_KVM_INTERNAL(x)

struct rcu_head {
	void *next;
	void (*func)(struct rcu_head *head);
};

#include IOBUS_STRUCTS

struct kvm {
	struct kvm_io_bus *buses[KVM_NR_BUSES];
	int srcu;
	int slots_lock;
};

struct kvm_vcpu {
	struct kvm *kvm;
};

static inline struct kvm_io_bus *kvm_get_bus(struct kvm *kvm, enum kvm_bus idx)
{
	return kvm->buses[idx];
}

/* Grace periods end at once: the tests are single-threaded. */
static void call_srcu(int *srcu, struct rcu_head *head, void (*func)(struct rcu_head *))
{
	(void)srcu;
	func(head);
}

void *bsearch(const void *key, const void *base, size_t num, size_t size, cmp_func_t cmp)
{
	return __inline_bsearch(key, base, num, size, cmp);
}

#include IOBUS_CODE

/* ---- test devices ---------------------------------------------------- */

enum { DEV_RANGE, DEV_IOEVENTFD };

struct test_dev {
	struct kvm_io_device dev;
	int id, kind, has_dm;
	u64 addr, dm;
	int len;
};

static int last_accepted = -1;

static int test_write(struct kvm_vcpu *vcpu, struct kvm_io_device *this,
		      gpa_t addr, int len, const void *val)
{
	struct test_dev *d = container_of(this, struct test_dev, dev);
	u64 v = 0;

	memcpy(&v, val, len > 8 ? 8 : len);
	if (d->kind == DEV_IOEVENTFD) {
		/* As ioeventfd_in_range(): its address, its length unless 0. */
		if (addr != d->addr || (d->len && len != d->len))
			return -EOPNOTSUPP;
		if (d->has_dm && v != d->dm)
			return -EOPNOTSUPP;
	} else if (addr < d->addr || addr + len > d->addr + (u64)d->len) {
		return -EOPNOTSUPP;
	}
	last_accepted = d->id;
	return 0;
}

static int test_read(struct kvm_vcpu *vcpu, struct kvm_io_device *this,
		     gpa_t addr, int len, void *val)
{
	struct test_dev *d = container_of(this, struct test_dev, dev);

	if (d->kind == DEV_IOEVENTFD)
		return -EOPNOTSUPP;	/* ioeventfds have no read handler */
	if (addr < d->addr || addr + len > d->addr + (u64)d->len)
		return -EOPNOTSUPP;
	memset(val, 0, len);
	last_accepted = d->id;
	return 0;
}

static void test_destructor(struct kvm_io_device *this)
{
	free(container_of(this, struct test_dev, dev));
}

static const struct kvm_io_device_ops test_ops = {
	.read = test_read,
	.write = test_write,
	.destructor = test_destructor,
};

/* ---- the API iobus.py calls ------------------------------------------ */

struct kvm *iobus_new(void)
{
	struct kvm *kvm = calloc(1, sizeof(*kvm));

	kvm->buses[KVM_PIO_BUS] = calloc(1, sizeof(struct kvm_io_bus));
	return kvm;
}

int iobus_register(struct kvm *kvm, u64 addr, int len, int id, int kind,
		   int has_dm, u64 dm, int exclusive)
{
	struct test_dev *d = calloc(1, sizeof(*d));
	int r;

	d->id = id;
	d->kind = kind;
	d->has_dm = has_dm;
	d->dm = dm;
	d->addr = addr;
	d->len = len;
	kvm_iodevice_init(&d->dev, &test_ops);
#ifdef IOBUS_HAVE_EXCLUSIVE
	if (exclusive)
		r = kvm_io_bus_register_exclusive_dev(kvm, KVM_PIO_BUS, addr, len, &d->dev);
	else
#endif
		r = exclusive ? -ENOSYS : kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, addr, len, &d->dev);
	if (r)
		free(d);
	return r;
}

int iobus_unregister(struct kvm *kvm, int id)
{
	struct kvm_io_bus *bus = kvm->buses[KVM_PIO_BUS];
	int i;

	for (i = 0; i < bus->dev_count; i++) {
		struct test_dev *d = container_of(bus->range[i].dev, struct test_dev, dev);

		if (d->id == id)
			return kvm_io_bus_unregister_dev(kvm, KVM_PIO_BUS, &d->dev);
	}
	return -ENOENT;
}

/* The id of the device that accepted the access, or -1. */
int iobus_write(struct kvm *kvm, u64 addr, int len, u64 val)
{
	struct kvm_vcpu vcpu = { .kvm = kvm };

	last_accepted = -1;
	if (kvm_io_bus_write(&vcpu, KVM_PIO_BUS, addr, len, &val))
		return -1;
	return last_accepted;
}

int iobus_read(struct kvm *kvm, u64 addr, int len)
{
	struct kvm_vcpu vcpu = { .kvm = kvm };
	u64 val;

	last_accepted = -1;
	if (kvm_io_bus_read(&vcpu, KVM_PIO_BUS, addr, len, &val))
		return -1;
	return last_accepted;
}

int iobus_get_dev(struct kvm *kvm, u64 addr)
{
	struct kvm_io_device *dev = kvm_io_bus_get_dev(kvm, KVM_PIO_BUS, addr);

	return dev ? container_of(dev, struct test_dev, dev)->id : -1;
}

int iobus_count(struct kvm *kvm)
{
	return kvm->buses[KVM_PIO_BUS]->dev_count;
}
