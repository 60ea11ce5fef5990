/* Unit tests: the masks section of the governance file and glob handling (mask_catalog.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "governance.h"
#include "mask_catalog.h"
#include "oidc.h"

static char dir[] = "/tmp/pv_mask_policy_XXXXXX";

static struct gov_policy *parse(const char *text, char *err, size_t errlen)
{
	err[0] = '\0';
	return gov_parse_buffer(text, strlen(text), "g.yaml", dir, err, errlen);
}

static void write_key(const char *name, size_t len)
{
	char path[256];
	FILE *f;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	for (size_t i = 0; i < len; i++)
		fputc((int)('a' + i % 26), f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	write_key("k32", 32);
	write_key("k8", 8);
	write_key("k65", 65);
	write_key("k64", 64);
	return 0;
}

static void test_full(void **state)
{
	char err[512];
	struct gov_policy *pol =
	    parse("masks:\n"
	          "  - name: cards\n"
	          "    columns: [app.customers.card_number, \"*.*.credit_card\"]\n"
	          "    method: partial\n"
	          "    keep_last: 2\n"
	          "    except: {groups: [billing]}\n"
	          "  - name: secrets\n"
	          "    detect: [credit_card, us_ssn, email, jwt, aws_access_key]\n"
	          "    method: redact\n"
	          "  - name: hashed\n"
	          "    columns: public.users.email\n"
	          "    method: hash\n"
	          "    key_file: k32\n"
	          "derived: mask\n"
	          "predicates: deny\n"
	          "mask_refresh: 2m\n",
	          err, sizeof(err));
	(void)state;
	assert_non_null(pol);
	assert_int_equal(pol->n_masks, 3);
	assert_string_equal(pol->masks[0].name, "cards");
	assert_int_equal(pol->masks[0].line, 2);
	assert_int_equal(pol->masks[0].columns.n, 2);
	assert_int_equal(pol->masks[0].spec.method, MM_PARTIAL);
	assert_int_equal(pol->masks[0].spec.keep_last, 2);
	assert_int_equal(pol->masks[0].except_groups.n, 1);
	assert_int_equal(pol->masks[1].detect,
	                 MD_CREDIT_CARD | MD_US_SSN | MD_EMAIL | MD_JWT | MD_AWS_ACCESS_KEY);
	assert_int_equal(pol->masks[1].spec.keep_last, MASK_DEFAULT_KEEP_LAST);
	assert_int_equal(pol->masks[2].spec.method, MM_HASH);
	assert_int_equal(pol->masks[2].spec.key_len, 32);
	assert_memory_equal(pol->masks[2].spec.key, "abcdefghijklmnopqrstuvwxyzabcdef", 32);
	assert_true(pol->derived_mask);
	assert_true(pol->predicates_deny);
	assert_int_equal(pol->mask_refresh, 120);
	gov_free(pol);
}

static void test_defaults(void **state)
{
	char err[512];
	struct gov_policy *pol = parse(
	    "masks:\n  - name: a\n    columns: [a.b.c]\n    method: null\n", err, sizeof(err));
	(void)state;
	assert_non_null(pol);
	assert_false(pol->derived_mask);
	assert_false(pol->predicates_deny);
	assert_int_equal(pol->mask_refresh, MASK_DEFAULT_REFRESH);
	gov_free(pol);
	pol = parse("identity: {}\n", err, sizeof(err));
	assert_non_null(pol);
	assert_int_equal(pol->n_masks, 0);
	gov_free(pol);
}

static void test_key_sizes(void **state)
{
	char err[512];
	struct gov_policy *pol = parse(
	    "masks:\n  - name: a\n    columns: [a.b.c]\n    method: hash\n    key_file: k64\n", err,
	    sizeof(err));
	(void)state;
	assert_non_null(pol);
	assert_int_equal(pol->masks[0].spec.key_len, 64);
	gov_free(pol);
}

struct bad {
	const char *text;
	const char *err; /* expected "g.yaml:LINE: ..." prefix / substring */
};

static const struct bad bads[] = {
    {"masks: {}\n", "g.yaml:1: masks must be a list"},
    {"masks:\n  - columns: [a.b.c]\n    method: redact\n", "g.yaml:2: mask needs a name"},
    {"masks:\n  - name: a\n    method: redact\n", "g.yaml:2: mask \"a\" needs columns or detect"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n", "g.yaml:2: mask \"a\" needs a method"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: scramble\n",
     "g.yaml:4: method must be redact, partial, hash, null or email"},
    {"masks:\n  - name: a\n    columns: [a.b]\n    method: redact\n",
     "g.yaml:3: column pattern \"a.b\" must be schema.table.column"},
    {"masks:\n  - name: a\n    columns: [a.b.c.d]\n    method: redact\n",
     "g.yaml:3: column pattern \"a.b.c.d\""},
    {"masks:\n  - name: a\n    columns: [a..c]\n    method: redact\n",
     "g.yaml:3: column pattern \"a..c\""},
    {"masks:\n  - name: a\n    columns: [\"a.b.\"]\n    method: redact\n",
     "g.yaml:3: column pattern \"a.b.\""},
    {"masks:\n  - name: a\n    columns: []\n    method: redact\n",
     "g.yaml:3: columns must not be empty"},
    {"masks:\n  - name: a\n    detect: [iban]\n    method: redact\n",
     "g.yaml:3: unknown detector \"iban\""},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: redact\n    keep_last: 2\n",
     "g.yaml:2: mask \"a\": keep_last only applies to method partial"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: partial\n    keep_last: -1\n",
     "g.yaml:5: keep_last must be a non-negative integer"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: hash\n",
     "g.yaml:2: mask \"a\": method hash needs key_file"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: redact\n    key_file: k32\n",
     "g.yaml:2: mask \"a\": key_file only applies to method hash"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: hash\n    key_file: nope\n",
     "g.yaml:5: key_file "},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: hash\n    key_file: k8\n",
     "must hold 16 to 64 bytes"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: hash\n    key_file: k65\n",
     "g.yaml:5: key_file"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: redact\n    except: {users: [x]}\n",
     "g.yaml:5: unknown key \"users\" in except"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: redact\n    except: {}\n",
     "g.yaml:5: except needs groups"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: redact\n    colour: red\n",
     "g.yaml:5: unknown key \"colour\" in a mask"},
    {"masks:\n  - name: a\n    columns: [a.b.c]\n    method: redact\n"
     "  - name: a\n    detect: email\n    method: redact\n",
     "g.yaml:5: mask name \"a\" is used twice"},
    {"masks:\n  - name: a\n    name: b\n", "g.yaml:3: duplicate key \"name\" in a mask"},
    {"derived: maybe\n", "g.yaml:1: derived must be deny or mask"},
    {"predicates: sometimes\n", "g.yaml:1: predicates must be allow or deny"},
    {"mask_refresh: 0s\n", "g.yaml:1: mask_refresh must be at least 1s"},
    {"mask_refresh: soon\n", "g.yaml:1: mask_refresh must be a duration"},
    {"masks: []\nmasks: []\n", "g.yaml:2: section \"masks\" appears twice"},
};

