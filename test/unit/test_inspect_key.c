/*
 * test_inspect_key.c - unit tests for the literal-free classification cache
 * key (inspect_literal_key in src/inspect.c): which texts share a key, which
 * make the lexer give up, and that results depending on a literal (DO bodies,
 * function bodies, set_config) are never shared between texts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"

/* See test_inspect.c: an upstream 1-byte leak on PL/pgSQL syntax errors. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:pg_query_raw_parse\n";
}

/* The key of sql as a NUL-terminated string (markers are never NUL), or NULL if none. */
static char *key_of(const char *sql, size_t len)
{
	char *k = calloc(1, len + 1);
	size_t klen = len + 1;

	assert_non_null(k);
	if (!inspect_literal_key(sql, len, k, &klen)) {
		free(k);
		return NULL;
	}
	assert_true(klen <= len);
	k[klen] = '\0';
	return k;
}

static char *key(const char *sql)
{
	return key_of(sql, strlen(sql));
}

/* Pairs that must share one key (they differ only in literals or comments). */
static const char *const same[][2] = {
    {"SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
     "SELECT abalance FROM pgbench_accounts WHERE aid = 987654;"},
    {"SELECT * FROM t WHERE name = 'alice'", "SELECT * FROM t WHERE name = 'bob''s'"},
    {"SELECT 1.5, 2e10", "SELECT 0.25, 7E-3"},
    {"SELECT 1 /* traceparent='00-aa' */", "SELECT 7 /* traceparent='00-bb' */"},
    {"SELECT 1 -- tag one\nFROM t", "SELECT 2 -- a different tag\nFROM t"},
    {"SELECT /* outer /* nested */ still */ 1", "SELECT /* x */ 2"},
    {"UPDATE t SET a = 'x' WHERE id = $1", "UPDATE t SET a = 'yy' WHERE id = $1"},
    {"SELECT 'a'\n'b'", "SELECT 'c'\n'd'"},
};

/* Pairs that must get different keys (or none): the grammar could read them differently. */
static const char *const differ[][2] = {
    {"SELECT interval '1' day", "SELECT interval 1 day"},          /* Sconst vs Iconst */
    {"FETCH 5 FROM c", "FETCH 99999999999 FROM c"},                  /* int32 vs numeric */
    {"SELECT 1", "SELECT 1.0"},                                      /* Iconst vs Fconst */
    {"SELECT * FROM t WHERE a = $1", "SELECT * FROM t WHERE a = $2"}, /* parameters are kept */
    {"SELECT \"a'b\" FROM t", "SELECT \"a'c\" FROM t"},              /* quoted identifiers kept */
    {"SELECT 1 -- x\nFROM t", "SELECT 1 -- x FROM t"},                /* comment ends at newline */
    {"SELECT 1 FROM t1", "SELECT 1 FROM t2"},                        /* digits in identifiers */
};

/* Texts the lexer must refuse to key. */
static const char *const refused[] = {
    "DO $$ BEGIN DROP TABLE t; END $$",
    "SELECT $tag$ x $tag$",
    "SELECT E'\\x41'",
    "SELECT 'a\\' ; DROP TABLE t; --'",
    "SELECT U&'d!0061t' UESCAPE '!'",
    "SELECT B'101', X'1F'",
    "SELECT N'abc'",
    "SELECT 0x1F",
    "SELECT 1abc",
    "SELECT 1.2.3",
    "SELECT 'unterminated",
    "SELECT \"unterminated",
    "SELECT 1 /* unterminated",
    "SELECT '\x01'",
    "SELECT \"a\x02\"",
};

static void test_key_same(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		char *a = key(same[i][0]), *b = key(same[i][1]);

		if (!a || !b || strcmp(a, b) != 0)
			fail_msg("expected one key for \"%s\" and \"%s\"", same[i][0], same[i][1]);
		free(a);
		free(b);
	}
}

static void test_key_differ(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
		char *a = key(differ[i][0]), *b = key(differ[i][1]);

		if (a && b && strcmp(a, b) == 0)
			fail_msg("\"%s\" and \"%s\" must not share a key", differ[i][0], differ[i][1]);
		free(a);
		free(b);
	}
}

static void test_key_refused(void **state)
{
	char *k;

	(void)state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		k = key(refused[i]);
		if (k)
			fail_msg("expected no key for \"%s\", got \"%s\"", refused[i], k);
	}
	k = key_of("SELECT 1\0; DROP TABLE t", 24); /* an inner NUL */
	assert_null(k);
	k = key("SELECT \"x\" FROM \"T\" WHERE b = $1"); /* nothing to replace: the text itself */
	assert_non_null(k);
	assert_string_equal(k, "SELECT \"x\" FROM \"T\" WHERE b = $1");
	free(k);
	k = key("SELECT .5"); /* a number after '.' is left as written: safe, just not shared */
	assert_non_null(k);
	assert_string_equal(k, "SELECT .5");
	free(k);
}

/* Different literals, same key: the second text is a cache hit with the same result. */
static void test_cache_shares_by_key(void **state)
{
	struct inspect_result *a, *b;
	uint64_t h0, m0, h1, m1;

	(void)state;
	inspect_set_cache_size(64);
	a = inspect_classify("DELETE FROM acct WHERE id = 1", 29);
	inspect_cache_stats(&h0, &m0);
	b = inspect_classify("DELETE FROM acct WHERE id = 22", 30);
	inspect_cache_stats(&h1, &m1);
	assert_ptr_equal(a, b);
	assert_true(h1 == h0 + 1 && m1 == m0);
	assert_int_equal(b->classes, SC_DELETE);
	assert_false(b->without_where);
	inspect_release(a);
	inspect_release(b);
}

static struct inspect_result *classify(const char *sql)
{
	struct inspect_result *r = inspect_classify(sql, strlen(sql));

	assert_non_null(r);
	return r;
}

/* Results read from a literal are cached by exact text only. */
static void test_cache_literal_sensitive(void **state)
{
	struct inspect_result *a, *b;

	(void)state;
	inspect_set_cache_size(64);
	a = classify("SELECT set_config('search_path', 'evil', false)");
	b = classify("SELECT set_config('work_mem', '64MB', false)");
	assert_true(a->classes & SC_SET_SENSITIVE);
	assert_false(b->classes & SC_SET_SENSITIVE);
	inspect_release(a);
	inspect_release(b);
	a = classify("DO 'BEGIN PERFORM 1; END'");
	b = classify("DO 'BEGIN DROP TABLE victim; END'");
	assert_false(a->classes & SC_DROP);
	assert_true(b->classes & SC_DROP);
	inspect_release(a);
	inspect_release(b);
	a = classify("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'");
	b = classify("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM victim RETURNING 1'");
	assert_false(a->classes & SC_DELETE);
	assert_true(b->classes & SC_DELETE);
	inspect_release(a);
	inspect_release(b);
	/* and again, now from the cache */
	b = classify("SELECT set_config('search_path', 'x', false)");
	assert_true(b->classes & SC_SET_SENSITIVE);
	inspect_release(b);
	b = classify("SELECT set_config('work_mem', '1MB', false)");
	assert_false(b->classes & SC_SET_SENSITIVE);
	inspect_release(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_same),
	    cmocka_unit_test(test_key_differ),
	    cmocka_unit_test(test_key_refused),
	    cmocka_unit_test(test_cache_shares_by_key),
	    cmocka_unit_test(test_cache_literal_sensitive),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
