/*
 * test_mask_value.c - unit tests for src/mask_value.c: every masking method
 * (UTF-8 partial, short and empty values, HMAC vector, key sensitivity, email
 * edge cases), binary masking per type OID including jsonb, each content
 * detector with true positives and near misses, mask_scan_text rewriting, a
 * linear-time guard on pathological input, and allocation failure (realloc
 * is wrapped with -Wl,--wrap=realloc, see Makefile.am).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mask_value.h"

/* --- realloc failure injection ------------------------------------------------------------ */

static int realloc_budget = -1; /* successful reallocs left; -1 = unlimited */

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n)
{
	if (realloc_budget == 0)
		return NULL;
	if (realloc_budget > 0)
		realloc_budget--;
	return __real_realloc(p, n);
}

/* --- helpers -------------------------------------------------------------------------------- */

static struct mask_spec spec_of(enum mask_method m, int keep_last, const char *key)
{
	struct mask_spec s;

	memset(&s, 0, sizeof(s));
	s.method = m;
	s.keep_last = keep_last;
	if (key) {
		s.key_len = strlen(key);
		memcpy(s.key, key, s.key_len);
	}
	return s;
}

/* Mask `in` (len bytes) as text; returns the result as a malloc'd NUL-terminated string. */
static char *masked(const struct mask_spec *s, const char *in, size_t len, bool *is_null)
{
	struct pv_buf out;
	char *r;

	buf_init(&out);
	assert_true(mask_text_value(s, in, len, &out, is_null));
	r = calloc(1, buf_pending(&out) + 1);
	assert_non_null(r);
	if (buf_pending(&out))
		memcpy(r, out.data + out.pos, buf_pending(&out));
	buf_free(&out);
	return r;
}

static void expect_mask(enum mask_method m, int keep, const char *in, const char *want)
{
	struct mask_spec s = spec_of(m, keep, "k");
	bool is_null = true;
	char *got = masked(&s, in, strlen(in), &is_null);

	assert_false(is_null);
	if (strcmp(got, want) != 0)
		fail_msg("%s(keep %d) of \"%s\": got \"%s\", want \"%s\"", mask_method_name(m),
		         keep, in, got, want);
	free(got);
}

/* --- names ----------------------------------------------------------------------------------- */

static void test_names(void **state)
{
	static const char *const methods[] = {"redact", "partial", "hash", "null", "email"};
	static const char *const dets[] = {"credit_card", "us_ssn", "email", "jwt",
	                                   "aws_access_key"};

	(void)state;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(mask_method_from_name(methods[i]), i);
		assert_string_equal(mask_method_name((enum mask_method)i), methods[i]);
		uint32_t bit = mask_detector_from_name(dets[i]);
		assert_int_equal(bit, 1u << i);
		assert_string_equal(mask_detector_name(bit), dets[i]);
	}
	assert_int_equal(mask_method_from_name("REDACT"), -1);
	assert_int_equal(mask_method_from_name(""), -1);
	assert_int_equal(mask_method_from_name(NULL), -1);
	assert_int_equal(mask_detector_from_name("ssn"), 0);
	assert_int_equal(mask_detector_from_name(NULL), 0);
	assert_string_equal(mask_detector_name(MD_EMAIL | MD_JWT), "?");
	assert_string_equal(mask_method_name((enum mask_method)42), "?");
}

/* --- methods --------------------------------------------------------------------------------- */

struct method_row {
	enum mask_method m;
	int keep;
	const char *in, *want;
};

