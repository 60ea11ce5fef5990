/*
 * test_authfile.c - unit tests for the auth_file parser and lookup (src/authfile.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "authfile.h"

/* Produced by PostgreSQL 15 for password "pencil" (see test_scram.c). */
#define PG_SECRET                                                                                  \
	"SCRAM-SHA-256$4096:eGACiPdNLS+qhOnAl5/QiA==$"                                             \
	"+TswPVA/0kMzZnUWqgIJDKTZnoli72GhwHCf2grRqsQ=:2aBp5XDiQ6Dwbk3L6y+sfhstOBapI1uaLz0OizRHQCs="

static struct authfile *parse_str(const char *text, char *err, size_t errlen)
{
	return authfile_parse(text, strlen(text), "userlist.txt", err, errlen);
}

static void assert_secret(const struct authfile *af, const char *name, const char *secret)
{
	const struct auth_entry *e = authfile_find(af, name);

	assert_non_null(e);
	assert_string_equal(e->name, name);
	assert_string_equal(e->secret, secret);
}

static void test_basic_and_quoting(void **state)
{
	char err[256];
	struct authfile *af = parse_str("\"alice\" \"secret\"\n"
					"\"we\"\"ird\" \"pa\"\"ss\"\"\"\n"
					"\"spaces in name\"\t\"pass word\"\n"
					"\"\"\"\" \"\"\n",
					err, sizeof(err));
	(void)state;
	assert_non_null(af);
	assert_int_equal(authfile_count(af), 4);
	assert_secret(af, "alice", "secret");
	assert_secret(af, "we\"ird", "pa\"ss\"");
	assert_secret(af, "spaces in name", "pass word");
	assert_secret(af, "\"", "");
	assert_null(authfile_find(af, "bob"));
	assert_null(authfile_find(af, "alic"));
	assert_null(authfile_find(af, NULL));
	authfile_free(af);
}

static void test_comments_blank_trailing(void **state)
{
	char err[256];
	struct authfile *af = parse_str("; comment line\n"
					"\n"
					"   \t\n"
					"  ; indented comment\n"
					"\"a\" \"1\" trailing junk \"x\" ; more\n"
					"\"b\" \"2\"\r\n"
					"  \"c\"   \"3\"\r\n"
					"\"d\" \"4\"", /* no final newline */
					err, sizeof(err));
	(void)state;
	assert_non_null(af);
	assert_int_equal(authfile_count(af), 4);
	assert_secret(af, "a", "1");
	assert_secret(af, "b", "2");
	assert_secret(af, "c", "3");
	assert_secret(af, "d", "4");
	authfile_free(af);
}

static void test_empty_input(void **state)
{
	char err[64];
	struct authfile *af = authfile_parse("", 0, "x", err, sizeof(err));
	(void)state;
	assert_non_null(af);
	assert_int_equal(authfile_count(af), 0);
	assert_null(authfile_find(af, ""));
	authfile_free(af);
	af = authfile_parse(NULL, 0, "x", NULL, 0);
	assert_non_null(af);
	authfile_free(af);
}

#define U "userlist.txt:" /* origin used by parse_str() */

static void expect_broken(const char *text, const char *errtext)
{
	char err[256];
	struct authfile *af = parse_str(text, err, sizeof(err));

	assert_null(af);
	assert_string_equal(err, errtext);
}

static void test_broken_lines(void **state)
{
	(void)state;
	expect_broken("\"a\" \"1\"\n; c\nbob pass\n\"c\" \"3\"\n", U "3: broken auth file");
	expect_broken("bob", U "1: broken auth file");
	expect_broken("\"a\" \"1\"\n\"b\n\"", U "2: broken auth file: unterminated user name");
	expect_broken("\"a\" \"1", U "1: broken auth file: unterminated password");
	expect_broken("\"a\"\n\"1\"", U "1: broken auth file: missing password for user");
	expect_broken("\"a\" 1\n", U "1: broken auth file: missing password for user");
	expect_broken("\"a\"", U "1: broken auth file: missing password for user");
	expect_broken("\n\n\n# hash is not a comment\n", U "4: broken auth file");
	/* CRLF: the `""` pair eats the closing quote, so the field runs into the newline. */
	expect_broken("\"b\" \"2\"\"\r\n", U "1: broken auth file: unterminated password");
}

static void test_nul_byte(void **state)
{
	static const char text[] = "\"a\" \"x\0y\"\n";
	char err[256];
	(void)state;
	assert_null(authfile_parse(text, sizeof(text) - 1, "mem", err, sizeof(err)));
	assert_string_equal(err, "mem:1: broken auth file: unterminated password");
}

static void test_not_nul_terminated(void **state)
{
	/* Parse only a prefix of a larger buffer: bytes past len must be ignored. */
	static const char text[] = "\"a\" \"1\"\"b\" \"2\"";
	char err[64];
	struct authfile *af = authfile_parse(text, 7, "mem", err, sizeof(err));
	(void)state;
	assert_non_null(af);
	assert_int_equal(authfile_count(af), 1);
	assert_secret(af, "a", "1");
	authfile_free(af);
	/* Cutting inside the second field makes it unterminated. */
	assert_null(authfile_parse(text, 6, "mem", err, sizeof(err)));
}

