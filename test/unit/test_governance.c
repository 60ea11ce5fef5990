/*
 * test_governance.c - unit tests for the governance_file loader
 * (src/governance.c: errors as file:line, defaults, grant matching) and for
 * JWT validation (src/oidc.c) with keys generated and tokens signed by cjose.
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

#define NOW 1800000000LL

static char tmpdir[256];
static char jwks_path[512];
static cjose_jwk_t *rsa_key, *ec_key;

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *public_json(cjose_jwk_t *k, const char *kid)
{
	cjose_err err;
	assert_true(cjose_jwk_set_kid(k, kid, strlen(kid), &err));
	return cjose_jwk_to_json(k, false, &err);
}

static int setup(void **state)
{
	static const uint8_t e[] = {1, 0, 1};
	cjose_err err;
	char *rj, *ej, doc[8192];
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pv_test_gov_XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	rsa_key = cjose_jwk_create_RSA_random(2048, e, sizeof(e), &err);
	ec_key = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
	if (!rsa_key || !ec_key)
		return -1;
	rj = public_json(rsa_key, "rsa1");
	ej = public_json(ec_key, "ec1");
	snprintf(doc, sizeof(doc), "{\"keys\": [%s, %s, {\"kty\": \"oct\", \"k\": \"AAAA\"}]}", rj,
	         ej);
	free(rj);
	free(ej);
	snprintf(jwks_path, sizeof(jwks_path), "%s/jwks.json", tmpdir);
	write_file(jwks_path, doc);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(jwks_path);
	rmdir(tmpdir);
	cjose_jwk_release(rsa_key);
	cjose_jwk_release(ec_key);
	return 0;
}

static const char good_policy[] = "identity:\n"
                                  "  providers:\n"
                                  "    - name: corp\n"
                                  "      issuer: https://idp.example/\n"
                                  "      audience: [pgvigil, other]\n"
                                  "      jwks_file: jwks.json\n"
                                  "      algorithms: [RS256, ES256]\n"
                                  "      clock_skew: 30s\n"
                                  "  grants:\n"
                                  "    - when: {groups: [ai-agents]}\n"
                                  "      db_users: [agent_ro]\n"
                                  "    - when: {subject: \"ci-*\", provider: corp}\n"
                                  "      db_users: [ci_rw, agent_ro]\n"
                                  "  allow_plaintext_loopback: yes\n";

static struct gov_policy *parse(const char *text, char *err, size_t errlen)
{
	return gov_parse_buffer(text, strlen(text), "gov.yaml", tmpdir, err, errlen);
}

static void test_good_policy(void **state)
{
	char err[512] = "";
	struct gov_policy *pol = parse(good_policy, err, sizeof(err));
	(void)state;
	assert_non_null(pol);
	assert_int_equal(pol->n_providers, 1);
	assert_string_equal(pol->providers[0].username_claim, "sub");
	assert_string_equal(pol->providers[0].groups_claim, "groups");
	assert_int_equal(pol->providers[0].clock_skew, 30);
	assert_int_equal(pol->providers[0].max_token_size, GOV_DEFAULT_MAX_TOKEN);
	assert_int_equal(oidc_keyset_count(pol->providers[0].keys), 2); /* oct key skipped */
	assert_int_equal(pol->n_grants, 2);
	assert_true(pol->allow_plaintext_loopback);
	gov_free(pol);
}

static void test_empty_file(void **state)
{
	char err[256];
	struct gov_policy *pol = parse("", err, sizeof(err));
	(void)state;
	assert_non_null(pol);
	assert_int_equal(pol->n_providers, 0);
	gov_free(pol);
}