static const struct method_row method_rows[] = {
    {MM_REDACT, 0, "secret", "****"},
    {MM_REDACT, 0, "", "****"},
    {MM_REDACT, 0, "a much longer value than four", "****"},
    /* partial: ASCII, boundaries, short and empty values */
    {MM_PARTIAL, 4, "4111111111111111", "************1111"},
    {MM_PARTIAL, 4, "12345", "*2345"},
    {MM_PARTIAL, 4, "1234", "****"},
    {MM_PARTIAL, 4, "123", "***"},
    {MM_PARTIAL, 4, "", ""},
    {MM_PARTIAL, 0, "abc", "***"},
    {MM_PARTIAL, -3, "abc", "***"},
    /* partial: UTF-8 counts code points, never splits one */
    {MM_PARTIAL, 3, "h\xc3\xa9llo w\xc3\xb6rld", "********rld"},
    {MM_PARTIAL, 2,
     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9"
     "\xe3\x83\x88",
     "*****\xe3\x82\xb9\xe3\x83\x88"},
    {MM_PARTIAL, 2,
     "a\xf0\x9f\x98\x80"
     "b",
     "*\xf0\x9f\x98\x80"
     "b"},
    {MM_PARTIAL, 1, "\xc3\xa9\xc3\xa9", "*\xc3\xa9"},
    {MM_PARTIAL, 2, "\xc3\xa9\xc3\xa9", "**"},
    /* malformed bytes count as one character each */
    {MM_PARTIAL, 2,
     "\xff"
     "ab",
     "*ab"},
    {MM_PARTIAL, 1, "ab\xe6\x97", "***\x97"},
    /* email */
    {MM_EMAIL, 0, "alice@example.com", "****@example.com"},
    {MM_EMAIL, 0, "a.b+tag@mail.example.co.uk", "****@mail.example.co.uk"},
    {MM_EMAIL, 0, "a@b@example.org", "****@example.org"},
    {MM_EMAIL, 0, "not-an-email", "****"},
    {MM_EMAIL, 0, "@example.com", "****"},
    {MM_EMAIL, 0, "bob@", "****"},
    {MM_EMAIL, 0, "bob@localhost", "****"},
    {MM_EMAIL, 0, "bob@ex..com", "****"},
    {MM_EMAIL, 0, "bob@.example.com", "****"},
    {MM_EMAIL, 0, "bob@example.com.", "****"},
    {MM_EMAIL, 0, "bob@exa mple.com", "****"},
    {MM_EMAIL, 0, "Bob <bob@example.com>", "****"},
    {MM_EMAIL, 0, "", "****"},
};

static void test_methods(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(method_rows) / sizeof(method_rows[0]); i++)
		expect_mask(method_rows[i].m, method_rows[i].keep, method_rows[i].in,
		            method_rows[i].want);
}

static void test_null_method(void **state)
{
	struct mask_spec s = spec_of(MM_NULL, 0, NULL);
	struct pv_buf out;
	bool is_null = false;

	(void)state;
	buf_init(&out);
	assert_true(mask_text_value(&s, "secret", 6, &out, &is_null));
	assert_true(is_null);
	assert_int_equal(buf_pending(&out), 0);
	is_null = false;
	assert_true(mask_text_value(&s, NULL, 0, &out, &is_null));
	assert_true(is_null);
	buf_free(&out);
}

static void test_hash(void **state)
{
	struct mask_spec jefe = spec_of(MM_HASH, 0, "Jefe");
	struct mask_spec k1 = spec_of(MM_HASH, 0, "key-one");
	struct mask_spec k2 = spec_of(MM_HASH, 0, "key-two");
	static const char msg[] = "what do ya want for nothing?";
	bool is_null = true;
	char *a, *b, *c, *d, *e;

	(void)state;
	/* RFC 4231 test case 2, first 16 bytes of the HMAC-SHA256. */
	a = masked(&jefe, msg, strlen(msg), &is_null);
	assert_false(is_null);
	assert_string_equal(a, "h:5bdcc146bf60754e6a042426089575c7");
	/* stable for the same key, so joins on pseudonyms work */
	b = masked(&k1, "alice", 5, &is_null);
	c = masked(&k1, "alice", 5, &is_null);
	assert_string_equal(b, c);
	assert_int_equal(strlen(b), 2 + 32);
	assert_memory_equal(b, "h:", 2);
	assert_int_equal(strspn(b + 2, "0123456789abcdef"), 32);
	/* key and value sensitive */
	d = masked(&k2, "alice", 5, &is_null);
	assert_string_not_equal(b, d);
	e = masked(&k1, "alicf", 5, &is_null);
	assert_string_not_equal(b, e);
	free(a), free(b), free(c), free(d), free(e);
	/* empty value and empty key still hash */
	struct mask_spec nokey = spec_of(MM_HASH, 0, NULL);
	a = masked(&nokey, NULL, 0, &is_null);
	b = masked(&k1, "", 0, &is_null);
	assert_int_equal(strlen(a), 34);
	assert_string_not_equal(a, b);
	free(a), free(b);
}

