/*
 * oidc.h - JWT (compact JWS) validation for auth_type = oidc, with cjose
 * for signatures and jansson for claims, and the identity a valid token
 * attaches to a client.
 *
 * Key sets (JWKS) are loaded when the governance policy is loaded or
 * fetched by the jwks worker thread (jwks.h), never on the login path:
 * oidc_validate() does no I/O (an unknown kid only asks the worker for a
 * refresh).
 */
#ifndef PV_OIDC_H
#define PV_OIDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gov_policy;

/* Signature algorithms a provider may pin: asymmetric only (no none, no HS*). */
enum oidc_alg {
	OIDC_RS256,
	OIDC_RS384,
	OIDC_RS512,
	OIDC_PS256,
	OIDC_PS384,
	OIDC_PS512,
	OIDC_ES256,
	OIDC_ES384,
	OIDC_ES512,
	OIDC_ALG_COUNT
};

/* Name ("RS256") to enum; false for anything not in the list above. */
bool oidc_alg_parse(const char *name, enum oidc_alg *out);
const char *oidc_alg_name(enum oidc_alg alg);

/* A provider's keys, from a JWKS document {"keys": [...]}. */
struct oidc_keyset;
struct oidc_keyset *oidc_keyset_load_file(const char *path, char *err, size_t errlen);
struct oidc_keyset *oidc_keyset_parse(const char *json, size_t len, char *err, size_t errlen);
size_t oidc_keyset_count(const struct oidc_keyset *ks);
/*
 * Process-unique, never reused number of a key set (0 for NULL): a cached
 * verification (oidc_cache.h) holds only while its provider still has the
 * very set it was checked with.
 */
uint64_t oidc_keyset_gen(const struct oidc_keyset *ks);
void oidc_keyset_free(struct oidc_keyset *ks);

/* Who a client is, after a valid token (owned by the client socket).
 * A new field must be copied by identity_dup() too (the token cache hands out copies). */
struct pv_identity {
	char *provider;
	char *subject;
	char **groups;
	size_t n_groups;
	int64_t exp; /* unix seconds */
};
void identity_free(struct pv_identity *id);
/* A deep copy, or NULL on no memory. */
struct pv_identity *identity_dup(const struct pv_identity *id);
/* Groups joined with ',' into buf (truncated to fit). */
void identity_groups_str(const struct pv_identity *id, char *buf, size_t len);
/* in for a log line: control bytes as \xNN, backslash doubled; truncated to fit. */
void oidc_log_escape(const char *in, char *out, size_t outlen);

enum oidc_status {
	OIDC_OK,
	OIDC_INVALID,       /* malformed, bad signature, bad claims */
	OIDC_TOO_LARGE,     /* longer than the provider's max_token_size */
	OIDC_EXPIRED,       /* exp (+ skew) passed */
	OIDC_NOT_YET_VALID, /* nbf or iat in the future (beyond skew) */
	OIDC_ISSUER,        /* no provider has this iss */
	OIDC_AUDIENCE,      /* aud has none of the provider's audiences */
	OIDC_UNKNOWN_KEY,   /* no key with this kid (and family) */
	OIDC_ALG,           /* alg not pinned for the provider */
	OIDC_NO_MEMORY,
};

/* The short reason the client is told (FATAL 28000). */
const char *oidc_status_reason(enum oidc_status st);

/*
 * Validate a compact JWS against the policy's providers at time now (unix
 * seconds). On OIDC_OK *out is a new identity; otherwise detail says why,
 * for the log only.
 *
 * A token that verified before is served from the verified-token cache
 * (oidc_cache.h) without the signature check and the JSON parsing, as long
 * as the policy and the provider's key set are the same ones and exp/nbf
 * still hold under clock_skew; anything else takes the full path. Loop
 * thread only.
 */
enum oidc_status oidc_validate(const struct gov_policy *pol, const char *token, int64_t now,
                               struct pv_identity **out, char *detail, size_t dlen);

#endif
