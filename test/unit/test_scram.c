/*
 * test_scram.c - unit tests for MD5 and SCRAM-SHA-256 (src/scram.c): RFC 7677
 * test vector on both sides, round trips with a password and with pass-through
 * keys, failure paths, secrets compatible with PostgreSQL, base64.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scram.h"

/* RFC 7677 section 3: user "user", password "pencil". */
#define RFC_CNONCE	 "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE	 "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT	 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL                                                                           \
	"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/*
 * Secrets produced by PostgreSQL 15.x (Debian package, /usr/lib/postgresql/15):
 * initdb as an unprivileged user, server on a unix socket in /tmp, then
 *   SET password_encryption = 'scram-sha-256';
 *   CREATE ROLE x PASSWORD 'pencil';
 *   CREATE ROLE y PASSWORD 'pässwörd';   -- UTF-8, NFC (already SASLprep-normal)
 *   SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('x', 'y');
 * PostgreSQL chose the (random) salts; re-deriving with the same salt and
 * iteration count must reproduce StoredKey and ServerKey byte for byte.
 */
#define PG_SECRET_PENCIL                                                                           \
	"SCRAM-SHA-256$4096:eGACiPdNLS+qhOnAl5/QiA==$"                                             \
	"+TswPVA/0kMzZnUWqgIJDKTZnoli72GhwHCf2grRqsQ=:2aBp5XDiQ6Dwbk3L6y+sfhstOBapI1uaLz0OizRHQCs="
#define PG_SECRET_UMLAUT                                                                           \
	"SCRAM-SHA-256$4096:KSeiDq5pqCM3XMdIpgu8rw==$"                                             \
	"p+2PPpH0RmLKQ/pq2UYyMIPp4Ek9+kBMLvHLarge7iI=:6OsIdsk5aafj2ZAoODJjtY+tXx2TrzKb+q6/ujUMEXE="

static void rfc_secret(struct scram_secret *s)
{
	uint8_t salt[SCRAM_MAX_SALT];
	int n = pv_b64_decode(RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt));

	assert_int_equal(n, 16);
	assert_true(scram_secret_from_password("pencil", salt, (size_t)n, 4096, s));
}

/* --- MD5 --- */

static void test_md5(void **state)
{
	char out[36];
	static const uint8_t salt[4] = {1, 2, 3, 4};
	(void)state;

	/* printf passworduser | md5sum  ->  4d45974e13472b5a0be3533de4666414 */
	md5_password_secret("password", "user", out);
	assert_string_equal(out, "md54d45974e13472b5a0be3533de4666414");
	/* python3: "md5" + md5(b"4d45974e13472b5a0be3533de4666414" + bytes([1, 2, 3, 4]))
	 *                      .hexdigest() */
	md5_salted_response(out, salt, out);
	assert_string_equal(out, "md5a3576f1ae039b8996bc4fc2720f9c71a");
	md5_salted_response("md5short", salt, out);
	assert_string_equal(out, "");
}

/* --- secrets --- */

static void test_secret_matches_postgres(void **state)
{
	static const char *const secrets[] = {PG_SECRET_PENCIL, PG_SECRET_UMLAUT};
	static const char *const passwords[] = {"pencil", "p\xc3\xa4ssw\xc3\xb6rd"};
	(void)state;

	for (int i = 0; i < 2; i++) {
		struct scram_secret pg, mine;
		char buf[256];

		assert_true(scram_parse_secret(secrets[i], &pg));
		assert_int_equal(pg.iterations, 4096);
		assert_int_equal(pg.salt_len, 16);
		assert_true(scram_secret_from_password(passwords[i], pg.salt, pg.salt_len,
						       pg.iterations, &mine));
		assert_memory_equal(mine.stored_key, pg.stored_key, SCRAM_KEY_LEN);
		assert_memory_equal(mine.server_key, pg.server_key, SCRAM_KEY_LEN);
		assert_true(scram_format_secret(&mine, buf, sizeof(buf)));
		assert_string_equal(buf, secrets[i]);
	}
}

