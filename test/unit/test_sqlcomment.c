/*
 * test_sqlcomment.c - unit tests for src/sqlcomment.c: sqlcommenter tags at
 * the end of a statement (URL-decoded), malformed comments, and the agent
 * context subset.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "sqlcomment.h"

static json_t *tags_of(const char *sql)
{
	return sqlcomment_tags(sql, strlen(sql));
}

static void test_tags(void **state)
{
	json_t *t;

	(void)state;
	t = tags_of("SELECT 1 /*action='run%20report',traceparent='00-ab-cd-01',"
	            "prompt_id='p%2F7'*/;  ");
	assert_non_null(t);
	assert_int_equal(json_object_size(t), 3);
	assert_string_equal(json_string_value(json_object_get(t, "action")), "run report");
	assert_string_equal(json_string_value(json_object_get(t, "prompt_id")), "p/7");
	json_decref(t);
	/* only the last comment counts; an escaped quote stays inside the value */
	t = tags_of("/*a='1'*/ SELECT 2 /*b='x\\'y'*/");
	assert_non_null(t);
	assert_null(json_object_get(t, "a"));
	assert_string_equal(json_string_value(json_object_get(t, "b")), "x'y");
	json_decref(t);
}

static void test_no_tags(void **state)
{
	static const char *const none[] = {
	    "SELECT 1",
	    "SELECT 1 /* just a comment */",
	    "SELECT 1 /*key=unquoted*/",
	    "SELECT 1 /*='v'*/",
	    "SELECT 1 /*k='unterminated*/",
	    "*/",
	    "",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		json_t *t = tags_of(none[i]);
		if (t)
			fail_msg("\"%s\" has no tags, got %zu", none[i], json_object_size(t));
	}
}

static void test_context(void **state)
{
	json_t *t = tags_of("SELECT 1 /*traceparent='00-1',tracestate='x',agent='devin',"
	                    "prompt='fix%20it',route='/a'*/");
	json_t *c;

	(void)state;
	assert_non_null(t);
	c = sqlcomment_context(t);
	assert_non_null(c);
	assert_int_equal(json_object_size(c), 4);
	assert_null(json_object_get(c, "route"));
	assert_string_equal(json_string_value(json_object_get(c, "prompt")), "fix it");
	json_decref(c);
	json_decref(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tags),
	    cmocka_unit_test(test_no_tags),
	    cmocka_unit_test(test_context),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
