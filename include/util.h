/*
 * util.h - small shared helpers: a growable byte buffer, time, string copying.
 */
#ifndef PV_UTIL_H
#define PV_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h" /* usec_t */

/*
 * A growable byte buffer with a read position: bytes [pos, len) are pending.
 * Used for socket input/output queues and for building messages.
 */
struct pv_buf {
	uint8_t *data;
	size_t pos; /* first unconsumed byte */
	size_t len; /* end of valid data */
	size_t cap;
};

void buf_init(struct pv_buf *b);
void buf_free(struct pv_buf *b);
/* Ensure room for `extra` more bytes after len. false on allocation failure. */
bool buf_reserve(struct pv_buf *b, size_t extra);
bool buf_append(struct pv_buf *b, const void *data, size_t n);
/* Drop consumed bytes [0,pos) by moving the rest to the front. */
void buf_compact(struct pv_buf *b);
static inline size_t buf_pending(const struct pv_buf *b)
{
	return b->len - b->pos;
}
static inline void buf_reset(struct pv_buf *b)
{
	b->pos = b->len = 0;
}

/* Wall clock and monotonic clock in microseconds. */
usec_t now_usec(void);
usec_t mono_usec(void);

/* snprintf-style bounded copy; always NUL-terminates when size > 0. */
size_t strlcpy_pv(char *dst, const char *src, size_t size);

/* strdup that returns NULL on NULL. */
char *strdup_or_null(const char *s);

/* Constant-time comparison for secrets. */
bool mem_equal_ct(const void *a, const void *b, size_t n);

/* Fill buf with cryptographically random bytes. false on failure. */
bool random_bytes(void *buf, size_t n);

/* dst = n bytes of src as lowercase hex, NUL-terminated (dst holds 2n + 1). */
void hex_encode(const uint8_t *src, size_t n, char *dst);

#endif
