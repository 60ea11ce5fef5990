/*
 * test_oidc_cache.c - unit tests for the verified-token cache (src/oidc_cache.c)
 * and its use by oidc_validate() (src/oidc.c): a hit only after a successful
 * verification, a one-byte different token misses, expiry and nbf re-checked
 * on a hit, flushes on policy load and on another policy, a replaced key set
 * invalidates, and the table stays bounded (LRU eviction).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjose/cjose.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "governance.h"
#include "oidc.h"
#include "oidc_cache.h"

#define NOW 1800000000LL

static char tmpdir[256];
static char jwks_path[512];
static cjose_jwk_t *rsa_key, *rsa_key2;
static char *jwks_doc, *jwks_doc2; /* rsa1 = rsa_key; rsa1 = rsa_key2 (a rotated key) */

static char *jwks_of(cjose_jwk_t *k, const char *kid)
{
	cjose_err err;
	char *pub, *doc;
	assert_true(cjose_jwk_set_kid(k, kid, strlen(kid), &err));
	pub = cjose_jwk_to_json(k, false, &err);
	assert_non_null(pub);
	assert_true(asprintf(&doc, "{\"keys\": [%s]}", pub) > 0);
	free(pub);
	return doc;
}

static int setup(void **state)
{
	static const uint8_t e[] = {1, 0, 1};
	cjose_err err;
	FILE *f;
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pv_test_oidc_cache_XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	rsa_key = cjose_jwk_create_RSA_random(2048, e, sizeof(e), &err);
	rsa_key2 = cjose_jwk_create_RSA_random(2048, e, sizeof(e), &err);
	if (!rsa_key || !rsa_key2)
		return -1;
	jwks_doc = jwks_of(rsa_key, "rsa1");
	jwks_doc2 = jwks_of(rsa_key2, "rsa1");
	snprintf(jwks_path, sizeof(jwks_path), "%s/jwks.json", tmpdir);
	if (!(f = fopen(jwks_path, "w")))
		return -1;
	fputs(jwks_doc, f);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(jwks_path);
	rmdir(tmpdir);
	cjose_jwk_release(rsa_key);
	cjose_jwk_release(rsa_key2);
	free(jwks_doc);
	free(jwks_doc2);
	oidc_cache_destroy();
	return 0;
}

static char *policy_text(const char *audience)
{
	char *s;
	assert_true(asprintf(&s,
	                     "identity:\n"
	                     "  providers:\n"
	                     "    - name: corp\n"
	                     "      issuer: https://idp.example/\n"
	                     "      audience: [%s]\n"
	                     "      jwks_file: jwks.json\n"
	                     "      algorithms: [RS256]\n"
	                     "      clock_skew: 30s\n",
	                     audience) > 0);
	return s;
}

static struct gov_policy *parse_aud(const char *audience)
{
	char err[512] = "", *text = policy_text(audience);
	struct gov_policy *pol =
	    gov_parse_buffer(text, strlen(text), "gov.yaml", tmpdir, err, sizeof(err));
	free(text);
	if (!pol)
		fail_msg("policy: %s", err);
	return pol;
}

static char *sign(cjose_jwk_t *key, const char *claims)
{
	cjose_err err;
	cjose_header_t *hdr = cjose_header_new(&err);
	cjose_jws_t *jws;
	const char *compact;
	char *out;

	assert_true(cjose_header_set(hdr, CJOSE_HDR_ALG, "RS256", &err));
	assert_true(cjose_header_set(hdr, CJOSE_HDR_KID, "rsa1", &err));
	jws = cjose_jws_sign(key, hdr, (const uint8_t *)claims, strlen(claims), &err);
	assert_non_null(jws);
	assert_true(cjose_jws_export(jws, &compact, &err));
	out = strdup(compact);
	cjose_jws_release(jws);
	cjose_header_release(hdr);
	return out;
}