/* The parts of PG_SECRET_PENCIL, to build broken variants. */
#define PG_SALT "eGACiPdNLS+qhOnAl5/QiA=="
#define PG_SK	"+TswPVA/0kMzZnUWqgIJDKTZnoli72GhwHCf2grRqsQ="
#define PG_VK	"2aBp5XDiQ6Dwbk3L6y+sfhstOBapI1uaLz0OizRHQCs="

static void test_secret_parse_errors(void **state)
{
	static const char *const bad[] = {
		"",
		"md54d45974e13472b5a0be3533de4666414",
		"SCRAM-SHA-256$",
		"SCRAM-SHA-1$4096:" PG_SALT "$" PG_SK ":" PG_VK,
		"SCRAM-SHA-256$0:" PG_SALT "$" PG_SK ":" PG_VK,
		"SCRAM-SHA-256$-1:" PG_SALT "$" PG_SK ":" PG_VK,
		"SCRAM-SHA-256$99999999999:" PG_SALT "$" PG_SK ":" PG_VK,
		"SCRAM-SHA-256$4096:$" PG_SK ":" PG_VK,		       /* empty salt */
		"SCRAM-SHA-256$4096:eGACiPdNLS+qhOnAl5/QiA=$" PG_SK ":" PG_VK, /* bad padding */
		"SCRAM-SHA-256$4096:" PG_SALT "$" PG_SK ":" PG_VK " ",	       /* trailing blank */
		"SCRAM-SHA-256$4096:" PG_SALT "$" PG_SK ":AAAA",	       /* short key */
		"SCRAM-SHA-256$4096:" PG_SALT "$" PG_SK,
		"SCRAM-SHA-256$4096:" PG_SALT ":" PG_SK ":" PG_VK,
	};
	struct scram_secret s;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(scram_parse_secret(bad[i], &s));
	assert_false(scram_parse_secret(NULL, &s));
}

static void test_secret_round_trip(void **state)
{
	struct scram_secret a, b;
	uint8_t salt[SCRAM_MAX_SALT];
	char buf[256];
	(void)state;

	for (size_t i = 0; i < sizeof(salt); i++)
		salt[i] = (uint8_t)(i * 37 + 1);
	assert_true(scram_secret_from_password("x", salt, sizeof(salt), 2, &a));
	assert_true(scram_format_secret(&a, buf, sizeof(buf)));
	assert_true(scram_parse_secret(buf, &b));
	assert_int_equal(b.iterations, 2);
	assert_int_equal(b.salt_len, sizeof(salt));
	assert_memory_equal(&a, &b, sizeof(a));
	assert_false(scram_format_secret(&a, buf, 50)); /* too small */
	assert_false(scram_secret_from_password("x", salt, 0, 4096, &a));
	assert_false(scram_secret_from_password("x", salt, SCRAM_MAX_SALT + 1, 4096, &a));
	assert_false(scram_secret_from_password("x", salt, 16, 0, &a));
}

static void test_mock_secret(void **state)
{
	static const uint8_t nonce[] = "per-process nonce";
	struct scram_secret a, b, c;
	(void)state;

	scram_mock_secret("ghost", nonce, sizeof(nonce), 4096, &a);
	scram_mock_secret("ghost", nonce, sizeof(nonce), 4096, &b);
	scram_mock_secret("phantom", nonce, sizeof(nonce), 4096, &c);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(a.salt_len, 16);
	assert_int_equal(a.iterations, 4096);
	assert_memory_not_equal(a.salt, c.salt, 16);
}

/* --- RFC 7677 test vector --- */

