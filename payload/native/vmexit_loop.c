// SPDX-License-Identifier: GPL-2.0
/*
 * The benchmark's KVM_RUN loop, in C so that the cost measured per exit is
 * KVM's and the doorbell's, not the Python interpreter's.  It does exactly
 * what payload.kvm.vmm.Vcpu.run_to_halt() does, minus the handler callback:
 * every port or MMIO exit that is not the end of the program optionally
 * "rings" a userspace device model (one ioctl on ring_fd) and zero-fills
 * reads.  The loop itself is kvm_loop.h's.  Loaded with ctypes by
 * payload/native/build.py.
 */
#include "kvm_loop.h"

/* Keep in sync with LoopResult in payload/native/loop.py. */
struct loop_result {
	struct loop_common c;
	uint64_t io_exits;     /* KVM_EXIT_IO before the end */
	uint64_t mmio_exits;   /* KVM_EXIT_MMIO before the end */
	uint64_t rings;        /* ring ioctls issued */
};

struct ring {
	int fd;                /* -1: no ring */
	unsigned long cmd;
	struct loop_result *out;
};

static int device_exit(struct kvm_run *run, void *ctx)
{
	struct ring *ring = ctx;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		ring->out->io_exits++;
		break;
	case KVM_EXIT_MMIO:
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0, sizeof(run->mmio.data));
		ring->out->mmio_exits++;
		break;
	default:
		return -EIO;
	}
	if (ring->fd < 0)
		return 0;
	if (ioctl(ring->fd, ring->cmd, 0) < 0)
		return -errno;
	ring->out->rings++;
	return 0;
}

/*
 * Run until HLT or an OUT to done_port.  Returns 0 then; otherwise
 * -EIO for an exit reason the loop does not handle (out->c.exit_reason
 * says which), -ETIMEDOUT when timeout_ns (if > 0) passed, or -errno of a
 * failed KVM_RUN or ring ioctl.  The caller arms a repeating SIGALRM so a
 * guest that never exits still makes KVM_RUN return -EINTR.
 */
int vmexit_loop(int vcpu_fd, struct kvm_run *run, int ring_fd,
		unsigned long ring_cmd, int done_port, int64_t timeout_ns,
		struct loop_result *out)
{
	struct ring ring = { .fd = ring_fd, .cmd = ring_cmd, .out = out };

	memset(out, 0, sizeof(*out));
	return loop_run(vcpu_fd, run, done_port, timeout_ns, &out->c, device_exit, &ring);
}