/* A token of corp for audience pgvigil with exp = NOW + exp_in and the given extra claims. */
static char *token(const char *sub, int64_t exp_in, const char *extra)
{
	char claims[512];
	snprintf(claims, sizeof(claims),
	         "{\"iss\":\"https://idp.example/\",\"aud\":\"pgvigil\",\"sub\":\"%s\","
	         "\"exp\":%lld,\"groups\":[\"ai-agents\",\"ops\"]%s}",
	         sub, (long long)(NOW + exp_in), extra);
	return sign(rsa_key, claims);
}

static enum oidc_status validate_at(const struct gov_policy *pol, const char *tok, int64_t now,
                                    struct pv_identity **id)
{
	char detail[256];
	return oidc_validate(pol, tok, now, id, detail, sizeof(detail));
}

/* Validate and throw the identity away. */
static enum oidc_status check_at(const struct gov_policy *pol, const char *tok, int64_t now)
{
	struct pv_identity *id = NULL;
	enum oidc_status st = validate_at(pol, tok, now, &id);
	assert_true((st == OIDC_OK) == (id != NULL));
	identity_free(id);
	return st;
}

static struct oidc_cache_stats stats(void)
{
	struct oidc_cache_stats st;
	oidc_cache_get_stats(&st);
	return st;
}

/* --- through oidc_validate ------------------------------------------------------------- */

static void test_hit_after_verified_token(void **state)
{
	struct gov_policy *pol = parse_aud("pgvigil");
	char *tok = token("bot-1", 100, "");
	struct oidc_cache_stats s0 = stats(), s1, s2;
	struct pv_identity *a = NULL, *b = NULL;
	(void)state;

	assert_int_equal(s0.entries, 0); /* the policy load flushed */
	assert_int_equal(validate_at(pol, tok, NOW, &a), OIDC_OK);
	s1 = stats();
	assert_int_equal(s1.hits, s0.hits);
	assert_int_equal(s1.misses, s0.misses + 1);
	assert_int_equal(s1.entries, 1);

	assert_int_equal(validate_at(pol, tok, NOW + 1, &b), OIDC_OK);
	s2 = stats();
	assert_int_equal(s2.hits, s1.hits + 1);
	assert_int_equal(s2.misses, s1.misses);
	/* The same identity, as a copy the caller owns. */
	assert_ptr_not_equal(a, b);
	assert_string_equal(b->provider, "corp");
	assert_string_equal(b->subject, "bot-1");
	assert_int_equal(b->n_groups, 2);
	assert_string_equal(b->groups[0], "ai-agents");
	assert_string_equal(b->groups[1], "ops");
	assert_int_equal(b->exp, a->exp);
	identity_free(a);
	identity_free(b);
	free(tok);
	gov_free(pol);
}

static void test_other_token_misses(void **state)
{
	struct gov_policy *pol = parse_aud("pgvigil");
	char *tok = token("bot-1", 100, ""), *other = token("bot-2", 100, "");
	size_t n = strlen(tok), p;
	struct oidc_cache_stats s0, s1;
	(void)state;

	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK);
	s0 = stats();
	/* One byte different, in the signature and in the payload: full path, refused. */
	tok[n - 3] = tok[n - 3] == 'A' ? 'B' : 'A';
	assert_int_equal(check_at(pol, tok, NOW), OIDC_INVALID);
	tok[n - 3] = tok[n - 3] == 'A' ? 'B' : 'A';
	p = (size_t)(strchr(tok, '.') - tok) + 5; /* in the payload */
	tok[p] = tok[p] == 'A' ? 'B' : 'A';
	assert_int_equal(check_at(pol, tok, NOW), OIDC_INVALID);
	tok[p] = tok[p] == 'A' ? 'B' : 'A';
	/* A prefix of the token (its header and payload) is no hit either. */
	*strrchr(tok, '.') = '\0';
	assert_int_equal(check_at(pol, tok, NOW), OIDC_INVALID);
	s1 = stats();
	assert_int_equal(s1.hits, s0.hits);
	assert_int_equal(s1.misses, s0.misses + 3);
	assert_int_equal(s1.entries, 1); /* failures are never cached */
	/* Another valid token is verified and cached on its own. */
	assert_int_equal(check_at(pol, other, NOW), OIDC_OK);
	assert_int_equal(stats().hits, s0.hits);
	assert_int_equal(stats().entries, 2);
	free(tok);
	free(other);
	gov_free(pol);
}