/* Appending must not disturb what the buffer already holds. */
static void test_appends(void **state)
{
	struct mask_spec s = spec_of(MM_PARTIAL, 2, NULL);
	struct pv_buf out;
	bool is_null;

	(void)state;
	buf_init(&out);
	assert_true(buf_append(&out, "xy|", 3));
	out.pos = 1;
	assert_true(mask_text_value(&s, "abcd", 4, &out, &is_null));
	assert_int_equal(buf_pending(&out), 6);
	assert_memory_equal(out.data + out.pos, "y|**cd", 6);
	buf_free(&out);
}

/* --- binary ---------------------------------------------------------------------------------- */

struct bin_row {
	uint32_t oid;
	enum mask_method m;
	int keep;
	const char *in;
	size_t in_len;
	bool is_null;
	const char *want;
	size_t want_len;
};

#define S(x) x, sizeof(x) - 1

static const struct bin_row bin_rows[] = {
    {25, MM_REDACT, 0, S("secret"), false, S("****")},
    {1043, MM_PARTIAL, 2, S("secret"), false, S("****et")},
    {1042, MM_REDACT, 0, S("abc  "), false, S("****")},
    {19, MM_EMAIL, 0, S("a@example.com"), false, S("****@example.com")},
    {705, MM_REDACT, 0, S("x"), false, S("****")},
    {25, MM_NULL, 0, S("secret"), true, S("")},
    /* json: binary form is text, result stays a JSON document */
    {114, MM_REDACT, 0, S("{\"a\":1}"), false, S("\"****\"")},
    {114, MM_PARTIAL, 2, S("ab\n"), false, S("\"*b\\u000a\"")},
    {114, MM_PARTIAL, 1, S("\xff\xfe"), false, S("\"*\xef\xbf\xbd\"")},
    {114, MM_NULL, 0, S("1"), true, S("")},
    /* jsonb: version byte 1 kept, body a JSON string */
    {3802, MM_REDACT, 0, S("\x01{\"a\":1}"), false, S("\x01\"****\"")},
    {3802, MM_PARTIAL, 3, S("\x01\"secret\""), false, S("\x01\"*****et\\\"\"")},
    {3802, MM_PARTIAL, 1, S("\x01\"a\\\\\""), false, S("\x01\"****\\\"\"")},
    {3802, MM_EMAIL, 0, S("\x01\"a@example.com\""), false, S("\x01\"****\"")},
    {3802, MM_NULL, 0, S("\x01{}"), true, S("")},
    {3802, MM_REDACT, 0, S("\x02{}"), true, S("")},
    {3802, MM_REDACT, 0, S(""), true, S("")},
    /* fixed-width and other binary types can't be faked: NULL */
    {23, MM_REDACT, 0, S("\0\0\0\x07"), true, S("")},
    {20, MM_PARTIAL, 4, S("\0\0\0\0\0\0\0\x07"), true, S("")},
    {17, MM_HASH, 0, S("\xde\xad"), true, S("")},
    {2950, MM_EMAIL, 0, S("0123456789abcdef"), true, S("")},
};

static void test_binary(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bin_rows) / sizeof(bin_rows[0]); i++) {
		const struct bin_row *r = &bin_rows[i];
		struct mask_spec s = spec_of(r->m, r->keep, "k");
		struct pv_buf out;
		bool is_null = !r->is_null;

		buf_init(&out);
		assert_true(mask_binary_value(&s, r->oid, r->in, r->in_len, &out, &is_null));
		if (is_null != r->is_null || buf_pending(&out) != r->want_len ||
		    (r->want_len && memcmp(out.data + out.pos, r->want, r->want_len) != 0))
			fail_msg("row %zu (oid %u): is_null %d len %zu", i, r->oid, is_null,
			         buf_pending(&out));
		buf_free(&out);
	}
}