static void test_rfc7677_server(void **state)
{
	struct scram_secret sec;
	struct scram_server sv;
	char err[128], *out = NULL;
	(void)state;

	rfc_secret(&sec);
	scram_server_init(&sv, &sec, false);
	assert_true(scram_server_set_nonce_for_test(&sv, RFC_SNONCE));
	assert_true(scram_server_handle_first(&sv, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &out,
					      err, sizeof(err)));
	assert_string_equal(out, RFC_SERVER_FIRST);
	free(out);
	assert_true(scram_server_handle_final(&sv, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out,
					      err, sizeof(err)));
	assert_string_equal(out, RFC_SERVER_FINAL);
	assert_true(sv.have_client_key);
	free(out);
	scram_server_free(&sv);
}

static void test_rfc7677_client(void **state)
{
	struct scram_client cl;
	char err[128], *out;
	(void)state;

	assert_true(scram_client_init_password(&cl, "pencil"));
	assert_true(scram_client_set_nonce_for_test(&cl, RFC_CNONCE));
	out = scram_client_first(&cl);
	assert_string_equal(out, "n,,n=,r=" RFC_CNONCE);
	free(out);
	/*
	 * Like PostgreSQL's libpq we send an empty n=, but the RFC's client sent
	 * n=user and that is part of the AuthMessage: swap it in to replay the
	 * vector exactly.
	 */
	free(cl.client_first_bare);
	cl.client_first_bare = strdup("n=user,r=" RFC_CNONCE);
	assert_non_null(cl.client_first_bare);
	out = scram_client_final(&cl, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), err, sizeof(err));
	assert_non_null(out);
	assert_string_equal(out, RFC_CLIENT_FINAL);
	free(out);
	static const char zero_sig[] = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
	assert_false(scram_client_verify_final(&cl, zero_sig, strlen(zero_sig)));
	assert_false(scram_client_verify_final(&cl, "e=invalid-proof", 15));
	assert_true(scram_client_verify_final(&cl, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL)));
	scram_client_free(&cl);
}

/* --- round trips --- */

/* Run one full exchange; returns whether the server accepted and the client verified. */
static bool exchange(struct scram_client *cl, struct scram_server *sv)
{
	char err[128], *cfirst, *sfirst = NULL, *cfinal, *sfinal = NULL;
	bool ok;

	cfirst = scram_client_first(cl);
	assert_non_null(cfirst);
	ok = scram_server_handle_first(sv, cfirst, strlen(cfirst), &sfirst, err, sizeof(err));
	free(cfirst);
	assert_true(ok);
	cfinal = scram_client_final(cl, sfirst, strlen(sfirst), err, sizeof(err));
	free(sfirst);
	assert_non_null(cfinal);
	ok = scram_server_handle_final(sv, cfinal, strlen(cfinal), &sfinal, err, sizeof(err));
	free(cfinal);
	if (!ok) {
		assert_null(sfinal);
		assert_false(sv->have_client_key);
		return false;
	}
	ok = scram_client_verify_final(cl, sfinal, strlen(sfinal));
	free(sfinal);
	return ok;
}

static void make_secret(const char *password, struct scram_secret *s)
{
	static const uint8_t salt[16] = "0123456789abcdef";

	assert_true(scram_secret_from_password(password, salt, sizeof(salt), 4096, s));
}

static void test_round_trip_password(void **state)
{
	struct scram_secret sec;
	struct scram_server sv;
	struct scram_client cl;
	(void)state;

	make_secret("correct horse", &sec);
	scram_server_init(&sv, &sec, false);
	assert_true(scram_client_init_password(&cl, "correct horse"));
	assert_true(exchange(&cl, &sv));
	assert_true(sv.have_client_key);
	/* The recovered ClientKey is the one the client derived from the password. */
	assert_memory_equal(sv.client_key, cl.client_key, SCRAM_KEY_LEN);
	scram_client_free(&cl);
	scram_server_free(&sv);
}

