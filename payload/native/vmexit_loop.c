// SPDX-License-Identifier: GPL-2.0
/*
 * The benchmark's KVM_RUN loop, in C so that the cost measured per exit is
 * KVM's and the doorbell's, not the Python interpreter's.  It does exactly
 * what payload.kvm.vmm.Vcpu.run_to_halt() does, minus the handler callback:
 * every port or MMIO exit that is not the end of the program optionally
 * "rings" a userspace device model (one ioctl on ring_fd) and zero-fills
 * reads.  Loaded with ctypes by harness/native/build.py.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include <linux/kvm.h>

/* Keep in sync with LoopResult in harness/native/loop.py. */
struct loop_result {
	uint64_t kvm_runs;     /* every return from KVM_RUN */
	uint64_t exits;        /* returns that reported an exit (not -EINTR) */
	uint64_t io_exits;     /* KVM_EXIT_IO before the end */
	uint64_t mmio_exits;   /* KVM_EXIT_MMIO before the end */
	uint64_t interrupted;  /* returns with -EINTR (signals) */
	uint64_t rings;        /* ring ioctls issued */
	uint64_t ns;           /* CLOCK_MONOTONIC time around the whole loop */
	uint64_t done_value;   /* data of the DONE_PORT write */
	uint32_t exit_reason;  /* reason of the last exit */
	uint32_t end;          /* LOOP_END_* */
	int32_t error;         /* errno of the failing syscall, if any */
	uint32_t pad;
};

enum { LOOP_END_NONE = 0, LOOP_END_HLT = 1, LOOP_END_DONE = 2 };

/* Look at the clock every this many exits, for guests that never stop exiting. */
#define DEADLINE_CHECK_EVERY 1024

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int finish(struct loop_result *out, uint64_t start, int ret)
{
	out->ns = now_ns() - start;
	if (ret < 0)
		out->error = -ret;
	return ret;
}

/*
 * Run until HLT or an OUT to done_port.  Returns 0 then; otherwise
 * -EIO for an exit reason the loop does not handle (out->exit_reason says
 * which), -ETIMEDOUT when timeout_ns (if > 0) passed, or -errno of a failed
 * KVM_RUN or ring ioctl.  The caller arms a repeating SIGALRM so a guest
 * that never exits still makes KVM_RUN return -EINTR.
 */
int vmexit_loop(int vcpu_fd, struct kvm_run *run, int ring_fd,
		unsigned long ring_cmd, int done_port, int64_t timeout_ns,
		struct loop_result *out)
{
	uint64_t start, deadline;

	memset(out, 0, sizeof(*out));
	start = now_ns();
	deadline = timeout_ns > 0 ? start + (uint64_t)timeout_ns : 0;

	for (;;) {
		int device_exit = 0;

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

			if (run->io.direction == KVM_EXIT_IO_OUT &&
			    run->io.port == done_port) {
				memcpy(&out->done_value, data,
				       run->io.size <= 8 ? run->io.size : 8);
				out->end = LOOP_END_DONE;
				return finish(out, start, 0);
			}
			if (run->io.direction == KVM_EXIT_IO_IN)
				memset(data, 0, (size_t)run->io.size * run->io.count);
			out->io_exits++;
			device_exit = 1;
			break;
		}
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0, sizeof(run->mmio.data));
			out->mmio_exits++;
			device_exit = 1;
			break;
		case KVM_EXIT_HLT:
			out->end = LOOP_END_HLT;
			return finish(out, start, 0);
		default:
			return finish(out, start, -EIO);
		}

		if (device_exit && ring_fd >= 0) {
			if (ioctl(ring_fd, ring_cmd, 0) < 0)
				return finish(out, start, -errno);
			out->rings++;
		}
		if (deadline && out->exits % DEADLINE_CHECK_EVERY == 0 &&
		    now_ns() >= deadline)
			return finish(out, start, -ETIMEDOUT);
	}
}
