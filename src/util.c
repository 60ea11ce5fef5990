/*
 * util.c - growable buffers, clocks, string and random helpers.
 */
#include "util.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void buf_init(struct pv_buf *b)
{
	b->data = NULL;
	b->pos = b->len = b->cap = 0;
}

void buf_free(struct pv_buf *b)
{
	free(b->data);
	buf_init(b);
}

bool buf_reserve(struct pv_buf *b, size_t extra)
{
	size_t need, ncap;
	uint8_t *n;

	if (extra > SIZE_MAX - b->len)
		return false;
	need = b->len + extra;
	if (need <= b->cap)
		return true;
	/* Reclaim consumed space before growing. */
	if (b->pos > 0) {
		buf_compact(b);
		need = b->len + extra;
		if (need <= b->cap)
			return true;
	}
	ncap = b->cap ? b->cap : 256;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return false;
		ncap *= 2;
	}
	n = realloc(b->data, ncap);
	if (!n)
		return false;
	b->data = n;
	b->cap = ncap;
	return true;
}

bool buf_append(struct pv_buf *b, const void *data, size_t n)
{
	if (!buf_reserve(b, n))
		return false;
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	return true;
}

void buf_compact(struct pv_buf *b)
{
	if (b->pos == 0)
		return;
	if (b->pos < b->len)
		memmove(b->data, b->data + b->pos, b->len - b->pos);
	b->len -= b->pos;
	b->pos = 0;
}

usec_t now_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (usec_t)ts.tv_sec * USEC_PER_SEC + ts.tv_nsec / 1000;
}

usec_t mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (usec_t)ts.tv_sec * USEC_PER_SEC + ts.tv_nsec / 1000;
}

size_t strlcpy_pv(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);
	if (size > 0) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

char *strdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

bool mem_equal_ct(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;
	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

/*
 * Logins need a few random bytes each (salts, cancel keys); OpenSSL's DRBG
 * costs thousands of instructions per call, so draw it in blocks and hand
 * out slices. Used bytes are wiped. Only the event-loop thread calls this.
 */
bool random_bytes(void *buf, size_t n)
{
	static uint8_t pool[512];
	static size_t avail;
	uint8_t *out = buf;

	if (n > sizeof(pool) / 2)
		return RAND_bytes(buf, (int)n) == 1;
	if (avail < n) {
		if (RAND_bytes(pool, sizeof(pool)) != 1)
			return false;
		avail = sizeof(pool);
	}
	memcpy(out, pool + sizeof(pool) - avail, n);
	OPENSSL_cleanse(pool + sizeof(pool) - avail, n);
	avail -= n;
	return true;
}

void hex_encode(const uint8_t *src, size_t n, char *dst)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		dst[2 * i] = hex[src[i] >> 4];
		dst[2 * i + 1] = hex[src[i] & 15];
	}
	dst[2 * n] = '\0';
}