static void test_round_trip_pass_through(void **state)
{
	struct scram_secret sec;
	struct scram_server sv1, sv2;
	struct scram_client cl1, cl2;
	(void)state;

	make_secret("s3cret", &sec);
	scram_server_init(&sv1, &sec, false);
	assert_true(scram_client_init_password(&cl1, "s3cret"));
	assert_true(exchange(&cl1, &sv1));
	assert_true(sv1.have_client_key);

	/* pgvigil now logs in to "PostgreSQL" (sv2, same secret) with the recovered keys. */
	scram_client_init_keys(&cl2, sv1.client_key, sec.server_key);
	scram_server_init(&sv2, &sec, false);
	assert_true(exchange(&cl2, &sv2));
	assert_memory_equal(sv2.client_key, sv1.client_key, SCRAM_KEY_LEN);
	scram_client_free(&cl1);
	scram_client_free(&cl2);
	scram_server_free(&sv1);
	scram_server_free(&sv2);
}

static void test_wrong_password(void **state)
{
	struct scram_secret sec;
	struct scram_server sv;
	struct scram_client cl;
	(void)state;

	make_secret("right", &sec);
	scram_server_init(&sv, &sec, false);
	assert_true(scram_client_init_password(&cl, "wrong"));
	assert_false(exchange(&cl, &sv));
	scram_client_free(&cl);
	scram_server_free(&sv);
}

static void test_wrong_server_signature(void **state)
{
	struct scram_secret sec, other;
	struct scram_server sv;
	struct scram_client cl;
	(void)state;

	/* A server that knows StoredKey but not the real ServerKey cannot impersonate. */
	make_secret("pw", &sec);
	make_secret("other", &other);
	memcpy(sec.server_key, other.server_key, SCRAM_KEY_LEN);
	scram_server_init(&sv, &sec, false);
	assert_true(scram_client_init_password(&cl, "pw"));
	assert_false(exchange(&cl, &sv));
	assert_true(sv.have_client_key); /* the server side itself did accept */
	scram_client_free(&cl);
	scram_server_free(&sv);
}

static void test_mock_fails(void **state)
{
	static const uint8_t nonce[] = "n";
	struct scram_secret sec;
	struct scram_server sv;
	struct scram_client cl;
	(void)state;

	scram_mock_secret("ghost", nonce, 1, 4096, &sec);
	scram_server_init(&sv, &sec, true);
	assert_true(scram_client_init_password(&cl, ""));
	assert_false(exchange(&cl, &sv));
	scram_client_free(&cl);
	scram_server_free(&sv);

	/* Even the right password for a real secret fails when flagged mock. */
	make_secret("pw", &sec);
	scram_server_init(&sv, &sec, true);
	assert_true(scram_client_init_password(&cl, "pw"));
	assert_false(exchange(&cl, &sv));
	scram_client_free(&cl);
	scram_server_free(&sv);
}

/* --- malformed input --- */

static void test_bad_client_first(void **state)
{
	static const char *const bad[] = {
		"",
		"n",
		"n,",
		"n,,",
		"n,,n=",
		"n,,n=,",
		"n,,n=,r=",
		"n,,r=abc",
		"n,,n=,x=abc",
		"x,,n=,r=abc",
		"p=tls-server-end-point,,n=,r=abc",
		"p,,n=,r=abc",
		"n,a=user,n=,r=abc",
		"n,,m=ext,n=,r=abc",
		"n,,n=,r=ab,c",
		"n,,n=,r=abc,",
		"n,,n=,r=abc,=x",
		"n,,n=,r=a\x01" "bc",
		"n,,n=,r=a\x7f",
		"n,,n=,r=0123456789012345678901234567890123456789012345678901234567890123456789"
		"0123456789012345678901234567890123456789012345678901234567890", /* > 127 chars */
	};
	struct scram_secret sec;
	char err[128], *out;
	(void)state;

	make_secret("pw", &sec);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct scram_server sv;
		scram_server_init(&sv, &sec, false);
		err[0] = '\0';
		out = (char *)1;
		assert_false(scram_server_handle_first(&sv, bad[i], strlen(bad[i]), &out, err,
						       sizeof(err)));
		assert_null(out);
		assert_true(err[0] != '\0');
		scram_server_free(&sv);
	}
}