/* The binary text types mask exactly like text, hashes included. */
static void test_binary_hash_matches_text(void **state)
{
	struct mask_spec s = spec_of(MM_HASH, 0, "k");
	bool n1, n2;
	struct pv_buf a, b;

	(void)state;
	buf_init(&a), buf_init(&b);
	assert_true(mask_text_value(&s, "alice", 5, &a, &n1));
	assert_true(mask_binary_value(&s, 1043, "alice", 5, &b, &n2));
	assert_false(n1 || n2);
	assert_int_equal(buf_pending(&a), buf_pending(&b));
	assert_memory_equal(a.data, b.data, buf_pending(&a));
	buf_free(&a), buf_free(&b);
}

/* --- detectors ------------------------------------------------------------------------------- */

#define ALL_DET (MD_CREDIT_CARD | MD_US_SSN | MD_EMAIL | MD_JWT | MD_AWS_ACCESS_KEY)

#define JWT_H "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
#define JWT_P "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
#define JWT_S "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

struct det_row {
	uint32_t det;
	const char *text;
	int start; /* -1: no match */
	int len;
};

static const struct det_row det_rows[] = {
    /* credit cards */
    {MD_CREDIT_CARD, "4111111111111111", 0, 16},
    {MD_CREDIT_CARD, "card: 4111 1111 1111 1111.", 6, 19},
    {MD_CREDIT_CARD, "4111-1111-1111-1111", 0, 19},
    {MD_CREDIT_CARD, "amex 378282246310005 ok", 5, 15},
    {MD_CREDIT_CARD, "4222222222222", 0, 13},
    {MD_CREDIT_CARD, "x 6011000000000000001", 2, 19},
    {MD_CREDIT_CARD, "qty 2 4111 1111 1111 1111", 6, 19},
    {MD_CREDIT_CARD, "(5500000000000004)", 1, 16},
    {MD_CREDIT_CARD, "4111111111111112", -1, 0},     /* Luhn-invalid */
    {MD_CREDIT_CARD, "411111111117", -1, 0},         /* 12 digits, Luhn-valid */
    {MD_CREDIT_CARD, "41111111111111110000", -1, 0}, /* inside a 20-digit number */
    {MD_CREDIT_CARD, "94111111111111111", -1, 0},    /* 17 digits, prefix is a card */
    {MD_CREDIT_CARD, "A4111111111111111", -1, 0},    /* letter run before */
    {MD_CREDIT_CARD, "4111111111111111b", -1, 0},    /* letter run after */
    {MD_CREDIT_CARD, "4111  1111 1111 1111", -1, 0}, /* double separator */
    {MD_CREDIT_CARD, "0000000000000000", -1, 0},     /* all zeros pass Luhn */
    {MD_CREDIT_CARD, "", -1, 0},
    /* SSNs */
    {MD_US_SSN, "123-45-6789", 0, 11},
    {MD_US_SSN, "SSN:123-45-6789.", 4, 11},
    {MD_US_SSN, "ssn 899-99-9999 end", 4, 11},
    {MD_US_SSN, "000-12-3456", -1, 0},
    {MD_US_SSN, "666-12-3456", -1, 0},
    {MD_US_SSN, "900-12-3456", -1, 0},
    {MD_US_SSN, "999-12-3456", -1, 0},
    {MD_US_SSN, "123-00-4567", -1, 0},
    {MD_US_SSN, "123-45-0000", -1, 0},
    {MD_US_SSN, "1123-45-6789", -1, 0},
    {MD_US_SSN, "123-45-67890", -1, 0},
    {MD_US_SSN, "x123-45-6789", -1, 0},
    {MD_US_SSN, "123456789", -1, 0},
    {MD_US_SSN, "123-45-678", -1, 0},
    /* emails */
    {MD_EMAIL, "alice@example.com", 0, 17},
    {MD_EMAIL, "contact bob.smith+tag@example.co.uk today", 8, 27},
    {MD_EMAIL, "mail me at a@b.io.", 11, 6},
    {MD_EMAIL, "<x_y%z-1@sub-1.example.org>", 1, 25},
    {MD_EMAIL, "see.bob@x.com", 0, 13},
    {MD_EMAIL, "...bob@x.com", 3, 9},
    {MD_EMAIL, "foo@bar@baz.com", 4, 11},
    {MD_EMAIL, "bob@localhost", -1, 0},
    {MD_EMAIL, "bob@x.c", -1, 0},
    {MD_EMAIL, "bob@1.2.3.4", -1, 0},
    {MD_EMAIL, "@example.com", -1, 0},
    {MD_EMAIL, "bob @example.com", -1, 0},
    {MD_EMAIL, "a @ b . com", -1, 0},
    /* JWTs */
    {MD_JWT, JWT_H "." JWT_P "." JWT_S, 0, sizeof(JWT_H JWT_P JWT_S) + 1},
    {MD_JWT, "Bearer " JWT_H "." JWT_P "." JWT_S " x", 7, sizeof(JWT_H JWT_P JWT_S) + 1},
    {MD_JWT, "t=" JWT_H "." JWT_P ".", 2, sizeof(JWT_H JWT_P) + 1}, /* unsigned */
    {MD_JWT, JWT_H "." JWT_P, -1, 0},                               /* two segments */
    {MD_JWT, JWT_H, -1, 0},
    {MD_JWT, "x" JWT_H "." JWT_P "." JWT_S, -1, 0}, /* inside a longer run */
    {MD_JWT, "eyJ.eyJ.eyJ", -1, 0},                 /* too short to be a header */
    {MD_JWT, "eyJhbGciOiJ.e.sig", -1, 0},           /* payload too short */
    {MD_JWT, "abJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.abc", -1, 0},
    /* AWS access key ids */
    {MD_AWS_ACCESS_KEY, "AKIAIOSFODNN7EXAMPLE", 0, 20},
    {MD_AWS_ACCESS_KEY, "key=ASIAIOSFODNN7EXAMPLE;", 4, 20},
    {MD_AWS_ACCESS_KEY, "XAKIAIOSFODNN7EXAMPLE", -1, 0},
    {MD_AWS_ACCESS_KEY, "AKIAIOSFODNN7EXAMPLEX", -1, 0},
    {MD_AWS_ACCESS_KEY, "AKIAIOSFODNN7EXAMPL", -1, 0},
    {MD_AWS_ACCESS_KEY, "AKIAiosfodnn7example", -1, 0},
    {MD_AWS_ACCESS_KEY, "ABIAIOSFODNN7EXAMPLE", -1, 0},
    /* detector set respected, earliest match wins */
    {MD_EMAIL, "4111111111111111 AKIAIOSFODNN7EXAMPLE", -1, 0},
    {ALL_DET, "AKIAIOSFODNN7EXAMPLE 4111111111111111", 0, 20},
    {ALL_DET, "id 123-45-6789 a@b.io", 3, 11},
    {ALL_DET, "4111111111111111@example.com", 0, 28}, /* same start: longest */
    {0, "4111111111111111", -1, 0},
};

