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
 * runner's exit check fails the run.
 *
 * Loaded with ctypes by payload/device/native.py.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

/* Keep in sync with BankLoopResult in payload/device/native.py. */
struct bank_loop_result {
	uint64_t kvm_runs;        /* every return from KVM_RUN */
	uint64_t exits;           /* returns that reported an exit (not -EINTR) */
	uint64_t doorbell_writes; /* MMIO writes into the doorbell array */
	uint64_t doorbell_reads;  /* MMIO reads from it */
	uint64_t stray_exits;     /* port or MMIO exits anywhere else, DONE excepted */
	uint64_t interrupted;     /* returns with -EINTR (signals) */
	uint64_t kicks;           /* eventfd writes to the device */
	uint64_t ns;              /* CLOCK_MONOTONIC time around the whole loop */
	uint64_t done_value;      /* data of the DONE_PORT write */
	uint32_t exit_reason;     /* reason of the last exit */
	uint32_t end;             /* BANK_END_* */
	int32_t error;            /* errno of the failing syscall, if any */
	uint32_t pad;
};

enum { BANK_END_NONE = 0, BANK_END_HLT = 1, BANK_END_DONE = 2 };

#define DEADLINE_CHECK_EVERY 1024
#define DOORBELL_WIDTH 4

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int finish(struct bank_loop_result *out, uint64_t start, int ret)
{
	out->ns = now_ns() - start;
	if (ret < 0)
		out->error = -ret;
	return ret;
}

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

/*
 * Run until HLT or an OUT to done_port.  Doorbell MMIO writes store into
 * regs[] (if not NULL) and write 1 to kick_fd (if >= 0).  Returns 0, or
 * -EIO for an exit reason the loop does not handle (out->exit_reason),
 * -ETIMEDOUT when timeout_ns (if > 0) passed, or -errno of a failed
 * syscall.  The caller arms a repeating SIGALRM so that a guest that never
 * exits still makes KVM_RUN return -EINTR.
 */
int bank_loop(int vcpu_fd, struct kvm_run *run, uint64_t bank_base, uint32_t bank_len,
	      uint32_t *regs, int kick_fd, int done_port, int64_t timeout_ns,
	      struct bank_loop_result *out)
{
	uint64_t start, deadline;

	memset(out, 0, sizeof(*out));
	start = now_ns();
	deadline = timeout_ns > 0 ? start + (uint64_t)timeout_ns : 0;

	for (;;) {
		int ret, index;

		out->kvm_runs++;
		if (ioctl(vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno != EINTR)
				return finish(out, start, -errno);
			out->interrupted++;
			if (deadline && now_ns() >= deadline)
				return finish(out, start, -ETIMEDOUT);
			continue;
		}
		out->exits++;
		out->exit_reason = run->exit_reason;

		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t *data = (uint8_t *)run + run->io.data_offset;

			if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == done_port) {
				memcpy(&out->done_value, data, run->io.size <= 8 ? run->io.size : 8);
				out->end = BANK_END_DONE;
				return finish(out, start, 0);
			}
			if (run->io.direction == KVM_EXIT_IO_IN)
				memset(data, 0, (size_t)run->io.size * run->io.count);
			out->stray_exits++;
			break;
		}
		case KVM_EXIT_MMIO:
			index = doorbell_index(run->mmio.phys_addr, run->mmio.len, bank_base, bank_len);
			if (index < 0) {
				if (!run->mmio.is_write)
					memset(run->mmio.data, 0, sizeof(run->mmio.data));
				out->stray_exits++;
				break;
			}
			ret = doorbell_mmio(run, index, regs, kick_fd, out);
			if (ret < 0)
				return finish(out, start, ret);
			break;
		case KVM_EXIT_HLT:
			out->end = BANK_END_HLT;
			return finish(out, start, 0);
		default:
			return finish(out, start, -EIO);
		}
		if (deadline && out->exits % DEADLINE_CHECK_EVERY == 0 && now_ns() >= deadline)
			return finish(out, start, -ETIMEDOUT);
	}
}