static void test_first_embedded_nul(void **state)
{
	static const char msg[] = "n,,n=\0,r=abc";
	struct scram_secret sec;
	struct scram_server sv;
	char err[128], *out;
	(void)state;

	make_secret("pw", &sec);
	scram_server_init(&sv, &sec, false);
	assert_false(scram_server_handle_first(&sv, msg, sizeof(msg) - 1, &out, err, sizeof(err)));
	scram_server_free(&sv);
}

static void test_good_client_first_variants(void **state)
{
	static const char *const good[] = {
		"n,,n=,r=abc",
		"y,,n=,r=abc",
		"n,,n=someone=2Celse,r=abc",
		"n,,n=,r=abc,x=ext",
	};
	struct scram_secret sec;
	char err[128], *out;
	(void)state;

	make_secret("pw", &sec);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct scram_server sv;
		scram_server_init(&sv, &sec, false);
		assert_true(scram_server_handle_first(&sv, good[i], strlen(good[i]), &out, err,
						      sizeof(err)));
		assert_true(strncmp(out, "r=abc", 5) == 0);
		free(out);
		/* A second client-first in the same exchange is refused. */
		assert_false(scram_server_handle_first(&sv, good[i], strlen(good[i]), &out, err,
						       sizeof(err)));
		scram_server_free(&sv);
	}
}

/* Build a correct client-final for a fresh server, then hand it to `check`. */
struct final_ctx {
	struct scram_secret sec;
	struct scram_server sv;
	struct scram_client cl;
	char *cfinal;
};

static void final_setup(struct final_ctx *f, const char *cfirst_override)
{
	char err[128], *cfirst, *sfirst;

	make_secret("pw", &f->sec);
	scram_server_init(&f->sv, &f->sec, false);
	assert_true(scram_client_init_password(&f->cl, "pw"));
	cfirst = scram_client_first(&f->cl);
	assert_non_null(cfirst);
	if (cfirst_override) {
		free(cfirst);
		cfirst = strdup(cfirst_override);
		/* keep the client's view consistent with what was sent */
		free(f->cl.client_first_bare);
		f->cl.client_first_bare = strdup(cfirst + 3);
		strcpy(f->cl.client_nonce, strstr(cfirst, "r=") + 2);
	}
	assert_true(scram_server_handle_first(&f->sv, cfirst, strlen(cfirst), &sfirst, err,
					      sizeof(err)));
	free(cfirst);
	f->cfinal = scram_client_final(&f->cl, sfirst, strlen(sfirst), err, sizeof(err));
	assert_non_null(f->cfinal);
	free(sfirst);
}

static void final_teardown(struct final_ctx *f)
{
	free(f->cfinal);
	scram_client_free(&f->cl);
	scram_server_free(&f->sv);
}

static bool server_final(struct final_ctx *f, const char *msg, size_t len)
{
	char err[128], *out = (char *)1;
	bool ok = scram_server_handle_final(&f->sv, msg, len, &out, err, sizeof(err));

	if (!ok) {
		assert_null(out);
		assert_true(err[0] != '\0');
		assert_false(f->sv.have_client_key);
	}
	free(out);
	return ok;
}

static void test_final_truncated(void **state)
{
	struct final_ctx f;
	size_t len;
	(void)state;

	final_setup(&f, NULL);
	len = strlen(f.cfinal);
	final_teardown(&f);
	for (size_t cut = 0; cut < len; cut++) {
		final_setup(&f, NULL);
		assert_false(server_final(&f, f.cfinal, cut));
		final_teardown(&f);
	}
	/* The untruncated message works, and only once. */
	final_setup(&f, NULL);
	assert_true(server_final(&f, f.cfinal, strlen(f.cfinal)));
	{
		char err[64], *out = NULL;
		assert_false(scram_server_handle_final(&f.sv, f.cfinal, strlen(f.cfinal), &out, err,
						       sizeof(err)));
		assert_null(out);
	}
	final_teardown(&f);
}

