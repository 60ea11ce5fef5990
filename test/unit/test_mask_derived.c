/*
 * test_mask_derived.c - unit tests for derived-value masking: the column
 * references inspection collects (src/inspect_cols.c: context, resolution of
 * aliases, subqueries, CTEs, correlated references, positions) and the
 * decision on them (src/mask_derived.c), as a table of statements and
 * verdicts against a fake set of masked columns.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"
#include "mask_derived.h"

/* Same upstream libpg_query leak as in test_inspect.c: not ours to free. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:pg_query_raw_parse\n";
}

/*
 * Masked: app.customers.card_number, app.customers.ssn and "App"."Cust"."Card".
 * An unqualified table name is taken to resolve to those schemas.
 */
static bool is_cust(const char *schema, const char *table)
{
	return (!schema || strcmp(schema, "app") == 0) && strcmp(table, "customers") == 0;
}

static bool is_quoted(const char *schema, const char *table)
{
	return (!schema || strcmp(schema, "App") == 0) && strcmp(table, "Cust") == 0;
}

static bool fake_is_masked(void *arg, const char *schema, const char *table, const char *column)
{
	(void)arg;
	if (is_cust(schema, table))
		return strcmp(column, "card_number") == 0 || strcmp(column, "ssn") == 0;
	return is_quoted(schema, table) && strcmp(column, "Card") == 0;
}

static bool fake_table_has_masked(void *arg, const char *schema, const char *table)
{
	(void)arg;
	return is_cust(schema, table) || is_quoted(schema, table);
}

static const struct mask_names names = {fake_is_masked, fake_table_has_masked, NULL};

enum { ALLOW = 0, DENY = 1 };
#define D MASK_DERIVED_DENY
#define M MASK_DERIVED_MASK

struct vrow {
	const char *sql;
	enum mask_derived_mode mode;
	bool predicates_deny;
	int deny;
	uint64_t positions; /* expected mask_positions_lo when allowed */
};