static void test_errors(void **state)
{
	char err[512];
	(void)state;
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct gov_policy *pol = parse(bads[i].text, err, sizeof(err));
		if (pol || !strstr(err, bads[i].err))
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, pol ? "(loaded)" : err,
			         bads[i].err);
	}
}

static void test_glob_valid(void **state)
{
	(void)state;
	assert_true(mask_glob_valid("a.b.c"));
	assert_true(mask_glob_valid("*.*.credit_card"));
	assert_true(mask_glob_valid("app.cust?mers.*"));
	assert_false(mask_glob_valid("a.b"));
	assert_false(mask_glob_valid(".b.c"));
	assert_false(mask_glob_valid("a.b.c.d"));
	assert_false(mask_glob_valid("a.\tb.c"));
}

static void test_glob_regex(void **state)
{
	char *re;
	(void)state;
	re = mask_glob_regex("app.customers.card_number");
	assert_string_equal(re, "^app\\.customers\\.card_number$");
	free(re);
	re = mask_glob_regex("*.*.credit_card");
	assert_string_equal(re, "^.*\\..*\\.credit_card$");
	free(re);
	re = mask_glob_regex("s$.t(1).c?");
	assert_string_equal(re, "^s\\$\\.t\\(1\\)\\.c.$");
	free(re);
	re = mask_glob_regex("\xc3\xa9.t.\"x\\y\"");
	assert_string_equal(re, "^\xc3\xa9\\.t\\.\\\"x\\\\y\\\"$");
	free(re);
}

static void test_glob_match(void **state)
{
	(void)state;
	assert_true(mask_glob_match("app.customers.card_number", "app.customers.card_number"));
	assert_false(mask_glob_match("app.customers.card_number", "app.customers.card_numbers"));
	assert_true(mask_glob_match("*.*.credit_card", "public.t.credit_card"));
	assert_false(mask_glob_match("*.*.credit_card", "public.t.credit_card2"));
	assert_true(mask_glob_match("app.*.c?rd", "app.x.card"));
	assert_true(mask_glob_match("app.*.c?rd", "app.x.c\xc3\xa9rd")); /* ? = one UTF-8 char */
	assert_false(mask_glob_match("app.*.c?rd", "app.x.crd"));
	assert_true(mask_glob_match("a*b*c.t.x", "aXbYbZc.t.x"));
	assert_false(mask_glob_match("APP.t.x", "app.t.x")); /* names are case-sensitive */
}

static void test_exempt_and_detectors(void **state)
{
	char err[512];
	char *groups[] = {"ops", "billing"};
	struct pv_identity id = {.provider = "p", .subject = "s", .groups = groups, .n_groups = 2};
	const struct mask_spec *spec;
	struct gov_policy *pol = parse("masks:\n"
	                               "  - name: a\n    detect: [email]\n    method: null\n"
	                               "    except: {groups: [billing]}\n"
	                               "  - name: b\n    detect: [jwt]\n    method: redact\n"
	                               "  - name: c\n    detect: [us_ssn]\n    method: email\n",
	                               err, sizeof(err));
	(void)state;
	assert_non_null(pol);
	assert_true(mask_rule_exempt(&pol->masks[0], &id));
	assert_false(mask_rule_exempt(&pol->masks[0], NULL));
	assert_false(mask_rule_exempt(&pol->masks[1], &id));
	gov_commit(pol);
	assert_true(mask_policy_active());
	assert_int_equal(mask_detectors(&id, &spec), MD_JWT | MD_US_SSN);
	assert_int_equal(spec->method, MM_REDACT);
	assert_int_equal(mask_detectors(NULL, &spec), MD_EMAIL | MD_JWT | MD_US_SSN);
	assert_int_equal(spec->method, MM_NULL);
	gov_commit(NULL);
	assert_false(mask_policy_active());
	assert_int_equal(mask_detectors(NULL, &spec), 0);
	assert_null(spec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full),       cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_key_sizes),  cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_glob_valid), cmocka_unit_test(test_glob_regex),
	    cmocka_unit_test(test_glob_match), cmocka_unit_test(test_exempt_and_detectors),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