/* Replace the first occurrence of `from` in f->cfinal by `to` and submit it. */
static bool final_with(const char *from, const char *to)
{
	struct final_ctx f;
	char buf[512], *hit;
	bool ok;

	final_setup(&f, NULL);
	hit = strstr(f.cfinal, from);
	assert_non_null(hit);
	snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(hit - f.cfinal), f.cfinal, to,
		 hit + strlen(from));
	ok = server_final(&f, buf, strlen(buf));
	final_teardown(&f);
	return ok;
}

static void test_final_malformed(void **state)
{
	struct final_ctx f;
	char buf[512];
	(void)state;

	assert_false(final_with("c=biws", "c=eSws"));	     /* flag mismatch */
	assert_false(final_with("c=biws", "c=cCws"));	     /* p,, binding */
	assert_false(final_with("c=biws,", ""));	     /* missing c= */
	assert_false(final_with("r=", "r=X"));		     /* wrong nonce */
	assert_false(final_with(",p=", ",x=1,q="));	     /* no proof */
	assert_false(final_with(",p=", ",p=!"));	     /* bad base64 */
	assert_false(final_with(",p=", ",p=AAAA"));	     /* short proof */
	/* Extensions parse, but one the client did not sign breaks the proof. */
	assert_false(final_with(",p=", ",x=ext,p="));
	assert_false(final_with("c=biws,", "c=biws,m=x,")); /* nonce must follow c= */

	/* Anything after the proof is refused. */
	final_setup(&f, NULL);
	snprintf(buf, sizeof(buf), "%s,x=1", f.cfinal);
	assert_false(server_final(&f, buf, strlen(buf)));
	final_teardown(&f);

	/* A 'y' client must send c=eSws. */
	final_setup(&f, "y,,n=,r=abcdef");
	assert_false(server_final(&f, f.cfinal, strlen(f.cfinal)));
	final_teardown(&f);

	/* Final before first. */
	{
		struct scram_server sv;
		char err[64], *out;
		scram_server_init(&sv, &f.sec, false);
		assert_false(scram_server_handle_final(&sv, "c=biws", 6, &out, err, sizeof(err)));
		scram_server_free(&sv);
	}
}

static void test_client_rejects_bad_server_first(void **state)
{
	static const char *const bad[] = {
		"",
		"r=abc,s=c2FsdA==,i=4096",		/* does not extend our nonce */
		"r=CLIENTNONCE,s=c2FsdA==,i=4096",	/* nothing added */
		"r=CLIENTNONCEsrv,s=,i=4096",		/* empty salt */
		"r=CLIENTNONCEsrv,s=c2FsdA=,i=4096",	/* bad base64 */
		"r=CLIENTNONCEsrv,s=c2FsdA==,i=0",	/* bad iterations */
		"r=CLIENTNONCEsrv,s=c2FsdA==,i=-1",
		"r=CLIENTNONCEsrv,s=c2FsdA==,i=4096x",
		"r=CLIENTNONCEsrv,s=c2FsdA==",
		"r=CLIENTNONCEsrv,i=4096,s=c2FsdA==",
		"m=x,r=CLIENTNONCEsrv,s=c2FsdA==,i=4096",
		"r=CLIENTNONCEsrv,s=c2FsdA==,i=4096,",
	};
	char err[128];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct scram_client cl;
		char *first;

		assert_true(scram_client_init_password(&cl, "pw"));
		assert_true(scram_client_set_nonce_for_test(&cl, "CLIENTNONCE"));
		first = scram_client_first(&cl);
		assert_non_null(first);
		free(first);
		assert_null(scram_client_final(&cl, bad[i], strlen(bad[i]), err, sizeof(err)));
		scram_client_free(&cl);
	}
}

/* --- base64 --- */