static const struct {
	const char *text;
	const char *error; /* expected err, exactly */
} bad_cases[] = {
    {"identity: {}\ncolours: []\n", "gov.yaml:2: unknown section \"colours\""},
    {"- a\n", "gov.yaml:1: the governance file must be a mapping of sections"},
    {"identity:\n  providers:\n    - name: corp\n      colour: blue\n",
     "gov.yaml:4: unknown key \"colour\" in a provider"},
    {"identity:\n  providers:\n    - name: corp\n      issuer: x\n      audience: [a]\n"
     "      jwks_file: jwks.json\n      algorithms: [RS256, HS256]\n",
     "gov.yaml:7: algorithm \"HS256\" is not allowed (RS256/384/512, PS256/384/512, "
     "ES256/384/512)"},
    {"identity:\n  providers:\n    - name: corp\n      audience: [a]\n",
     "gov.yaml:3: provider \"corp\" needs an issuer"},
    {"identity:\n  providers:\n    - name: corp\n      issuer: x\n      audience: [a]\n"
     "      jwks_uri: http://idp.example/keys\n      algorithms: [RS256]\n",
     "gov.yaml:3: provider \"corp\": jwks_uri must be https:// (http:// only to loopback "
     "with allow_insecure_loopback_jwks)"},
    {"identity:\n  providers:\n    - name: corp\n      issuer: x\n      audience: [a]\n"
     "      jwks_uri: http://127.0.0.1@idp.example/keys\n      algorithms: [RS256]\n"
     "      allow_insecure_loopback_jwks: true\n",
     "gov.yaml:3: provider \"corp\": jwks_uri must not contain user information"},
    {"identity:\n  providers:\n    - name: corp\n      issuer: x\n      audience: [a]\n"
     "      jwks_file: jwks.json\n      discovery: true\n      algorithms: [RS256]\n",
     "gov.yaml:3: provider \"corp\" needs exactly one of jwks_file, jwks_uri, discovery: true"},
    {"identity:\n  providers:\n    - name: corp\n      issuer: https://idp.example\n"
     "      audience: [a]\n      discovery: true\n      algorithms: [RS256]\n"
     "      refresh_interval: 2h\n      grace_period: 1h\n",
     "gov.yaml:3: provider \"corp\": grace_period must be at least refresh_interval"},
    {"identity:\n  grants:\n    - when: {subject: x}\n      db_users: [a]\n"
     "      replication: sometimes\n",
     "gov.yaml:5: replication must be true or false"},
    {"identity:\n  grants:\n    - when: {}\n      db_users: [a]\n",
     "gov.yaml:3: when needs at least one of groups, subject, provider"},
    {"identity:\n  grants:\n    - db_users: [a]\n", "gov.yaml:3: grant needs when"},
    {"identity:\n  grants:\n    - when: {provider: nope}\n      db_users: [a]\n",
     "gov.yaml:3: grant names unknown provider \"nope\""},
    {"identity:\n  allow_plaintext_loopback: maybe\n",
     "gov.yaml:2: allow_plaintext_loopback must be true or false"},
    {"identity:\n  allow_plaintext_loopback: true\n  allow_plaintext_loopback: false\n",
     "gov.yaml:3: duplicate key \"allow_plaintext_loopback\" in identity"},
    {"identity:\n  providers: [\n", NULL}, /* YAML syntax error: just file:line */
    {"identity:\n  providers:\n    - name: a\n      issuer: x\n      audience: [a]\n"
     "      jwks_file: missing.json\n      algorithms: [RS256]\n",
     NULL},
    {"identity:\n  providers:\n    - name: a\n      clock_skew: soon\n",
     "gov.yaml:4: clock_skew must be a duration like 60s, 5m or 1h"},
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		char err[512] = "";
		struct gov_policy *pol = parse(bad_cases[i].text, err, sizeof(err));
		if (pol)
			fail_msg("case %zu parsed", i);
		if (bad_cases[i].error)
			assert_string_equal(err, bad_cases[i].error);
		else
			assert_true(strncmp(err, "gov.yaml:", 9) == 0);
	}
}

static struct pv_identity ident(const char *provider, const char *subject, char **groups, size_t n)
{
	struct pv_identity id = {(char *)provider, (char *)subject, groups, n, NOW};
	return id;
}

