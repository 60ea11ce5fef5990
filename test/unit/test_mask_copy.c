/*
 * test_mask_copy.c - unit tests for src/mask_copy.c: which statements are a
 * maskable COPY TO STDOUT (and the probe query built for them), options, and
 * the text / csv / binary CopyData codecs, including malformed rows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mask_copy.h"

/* ---- statements ---- */

static char *probe_of(const char *sql, struct copy_opts *o)
{
	struct pv_buf b;
	char *s = NULL;

	buf_init(&b);
	if (copy_parse(sql, o, &b)) {
		s = calloc(1, b.len + 1);
		assert_non_null(s);
		memcpy(s, b.data, b.len);
	} else {
		assert_int_equal(b.len, 0);
	}
	buf_free(&b);
	return s;
}

static void test_parse(void **state)
{
	struct copy_opts o;
	char *p;

	(void)state;
	p = probe_of("COPY app.t TO STDOUT", &o);
	assert_string_equal(p, "SELECT * FROM \"app\".\"t\" LIMIT 0");
	assert_int_equal(o.format, COPY_TEXT);
	assert_int_equal(o.delim, '\t');
	assert_string_equal(o.null_str, "\\N");
	assert_false(o.header);
	free(p);
	copy_opts_free(&o);
	p = probe_of("copy t (a, \"B\"\"x\") to stdout with (format csv, header, delimiter ';', "
	             "null 'x', quote '#')",
	             &o);
	assert_string_equal(p, "SELECT \"a\", \"B\"\"x\" FROM \"t\" LIMIT 0");
	assert_int_equal(o.format, COPY_CSV);
	assert_true(o.header);
	assert_int_equal(o.delim, ';');
	assert_int_equal(o.quote, '#');
	assert_int_equal(o.escape, '#');
	assert_string_equal(o.null_str, "x");
	free(p);
	copy_opts_free(&o);
	p = probe_of("COPY t TO STDOUT CSV HEADER ESCAPE '\\'", &o);
	assert_non_null(p);
	assert_int_equal(o.format, COPY_CSV);
	assert_int_equal(o.escape, '\\');
	assert_int_equal(o.delim, ',');
	assert_string_equal(o.null_str, "");
	free(p);
	copy_opts_free(&o);
	p = probe_of("COPY t TO STDOUT (FORMAT binary)", &o);
	assert_non_null(p);
	assert_int_equal(o.format, COPY_BINARY);
	free(p);
	copy_opts_free(&o);
	/* not ours */
	static const char *const no[] = {
	    "COPY t FROM STDIN",
	    "COPY (SELECT * FROM t) TO STDOUT",
	    "COPY t TO '/tmp/x'",
	    "COPY t TO PROGRAM 'cat'",
	    "SELECT 1; COPY t TO STDOUT",
	    "COPY t TO STDOUT (DELIMITER '||')",
	    "COPY t TO STDOUT (FORMAT xml)",
	    "COPY t TO",
	    "SELECT 1",
	};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		p = probe_of(no[i], &o);
		if (p)
			fail_msg("\"%s\" must not be a maskable COPY (probe %s)", no[i], p);
	}
}

/* ---- codecs ---- */

/* The test mask: the value becomes "<len>" ('N' in the value: NULL). */
static bool fake_mask(void *arg, int col, const uint8_t *v, size_t len, struct pv_buf *out,
                      bool *is_null)
{
	char buf[32];

	(void)arg;
	(void)col;
	if (memchr(v, 'N', len)) {
		*is_null = true;
		return true;
	}
	snprintf(buf, sizeof(buf), "<%zu>", len);
	return buf_append(out, buf, strlen(buf));
}

/* Rewrite one message; returns the output as a string, "BAD" when malformed. */
static char *rewrite(struct copy_codec *cc, const char *in, size_t len)
{
	struct pv_buf out;
	bool bad;
	char *s;

	buf_init(&out);
	assert_true(copy_rewrite(cc, (const uint8_t *)in, len, &out, &bad));
	s = calloc(1, out.len + 4);
	assert_non_null(s);
	if (bad)
		strcpy(s, "BAD");
	else
		memcpy(s, out.data, out.len);
	buf_free(&out);
	return s;
}

static void expect(struct copy_codec *cc, const char *in, const char *want)
{
	char *got = rewrite(cc, in, strlen(in));

	if (strcmp(got, want) != 0)
		fail_msg("rewrite of \"%s\": got \"%s\", want \"%s\"", in, got, want);
	free(got);
}

static void test_text(void **state)
{
	bool want[3] = {false, true, false};
	struct copy_opts o = {COPY_TEXT, '\t', '"', '"', "\\N", true};
	struct copy_codec cc = {&o, 3, want, fake_mask, NULL, true};

	(void)state;
	expect(&cc, "id\tcard\tname\n", "id\tcard\tname\n"); /* header untouched */
	expect(&cc, "1\t4111\tann\n", "1\t<4>\tann\n");
	expect(&cc, "1\t\\N\tann\n", "1\t\\N\tann\n");	    /* NULL stays NULL */
	expect(&cc, "1\ta\\tb\\\\c\tx\n", "1\t<5>\tx\n");   /* decoded: a<TAB>b\c */
	expect(&cc, "1\t\\101\\x42\tx\n", "1\t<2>\tx\n");   /* octal and hex escapes */
	expect(&cc, "1\tN\tx\n", "1\t\\N\tx\n");	    /* masked to NULL */
	expect(&cc, "1\t\\\t\tx\n", "1\t<1>\tx\n");	    /* an escaped delimiter is data */
	expect(&cc, "1\t2\n", "BAD");			    /* too few columns */
	expect(&cc, "1\t2\t3\t4\n", "BAD");		    /* too many */
	expect(&cc, "1\t2\t3", "BAD");			    /* no newline */
	expect(&cc, "", "BAD");
	o.delim = '|';
	o.null_str = "nil";
	expect(&cc, "1|nil|x\n", "1|nil|x\n");
	expect(&cc, "1|a\\|b|x\n", "1|<3>|x\n");
}

