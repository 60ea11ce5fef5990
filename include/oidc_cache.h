/*
 * oidc_cache.h - the verified-token cache behind oidc_validate().
 *
 * Agents reuse one token for its whole lifetime, and a connect-per-
 * transaction client logs in with it again and again; the RS256 check and
 * the JSON parsing dominate such a login. A successful verification is
 * therefore remembered, keyed by the SHA-256 of the exact token bytes (the
 * token itself is never stored), with the identity it produced and what its
 * validity depends on. oidc.c decides whether an entry still holds (exp and
 * nbf against the provider's clock_skew, the same key set); this module is
 * the bounded table only.
 *
 * Bounds: at most OIDC_CACHE_MAX_ENTRIES entries in a hash table of digests;
 * inserting into a full table evicts the least recently used entry. Only
 * successful verifications go in, so forged tokens cannot fill it.
 *
 * Invalidation: oidc_cache_flush() drops everything. It runs whenever a
 * provider's key source is (re)loaded, that is on every policy load
 * (startup, SIGHUP, RELOAD), and oidc_cache_bind() flushes when
 * oidc_validate() is handed another policy than the one the entries were
 * made under. A replaced key set is caught per entry by its generation.
 *
 * Event loop thread only (no locking), and no I/O: a lookup is a hash.
 */
#ifndef PV_OIDC_CACHE_H
#define PV_OIDC_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pv_identity;

#define OIDC_CACHE_MAX_ENTRIES 4096
#define OIDC_DIGEST_LEN        32 /* SHA-256 */

/* What a successful verification proved, and what it stays valid on. */
struct oidc_cached {
	const void *provider;   /* struct gov_provider of the bound policy */
	uint64_t keyset_gen;    /* oidc_keyset_gen() of the set the signature was checked with */
	int64_t exp;            /* the token's exp (unix seconds, before clock_skew) */
	int64_t not_before;     /* max(nbf, iat) of the token; INT64_MIN when it has neither */
	struct pv_identity *id; /* owned by the cache; oidc.c hands out copies */
};

struct oidc_cache_stats {
	uint64_t hits;      /* logins that skipped the verification */
	uint64_t misses;    /* lookups that found nothing (or a stale entry) */
	uint64_t stale;     /* entries dropped at lookup: expired, key set replaced, ... */
	uint64_t evictions; /* entries pushed out by a full table */
	uint64_t flushes;   /* flushes that dropped at least one entry */
	size_t entries;     /* entries now */
};

/* SHA-256 of the token bytes into out; false on a crypto library failure. */
bool oidc_cache_digest(const char *token, size_t len, uint8_t out[OIDC_DIGEST_LEN]);

/*
 * Entries are valid for one policy: flush when owner (the policy) is not the
 * one they were made under. Call before every find/insert.
 */
void oidc_cache_bind(const void *owner);

/* The entry for digest (now the most recently used), or NULL (counted as a miss). */
const struct oidc_cached *oidc_cache_find(const uint8_t digest[OIDC_DIGEST_LEN]);
/* Drop the entry for digest, found but no longer valid (counted as stale and a miss). */
void oidc_cache_drop_stale(const uint8_t digest[OIDC_DIGEST_LEN]);
/* Count a hit: the caller used an entry oidc_cache_find() returned. */
void oidc_cache_count_hit(void);

/*
 * Remember a successful verification; val->id becomes the cache's (freed
 * here on failure too). An existing entry for digest is replaced. false
 * only on no memory, and then nothing is cached (never a login failure).
 */
bool oidc_cache_insert(const uint8_t digest[OIDC_DIGEST_LEN], const struct oidc_cached *val);

/* Drop every entry (policy reload, provider key sources reloaded). */
void oidc_cache_flush(void);

void oidc_cache_get_stats(struct oidc_cache_stats *out);

/* Free everything (also registered with atexit on first use). */
void oidc_cache_destroy(void);

#endif