static void test_failure_not_cached(void **state)
{
	struct gov_policy *pol = parse_aud("other");
	char *tok = token("bot-1", 100, "");
	(void)state;

	assert_int_equal(check_at(pol, tok, NOW), OIDC_AUDIENCE);
	assert_int_equal(check_at(pol, tok, NOW), OIDC_AUDIENCE);
	assert_int_equal(stats().entries, 0);
	free(tok);
	gov_free(pol);
}

static void test_expired_entry_refused_and_removed(void **state)
{
	struct gov_policy *pol = parse_aud("pgvigil");
	char *tok = token("bot-1", 100, "");
	struct oidc_cache_stats s0, s1;
	(void)state;

	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK);
	s0 = stats();
	/* exp + clock_skew (30 s) is the same limit as on the full path */
	assert_int_equal(check_at(pol, tok, NOW + 129), OIDC_OK);
	assert_int_equal(stats().hits, s0.hits + 1);
	assert_int_equal(check_at(pol, tok, NOW + 130), OIDC_EXPIRED);
	s1 = stats();
	assert_int_equal(s1.hits, s0.hits + 1);
	assert_int_equal(s1.stale, s0.stale + 1);
	assert_int_equal(s1.entries, 0); /* removed, and the refusal is not cached */
	assert_int_equal(check_at(pol, tok, NOW + 130), OIDC_EXPIRED);
	free(tok);
	gov_free(pol);
}

static void test_nbf_checked_on_hit(void **state)
{
	struct gov_policy *pol = parse_aud("pgvigil");
	char extra[64];
	char *tok;
	(void)state;

	snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)(NOW + 20));
	tok = token("bot-1", 100, extra);
	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK); /* within the 30 s skew */
	/* The wall clock stepped back: the full path would refuse, so must the cache. */
	assert_int_equal(check_at(pol, tok, NOW - 20), OIDC_NOT_YET_VALID);
	assert_int_equal(stats().entries, 0);
	free(tok);
	gov_free(pol);
}

static void test_flush_on_policy_load(void **state)
{
	struct gov_policy *pol = parse_aud("pgvigil"), *next;
	char *tok = token("bot-1", 100, "");
	struct oidc_cache_stats s0;
	(void)state;

	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK);
	assert_int_equal(stats().entries, 1);
	s0 = stats();
	/* RELOAD parses the new policy: loading its key source flushes the cache. */
	next = parse_aud("someone-else");
	assert_int_equal(stats().entries, 0);
	assert_int_equal(stats().flushes, s0.flushes + 1);
	assert_int_equal(check_at(next, tok, NOW), OIDC_AUDIENCE);
	assert_int_equal(stats().hits, s0.hits);
	gov_free(next);
	gov_free(pol);
	free(tok);
}

static void test_flush_on_other_policy(void **state)
{
	struct gov_policy *a = parse_aud("pgvigil"), *b = parse_aud("someone-else");
	char *tok = token("bot-1", 100, "");
	struct oidc_cache_stats s0;
	(void)state;

	/* Both loaded, entries made under a: b must not see them. */
	assert_int_equal(check_at(a, tok, NOW), OIDC_OK);
	s0 = stats();
	assert_int_equal(check_at(b, tok, NOW), OIDC_AUDIENCE);
	assert_int_equal(stats().hits, s0.hits);
	assert_int_equal(stats().entries, 0);
	/* back under a: verified again, then a hit */
	assert_int_equal(check_at(a, tok, NOW), OIDC_OK);
	assert_int_equal(check_at(a, tok, NOW), OIDC_OK);
	assert_int_equal(stats().hits, s0.hits + 1);
	gov_free(a);
	gov_free(b);
	free(tok);
}