static void test_base64(void **state)
{
	static const struct {
		const char *raw, *enc;
	} v[] = {{"", ""},	   {"f", "Zg=="},	  {"fo", "Zm8="},
		 {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
		 {"foobar", "Zm9vYmFy"}};
	static const char *const bad[] = {"Zg=",  "Zg=A", "Z===", "Zh==", "Zm9=", "Zm9v!",
					  "Zm 9", "====", "Zm9vY===", "Z=g=", "=Zg="};
	char enc[32];
	uint8_t dec[32];
	(void)state;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = strlen(v[i].raw);
		assert_int_equal(pv_b64_encode((const uint8_t *)v[i].raw, n, enc, sizeof(enc)),
				 (int)strlen(v[i].enc));
		assert_string_equal(enc, v[i].enc);
		assert_int_equal(pv_b64_decode(v[i].enc, strlen(v[i].enc), dec, sizeof(dec)),
				 (int)n);
		assert_memory_equal(dec, v[i].raw, n);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(pv_b64_decode(bad[i], strlen(bad[i]), dec, sizeof(dec)), -1);
	/* Output buffers too small. */
	assert_int_equal(pv_b64_encode((const uint8_t *)"foo", 3, enc, 4), -1);
	assert_int_equal(pv_b64_decode("Zm9vYmFy", 8, dec, 5), -1);
	/* Length bound respected: only the first 4 chars of a longer buffer. */
	assert_int_equal(pv_b64_decode("Zm9v!!!!", 4, dec, sizeof(dec)), 3);
}

/* PBKDF2 results are cached: same inputs hit the cache, any changed input misses. */
static void test_salt_cache(void **state)
{
	const uint8_t salt[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	const uint8_t salt2[16] = {2};
	struct scram_secret a, b, c, d;
	unsigned long hits;
	(void)state;

	assert_true(scram_secret_from_password("cache-me", salt, 16, 4096, &a));
	hits = scram_salt_cache_hits();
	assert_true(scram_secret_from_password("cache-me", salt, 16, 4096, &b));
	assert_int_equal(scram_salt_cache_hits(), hits + 1);
	assert_memory_equal(a.stored_key, b.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(a.server_key, b.server_key, SCRAM_KEY_LEN);
	/* different salt, iterations or password: computed, and different */
	assert_true(scram_secret_from_password("cache-me", salt2, 16, 4096, &c));
	assert_true(scram_secret_from_password("cache-me", salt, 16, 4097, &d));
	assert_int_equal(scram_salt_cache_hits(), hits + 1);
	assert_memory_not_equal(a.stored_key, c.stored_key, SCRAM_KEY_LEN);
	assert_memory_not_equal(a.stored_key, d.stored_key, SCRAM_KEY_LEN);
	assert_true(scram_secret_from_password("cache-mf", salt, 16, 4096, &c));
	assert_int_equal(scram_salt_cache_hits(), hits + 1);
	assert_memory_not_equal(a.stored_key, c.stored_key, SCRAM_KEY_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_md5),
		cmocka_unit_test(test_secret_matches_postgres),
		cmocka_unit_test(test_secret_parse_errors),
		cmocka_unit_test(test_secret_round_trip),
		cmocka_unit_test(test_mock_secret),
		cmocka_unit_test(test_rfc7677_server),
		cmocka_unit_test(test_rfc7677_client),
		cmocka_unit_test(test_round_trip_password),
		cmocka_unit_test(test_round_trip_pass_through),
		cmocka_unit_test(test_wrong_password),
		cmocka_unit_test(test_wrong_server_signature),
		cmocka_unit_test(test_mock_fails),
		cmocka_unit_test(test_bad_client_first),
		cmocka_unit_test(test_first_embedded_nul),
		cmocka_unit_test(test_good_client_first_variants),
		cmocka_unit_test(test_final_truncated),
		cmocka_unit_test(test_final_malformed),
		cmocka_unit_test(test_client_rejects_bad_server_first),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_salt_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