static void test_grants(void **state)
{
	char err[512];
	char *agents[] = {"staff", "ai-agents"}, *staff[] = {"staff"};
	struct gov_policy *pol = parse(good_policy, err, sizeof(err));
	struct pv_identity a = ident("corp", "bot-1", agents, 2);
	struct pv_identity s = ident("corp", "alice", staff, 1);
	struct pv_identity ci = ident("corp", "ci-build", NULL, 0);
	(void)state;
	assert_non_null(pol);
	assert_true(gov_grant_allows(pol, &a, "agent_ro", false));
	assert_false(gov_grant_allows(pol, &a, "ci_rw", false));
	assert_false(gov_grant_allows(pol, &s, "agent_ro", false)); /* default deny */
	assert_true(gov_grant_allows(pol, &ci, "ci_rw", false));
	assert_true(gov_grant_allows(pol, &ci, "agent_ro", false));
	assert_false(gov_grant_allows(pol, &ci, "postgres", false));
	ci.provider = "other";
	assert_false(gov_grant_allows(pol, &ci, "ci_rw", false));
	gov_free(pol);
}

/* --- tokens ---------------------------------------------------------------------------- */

static char *sign(cjose_jwk_t *key, const char *alg, const char *kid, const char *claims)
{
	cjose_err err;
	cjose_header_t *hdr = cjose_header_new(&err);
	cjose_jws_t *jws;
	const char *compact;
	char *out;

	assert_true(cjose_header_set(hdr, CJOSE_HDR_ALG, alg, &err));
	if (kid)
		assert_true(cjose_header_set(hdr, CJOSE_HDR_KID, kid, &err));
	jws = cjose_jws_sign(key, hdr, (const uint8_t *)claims, strlen(claims), &err);
	assert_non_null(jws);
	assert_true(cjose_jws_export(jws, &compact, &err));
	out = strdup(compact);
	cjose_jws_release(jws);
	cjose_header_release(hdr);
	return out;
}

static enum oidc_status check(const struct gov_policy *pol, const char *tok)
{
	char detail[256];
	struct pv_identity *id = NULL;
	enum oidc_status st = oidc_validate(pol, tok, NOW, &id, detail, sizeof(detail));
	if (st == OIDC_OK) {
		assert_non_null(id);
		assert_string_equal(id->provider, "corp");
	}
	identity_free(id);
	return st;
}

#define CLAIMS(iss, aud, exp, extra)                                                               \
	"{\"iss\":\"" iss "\",\"aud\":" aud ",\"sub\":\"bot-1\",\"exp\":" exp extra "}"

static void expect(const struct gov_policy *pol, cjose_jwk_t *key, const char *alg, const char *kid,
                   const char *claims, enum oidc_status want)
{
	char *tok = sign(key, alg, kid, claims);
	enum oidc_status got = check(pol, tok);
	if (got != want)
		fail_msg("%s %s: got %s, want %s", alg, claims, oidc_status_reason(got),
		         oidc_status_reason(want));
	free(tok);
}