static const struct vrow vrows[] = {
    /* plain references: the rewriter masks them by RowDescription */
    {"SELECT card_number FROM customers", D, true, ALLOW, 0},
    {"SELECT c.card_number AS cc FROM app.customers c", D, true, ALLOW, 0},
    {"SELECT * FROM customers", D, true, ALLOW, 0},
    {"SELECT c.* FROM app.customers c", D, true, ALLOW, 0},
    {"SELECT app.customers.card_number FROM app.customers", D, true, ALLOW, 0},
    {"SELECT name FROM customers WHERE id = 1", D, true, ALLOW, 0},
    {"SELECT card_number FROM customers, orders", D, false, ALLOW, 0},
    /* whole rows */
    {"SELECT row_to_json(c) FROM customers c", M, false, DENY, 0},
    {"SELECT to_jsonb(c.*) FROM customers c", D, false, DENY, 0},
    {"SELECT json_agg(c) FROM customers c", D, false, DENY, 0},
    {"SELECT array_agg(c.*) FROM customers c", M, false, DENY, 0},
    {"SELECT string_agg(c::text, ',') FROM customers c", D, false, DENY, 0},
    {"SELECT customers FROM customers", D, false, DENY, 0},
    {"SELECT (c).card_number FROM customers c", D, false, DENY, 0},
    {"SELECT to_json(o) FROM orders o", D, false, ALLOW, 0},
    /* expressions, casts, calls */
    {"SELECT card_number || '' FROM customers", D, false, DENY, 0},
    {"SELECT card_number::bigint FROM customers", D, false, DENY, 0},
    {"SELECT CAST(card_number AS text) FROM customers", D, false, DENY, 0},
    {"SELECT substr(card_number, 1, 4), substr(card_number, 5) FROM customers", D, false, DENY, 0},
    {"SELECT substr(card_number, 1, 4), substr(card_number, 5) FROM customers", M, false, ALLOW,
     0x3},
    {"SELECT upper(card_number) FROM customers", D, false, DENY, 0},
    {"SELECT CASE WHEN card_number LIKE '4%' THEN 'visa' END FROM customers", D, false, DENY, 0},
    {"SELECT COALESCE(card_number, 'x') FROM customers", D, false, DENY, 0},
    {"SELECT jsonb_build_object('c', card_number) FROM customers", D, false, DENY, 0},
    {"SELECT ARRAY[card_number], ROW(ssn) FROM customers", M, false, ALLOW, 0x3},
    {"SELECT md5(c.ssn) FROM app.customers AS c", D, false, DENY, 0},
    {"SELECT upper(name), length(id::text) FROM customers", D, true, ALLOW, 0},
    {"SELECT id, upper(card_number), name, ssn || '' FROM customers", M, false, ALLOW, 0xa},
    {"SELECT *, upper(card_number) FROM customers", M, false, DENY, 0},
    {"SELECT 1; SELECT upper(card_number) FROM customers", M, false, DENY, 0},
    /* sub-selects */
    {"SELECT (SELECT card_number FROM customers LIMIT 1)", D, false, DENY, 0},
    {"SELECT id, (SELECT max(card_number) FROM customers c2 WHERE c2.id = o.cid) FROM orders o", M,
     false, ALLOW, 0x2},
    {"SELECT (SELECT o.ref || c.card_number FROM orders o LIMIT 1) FROM customers c", D, false,
     DENY, 0},
    {"SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.cid = c.id AND "
     "o.ref = c.card_number)",
     D, false, ALLOW, 0},
    {"SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.cid = c.id AND "
     "o.ref = c.card_number)",
     D, true, DENY, 0},
    {"SELECT x.u FROM customers c, LATERAL (SELECT upper(c.card_number) AS u) x", D, false, DENY,
     0},
    {"SELECT c.id FROM customers c, LATERAL (SELECT upper(c.card_number) AS u) x", D, false, ALLOW,
     0},
    /* views-like subqueries and CTEs: pass-through stays plain */
    {"SELECT s.card_number FROM (SELECT card_number FROM customers) s", D, true, ALLOW, 0},
    {"SELECT * FROM (SELECT id, card_number FROM app.customers) v", D, false, ALLOW, 0},
    {"SELECT t.card_number FROM (SELECT * FROM customers) t", D, false, ALLOW, 0},
    {"SELECT length(t.card_number) FROM (SELECT * FROM customers) t", D, false, DENY, 0},
    {"SELECT x FROM (SELECT upper(card_number) AS x FROM customers) s", D, false, DENY, 0},
    {"SELECT x FROM (SELECT upper(card_number) AS x FROM customers) s", M, false, ALLOW, 0x1},
    {"SELECT * FROM (SELECT id, upper(card_number) FROM customers) s", M, false, ALLOW, 0x2},
    {"SELECT y FROM (SELECT card_number FROM customers) AS s(y)", D, false, ALLOW, 0},
    {"WITH c AS (SELECT card_number FROM customers) SELECT card_number FROM c", D, false, ALLOW, 0},
    {"WITH c AS (SELECT id, lower(card_number) AS l FROM customers) SELECT id, l FROM c", D, false,
     DENY, 0},
    {"WITH c AS (SELECT id, lower(card_number) AS l FROM customers) SELECT id, l FROM c", M, false,
     ALLOW, 0x2},
    {"WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING card_number) SELECT card_number "
     "FROM d",
     D, false, ALLOW, 0},
    {"SELECT upper(x.card_number) FROM (customers c JOIN orders o ON true) AS x", D, false, DENY,
     0},
    /* set operations */
    {"SELECT card_number FROM customers UNION SELECT name FROM orders", D, false, DENY, 0},
    {"SELECT card_number FROM customers UNION SELECT name FROM orders", M, false, ALLOW, 0x1},
    {"SELECT name FROM orders INTERSECT SELECT card_number FROM customers", D, false, DENY, 0},
    {"SELECT card_number FROM customers EXCEPT SELECT '1'", D, false, DENY, 0},
    {"SELECT * FROM customers UNION ALL SELECT * FROM customers", M, false, DENY, 0},
    {"SELECT name FROM orders UNION SELECT name FROM customers", D, true, ALLOW, 0},
    /* RETURNING */
    {"UPDATE customers SET name = 'x' WHERE id = 1 RETURNING card_number", D, false, ALLOW, 0},
    {"DELETE FROM customers WHERE id = 1 RETURNING *", D, false, ALLOW, 0},
    {"DELETE FROM customers WHERE id = 1 RETURNING right(card_number, 4)", D, false, DENY, 0},
    {"DELETE FROM customers WHERE id = 1 RETURNING id, right(card_number, 4)", M, false, ALLOW,
     0x2},
    /* writes: into storage, code or a file, whatever `derived` says */
    {"INSERT INTO archive SELECT card_number FROM customers", M, false, DENY, 0},
    {"INSERT INTO archive SELECT name FROM customers WHERE card_number <> ''", D, false, ALLOW, 0},
    {"INSERT INTO t (a) VALUES ((SELECT card_number FROM customers LIMIT 1))", M, false, DENY, 0},
    {"UPDATE orders SET note = c.card_number FROM customers c WHERE c.id = orders.cid", M, false,
     DENY, 0},
    {"CREATE TABLE leak AS SELECT card_number FROM customers", M, false, DENY, 0},
    {"SELECT card_number INTO leak FROM customers", M, false, DENY, 0},
    {"CREATE VIEW v AS SELECT card_number FROM customers", M, false, DENY, 0},
    {"CREATE MATERIALIZED VIEW mv AS SELECT * FROM customers", M, false, DENY, 0},
    {"COPY (SELECT card_number FROM customers) TO STDOUT", M, false, DENY, 0},
    {"COPY customers TO STDOUT", D, true, ALLOW, 0},
    {"COPY (SELECT name FROM customers) TO STDOUT", D, false, ALLOW, 0},
    {"DO $$ DECLARE v text; BEGIN SELECT card_number INTO v FROM customers LIMIT 1; RAISE NOTICE "
     "'%', v; END $$",
     M, false, DENY, 0},
    {"DO $$ BEGIN PERFORM 1 FROM orders; END $$", D, true, ALLOW, 0},
    {"CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'SELECT card_number FROM customers'", M,
     false, DENY, 0},
    {"VALUES ((SELECT card_number FROM customers LIMIT 1))", D, false, DENY, 0},
    {"PREPARE p AS SELECT upper(card_number) FROM customers", D, false, DENY, 0},
    /* predicates: allowed unless predicates: deny */
    {"SELECT id FROM customers WHERE card_number LIKE '4%'", D, false, ALLOW, 0},
    {"SELECT id FROM customers WHERE card_number LIKE '4%'", D, true, DENY, 0},
    {"SELECT o.id FROM orders o JOIN customers c ON c.card_number = o.card", D, false, ALLOW, 0},
    {"SELECT o.id FROM orders o JOIN customers c ON c.card_number = o.card", D, true, DENY, 0},
    {"SELECT id FROM customers JOIN orders USING (card_number)", D, true, DENY, 0},
    {"SELECT id FROM customers ORDER BY card_number", D, false, ALLOW, 0},
    {"SELECT id FROM customers ORDER BY card_number", D, true, DENY, 0},
    {"SELECT count(*) FROM customers GROUP BY card_number", D, true, DENY, 0},
    {"SELECT count(*) FROM customers GROUP BY card_number", M, false, ALLOW, 0},
    {"SELECT DISTINCT ON (ssn) id FROM customers", D, true, DENY, 0},
    {"SELECT rank() OVER (ORDER BY card_number) FROM customers", D, true, DENY, 0},
    {"SELECT id FROM customers LIMIT 1", D, true, ALLOW, 0},
    /* unqualified columns with several relations in FROM */
    {"SELECT upper(card_number) FROM customers, orders", D, false, DENY, 0},
    {"SELECT upper(name) FROM customers, orders", D, false, ALLOW, 0},
    /* mixed case and quoted identifiers */
    {"SELECT CARD_NUMBER FROM App.Customers", D, false, ALLOW, 0},
    {"SELECT Upper(CARD_NUMBER) FROM APP.CUSTOMERS", D, false, DENY, 0},
    {"SELECT \"Card\" || '' FROM \"App\".\"Cust\"", D, false, DENY, 0},
    {"SELECT \"card\" || '' FROM \"App\".\"Cust\"", D, false, ALLOW, 0},
    {"SELECT Card || '' FROM \"App\".\"Cust\"", D, false, ALLOW, 0},
    {"SELECT k.\"Card\" FROM \"App\".\"Cust\" k", D, true, ALLOW, 0},
};

