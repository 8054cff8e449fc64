// SPDX-License-Identifier: GPL-2.0
/*
 * The doorbell-bank scenario's KVM_RUN loop: a VMM whose MMIO handler for
 * the doorbell array does what a device model's does on a doorbell write
 * that reaches userspace (QEMU's NVMe without ioeventfd): store the new
 * tail in the device's register array, then kick the device thread's
 * eventfd.  In C for the same reason as payload/native/vmexit_loop.c: the
 * cost measured per exit must be KVM's and the VMM's, not Python's.
 *
 * The same loop runs all three variants, so the only difference between
 * them is what KVM does with a doorbell write.  In (b) and (c) KVM claims
 * the writes and the loop should see nothing but the final DONE_PORT exit;
 * if a doorbell write does reach it there (a broken claim, or an iofd
 * buffer that faulted), it is handled the same way and counted, and the
 * exit check (vmm_problems in payload/device/checks.py) fails the run.
 *
 * Loaded with ctypes by payload/native/bank.py.
 */
#include <unistd.h>

#include "kvm_loop.h"

/* Keep in sync with BankLoopResult in payload/native/bank.py. */
struct bank_loop_result {
	struct loop_common c;
	uint64_t doorbell_writes; /* MMIO writes into the doorbell array */
	uint64_t doorbell_reads;  /* MMIO reads from it */
	uint64_t stray_exits;     /* port or MMIO exits anywhere else, DONE excepted */
	uint64_t kicks;           /* eventfd writes to the device */
};

#define DOORBELL_WIDTH 4

/* What the exit handler needs: the array, the device's registers, its kick. */
struct bank {
	uint64_t base;
	uint32_t len;
	uint32_t *regs;           /* NULL: keep no values */
	int kick_fd;              /* -1: no kick */
	struct bank_loop_result *out;
};

/* A doorbell register: 4 bytes, aligned, inside [base, base + len). */
static int doorbell_index(uint64_t addr, uint32_t size, uint64_t base, uint32_t len)
{
	if (size != DOORBELL_WIDTH || addr < base || addr - base >= len ||
	    len - (addr - base) < DOORBELL_WIDTH || (addr - base) % DOORBELL_WIDTH)
		return -1;
	return (int)((addr - base) / DOORBELL_WIDTH);
}

/* Returns 0, or -errno of a failed kick. */
static int doorbell_mmio(struct kvm_run *run, int index, uint32_t *regs, int kick_fd,
			 struct bank_loop_result *out)
{
	uint32_t value = 0;

	if (!run->mmio.is_write) {
		if (regs)
			value = __atomic_load_n(&regs[index], __ATOMIC_ACQUIRE);
		memset(run->mmio.data, 0, sizeof(run->mmio.data));
		memcpy(run->mmio.data, &value, sizeof(value));
		out->doorbell_reads++;
		return 0;
	}
	memcpy(&value, run->mmio.data, sizeof(value));
	/* The tail first, then the kick: the device loads after it reads the kick. */
	if (regs)
		__atomic_store_n(&regs[index], value, __ATOMIC_RELEASE);
	out->doorbell_writes++;
	if (kick_fd >= 0) {
		uint64_t one = 1;

		if (write(kick_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			return -errno;
		out->kicks++;
	}
	return 0;
}

static int bank_exit(struct kvm_run *run, void *ctx)
{
	struct bank *bank = ctx;
	int index;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		bank->out->stray_exits++;
		return 0;
	case KVM_EXIT_MMIO:
		index = doorbell_index(run->mmio.phys_addr, run->mmio.len, bank->base, bank->len);
		if (index >= 0)
			return doorbell_mmio(run, index, bank->regs, bank->kick_fd, bank->out);
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0, sizeof(run->mmio.data));
		bank->out->stray_exits++;
		return 0;
	default:
		return -EIO;
	}
}

/*
 * Run until HLT or an OUT to done_port.  Doorbell MMIO writes store into
 * regs[] (if not NULL) and write 1 to kick_fd (if >= 0).  Returns 0, or
 * -EIO for an exit reason the loop does not handle (out->c.exit_reason),
 * -ETIMEDOUT when timeout_ns (if > 0) passed, or -errno of a failed
 * syscall.  The caller arms a repeating SIGALRM so that a guest that never
 * exits still makes KVM_RUN return -EINTR.
 */
int bank_loop(int vcpu_fd, struct kvm_run *run, uint64_t bank_base, uint32_t bank_len,
	      uint32_t *regs, int kick_fd, int done_port, int64_t timeout_ns,
	      struct bank_loop_result *out)
{
	struct bank bank = {
		.base = bank_base, .len = bank_len, .regs = regs, .kick_fd = kick_fd, .out = out,
	};

	memset(out, 0, sizeof(*out));
	return loop_run(vcpu_fd, run, done_port, timeout_ns, &out->c, bank_exit, &bank);
}