static void test_detectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(det_rows) / sizeof(det_rows[0]); i++) {
		const struct det_row *r = &det_rows[i];
		size_t st = 999, ml = 999;
		bool found = mask_detect_first(r->det, r->text, strlen(r->text), &st, &ml);

		if (r->start < 0 && found)
			fail_msg("row %zu \"%s\": unexpected match at %zu+%zu", i, r->text, st, ml);
		if (r->start >= 0 && (!found || st != (size_t)r->start || ml != (size_t)r->len))
			fail_msg("row %zu \"%s\": found %d at %zu+%zu, want %d+%d", i, r->text,
			         found, st, ml, r->start, r->len);
	}
}

/* Not NUL-terminated, and matches must not read past len. */
static void test_detect_bounds(void **state)
{
	const char txt[] = "4111111111111111999";
	size_t st, ml;

	(void)state;
	assert_true(mask_detect_first(MD_CREDIT_CARD, txt, 16, &st, &ml));
	assert_int_equal(ml, 16);
	assert_false(mask_detect_first(MD_CREDIT_CARD, txt, 17, &st, &ml));
	assert_true(mask_detect_first(MD_US_SSN, "123-45-67890", 11, &st, &ml));
	assert_false(mask_detect_first(ALL_DET, NULL, 0, &st, &ml));
}