static void test_reload_policy_at_the_same_address(void **state)
{
	struct gov_policy *pol = parse_aud("pgvigil");
	char *tok = token("bot-1", 100, "");
	(void)state;

	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK);
	/* RELOAD frees the old policy; the allocator may well hand its address to the
	 * next one, so a pointer comparison alone would not see the change. */
	gov_free(pol);
	pol = parse_aud("someone-else");
	assert_int_equal(check_at(pol, tok, NOW), OIDC_AUDIENCE);
	gov_free(pol);
	free(tok);
}

static void test_flush_on_remote_source_load(void **state)
{
	static const char text[] = "identity:\n"
	                           "  providers:\n"
	                           "    - name: remote\n"
	                           "      issuer: https://idp.example/\n"
	                           "      audience: [pgvigil]\n"
	                           "      jwks_uri: https://idp.example/keys\n"
	                           "      algorithms: [RS256]\n";
	char err[512] = "";
	struct gov_policy *a = parse_aud("pgvigil"), *b;
	char *tok = token("bot-1", 100, "");
	(void)state;

	assert_int_equal(check_at(a, tok, NOW), OIDC_OK);
	assert_int_equal(stats().entries, 1);
	/* A fetched key set is shared across reloads, so taking the source flushes. */
	b = gov_parse_buffer(text, strlen(text), "gov.yaml", tmpdir, err, sizeof(err));
	assert_non_null(b);
	assert_int_equal(stats().entries, 0);
	gov_free(b);
	gov_free(a);
	free(tok);
}

/* Swap the provider's key set as a JWKS refresh does (jwks.c adopts a new set). */
static struct oidc_keyset *swap_keys(struct gov_policy *pol, const char *doc)
{
	char err[256];
	struct oidc_keyset *old = pol->providers[0].keys;
	pol->providers[0].keys = oidc_keyset_parse(doc, strlen(doc), err, sizeof(err));
	assert_non_null(pol->providers[0].keys);
	assert_true(oidc_keyset_gen(pol->providers[0].keys) != oidc_keyset_gen(old));
	return old;
}

static void test_keyset_change_invalidates(void **state)
{
	struct gov_policy *pol = parse_aud("pgvigil");
	char *tok = token("bot-1", 100, "");
	struct oidc_keyset *old;
	struct oidc_cache_stats s0;
	(void)state;

	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK);
	s0 = stats();
	/* rsa1 is now another key: the full path fails the signature, and so does the cache */
	old = swap_keys(pol, jwks_doc2);
	assert_int_equal(check_at(pol, tok, NOW), OIDC_INVALID);
	assert_int_equal(stats().hits, s0.hits);
	assert_int_equal(stats().stale, s0.stale + 1);
	assert_int_equal(stats().entries, 0);
	oidc_keyset_free(pol->providers[0].keys);
	pol->providers[0].keys = old;
	/* A refetch of the same keys is a new set too: one more full verification, then hits. */
	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK);
	old = swap_keys(pol, jwks_doc);
	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK);
	assert_int_equal(stats().hits, s0.hits);
	assert_int_equal(check_at(pol, tok, NOW), OIDC_OK);
	assert_int_equal(stats().hits, s0.hits + 1);
	oidc_keyset_free(old);
	free(tok);
	gov_free(pol);
}

/* --- the table ---------------------------------------------------------------------- */

static struct pv_identity *tiny_identity(void)
{
	struct pv_identity *id = calloc(1, sizeof(*id));
	assert_non_null(id);
	id->provider = strdup("p");
	id->subject = strdup("s");
	id->groups = calloc(1, sizeof(char *));
	assert_true(id->provider && id->subject && id->groups);
	return id;
}

static void fake_digest(uint32_t n, uint8_t d[OIDC_DIGEST_LEN])
{
	assert_true(oidc_cache_digest((const char *)&n, sizeof(n), d));
}

static void put(uint32_t n)
{
	uint8_t d[OIDC_DIGEST_LEN];
	static int provider;
	struct oidc_cached c = {.provider = &provider,
	                        .keyset_gen = 1,
	                        .exp = NOW + 100,
	                        .not_before = INT64_MIN,
	                        .id = tiny_identity()};
	fake_digest(n, d);
	assert_true(oidc_cache_insert(d, &c));
}

