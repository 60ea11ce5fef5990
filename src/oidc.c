/*
 * oidc.c - JWT validation for auth_type = oidc: cjose verifies the JWS
 * signature, jansson parses the header and the claims.
 *
 * Order of checks (each failure has its own short reason):
 *   size -> header (alg pinned, crit, kid) -> issuer selects the provider ->
 *   key by kid and key type -> signature -> iss, aud, exp, nbf, iat -> claims.
 * The header and the issuer are read before the signature is checked only
 * to pick the provider and key; every claim that decides anything is read
 * again from the verified payload.
 *
 * In front of all that sits the verified-token cache (oidc_cache.h): a
 * token whose SHA-256 is there skips everything but the checks that can
 * change while the token stays the same (time, the key set, the policy).
 */
#include "oidc.h"
#include "governance.h"
#include "jwks.h"
#include "log.h"
#include "oidc_cache.h"

#include <cjose/cjose.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OIDC_MAX_JWKS        (1024 * 1024)
#define OIDC_MAX_KEYS        256
#define OIDC_MAX_GROUPS      256
#define OIDC_MAX_CLAIM_BYTES 1024

static const char *const alg_names[OIDC_ALG_COUNT] = {
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
};

bool oidc_alg_parse(const char *name, enum oidc_alg *out)
{
	for (int i = 0; i < OIDC_ALG_COUNT; i++)
		if (strcmp(alg_names[i], name) == 0) {
			*out = (enum oidc_alg)i;
			return true;
		}
	return false;
}

const char *oidc_alg_name(enum oidc_alg alg)
{
	return alg < OIDC_ALG_COUNT ? alg_names[alg] : "?";
}

static cjose_jwk_kty_t alg_kty(enum oidc_alg alg)
{
	return alg >= OIDC_ES256 ? CJOSE_JWK_KTY_EC : CJOSE_JWK_KTY_RSA;
}

/* --- key sets -------------------------------------------------------------------- */

struct oidc_key {
	cjose_jwk_t *jwk;
	char *kid; /* NULL when the key has none */
	cjose_jwk_kty_t kty;
};

struct oidc_keyset {
	struct oidc_key *keys;
	size_t n;
	uint64_t gen; /* oidc_keyset_gen() */
};

/* Atomic: the jwks worker thread parses key sets too. */
static atomic_uint_least64_t keyset_gen_last;

void oidc_keyset_free(struct oidc_keyset *ks)
{
	if (!ks)
		return;
	for (size_t i = 0; i < ks->n; i++) {
		cjose_jwk_release(ks->keys[i].jwk);
		free(ks->keys[i].kid);
	}
	free(ks->keys);
	free(ks);
}

size_t oidc_keyset_count(const struct oidc_keyset *ks)
{
	return ks ? ks->n : 0;
}

uint64_t oidc_keyset_gen(const struct oidc_keyset *ks)
{
	return ks ? ks->gen : 0;
}

/* Signature keys only: encryption keys and symmetric (oct) keys are skipped. */
static bool usable_jwk(json_t *k)
{
	const char *use = json_string_value(json_object_get(k, "use"));
	const char *kty = json_string_value(json_object_get(k, "kty"));
	if (use && strcmp(use, "sig") != 0)
		return false;
	return kty && (strcmp(kty, "RSA") == 0 || strcmp(kty, "EC") == 0);
}