static void test_tokens(void **state)
{
	char err[512];
	struct gov_policy *pol = parse(good_policy, err, sizeof(err));
	const char *ok = CLAIMS("https://idp.example/", "[\"x\",\"pgvigil\"]", "1800000100",
	                        ",\"groups\":[\"ai-agents\"]");
	char *tok, *t2;
	(void)state;
	assert_non_null(pol);
	expect(pol, rsa_key, "RS256", "rsa1", ok, OIDC_OK);
	expect(pol, ec_key, "ES256", "ec1", ok, OIDC_OK);
	expect(pol, rsa_key, "RS256", NULL, ok, OIDC_OK); /* only one RSA key */
	expect(pol, rsa_key, "RS384", "rsa1", ok, OIDC_ALG);
	expect(pol, rsa_key, "RS256", "nope", ok, OIDC_UNKNOWN_KEY);
	expect(pol, rsa_key, "RS256", "ec1", ok, OIDC_UNKNOWN_KEY); /* family mismatch */
	expect(pol, rsa_key, "RS256", "rsa1",
	       CLAIMS("https://evil/", "\"pgvigil\"", "1800000100", ""), OIDC_ISSUER);
	expect(pol, rsa_key, "RS256", "rsa1",
	       CLAIMS("https://idp.example/", "\"else\"", "1800000100", ""), OIDC_AUDIENCE);
	expect(pol, rsa_key, "RS256", "rsa1",
	       CLAIMS("https://idp.example/", "\"pgvigil\"", "1799999970", ""), OIDC_EXPIRED);
	expect(pol, rsa_key, "RS256", "rsa1",
	       CLAIMS("https://idp.example/", "\"pgvigil\"", "1799999971", ""), OIDC_OK); /* skew */
	expect(pol, rsa_key, "RS256", "rsa1",
	       CLAIMS("https://idp.example/", "\"pgvigil\"", "1800000100", ",\"nbf\":1800000031"),
	       OIDC_NOT_YET_VALID);
	expect(pol, rsa_key, "RS256", "rsa1",
	       CLAIMS("https://idp.example/", "\"pgvigil\"", "1800000100", ",\"iat\":1800000100"),
	       OIDC_NOT_YET_VALID);
	expect(pol, rsa_key, "RS256", "rsa1",
	       CLAIMS("https://idp.example/", "\"pgvigil\"", "1800000100", ",\"groups\":\"x\""),
	       OIDC_INVALID);
	expect(pol, rsa_key, "RS256", "rsa1",
	       "{\"iss\":\"https://idp.example/\",\"aud\":\"pgvigil\"}", OIDC_INVALID); /* no exp */

	/* signature of one token, payload of another */
	tok = sign(rsa_key, "RS256", "rsa1", ok);
	t2 = sign(
	    rsa_key, "RS256", "rsa1",
	    CLAIMS("https://idp.example/", "\"pgvigil\"", "1800000100", ",\"groups\":[\"dba\"]"));
	{
		/* header and payload of t2 with the signature of tok */
		char mix[8192];
		snprintf(mix, sizeof(mix), "%.*s%s", (int)(strrchr(t2, '.') - t2), t2,
		         strrchr(tok, '.'));
		assert_int_equal(check(pol, mix), OIDC_INVALID);
	}
	free(t2);
	tok[strlen(tok) - 5] = tok[strlen(tok) - 5] == 'A' ? 'B' : 'A'; /* tampered signature */
	assert_int_equal(check(pol, tok), OIDC_INVALID);
	tok[strlen(tok) / 2] = '\0'; /* truncated */
	assert_int_equal(check(pol, tok), OIDC_INVALID);
	free(tok);
	assert_int_equal(check(pol, "garbage"), OIDC_INVALID);
	assert_int_equal(check(pol, ""), OIDC_INVALID);
	/* alg none, crit */
	assert_int_equal(check(pol, "eyJhbGciOiJub25lIn0."
	                            "eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLyJ9."),
	                 OIDC_ALG);
	tok = sign(rsa_key, "RS256", "rsa1", ok);
	t2 = malloc(GOV_LIMIT_MAX_TOKEN + 2);
	memset(t2, 'a', GOV_LIMIT_MAX_TOKEN + 1);
	t2[GOV_LIMIT_MAX_TOKEN + 1] = '\0';
	assert_int_equal(check(pol, t2), OIDC_TOO_LARGE);
	free(t2);
	free(tok);
	gov_free(pol);
}

static void test_crit_refused(void **state)
{
	char err[512];
	struct gov_policy *pol = parse(good_policy, err, sizeof(err));
	cjose_err cerr;
	cjose_header_t *hdr = cjose_header_new(&cerr);
	const char *claims = CLAIMS("https://idp.example/", "\"pgvigil\"", "1800000100", "");
	cjose_jws_t *jws;
	const char *compact;
	(void)state;
	assert_non_null(pol);
	cjose_header_set(hdr, CJOSE_HDR_ALG, "RS256", &cerr);
	cjose_header_set(hdr, CJOSE_HDR_KID, "rsa1", &cerr);
	cjose_header_set_raw(hdr, "crit", "[\"exp\"]", &cerr);
	jws = cjose_jws_sign(rsa_key, hdr, (const uint8_t *)claims, strlen(claims), &cerr);
	assert_non_null(jws);
	assert_true(cjose_jws_export(jws, &compact, &cerr));
	assert_int_equal(check(pol, compact), OIDC_INVALID);
	cjose_jws_release(jws);
	cjose_header_release(hdr);
	gov_free(pol);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_policy), cmocka_unit_test(test_empty_file),
	    cmocka_unit_test(test_errors),      cmocka_unit_test(test_grants),
	    cmocka_unit_test(test_tokens),      cmocka_unit_test(test_crit_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