static bool present(uint32_t n)
{
	uint8_t d[OIDC_DIGEST_LEN];
	fake_digest(n, d);
	return oidc_cache_find(d) != NULL;
}

static void test_bounded_lru_eviction(void **state)
{
	struct oidc_cache_stats s0;
	(void)state;

	oidc_cache_flush();
	oidc_cache_bind(&s0);
	s0 = stats();
	for (uint32_t i = 0; i < OIDC_CACHE_MAX_ENTRIES; i++)
		put(i);
	assert_int_equal(stats().entries, OIDC_CACHE_MAX_ENTRIES);
	assert_int_equal(stats().evictions, s0.evictions);
	/* Entry 0 used recently: entry 1 is now the least recently used one. */
	assert_true(present(0));
	put(OIDC_CACHE_MAX_ENTRIES);
	assert_int_equal(stats().entries, OIDC_CACHE_MAX_ENTRIES);
	assert_int_equal(stats().evictions, s0.evictions + 1);
	assert_false(present(1));
	assert_true(present(0));
	assert_true(present(2));
	assert_true(present(OIDC_CACHE_MAX_ENTRIES));
	/* Replacing an entry keeps one entry for the digest. */
	put(2);
	assert_int_equal(stats().entries, OIDC_CACHE_MAX_ENTRIES);
	assert_int_equal(stats().evictions, s0.evictions + 1);
	/* Many more: still bounded, and every lookup of a new one works. */
	for (uint32_t i = 0; i < 3 * OIDC_CACHE_MAX_ENTRIES; i++)
		put(100000 + i);
	assert_int_equal(stats().entries, OIDC_CACHE_MAX_ENTRIES);
	assert_true(present(100000 + 3 * OIDC_CACHE_MAX_ENTRIES - 1));
	assert_false(present(0));
	oidc_cache_flush();
	assert_int_equal(stats().entries, 0);
	assert_false(present(100000 + 3 * OIDC_CACHE_MAX_ENTRIES - 1));
}

static void test_drop_stale_and_digest(void **state)
{
	uint8_t d1[OIDC_DIGEST_LEN], d2[OIDC_DIGEST_LEN];
	static const uint8_t abc[OIDC_DIGEST_LEN] = {
	    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
	    0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
	    0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
	(void)state;

	/* SHA-256 of the exact bytes (FIPS 180-2 test vector "abc") */
	assert_true(oidc_cache_digest("abc", 3, d1));
	assert_memory_equal(d1, abc, OIDC_DIGEST_LEN);
	assert_true(oidc_cache_digest("abd", 3, d2));
	assert_memory_not_equal(d1, d2, OIDC_DIGEST_LEN);

	oidc_cache_flush();
	put(7);
	put(8);
	fake_digest(7, d1);
	oidc_cache_drop_stale(d1);
	assert_false(present(7));
	assert_true(present(8));
	assert_int_equal(stats().entries, 1);
	oidc_cache_drop_stale(d1); /* gone already: nothing happens */
	assert_int_equal(stats().entries, 1);
	oidc_cache_destroy();
	assert_int_equal(stats().entries, 0);
	put(9); /* usable again after destroy */
	assert_true(present(9));
	oidc_cache_flush();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hit_after_verified_token),
	    cmocka_unit_test(test_other_token_misses),
	    cmocka_unit_test(test_failure_not_cached),
	    cmocka_unit_test(test_expired_entry_refused_and_removed),
	    cmocka_unit_test(test_nbf_checked_on_hit),
	    cmocka_unit_test(test_flush_on_policy_load),
	    cmocka_unit_test(test_flush_on_other_policy),
	    cmocka_unit_test(test_reload_policy_at_the_same_address),
	    cmocka_unit_test(test_flush_on_remote_source_load),
	    cmocka_unit_test(test_keyset_change_invalidates),
	    cmocka_unit_test(test_bounded_lru_eviction),
	    cmocka_unit_test(test_drop_stale_and_digest),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
