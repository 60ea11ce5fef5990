/*
 * oidc_cache.c - the verified-token cache (oidc_cache.h): a fixed pool of
 * OIDC_CACHE_MAX_ENTRIES slots, chained hash buckets indexed by the digest,
 * and an LRU list through the slots. Allocated on the first insert.
 */
#include "oidc_cache.h"
#include "oidc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* Twice the entries, a power of two: short chains, index = digest bits. */
#define N_BUCKETS (2 * OIDC_CACHE_MAX_ENTRIES)
#define NIL       UINT32_MAX

_Static_assert((N_BUCKETS & (N_BUCKETS - 1)) == 0, "bucket count must be a power of two");

struct slot {
	uint8_t digest[OIDC_DIGEST_LEN];
	struct oidc_cached val;
	uint32_t hnext;      /* next in the bucket chain, or in the free list */
	uint32_t prev, next; /* LRU list, head = most recently used */
};

static struct {
	struct slot *slots;
	uint32_t *buckets;
	uint32_t head, tail, free_list;
	const void *owner;
	bool atexit_done;
	EVP_MD *sha256;
	struct oidc_cache_stats st;
} C = {.head = NIL, .tail = NIL, .free_list = NIL};

/* --- digest ----------------------------------------------------------------------- */

bool oidc_cache_digest(const char *token, size_t len, uint8_t out[OIDC_DIGEST_LEN])
{
	unsigned int n = 0;

	/* Fetched once: an implicit fetch per call would cost more than the hash of a JWT. */
	if (!C.sha256 && !(C.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)))
		return false;
	return EVP_Digest(token, len, out, &n, C.sha256, NULL) == 1 && n == OIDC_DIGEST_LEN;
}

/* --- table ------------------------------------------------------------------------ */

static uint32_t bucket_of(const uint8_t *d)
{
	uint32_t h;
	/* A SHA-256 output is uniform, so its first bytes are already a good hash. */
	memcpy(&h, d, sizeof(h));
	return h & (N_BUCKETS - 1);
}

static bool table_alloc(void)
{
	if (C.slots)
		return true;
	C.slots = calloc(OIDC_CACHE_MAX_ENTRIES, sizeof(*C.slots));
	C.buckets = malloc(N_BUCKETS * sizeof(*C.buckets));
	if (!C.slots || !C.buckets) {
		free(C.slots);
		free(C.buckets);
		C.slots = NULL;
		C.buckets = NULL;
		return false;
	}
	for (uint32_t b = 0; b < N_BUCKETS; b++)
		C.buckets[b] = NIL;
	C.free_list = NIL;
	for (uint32_t i = OIDC_CACHE_MAX_ENTRIES; i-- > 0;) {
		C.slots[i].hnext = C.free_list;
		C.free_list = i;
	}
	C.head = C.tail = NIL;
	if (!C.atexit_done)
		C.atexit_done = atexit(oidc_cache_destroy) == 0;
	return true;
}

static uint32_t find_slot(const uint8_t *d)
{
	if (!C.slots)
		return NIL;
	for (uint32_t i = C.buckets[bucket_of(d)]; i != NIL; i = C.slots[i].hnext)
		if (CRYPTO_memcmp(C.slots[i].digest, d, OIDC_DIGEST_LEN) == 0)
			return i;
	return NIL;
}

static void lru_unlink(uint32_t i)
{
	struct slot *s = &C.slots[i];
	if (s->prev != NIL)
		C.slots[s->prev].next = s->next;
	else
		C.head = s->next;
	if (s->next != NIL)
		C.slots[s->next].prev = s->prev;
	else
		C.tail = s->prev;
}

static void lru_push_front(uint32_t i)
{
	struct slot *s = &C.slots[i];
	s->prev = NIL;
	s->next = C.head;
	if (C.head != NIL)
		C.slots[C.head].prev = i;
	C.head = i;
	if (C.tail == NIL)
		C.tail = i;
}

/* Unlink slot i from its bucket and the LRU list, free its identity, return it to the pool. */
static void slot_release(uint32_t i)
{
	struct slot *s = &C.slots[i];
	uint32_t *pp = &C.buckets[bucket_of(s->digest)];

	while (*pp != i)
		pp = &C.slots[*pp].hnext;
	*pp = s->hnext;
	lru_unlink(i);
	identity_free(s->val.id);
	/* Nothing of a dropped entry lingers, not even the digest. */
	memset(s, 0, sizeof(*s));
	s->hnext = C.free_list;
	C.free_list = i;
	C.st.entries--;
}

void oidc_cache_bind(const void *owner)
{
	if (owner != C.owner) {
		oidc_cache_flush();
		C.owner = owner;
	}
}

const struct oidc_cached *oidc_cache_find(const uint8_t digest[OIDC_DIGEST_LEN])
{
	uint32_t i = find_slot(digest);

	if (i == NIL) {
		C.st.misses++;
		return NULL;
	}
	lru_unlink(i);
	lru_push_front(i);
	return &C.slots[i].val;
}

void oidc_cache_drop_stale(const uint8_t digest[OIDC_DIGEST_LEN])
{
	uint32_t i = find_slot(digest);

	if (i == NIL)
		return;
	slot_release(i);
	C.st.stale++;
	C.st.misses++;
}

void oidc_cache_count_hit(void)
{
	C.st.hits++;
}

/* A free slot, evicting the least recently used entry when there is none. */
static uint32_t take_slot(void)
{
	uint32_t i = C.free_list;

	if (i == NIL) {
		slot_release(C.tail);
		C.st.evictions++;
		i = C.free_list;
	}
	C.free_list = C.slots[i].hnext;
	return i;
}

bool oidc_cache_insert(const uint8_t digest[OIDC_DIGEST_LEN], const struct oidc_cached *val)
{
	uint32_t i, b;

	if (!table_alloc()) {
		identity_free(val->id);
		return false;
	}
	i = find_slot(digest);
	if (i != NIL)
		slot_release(i);
	i = take_slot();
	memcpy(C.slots[i].digest, digest, OIDC_DIGEST_LEN);
	C.slots[i].val = *val;
	b = bucket_of(digest);
	C.slots[i].hnext = C.buckets[b];
	C.buckets[b] = i;
	lru_push_front(i);
	C.st.entries++;
	return true;
}

void oidc_cache_flush(void)
{
	/* Unbound as well: the next lookup binds whatever policy is running then. */
	C.owner = NULL;
	if (!C.slots || C.head == NIL)
		return;
	while (C.head != NIL)
		slot_release(C.head);
	C.st.flushes++;
}

void oidc_cache_get_stats(struct oidc_cache_stats *out)
{
	*out = C.st;
}

void oidc_cache_destroy(void)
{
	oidc_cache_flush();
	free(C.slots);
	free(C.buckets);
	C.slots = NULL;
	C.buckets = NULL;
	C.head = C.tail = C.free_list = NIL;
	C.owner = NULL;
	EVP_MD_free(C.sha256);
	C.sha256 = NULL;
}