static void test_verdicts(void **state)
{
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(vrows) / sizeof(vrows[0]); i++) {
		const struct vrow *v = &vrows[i];
		struct inspect_result *r = inspect_classify(v->sql, strlen(v->sql));
		struct mask_verdict out;

		assert_non_null(r);
		mask_check_statement(r, &names, v->mode, v->predicates_deny, &out);
		if (out.deny != (v->deny == DENY) ||
		    (!out.deny && out.mask_positions_lo != v->positions)) {
			fprintf(stderr, "row %zu: %s\n  want %s pos %#llx, got %s pos %#llx (%s)\n",
			        i, v->sql, v->deny ? "deny" : "allow",
			        (unsigned long long)v->positions, out.deny ? "deny" : "allow",
			        (unsigned long long)out.mask_positions_lo, out.reason);
			failed++;
		}
		inspect_release(r);
	}
	fprintf(stderr, "%zu verdict rows\n", sizeof(vrows) / sizeof(vrows[0]));
	assert_int_equal(failed, 0);
}

/* ---- the collected references themselves -------------------------------------- */

static const struct inspect_colref *find_ref(const struct inspect_result *r, const char *table,
                                             const char *column, uint8_t ctx)
{
	for (int i = 0; i < r->n_colrefs; i++) {
		const struct inspect_colref *c = &r->colrefs[i];

		if ((table ? c->table && strcmp(c->table, table) == 0 : !c->table) &&
		    (column ? c->column && strcmp(c->column, column) == 0 : !c->column) &&
		    c->ctx == ctx)
			return c;
	}
	return NULL;
}