/* --- scan_text ------------------------------------------------------------------------------- */

struct scan_row {
	uint32_t det;
	enum mask_method m;
	int keep;
	const char *in, *want;
	bool changed;
};

static const struct scan_row scan_rows[] = {
    {ALL_DET, MM_REDACT, 0, "card 4111111111111111 and ssn 123-45-6789 ok",
     "card **** and ssn **** ok", true},
    {ALL_DET, MM_REDACT, 0, "4111111111111111 x 123-45-6789", "**** x ****", true},
    {ALL_DET, MM_REDACT, 0, "123-45-6789", "****", true},
    {ALL_DET, MM_PARTIAL, 4, "pay 4111 1111 1111 1111 now", "pay ***************1111 now", true},
    {ALL_DET, MM_NULL, 0, "[a@b.io][AKIAIOSFODNN7EXAMPLE]", "[][]", true},
    {ALL_DET, MM_EMAIL, 0, "from a@b.io to c.d@e.org.", "from ****@b.io to ****@e.org.", true},
    {ALL_DET, MM_REDACT, 0, "auth " JWT_H "." JWT_P "." JWT_S, "auth ****", true},
    {ALL_DET, MM_REDACT, 0, "a@b.io,c@d.io,e@f.io", "****,****,****", true},
    /* overlapping matches of two detectors are masked as one span */
    {ALL_DET, MM_REDACT, 0, "4111 1111 1111 1111-x@ex.com!", "****!", true},
    {MD_US_SSN, MM_REDACT, 0, "a@b.io 123-45-6789", "a@b.io ****", true},
    {ALL_DET, MM_REDACT, 0, "nothing to see here 12345 x@y", "nothing to see here 12345 x@y",
     false},
    {ALL_DET, MM_REDACT, 0, "", "", false},
    {0, MM_REDACT, 0, "4111111111111111", "4111111111111111", false},
};

static void test_scan(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(scan_rows) / sizeof(scan_rows[0]); i++) {
		const struct scan_row *r = &scan_rows[i];
		struct mask_spec s = spec_of(r->m, r->keep, "k");
		struct pv_buf out;
		bool changed = !r->changed;
		size_t wl = strlen(r->want);

		buf_init(&out);
		assert_true(mask_scan_text(r->det, &s, r->in, strlen(r->in), &out, &changed));
		if (changed != r->changed || buf_pending(&out) != wl ||
		    (wl && memcmp(out.data + out.pos, r->want, wl) != 0))
			fail_msg("row %zu \"%s\": changed %d, got \"%.*s\", want \"%s\"", i, r->in,
			         changed, (int)buf_pending(&out), out.data ? (char *)out.data : "",
			         r->want);
		buf_free(&out);
	}
}

/* The same key yields the same pseudonym inside free text as in a column. */
static void test_scan_hash(void **state)
{
	struct mask_spec s = spec_of(MM_HASH, 0, "k");
	struct pv_buf a, b;
	bool changed, is_null;

	(void)state;
	buf_init(&a), buf_init(&b);
	assert_true(mask_text_value(&s, "a@b.io", 6, &a, &is_null));
	assert_true(buf_append(&a, " x", 2));
	assert_true(mask_scan_text(MD_EMAIL, &s, "a@b.io x", 8, &b, &changed));
	assert_true(changed);
	assert_int_equal(buf_pending(&a), buf_pending(&b));
	assert_memory_equal(a.data, b.data, buf_pending(&a));
	buf_free(&a), buf_free(&b);
}

/* Pathological inputs for each detector must stay linear (a quadratic scan would take minutes). */
static void test_linear(void **state)
{
	static const char *const units[] = {"1 ",   "1-", "a@", "eyJ.",
	                                    "AKIA", "A",  "e",  "eyJhbGciOiJ.e."};
	const size_t n = 1u << 20;
	char *txt = malloc(n);
	struct mask_spec s = spec_of(MM_REDACT, 0, NULL);
	struct timespec t0, t1;

	(void)state;
	assert_non_null(txt);
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		size_t ul = strlen(units[u]);
		struct pv_buf out;
		bool changed;
		double secs;

		for (size_t i = 0; i < n; i++)
			txt[i] = units[u][i % ul];
		buf_init(&out);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_true(mask_scan_text(ALL_DET, &s, txt, n, &out, &changed));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		assert_false(changed);
		assert_int_equal(buf_pending(&out), n);
		if (secs > 5.0)
			fail_msg("unit \"%s\": %.2fs for 1 MiB", units[u], secs);
		buf_free(&out);
	}
	free(txt);
}