/* A mask whose output needs escaping: tab, backslash, newline, the delimiter, a quote. */
static bool special_mask(void *arg, int col, const uint8_t *v, size_t len, struct pv_buf *out,
                         bool *is_null)
{
	(void)arg;
	(void)col;
	(void)v;
	(void)len;
	*is_null = false;
	return buf_append(out, "a\tb\\c\n|\"", 8);
}

static void test_encoding_of_masked_values(void **state)
{
	bool want[2] = {true, false};
	struct copy_opts o = {COPY_TEXT, '|', '"', '"', "\\N", false};
	struct copy_codec cc = {&o, 2, want, special_mask, NULL, false};

	(void)state;
	expect(&cc, "x|y\n", "a\\tb\\\\c\\n\\|\"|y\n");
	o.format = COPY_CSV;
	o.null_str = "";
	expect(&cc, "x|y\n", "\"a\tb\\c\n|\"\"\"|y\n");
}

static void test_csv(void **state)
{
	bool want[3] = {false, true, false};
	struct copy_opts o = {COPY_CSV, ',', '"', '"', "", false};
	struct copy_codec cc = {&o, 3, want, fake_mask, NULL, false};

	(void)state;
	expect(&cc, "1,4111,ann\n", "1,\"<4>\",ann\n");
	expect(&cc, "1,,ann\n", "1,,ann\n");				 /* NULL (unquoted empty) */
	expect(&cc, "1,\"\",ann\n", "1,\"<0>\",ann\n");		 /* empty string is a value */
	expect(&cc, "1,\"a,\"\"b\"\"\nc\",x\n", "1,\"<7>\",x\n"); /* a,"b"<LF>c */
	expect(&cc, "\"q,1\",9,\"z\"\n", "\"q,1\",\"<1>\",\"z\"\n");
	expect(&cc, "1,\"open,x\n", "BAD");
	expect(&cc, "1,\"a\"b,x\n", "BAD"); /* junk after the closing quote */
	expect(&cc, "1,2\n", "BAD");
	o.escape = '\\';
	o.quote = '#';
	expect(&cc, "1,#a\\#b\\\\#,x\n", "1,#<4>#,x\n"); /* a#b\ */
	o.null_str = "nul";
	expect(&cc, "1,nul,x\n", "1,nul,x\n");
	expect(&cc, "1,#nul#,x\n", "1,#<3>#,x\n"); /* quoted: a value, not NULL */
}

static size_t put16(uint8_t *p, int v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

static size_t put32(uint8_t *p, int32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)((uint32_t)v >> (24 - 8 * i));
	return 4;
}

static void test_binary(void **state)
{
	bool want[2] = {false, true};
	struct copy_opts o = {COPY_BINARY, '\t', '"', '"', "\\N", false};
	struct copy_codec cc = {&o, 2, want, fake_mask, NULL, true};
	uint8_t msg[128], *p = msg;
	struct pv_buf out;
	bool bad;

	(void)state;
	memcpy(p, "PGCOPY\n\377\r\n\0", 11);
	p += 11;
	p += put32(p, 0);
	p += put32(p, 0);
	p += put16(p, 2);
	p += put32(p, 4);
	p += put32(p, 7);
	p += put32(p, 4);
	memcpy(p, "4111", 4);
	p += 4;
	buf_init(&out);
	assert_true(copy_rewrite(&cc, msg, (size_t)(p - msg), &out, &bad));
	assert_false(bad);
	assert_int_equal(out.len, 19 + 2 + 8 + 4 + 3);
	assert_memory_equal(out.data, msg, 19 + 2 + 8);
	assert_memory_equal(out.data + 29, "\0\0\0\3<4>", 7);
	assert_false(cc.header_pending);
	/* a NULL stays NULL, a masked-to-NULL becomes -1, the trailer passes */
	buf_reset(&out);
	p = msg;
	p += put16(p, 2);
	p += put32(p, -1);
	p += put32(p, 1);
	*p++ = 'N';
	p += put16(p, -1);
	assert_true(copy_rewrite(&cc, msg, (size_t)(p - msg), &out, &bad));
	assert_false(bad);
	assert_int_equal(out.len, 2 + 4 + 4 + 2);
	assert_memory_equal(out.data + 6, "\377\377\377\377\377\377", 6);
	/* malformed: wrong field count, truncated value, bad signature */
	buf_reset(&out);
	p = msg;
	p += put16(p, 3);
	assert_true(copy_rewrite(&cc, msg, (size_t)(p - msg), &out, &bad));
	assert_true(bad);
	p = msg;
	p += put16(p, 2);
	p += put32(p, 100);
	assert_true(copy_rewrite(&cc, msg, (size_t)(p - msg), &out, &bad));
	assert_true(bad);
	cc.header_pending = true;
	assert_true(copy_rewrite(&cc, (const uint8_t *)"PGCOPY\nxx", 9, &out, &bad));
	assert_true(bad);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_text),
	    cmocka_unit_test(test_encoding_of_masked_values),
	    cmocka_unit_test(test_csv),
	    cmocka_unit_test(test_binary),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