static void test_classification(void **state)
{
	char err[256];
	struct authfile *af =
		parse_str("\"plain\" \"hunter2\"\n"
			  "\"md5\" \"md54d45974e13472b5a0be3533de4666414\"\n"
			  "\"md5upper\" \"md54D45974E13472B5A0BE3533DE4666414\"\n"
			  "\"md5short\" \"md54d45974e13472b5a0be3533de466641\"\n"
			  "\"scram\" \"" PG_SECRET "\"\n"
			  "\"scrambad\" \"SCRAM-SHA-256$4096:eGAC$xx:yy\"\n",
			  err, sizeof(err));
	(void)state;
	assert_non_null(af);
	assert_int_equal(authfile_find(af, "plain")->kind, SECRET_PLAIN);
	assert_int_equal(authfile_find(af, "md5")->kind, SECRET_MD5);
	assert_int_equal(authfile_find(af, "md5upper")->kind, SECRET_PLAIN);
	assert_int_equal(authfile_find(af, "md5short")->kind, SECRET_PLAIN);
	assert_int_equal(authfile_find(af, "scram")->kind, SECRET_SCRAM);
	assert_int_equal(authfile_find(af, "scrambad")->kind, SECRET_PLAIN);
	authfile_free(af);

	assert_int_equal(secret_kind_of(""), SECRET_PLAIN);
	assert_int_equal(secret_kind_of(NULL), SECRET_PLAIN);
	assert_int_equal(secret_kind_of(PG_SECRET), SECRET_SCRAM);
	assert_int_equal(secret_kind_of("md5"), SECRET_PLAIN);
}

static void test_duplicates_last_wins(void **state)
{
	char err[256];
	struct authfile *af = parse_str("\"u\" \"first\"\n\"v\" \"x\"\n\"u\" \"second\"\n"
					"\"u\" \"third\"\n",
					err, sizeof(err));
	(void)state;
	assert_non_null(af);
	assert_int_equal(authfile_count(af), 2);
	assert_secret(af, "u", "third");
	assert_secret(af, "v", "x");
	authfile_free(af);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void test_load_and_change_detection(void **state)
{
	char dir[] = "/tmp/pv_authfile_XXXXXX", path[128], err[256];
	struct authfile *af;
	struct timespec ts[2];
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/userlist.txt", dir);

	af = authfile_load(path, err, sizeof(err));
	assert_null(af);
	assert_non_null(strstr(err, path));

	write_file(path, "\"a\" \"1\"\n\"b\" \"2\"\n");
	af = authfile_load(path, err, sizeof(err));
	assert_non_null(af);
	assert_int_equal(authfile_count(af), 2);
	assert_false(authfile_changed(af, path));

	/* Same size, new content: caught by mtime (set explicitly, clocks can be coarse). */
	write_file(path, "\"a\" \"3\"\n\"b\" \"4\"\n");
	ts[0].tv_sec = ts[1].tv_sec = 1000000000;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	assert_true(authfile_changed(af, path));
	authfile_free(af);

	af = authfile_load(path, err, sizeof(err));
	assert_non_null(af);
	assert_secret(af, "a", "3");
	assert_false(authfile_changed(af, path));
	assert_int_equal(chmod(path, 0600), 0);
	assert_true(authfile_changed(af, path));
	authfile_free(af);

	af = authfile_load(path, err, sizeof(err));
	assert_non_null(af);
	assert_int_equal(unlink(path), 0);
	assert_true(authfile_changed(af, path));
	authfile_free(af);

	/* Errors from files name the path and line. */
	write_file(path, "\"a\" \"1\"\nbroken\n");
	af = authfile_load(path, err, sizeof(err));
	assert_null(af);
	snprintf(path + strlen(path), sizeof(path) - strlen(path), ":2: broken auth file");
	assert_string_equal(err, path);
	path[strlen(path) - strlen(":2: broken auth file")] = '\0';
	unlink(path);
	rmdir(dir);

	/* Parsed from memory: no identity to compare, so always "changed". */
	af = parse_str("", err, sizeof(err));
	assert_true(authfile_changed(af, "/nonexistent"));
	authfile_free(af);
}

static void test_large_file(void **state)
{
	const size_t n = 100000;
	char *text = malloc(n * 40), err[256], name[32], secret[32];
	size_t off = 0;
	struct authfile *af;
	(void)state;

	assert_non_null(text);
	/* Reverse order so the index really has to sort. */
	for (size_t i = n; i-- > 0;)
		off += (size_t)sprintf(text + off, "\"user%zu\" \"pw%zu\" extra\n", i, i * 7);
	af = authfile_parse(text, off, "big", err, sizeof(err));
	free(text);
	assert_non_null(af);
	assert_int_equal(authfile_count(af), n);
	for (size_t i = 0; i < n; i += 997) {
		snprintf(name, sizeof(name), "user%zu", i);
		snprintf(secret, sizeof(secret), "pw%zu", i * 7);
		assert_secret(af, name, secret);
	}
	assert_secret(af, "user99999", "pw699993");
	assert_null(authfile_find(af, "user100000"));
	assert_null(authfile_find(af, "user"));
	authfile_free(af);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_and_quoting),
		cmocka_unit_test(test_comments_blank_trailing),
		cmocka_unit_test(test_empty_input),
		cmocka_unit_test(test_broken_lines),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_not_nul_terminated),
		cmocka_unit_test(test_classification),
		cmocka_unit_test(test_duplicates_last_wins),
		cmocka_unit_test(test_load_and_change_detection),
		cmocka_unit_test(test_large_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