/*
 * Many matches of one detector with another's only match far away: the far
 * match must be remembered, not searched for again after every near one.
 */
static void test_linear_many_matches(void **state)
{
	static const char unit[] = "a@b.io ";
	static const char tail[] = "4111111111111111";
	const size_t reps = 1u << 16, ul = sizeof(unit) - 1;
	size_t n = reps * ul + sizeof(tail) - 1;
	char *txt = malloc(n);
	struct mask_spec s = spec_of(MM_REDACT, 0, NULL);
	struct timespec t0, t1;
	struct pv_buf out;
	bool changed;
	double secs;

	(void)state;
	assert_non_null(txt);
	for (size_t i = 0; i < reps; i++)
		memcpy(txt + i * ul, unit, ul);
	memcpy(txt + reps * ul, tail, sizeof(tail) - 1);
	buf_init(&out);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_true(mask_scan_text(ALL_DET, &s, txt, n, &out, &changed));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(changed);
	assert_int_equal(buf_pending(&out), reps * 5 + 4); /* "**** " per unit + "****" */
	assert_memory_equal(out.data + out.len - 9, "**** ****", 9);
	if (secs > 5.0)
		fail_msg("%.2fs for %zu matches", secs, reps);
	buf_free(&out);
	free(txt);
}

/* --- allocation failure ---------------------------------------------------------------------- */

static void test_alloc_failure(void **state)
{
	struct mask_spec red = spec_of(MM_REDACT, 0, NULL);
	struct mask_spec part = spec_of(MM_PARTIAL, 2, NULL);
	struct pv_buf out;
	bool is_null, changed = true;
	char big[600];

	(void)state;
	buf_init(&out);
	realloc_budget = 0;
	assert_false(mask_text_value(&red, "x", 1, &out, &is_null));
	assert_false(mask_text_value(&part, "abcdef", 6, &out, &is_null));
	assert_false(mask_binary_value(&red, 3802, "\x01{}", 3, &out, &is_null));
	assert_false(mask_binary_value(&red, 114, "{}", 2, &out, &is_null));
	assert_false(mask_scan_text(MD_EMAIL, &red, "a@b.io", 6, &out, &changed));
	assert_false(changed);
	assert_int_equal(buf_pending(&out), 0);

	/* Fail midway (second growth): the output is rolled back to its prior contents. */
	memset(big, 'z', sizeof(big));
	memcpy(big, "a@b.io ", 7);
	memcpy(big + 500, " 4111111111111111 ", 18);
	realloc_budget = -1;
	assert_true(buf_append(&out, "keep", 4));
	realloc_budget = 1;
	assert_false(mask_scan_text(ALL_DET, &red, big, sizeof(big), &out, &changed));
	assert_int_equal(buf_pending(&out), 4);
	assert_memory_equal(out.data + out.pos, "keep", 4);
	realloc_budget = -1;
	assert_true(mask_scan_text(ALL_DET, &red, big, sizeof(big), &out, &changed));
	assert_true(changed);
	assert_int_equal(buf_pending(&out), 4 + sizeof(big) - 6 + 4 - 16 + 4);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_methods),
	    cmocka_unit_test(test_null_method),
	    cmocka_unit_test(test_hash),
	    cmocka_unit_test(test_appends),
	    cmocka_unit_test(test_binary),
	    cmocka_unit_test(test_binary_hash_matches_text),
	    cmocka_unit_test(test_detectors),
	    cmocka_unit_test(test_detect_bounds),
	    cmocka_unit_test(test_scan),
	    cmocka_unit_test(test_scan_hash),
	    cmocka_unit_test(test_linear),
	    cmocka_unit_test(test_linear_many_matches),
	    cmocka_unit_test(test_alloc_failure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
