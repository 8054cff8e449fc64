/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The native KVM_RUN loop every C loop runs: the clock, KVM_RUN with its
 * signal and deadline handling, the end of a program (HLT or an OUT to the
 * done port), zero-filled port reads and the counts every loop reports.
 * Each loop brings only its handler for the other exits: vmexit_loop.c
 * (the benchmark) and bank_loop.c (the doorbell-bank device), both in
 * this directory.  payload/native/build.py puts it on the include path
 * and hashes this file into every library's name, so an edit here
 * rebuilds both.
 */
#ifndef KVM_IOFD_KVM_LOOP_H
#define KVM_IOFD_KVM_LOOP_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include <linux/kvm.h>

/* How a loop ended: the "end" member of each result; END_NAMES in Python. */
enum { LOOP_END_NONE = 0, LOOP_END_HLT = 1, LOOP_END_DONE = 2 };

/* Look at the clock every this many exits, for guests that never stop exiting. */
#define DEADLINE_CHECK_EVERY 1024

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What every loop reports: the first member of each loop's result. */
struct loop_common {
	uint64_t kvm_runs;    /* every return from KVM_RUN */
	uint64_t exits;       /* returns that reported an exit (not -EINTR) */
	uint64_t interrupted; /* returns with -EINTR (signals) */
	uint64_t ns;          /* CLOCK_MONOTONIC time around the whole loop */
	uint64_t done_value;  /* data of the done port write */
	uint32_t exit_reason; /* reason of the last exit */
	uint32_t end;         /* LOOP_END_* */
	int32_t error;        /* errno of the failing syscall, if any */
	uint32_t pad;
};

/*
 * A loop's own handling of an exit that is not the program's end.  A
 * port IN's data is already zero-filled.  Returns 0 to run on, or -errno to
 * stop the loop (-EIO: an exit reason the loop does not handle).
 */
typedef int (*loop_exit_fn)(struct kvm_run *run, void *ctx);

static inline int loop_finish(struct loop_common *c, uint64_t start, int ret)
{
	c->ns = now_ns() - start;
	if (ret < 0)
		c->error = -ret;
	return ret;
}

/*
 * A port exit: the program's end when it is an OUT to @done_port (its data,
 * up to 8 bytes, goes to *@done_value; returns 1); otherwise an IN's data
 * is zero-filled and 0 is returned.
 */
static inline int loop_port_exit(struct kvm_run *run, int done_port, uint64_t *done_value)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == done_port) {
		memcpy(done_value, data, run->io.size <= 8 ? run->io.size : 8);
		return 1;
	}
	if (run->io.direction == KVM_EXIT_IO_IN)
		memset(data, 0, (size_t)run->io.size * run->io.count);
	return 0;
}

/*
 * Run @vcpu_fd until HLT or an OUT to @done_port, passing every other exit
 * to @handle and counting into @c, which the caller has zeroed along with
 * the rest of its result (one memset of the whole struct, so a member
 * added later starts at zero too).  Returns 0 then; otherwise what @handle
 * returned, -ETIMEDOUT when @timeout_ns (if > 0) passed, or -errno of a
 * failed KVM_RUN.  The caller arms a repeating SIGALRM, so a guest that
 * never exits still makes KVM_RUN return -EINTR.  Static inline with a
 * constant @handle, so the compiler calls the handler directly, not
 * through the pointer (objdump shows a direct call in both loops).
 */
static inline int loop_run(int vcpu_fd, struct kvm_run *run, int done_port, int64_t timeout_ns,
			   struct loop_common *c, loop_exit_fn handle, void *ctx)
{
	uint64_t start, deadline;
	int ret;

	start = now_ns();
	deadline = timeout_ns > 0 ? start + (uint64_t)timeout_ns : 0;

	for (;;) {
		c->kvm_runs++;
		if (ioctl(vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno != EINTR)
				return loop_finish(c, start, -errno);
			c->interrupted++;
			if (deadline && now_ns() >= deadline)
				return loop_finish(c, start, -ETIMEDOUT);
			continue;
		}
		c->exits++;
		c->exit_reason = run->exit_reason;

		if (run->exit_reason == KVM_EXIT_HLT) {
			c->end = LOOP_END_HLT;
			return loop_finish(c, start, 0);
		}
		if (run->exit_reason == KVM_EXIT_IO &&
		    loop_port_exit(run, done_port, &c->done_value)) {
			c->end = LOOP_END_DONE;
			return loop_finish(c, start, 0);
		}
		ret = handle(run, ctx);
		if (ret < 0)
			return loop_finish(c, start, ret);
		if (deadline && c->exits % DEADLINE_CHECK_EVERY == 0 && now_ns() >= deadline)
			return loop_finish(c, start, -ETIMEDOUT);
	}
}

#endif /* KVM_IOFD_KVM_LOOP_H */