static struct inspect_result *classify(const char *sql)
{
	struct inspect_result *r = inspect_classify(sql, strlen(sql));

	assert_non_null(r);
	return r;
}

static void test_refs(void **state)
{
	struct inspect_result *r;
	const struct inspect_colref *c;

	(void)state;
	/* correlated reference resolves to the outer alias's relation */
	r = classify("SELECT o.id, (SELECT max(i.n) FROM items i WHERE i.oid = o.id AND "
	             "upper(o.ref) = i.ref) FROM app.orders o");
	assert_non_null(find_ref(r, "orders", "id", CR_OUTPUT));
	c = find_ref(r, "orders", "id", CR_PREDICATE);
	assert_non_null(c);
	assert_string_equal(c->schema, "app");
	assert_int_equal(c->output_pos, 0);
	assert_non_null(find_ref(r, "orders", "ref", CR_PREDICATE));
	c = find_ref(r, "items", "n", CR_DERIVED);
	assert_non_null(c);
	assert_int_equal(c->output_pos, 2);
	inspect_release(r);

	/* star outputs, whole rows, CTE pass-through */
	r = classify("WITH w AS (SELECT a, b + 1 AS b1 FROM t) SELECT *, row_to_json(u) FROM w, u");
	assert_non_null(find_ref(r, "t", "a", CR_OUTPUT));
	c = find_ref(r, "t", "b", CR_DERIVED);
	assert_non_null(c);
	assert_int_equal(c->output_pos, 2);
	assert_non_null(find_ref(r, "u", "*", CR_OUTPUT));
	c = find_ref(r, "u", NULL, CR_DERIVED | CR_WHOLEROW);
	assert_non_null(c);
	assert_int_equal(c->output_pos, -1); /* after u.*, whose width is unknown */
	inspect_release(r);

	/* an unqualified column with two relations in scope: table unknown */
	r = classify("SELECT x FROM a JOIN b ON a.id = b.id");
	assert_non_null(find_ref(r, NULL, "x", CR_OUTPUT));
	assert_non_null(find_ref(r, "a", "id", CR_PREDICATE));
	inspect_release(r);

	/* RETURNING, writes, code bodies */
	r = classify("UPDATE t SET a = b WHERE c = 1 RETURNING d, e || ''");
	assert_non_null(find_ref(r, "t", "b", CR_WRITE | CR_DERIVED));
	assert_non_null(find_ref(r, "t", "c", CR_PREDICATE));
	assert_non_null(find_ref(r, "t", "d", CR_RETURNING));
	c = find_ref(r, "t", "e", CR_DERIVED);
	assert_non_null(c);
	assert_int_equal(c->output_pos, 2);
	inspect_release(r);
	r = classify("DO $$ BEGIN PERFORM x FROM t WHERE y = 1; END $$");
	assert_non_null(find_ref(r, "t", "x", CR_WRITE | CR_DERIVED));
	assert_non_null(find_ref(r, "t", "y", CR_WRITE | CR_DERIVED));
	inspect_release(r);

	/* multi-statement text: positions unknown */
	r = classify("SELECT upper(a) FROM t; SELECT 1");
	c = find_ref(r, "t", "a", CR_DERIVED);
	assert_non_null(c);
	assert_int_equal(c->output_pos, -1);
	inspect_release(r);
}

