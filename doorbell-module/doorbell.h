/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * Userspace API of the doorbell test module (/dev/doorbell).
 *
 * Every open file of /dev/doorbell is an independent doorbell with a 64-bit
 * counter.  The counter grows by one for each DOORBELL_RING and by the value
 * of every signal of an attached eventfd; the eventfd's count is consumed in
 * the kernel, so each signal is counted exactly once.
 *
 * ioctl type 0xB9 is not listed in
 * Documentation/userspace-api/ioctl/ioctl-number.rst and not used in tree.
 * Numbers 0x00-0x04 are taken, the rest of the block is free for growth.
 *
 * Errors: ATTACH_EVENTFD fails with EBADF for a bad fd, EINVAL for an fd
 * that is not an eventfd or for non-zero flags, EBUSY if an eventfd is
 * already attached; DETACH_EVENTFD fails with ENOENT if none is attached
 * (also after the eventfd was closed, which detaches it); an unknown ioctl
 * fails with ENOTTY.
 */
#ifndef _UAPI_LINUX_DOORBELL_H
#define _UAPI_LINUX_DOORBELL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define DOORBELL_IOCTL_TYPE	0xB9

/**
 * struct doorbell_eventfd - argument of DOORBELL_ATTACH_EVENTFD
 * @fd: eventfd whose signals are added to the counter
 * @flags: must be zero
 */
struct doorbell_eventfd {
	__s32 fd;
	__u32 flags;
};

/* Add one to the counter. */
#define DOORBELL_RING		_IO(DOORBELL_IOCTL_TYPE, 0x00)
/* Count every signal of an eventfd, including one pending at attach. */
#define DOORBELL_ATTACH_EVENTFD	_IOW(DOORBELL_IOCTL_TYPE, 0x01, \
				     struct doorbell_eventfd)
/* Stop counting the attached eventfd; a count pending on it is added. */
#define DOORBELL_DETACH_EVENTFD	_IO(DOORBELL_IOCTL_TYPE, 0x02)
/* Read the counter. */
#define DOORBELL_GET_COUNT	_IOR(DOORBELL_IOCTL_TYPE, 0x03, __u64)
/* Read the counter and set it to zero, atomically. */
#define DOORBELL_RESET		_IOR(DOORBELL_IOCTL_TYPE, 0x04, __u64)

#endif /* _UAPI_LINUX_DOORBELL_H */
