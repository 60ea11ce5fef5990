/* Unit tests: the recording section of the governance file (recorder_policy.c). */
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
#include "record_events.h"

static char dir[] = "/tmp/pv_rec_policy_XXXXXX";

static struct gov_policy *parse(const char *text, char *err, size_t errlen)
{
	err[0] = '\0';
	return gov_parse_buffer(text, strlen(text), "g.yaml", dir, err, errlen);
}

static int setup(void **state)
{
	char path[256];
	FILE *f;
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/rec.key", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs("chain-key-1\n", f);
	fclose(f);
	return 0;
}

static void test_full(void **state)
{
	char err[512], want[300];
	struct gov_policy *pol = parse("recording:\n"
	                               "  directory: recs\n"
	                               "  rotate_size: 64MB\n"
	                               "  rotate_interval: 1h\n"
	                               "  retention: {max_age: 30d, max_bytes: 20GB}\n"
	                               "  fsync: always\n"
	                               "  on_backpressure: drop\n"
	                               "  queue_size: 100\n"
	                               "  hmac_key_file: rec.key\n"
	                               "  statements: false\n"
	                               "  results: rows\n"
	                               "  rows_per_result: 7\n"
	                               "  max_value_bytes: 64\n",
	                               err, sizeof(err));
	const struct rec_policy *rp;
	(void)state;
	assert_non_null(pol);
	rp = pol->recording;
	assert_non_null(rp);
	snprintf(want, sizeof(want), "%s/recs", dir);
	assert_string_equal(rp->cfg.directory, want);
	assert_int_equal(rp->cfg.rotate_size, 64ull << 20);
	assert_int_equal(rp->cfg.rotate_interval, 3600ll * 1000000);
	assert_int_equal(rp->cfg.max_age, 30ll * 86400 * 1000000);
	assert_int_equal(rp->cfg.max_bytes, 20ull << 30);
	assert_int_equal(rp->cfg.fsync, REC_FSYNC_ALWAYS);
	assert_int_equal(rp->cfg.on_backpressure, REC_BP_DROP);
	assert_int_equal(rp->cfg.queue_size, 100);
	assert_string_equal(rp->cfg.hmac_key, "chain-key-1");
	assert_false(rp->statements);
	assert_int_equal(rp->results, REC_RESULTS_ROWS);
	assert_int_equal(rp->max_result_rows, 7);
	assert_int_equal(rp->max_value_bytes, 64);
	gov_free(pol);
}

static void test_defaults_and_restart(void **state)
{
	char err[512];
	struct gov_policy *a = parse("recording:\n  directory: /tmp/x\n", err, sizeof(err));
	struct gov_policy *b = parse("recording:\n  directory: /tmp/x\n  results: none\n", err,
	                             sizeof(err));
	struct gov_policy *c = parse("recording:\n  directory: /tmp/y\n", err, sizeof(err));
	struct gov_policy *none = parse("default: allow\n", err, sizeof(err));
	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_non_null(none);
	assert_null(none->recording);
	assert_string_equal(a->recording->cfg.directory, "/tmp/x");
	assert_int_equal(a->recording->cfg.fsync, REC_FSYNC_INTERVAL);
	assert_int_equal(a->recording->cfg.on_backpressure, REC_BP_BLOCK);
	assert_null(a->recording->cfg.hmac_key);
	assert_true(a->recording->statements);
	assert_int_equal(a->recording->results, REC_RESULTS_SUMMARY);
	assert_int_equal(a->recording->max_result_rows, 100);
	assert_int_equal(a->recording->max_value_bytes, 1024);
	/* what goes to the files needs a new recorder; what is recorded does not */
	assert_false(rec_policy_needs_restart(a->recording, b->recording));
	assert_true(rec_policy_needs_restart(a->recording, c->recording));
	gov_free(a);
	gov_free(b);
	gov_free(c);
	gov_free(none);
}

static void expect_error(const char *text, const char *msg)
{
	char err[512];
	struct gov_policy *pol = parse(text, err, sizeof(err));
	if (pol || !strstr(err, msg))
		fail_msg("for %s: got \"%s\", want \"%s\"", text, err, msg);
	gov_free(pol);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("recording:\n  fsync: never\n", "g.yaml:2: recording needs a directory");
	expect_error("recording:\n  directory: d\n  fsync: sometimes\n",
	             "g.yaml:3: fsync must be always, interval or never");
	expect_error("recording:\n  directory: d\n  on_backpressure: wait\n",
	             "g.yaml:3: on_backpressure must be block or drop");
	expect_error("recording:\n  directory: d\n  rotate_size: 64XB\n",
	             "g.yaml:3: rotate_size: unknown unit");
	expect_error("recording:\n  directory: d\n  max_bytes: -1\n", "g.yaml:3: max_bytes must be");
	expect_error("recording:\n  directory: d\n  max_age: 3y\n", "g.yaml:3: max_age: unknown unit");
	expect_error("recording:\n  directory: d\n  results: all\n",
	             "g.yaml:3: results must be none, summary or rows");
	expect_error("recording:\n  directory: d\n  queue_size: 0\n",
	             "g.yaml:3: queue_size must be at least 1");
	expect_error("recording:\n  directory: d\n  max_value_bytes: 4\n",
	             "g.yaml:3: max_value_bytes must be >= 16");
	expect_error("recording:\n  directory: d\n  hmac_key_file: missing.key\n",
	             "g.yaml:3: hmac_key_file");
	expect_error("recording:\n  directory: d\n  colour: red\n", "g.yaml:3:");
	expect_error("recording:\n  directory: d\n  statements: maybe\n", "g.yaml:3:");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_defaults_and_restart),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
