/* Userspace stand-in for <linux/types.h>: just what bsearch.h and iodev.h use. */
#ifndef IOBUS_SHIM_TYPES_H
#define IOBUS_SHIM_TYPES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t s64;
typedef u64 gpa_t;
typedef int (*cmp_func_t)(const void *a, const void *b);
#endif