static bool add_key(struct oidc_keyset *ks, json_t *k, char *err, size_t errlen)
{
	cjose_err cerr;
	struct oidc_key *key = &ks->keys[ks->n];
	const char *kid;

	key->jwk = cjose_jwk_import_json((cjose_header_t *)k, &cerr);
	if (!key->jwk) {
		snprintf(err, errlen, "key %zu: %s", ks->n, cerr.message);
		return false;
	}
	key->kty = cjose_jwk_get_kty(key->jwk, &cerr);
	kid = cjose_jwk_get_kid(key->jwk, &cerr);
	if (kid && !(key->kid = strdup(kid))) {
		cjose_jwk_release(key->jwk);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	ks->n++;
	return true;
}

struct oidc_keyset *oidc_keyset_parse(const char *text, size_t len, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *arr = doc ? json_object_get(doc, "keys") : NULL;
	struct oidc_keyset *ks = NULL;
	size_t i, count;

	if (!doc) {
		snprintf(err, errlen, "JWKS line %d: %s", jerr.line, jerr.text);
		return NULL;
	}
	if (!json_is_array(arr) || !(count = json_array_size(arr)) || count > OIDC_MAX_KEYS) {
		snprintf(err, errlen, "JWKS must be {\"keys\": [...]} with 1 to %d keys",
		         OIDC_MAX_KEYS);
		goto out;
	}
	ks = calloc(1, sizeof(*ks));
	if (!ks || !(ks->keys = calloc(count, sizeof(*ks->keys)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	ks->gen = atomic_fetch_add(&keyset_gen_last, 1) + 1;
	for (i = 0; i < count; i++) {
		json_t *k = json_array_get(arr, i);
		if (json_is_object(k) && usable_jwk(k) && !add_key(ks, k, err, errlen))
			goto fail;
	}
	if (ks->n == 0) {
		snprintf(err, errlen, "JWKS has no RSA or EC signature key");
		goto fail;
	}
	goto out;
fail:
	oidc_keyset_free(ks);
	ks = NULL;
out:
	json_decref(doc);
	return ks;
}

struct oidc_keyset *oidc_keyset_load_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char why[256];
	char *buf;
	size_t n;
	struct oidc_keyset *ks;

	/* A jwks_file is read only when a policy is (re)loaded (startup, SIGHUP,
	 * RELOAD): issuer, audience, claims or keys may change, so no token
	 * verified under the old settings may skip verification any more. */
	oidc_cache_flush();
	if (!f) {
		snprintf(err, errlen, "cannot open jwks_file %s", path);
		return NULL;
	}
	buf = malloc(OIDC_MAX_JWKS + 1);
	n = buf ? fread(buf, 1, OIDC_MAX_JWKS + 1, f) : 0;
	if (!buf || ferror(f) || n > OIDC_MAX_JWKS) {
		snprintf(err, errlen, "cannot read jwks_file %s: %s", path,
		         !buf                ? "out of memory"
		         : n > OIDC_MAX_JWKS ? "too large"
		                             : "read error");
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	ks = oidc_keyset_parse(buf, n, why, sizeof(why));
	free(buf);
	if (!ks)
		snprintf(err, errlen, "jwks_file %s: %s", path, why);
	return ks;
}

/* The key for a token: by kid, of the algorithm's family; without kid the only such key. */
static const cjose_jwk_t *find_key(const struct oidc_keyset *ks, const char *kid,
                                   cjose_jwk_kty_t kty)
{
	const cjose_jwk_t *found = NULL;
	for (size_t i = 0; ks && i < ks->n; i++) {
		const struct oidc_key *k = &ks->keys[i];
		if (k->kty != kty)
			continue;
		if (kid) {
			if (k->kid && strcmp(k->kid, kid) == 0)
				return k->jwk;
			continue;
		}
		if (found)
			return NULL; /* ambiguous without kid */
		found = k->jwk;
	}
	return found;
}

/* --- identities ---------------------------------------------------------------------- */

void identity_free(struct pv_identity *id)
{
	if (!id)
		return;
	free(id->provider);
	free(id->subject);
	for (size_t i = 0; i < id->n_groups; i++)
		free(id->groups[i]);
	free(id->groups);
	free(id);
}

struct pv_identity *identity_dup(const struct pv_identity *id)
{
	struct pv_identity *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->exp = id->exp;
	d->provider = strdup(id->provider);
	d->subject = strdup(id->subject);
	d->groups = calloc(id->n_groups + 1, sizeof(char *));
	if (!d->provider || !d->subject || !d->groups) {
		identity_free(d);
		return NULL;
	}
	for (; d->n_groups < id->n_groups; d->n_groups++)
		if (!(d->groups[d->n_groups] = strdup(id->groups[d->n_groups]))) {
			identity_free(d);
			return NULL;
		}
	return d;
}

void identity_groups_str(const struct pv_identity *id, char *buf, size_t len)
{
	size_t off = 0;
	if (!len)
		return;
	buf[0] = '\0';
	for (size_t i = 0; id && i < id->n_groups && off < len; i++) {
		int n = snprintf(buf + off, len - off, "%s%s", i ? "," : "", id->groups[i]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

/* Claims are attacker-chosen text: control bytes must not forge or break log lines. */
void oidc_log_escape(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	if (!outlen)
		return;
	for (const unsigned char *p = (const unsigned char *)in; p && *p; p++) {
		char enc[5] = {(char)*p, '\0'};
		size_t n = 1;
		if (*p == '\\') {
			memcpy(enc, "\\\\", 3);
			n = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(enc, sizeof(enc), "\\x%02x", *p);
			n = 4;
		}
		if (o + n >= outlen)
			break; /* truncated, never cut inside an escape */
		memcpy(out + o, enc, n);
		o += n;
	}
	out[o] = '\0';
}

const char *oidc_status_reason(enum oidc_status st)
{
	switch (st) {
	case OIDC_OK:
		return "ok";
	case OIDC_TOO_LARGE:
		return "token too large";
	case OIDC_EXPIRED:
		return "token expired";
	case OIDC_NOT_YET_VALID:
		return "token not yet valid";
	case OIDC_ISSUER:
		return "issuer mismatch";
	case OIDC_AUDIENCE:
		return "audience mismatch";
	case OIDC_UNKNOWN_KEY:
		return "unknown signing key";
	case OIDC_ALG:
		return "algorithm not allowed";
	case OIDC_NO_MEMORY:
		return "out of memory";
	case OIDC_INVALID:
		break;
	}
	return "invalid token";
}

/* --- validation ----------------------------------------------------------------------- */

struct jwt_parts {
	const char *seg[3];
	size_t len[3];
	json_t *header;
	json_t *unverified; /* payload, only to find the provider */
	json_t *claims;     /* payload after the signature checked out */
	enum oidc_alg alg;
	const char *kid;
	const struct gov_provider *prov; /* selected by the issuer */
	uint64_t keys_gen;               /* the key set the signature checked out with */
};

static enum oidc_status bad(char *detail, size_t dlen, enum oidc_status st, const char *what)
{
	snprintf(detail, dlen, "%s", what);
	return st;
}

/* base64url segment -> JSON object, or NULL. */
static json_t *segment_json(const char *s, size_t len)
{
	cjose_err cerr;
	uint8_t *raw = NULL;
	size_t n = 0;
	json_t *j = NULL;

	if (!len || !cjose_base64url_decode(s, len, &raw, &n, &cerr))
		return NULL;
	j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
	cjose_get_dealloc()(raw);
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static bool split_token(const char *tok, struct jwt_parts *jp)
{
	const char *p = tok;
	for (int i = 0; i < 3; i++) {
		const char *dot = strchr(p, '.');
		if (i < 2 && !dot)
			return false;
		if (i == 2 && dot)
			return false;
		jp->seg[i] = p;
		jp->len[i] = dot ? (size_t)(dot - p) : strlen(p);
		p = dot ? dot + 1 : p;
	}
	for (const char *c = tok; *c; c++)
		if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.",
		            *c))
			return false;
	return true;
}

/* Header: alg must be pinned by the provider, crit absent or empty. */
static enum oidc_status check_header(struct jwt_parts *jp, const struct gov_provider *prov,
                                     char *detail, size_t dlen)
{
	const char *alg = json_string_value(json_object_get(jp->header, "alg"));
	json_t *crit = json_object_get(jp->header, "crit");
	json_t *kid = json_object_get(jp->header, "kid");

	if (!alg || !oidc_alg_parse(alg, &jp->alg) || !(prov->algs & (1u << jp->alg))) {
		char esc[64];
		oidc_log_escape(alg ? alg : "?", esc, sizeof(esc));
		snprintf(detail, dlen, "alg \"%s\" not pinned for provider %s", esc, prov->name);
		return OIDC_ALG;
	}
	/* We understand no JWS extension, so any critical one must be refused (RFC 7515 4.1.11). */
	if (crit && !(json_is_array(crit) && json_array_size(crit) == 0))
		return bad(detail, dlen, OIDC_INVALID, "crit header present");
	if (kid && !json_is_string(kid))
		return bad(detail, dlen, OIDC_INVALID, "kid is not a string");
	jp->kid = json_string_value(kid);
	return OIDC_OK;
}

/* The provider's keys: its file, or the worker's last good set within grace_period. */
static const struct oidc_keyset *provider_keys(const struct gov_provider *prov, int64_t now,
                                               const char **why)
{
	*why = NULL;
	return prov->jwks ? jwks_source_keys(prov->jwks, now, why) : prov->keys;
}

static enum oidc_status unknown_key(struct jwt_parts *jp, const struct gov_provider *prov,
                                    int64_t now, const char *why, char *detail, size_t dlen)
{
	char kid[96];

	/* A rotated key shows up as an unknown kid: refetch (rate limited); this login
	 * still fails, the client may retry once the new set has landed. */
	if (prov->jwks && !why)
		jwks_source_want_refresh(prov->jwks, now);
	oidc_log_escape(jp->kid ? jp->kid : "(none)", kid, sizeof(kid));
	snprintf(detail, dlen, "no %s key with kid \"%s\" for provider %s%s%s",
	         jp->alg >= OIDC_ES256 ? "EC" : "RSA", kid, prov->name, why ? ": " : "",
	         why ? why : "");
	return OIDC_UNKNOWN_KEY;
}

static enum oidc_status verify_signature(struct jwt_parts *jp, const char *token,
                                         const struct gov_provider *prov, int64_t now, char *detail,
                                         size_t dlen)
{
	cjose_err cerr;
	const char *why;
	const struct oidc_keyset *ks = provider_keys(prov, now, &why);
	const cjose_jwk_t *key = find_key(ks, jp->kid, alg_kty(jp->alg));
	cjose_jws_t *jws;
	uint8_t *plain = NULL;
	size_t plen = 0;

	if (!key)
		return unknown_key(jp, prov, now, why, detail, dlen);
	jp->keys_gen = oidc_keyset_gen(ks);
	jws = cjose_jws_import(token, strlen(token), &cerr);
	if (!jws) {
		snprintf(detail, dlen, "JWS import: %s", cerr.message);
		return OIDC_INVALID;
	}
	if (!cjose_jws_verify(jws, key, &cerr) ||
	    !cjose_jws_get_plaintext(jws, &plain, &plen, &cerr)) {
		snprintf(detail, dlen, "signature: %s", cerr.message);
		cjose_jws_release(jws);
		return OIDC_INVALID;
	}
	jp->claims = json_loadb((const char *)plain, plen, JSON_REJECT_DUPLICATES, NULL);
	cjose_jws_release(jws);
	if (!json_is_object(jp->claims))
		return bad(detail, dlen, OIDC_INVALID, "payload is not a JSON object");
	return OIDC_OK;
}

static bool aud_ok(json_t *aud, const struct gov_provider *prov)
{
	size_t i;
	json_t *v;

	if (json_is_string(aud))
		aud = json_pack("[O]", aud);
	else
		json_incref(aud);
	if (!json_is_array(aud)) {
		json_decref(aud);
		return false;
	}
	json_array_foreach(aud, i, v)
	{
		for (size_t k = 0; json_is_string(v) && k < prov->audience.n; k++)
			if (strcmp(json_string_value(v), prov->audience.v[k]) == 0) {
				json_decref(aud);
				return true;
			}
	}
	json_decref(aud);
	return false;
}

/* NumericDate claim: absent = *present false; present but not a number = invalid. */
static bool numeric_claim(json_t *claims, const char *name, int64_t *out, bool *present)
{
	json_t *v = json_object_get(claims, name);
	*present = v != NULL;
	if (!v)
		return true;
	/* Bounded before the cast: a huge double would overflow int64 (and exp + skew). */
	if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e13)
		return false;
	*out = (int64_t)json_number_value(v);
	return true;
}

static enum oidc_status check_times(json_t *claims, const struct gov_provider *prov, int64_t now,
                                    char *detail, size_t dlen)
{
	int64_t exp = 0, nbf = 0, iat = 0, skew = prov->clock_skew;
	bool has_exp, has_nbf, has_iat;

	if (!numeric_claim(claims, "exp", &exp, &has_exp) ||
	    !numeric_claim(claims, "nbf", &nbf, &has_nbf) ||
	    !numeric_claim(claims, "iat", &iat, &has_iat) || !has_exp)
		return bad(detail, dlen, OIDC_INVALID, "exp missing or a time claim not a number");
	if (now >= exp + skew) {
		snprintf(detail, dlen, "exp %lld, now %lld", (long long)exp, (long long)now);
		return OIDC_EXPIRED;
	}
	if ((has_nbf && nbf > now + skew) || (has_iat && iat > now + skew)) {
		snprintf(detail, dlen, "nbf/iat %lld, now %lld", (long long)(has_nbf ? nbf : iat),
		         (long long)now);
		return OIDC_NOT_YET_VALID;
	}
	return OIDC_OK;
}

static enum oidc_status take_groups(json_t *claims, const struct gov_provider *prov,
                                    struct pv_identity *id, char *detail, size_t dlen)
{
	json_t *g = json_object_get(claims, prov->groups_claim), *v;
	size_t i;

	if (!g)
		return OIDC_OK;
	if (!json_is_array(g) || json_array_size(g) > OIDC_MAX_GROUPS)
		return bad(detail, dlen, OIDC_INVALID, "groups claim is not a list of strings");
	id->groups = calloc(json_array_size(g) + 1, sizeof(char *));
	if (!id->groups)
		return OIDC_NO_MEMORY;
	json_array_foreach(g, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) > OIDC_MAX_CLAIM_BYTES)
			return bad(detail, dlen, OIDC_INVALID,
			           "groups claim is not a list of strings");
		if (!(id->groups[id->n_groups] = strdup(json_string_value(v))))
			return OIDC_NO_MEMORY;
		id->n_groups++;
	}
	return OIDC_OK;
}

static enum oidc_status make_identity(json_t *claims, const struct gov_provider *prov,
                                      struct pv_identity **out, char *detail, size_t dlen)
{
	json_t *sub = json_object_get(claims, prov->username_claim);
	struct pv_identity *id;
	enum oidc_status st;

	if (!json_is_string(sub) || !json_string_length(sub) ||
	    json_string_length(sub) > OIDC_MAX_CLAIM_BYTES ||
	    strlen(json_string_value(sub)) != json_string_length(sub))
		return bad(detail, dlen, OIDC_INVALID, "username claim missing or not a string");
	id = calloc(1, sizeof(*id));
	if (!id)
		return OIDC_NO_MEMORY;
	id->exp = (int64_t)json_number_value(json_object_get(claims, "exp")); /* checked */
	id->provider = strdup(prov->name);
	id->subject = strdup(json_string_value(sub));
	st = id->provider && id->subject ? take_groups(claims, prov, id, detail, dlen)
	                                 : OIDC_NO_MEMORY;
	if (st != OIDC_OK) {
		identity_free(id);
		return st;
	}
	*out = id;
	return OIDC_OK;
}

static enum oidc_status check_claims(struct jwt_parts *jp, const struct gov_provider *prov,
                                     int64_t now, struct pv_identity **out, char *detail,
                                     size_t dlen)
{
	const char *iss = json_string_value(json_object_get(jp->claims, "iss"));
	enum oidc_status st;

	if (!iss || strcmp(iss, prov->issuer) != 0)
		return bad(detail, dlen, OIDC_ISSUER, "verified iss differs");
	if (!aud_ok(json_object_get(jp->claims, "aud"), prov))
		return bad(detail, dlen, OIDC_AUDIENCE, "aud has none of the provider's audiences");
	st = check_times(jp->claims, prov, now, detail, dlen);
	return st != OIDC_OK ? st : make_identity(jp->claims, prov, out, detail, dlen);
}

static size_t max_token_size(const struct gov_policy *pol)
{
	size_t m = 0;
	for (size_t i = 0; i < pol->n_providers; i++)
		if (pol->providers[i].max_token_size > m)
			m = pol->providers[i].max_token_size;
	return m;
}

static enum oidc_status validate_parts(const struct gov_policy *pol, const char *token,
                                       struct jwt_parts *jp, int64_t now, struct pv_identity **out,
                                       char *detail, size_t dlen)
{
	const struct gov_provider *prov;
	const char *iss;
	size_t len = strlen(token);
	enum oidc_status st;

	if (len > max_token_size(pol))
		return bad(detail, dlen, OIDC_TOO_LARGE, "longer than max_token_size");
	if (!split_token(token, jp))
		return bad(detail, dlen, OIDC_INVALID, "not a compact JWS");
	jp->header = segment_json(jp->seg[0], jp->len[0]);
	jp->unverified = segment_json(jp->seg[1], jp->len[1]);
	if (!jp->header || !jp->unverified)
		return bad(detail, dlen, OIDC_INVALID, "header or payload is not base64url JSON");
	iss = json_string_value(json_object_get(jp->unverified, "iss"));
	prov = iss ? gov_find_provider_by_issuer(pol, iss) : NULL;
	if (!prov) {
		char esc[224];
		oidc_log_escape(iss ? iss : "(none)", esc, sizeof(esc));
		snprintf(detail, dlen, "no provider for iss \"%s\"", esc);
		return OIDC_ISSUER;
	}
	if (len > prov->max_token_size)
		return bad(detail, dlen, OIDC_TOO_LARGE, "longer than max_token_size");
	jp->prov = prov;
	st = check_header(jp, prov, detail, dlen);
	if (st == OIDC_OK)
		st = verify_signature(jp, token, prov, now, detail, dlen);
	if (st == OIDC_OK)
		st = check_claims(jp, prov, now, out, detail, dlen);
	return st;
}

/* --- the verified-token cache ---------------------------------------------------------- */

/*
 * Why a cached verification no longer holds at now, or NULL if it does. The
 * entry was made under the bound policy, so its provider is still in force;
 * what can change meanwhile is the time and the provider's key set.
 */
static const char *cached_stale(const struct oidc_cached *c, int64_t now)
{
	const struct gov_provider *prov = c->provider;
	const char *why;

	/* The rules of check_times(), with the provider's clock_skew. */
	if (now >= c->exp + prov->clock_skew)
		return "expired";
	if (c->not_before > now + prov->clock_skew)
		return "not yet valid";
	/* The very set the signature was checked with, not merely one with the same kid: a
	 * refetched or rotated set is a new generation, and a remote set past grace_period
	 * is none at all (gen 0), exactly where the full path would refuse or re-check. */
	if (oidc_keyset_gen(provider_keys(prov, now, &why)) != c->keyset_gen)
		return "key set replaced";
	return NULL;
}

/* A copy of the cached identity in *out when the entry for digest still holds. */
static enum oidc_status from_cache(const uint8_t *digest, int64_t now, struct pv_identity **out)
{
	const struct oidc_cached *c = oidc_cache_find(digest);
	const char *stale;

	if (!c)
		return OIDC_OK;
	stale = cached_stale(c, now);
	if (stale) {
		/* Removed, and the full path decides (and refuses what it must). */
		log_debug("oidc: cached token dropped (%s), verifying it again", stale);
		oidc_cache_drop_stale(digest);
		return OIDC_OK;
	}
	if (!(*out = identity_dup(c->id)))
		return OIDC_NO_MEMORY;
	oidc_cache_count_hit();
	log_debug("oidc: token cache hit: provider=%s", c->id->provider);
	return OIDC_OK;
}

/* After a full verification succeeded: remember it with what it depends on. */
static void remember(const uint8_t *digest, const struct jwt_parts *jp,
                     const struct pv_identity *id)
{
	struct oidc_cached c = {
	    .provider = jp->prov,
	    .keyset_gen = jp->keys_gen,
	    .exp = id->exp,
	    .not_before = INT64_MIN,
	    .id = identity_dup(id),
	};
	int64_t v;
	bool present;

	/* Both were checked by check_times() already; kept to check them again on a hit. */
	if (numeric_claim(jp->claims, "nbf", &v, &present) && present)
		c.not_before = v;
	if (numeric_claim(jp->claims, "iat", &v, &present) && present && v > c.not_before)
		c.not_before = v;
	/* No memory only means this token is verified in full next time. */
	if (c.id)
		(void)oidc_cache_insert(digest, &c);
}

enum oidc_status oidc_validate(const struct gov_policy *pol, const char *token, int64_t now,
                               struct pv_identity **out, char *detail, size_t dlen)
{
	struct jwt_parts jp = {0};
	uint8_t digest[OIDC_DIGEST_LEN];
	size_t len = strlen(token);
	bool cacheable;
	enum oidc_status st;

	*out = NULL;
	detail[0] = '\0';
	if (!pol || !pol->n_providers)
		return bad(detail, dlen, OIDC_INVALID, "no identity providers configured");
	/* Oversized tokens are refused below before anything is hashed. */
	cacheable = len <= max_token_size(pol) && oidc_cache_digest(token, len, digest);
	if (cacheable) {
		oidc_cache_bind(pol);
		st = from_cache(digest, now, out);
		if (st != OIDC_OK || *out)
			return st;
	}
	st = validate_parts(pol, token, &jp, now, out, detail, dlen);
	if (st == OIDC_OK && cacheable)
		remember(digest, &jp, *out);
	json_decref(jp.header);
	json_decref(jp.unverified);
	json_decref(jp.claims);
	return st;
}
