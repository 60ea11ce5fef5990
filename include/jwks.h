/*
 * jwks.h - JWKS fetched over HTTPS (jwks_uri or OpenID discovery) by one
 * background thread that owns libcurl; the event loop never does network
 * I/O for keys.
 *
 * Threading discipline (cjose JWK refcounts are not atomic, so a JWK must
 * never be touched by two threads):
 *   - the worker fetches and parses into a brand-new key set nobody else
 *     has seen, and parks it in src->pending under the mutex;
 *   - it then writes a byte to a pipe watched by libevent; the loop takes
 *     the pending set under the mutex (ownership moves with the pointer),
 *     makes it the current one and frees the previous current set itself.
 * So every key set the loop reads is immutable and loop-owned; the worker
 * never sees it again. Sources are shared by the policies that use the
 * same settings (so a RELOAD keeps the keys) and refcounted under the mutex
 * because the worker holds one while it fetches.
 */
#ifndef PV_JWKS_H
#define PV_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct oidc_keyset;
struct jwks_source;

#define JWKS_DEFAULT_REFRESH   3600
#define JWKS_DEFAULT_GRACE     (24 * 3600)
#define JWKS_DEFAULT_KID_MIN   60
#define JWKS_STARTUP_WAIT_SECS 10

/* Settings of one remote key set; strings are copied. */
struct jwks_params {
	const char *jwks_uri; /* NULL with discovery */
	const char *issuer;   /* for discovery: <issuer>/.well-known/openid-configuration */
	bool discovery;
	const char *ca_file;          /* NULL: the system CAs */
	bool allow_insecure_loopback; /* http:// to 127.0.0.1/localhost (tests) */
	int64_t refresh_interval;     /* seconds */
	int64_t grace_period;
	int64_t kid_refresh_min;
};

/*
 * Is url acceptable as a key or discovery endpoint? https://, or http:// to
 * 127.0.0.1/localhost/[::1] with allow_insecure_loopback. NULL = yes,
 * otherwise the reason.
 */
const char *jwks_url_refused(const char *url, bool allow_insecure_loopback);

/* A source with these settings (an existing one is shared); NULL on no memory. */
struct jwks_source *jwks_source_get(const struct jwks_params *p);
/* Loop thread only: drop a reference (frees the current key set when the last goes). */
void jwks_source_put(struct jwks_source *src);

/*
 * Loop thread only: the keys to validate with at time now, or NULL (never
 * fetched yet, or the last good set is older than grace_period); why says
 * which, for the log.
 */
const struct oidc_keyset *jwks_source_keys(struct jwks_source *src, int64_t now, const char **why);
/* Loop thread only: an unknown kid was seen; refetch soon (rate limited). */
void jwks_source_want_refresh(struct jwks_source *src, int64_t now);

/*
 * Start the worker (after daemonizing: threads do not survive fork) and wait
 * up to JWKS_STARTUP_WAIT_SECS for the first fetch of every source so that
 * logins work from the first second. false only if the thread or the pipe
 * cannot be set up.
 */
bool jwks_start(struct event_base *base);
void jwks_stop(void);

#endif
