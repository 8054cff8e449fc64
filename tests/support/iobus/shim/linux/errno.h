/* The system's <linux/errno.h> (the uAPI numbers are the kernel's). */
#ifndef IOBUS_SHIM_ERRNO_H
#define IOBUS_SHIM_ERRNO_H
#include_next <linux/errno.h>
#endif