/* More references than kept: flagged, and a masked table then denies. */
static void test_truncated(void **state)
{
	size_t cap = 16384, len;
	char *s = malloc(cap);
	struct inspect_result *r;
	struct mask_verdict v;

	(void)state;
	assert_non_null(s);
	len = (size_t)sprintf(s, "SELECT c0");
	for (int i = 1; i < INSPECT_MAX_COLREFS + 10; i++)
		len += (size_t)sprintf(s + len, ", c%d", i);
	sprintf(s + len, " FROM customers");
	r = classify(s);
	assert_true(r->colrefs_truncated);
	assert_int_equal(r->n_colrefs, INSPECT_MAX_COLREFS);
	mask_check_statement(r, &names, MASK_DERIVED_MASK, false, &v);
	assert_true(v.deny);
	inspect_release(r);
	memcpy(s + len, " FROM orders   ", 16);
	r = classify(s);
	mask_check_statement(r, &names, MASK_DERIVED_MASK, false, &v);
	assert_false(v.deny);
	inspect_release(r);
	free(s);
}

static void test_reason(void **state)
{
	struct inspect_result *r = classify("SELECT upper(c.card_number) FROM app.customers c");
	struct mask_verdict v;

	(void)state;
	mask_check_statement(r, &names, MASK_DERIVED_DENY, false, &v);
	assert_true(v.deny);
	assert_string_equal(v.reason,
	                    "masked column app.customers.card_number used in an expression");
	assert_false(v.mask_all);
	inspect_release(r);
}

/*
 * The name in a reason is joined by hand (mask_derived.c: name_put): every
 * shape of reference names the masked column as written, and a name longer
 * than the buffer is cut, not overrun.
 */
static void expect_reason(const char *sql, const char *want)
{
	struct inspect_result *r = classify(sql);
	struct mask_verdict v;

	mask_check_statement(r, &names, MASK_DERIVED_DENY, true, &v);
	assert_true(v.deny);
	assert_string_equal(v.reason, want);
	inspect_release(r);
}

static bool long_is_masked(void *arg, const char *schema, const char *table, const char *column)
{
	(void)arg;
	(void)schema;
	(void)table;
	return column[0] == 'x';
}

static bool long_table_has_masked(void *arg, const char *schema, const char *table)
{
	(void)arg;
	(void)schema;
	(void)table;
	return true;
}

static void test_reason_names(void **state)
{
	static const struct mask_names long_names = {long_is_masked, long_table_has_masked, NULL};
	char sql[512], col[64];
	struct inspect_result *r;
	struct mask_verdict v;

	(void)state;
	expect_reason("SELECT upper(card_number) FROM customers",
	              "masked column customers.card_number used in an expression");
	expect_reason("SELECT id FROM customers WHERE ssn = '1'",
	              "masked column customers.ssn used in a predicate");
	expect_reason("SELECT row_to_json(c) FROM app.customers c",
	              "whole-row reference to app.customers (it has masked columns)");
	expect_reason("SELECT lower(\"Card\") FROM \"App\".\"Cust\"",
	              "masked column App.Cust.Card used in an expression");
	/* three 63-byte names: the reason (160 bytes) is cut, and stays a C string */
	memset(col, 'x', 63);
	col[63] = '\0';
	snprintf(sql, sizeof(sql), "SELECT upper(%s) FROM %s.%s", col, col, col);
	r = classify(sql);
	mask_check_statement(r, &long_names, MASK_DERIVED_DENY, false, &v);
	assert_true(v.deny);
	assert_int_equal(strlen(v.reason), sizeof(v.reason) - 1);
	assert_memory_equal(v.reason, "masked column xxx", 17);
	inspect_release(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verdicts),
	    cmocka_unit_test(test_refs),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_reason),
	    cmocka_unit_test(test_reason_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
