/*
 * test_varcache.c - unit tests for src/varcache.c: interned strings, shared
 * value sets (one per distinct content), and the SET statement that syncs a
 * server with a client.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "varcache.h"

enum { ENC, DATESTYLE, TZ, SCS, APP };

static int setup(void **state)
{
	(void)state;
	varcache_setup("search_path");
	return 0;
}

static void interned_strings_are_shared(void **state)
{
	char buf[8];
	const char *a, *b, *c;
	(void)state;

	strcpy(buf, "UTF8");
	a = pv_strintern(buf);
	b = pv_strintern("UTF8");
	c = pv_strintern("utf8");
	assert_non_null(a);
	assert_ptr_equal(a, b); /* same text, one copy */
	assert_ptr_not_equal(a, c);
	assert_ptr_not_equal(a, buf);
	assert_string_equal(a, "UTF8");
	pv_strrelease(a);
	/* still held by b */
	assert_string_equal(b, "UTF8");
	pv_strrelease(b);
	pv_strrelease(c);
	assert_null(pv_strintern(NULL));
	pv_strrelease(NULL);
}

static void equal_contents_share_one_set(void **state)
{
	struct varcache x = {0}, y = {0};
	(void)state;

	assert_true(varcache_set_at(&x, ENC, "UTF8"));
	assert_true(varcache_set_at(&x, TZ, "UTC"));
	/* built in another order: the same set */
	assert_true(varcache_set_at(&y, TZ, "UTC"));
	assert_true(varcache_set_at(&y, ENC, "UTF8"));
	assert_ptr_equal(x.set, y.set);
	assert_ptr_equal(varcache_get(&x, ENC), varcache_get(&y, ENC));

	/* changing one does not change the other */
	assert_true(varcache_set(&y, "timezone", "Europe/Paris"));
	assert_string_equal(varcache_get(&y, TZ), "Europe/Paris");
	assert_string_equal(varcache_get(&x, TZ), "UTC");
	assert_ptr_not_equal(x.set, y.set);

	/* unsetting the last value leaves no set at all */
	varcache_clear(&y);
	assert_null(y.set);
	assert_true(varcache_set_at(&x, ENC, NULL));
	assert_true(varcache_set_at(&x, TZ, NULL));
	assert_null(x.set);
	assert_null(varcache_get(&x, ENC));
	assert_false(varcache_set(&x, "not_tracked", "1"));
}

static void copy_and_fill_missing(void **state)
{
	struct varcache defaults = {0}, c = {0}, d = {0};
	(void)state;

	varcache_set_at(&defaults, ENC, "UTF8");
	varcache_set_at(&defaults, DATESTYLE, "ISO, MDY");
	varcache_set_at(&defaults, APP, "");

	/* a client without values takes the defaults' very set */
	assert_true(varcache_fill_missing(&c, &defaults));
	assert_ptr_equal(c.set, defaults.set);

	/* a client's own value wins over the default */
	varcache_set_at(&d, ENC, "LATIN1");
	varcache_set_at(&d, 5, "public"); /* search_path from track_extra_parameters */
	assert_true(varcache_fill_missing(&d, &defaults));
	assert_string_equal(varcache_get(&d, ENC), "LATIN1");
	assert_string_equal(varcache_get(&d, DATESTYLE), "ISO, MDY");
	assert_string_equal(varcache_get(&d, APP), "");
	assert_string_equal(varcache_get(&d, 5), "public");
	assert_null(varcache_get(&d, SCS));

	varcache_copy(&c, &d);
	assert_ptr_equal(c.set, d.set);
	varcache_clear(&d);
	assert_string_equal(varcache_get(&c, ENC), "LATIN1"); /* c still holds the set */
	varcache_clear(&c);
	varcache_clear(&defaults);
}

static void diff_sql_sets_what_differs(void **state)
{
	struct varcache cl = {0}, sv = {0};
	struct pv_buf sql;
	(void)state;

	buf_init(&sql);
	varcache_set_at(&cl, ENC, "UTF8");
	varcache_set_at(&sv, ENC, "utf8"); /* compared case-insensitively */
	assert_false(varcache_diff_sql(&cl, &sv, &sql));
	assert_int_equal(sql.len, 0);

	varcache_set_at(&cl, TZ, "it's");
	assert_true(varcache_diff_sql(&cl, &sv, &sql));
	assert_int_equal(sql.len, strlen("SET TimeZone='it''s';"));
	assert_memory_equal(sql.data, "SET TimeZone='it''s';", sql.len);

	/* the same shared set: nothing to do */
	buf_reset(&sql);
	varcache_copy(&sv, &cl);
	assert_false(varcache_diff_sql(&cl, &sv, &sql));
	buf_free(&sql);
	varcache_clear(&cl);
	varcache_clear(&sv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(interned_strings_are_shared),
		cmocka_unit_test(equal_contents_share_one_set),
		cmocka_unit_test(copy_and_fill_missing),
		cmocka_unit_test(diff_sql_sets_what_differs),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
