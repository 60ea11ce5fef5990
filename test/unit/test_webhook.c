/*
 * test_webhook.c - unit tests for the pure parts of src/webhook.c: the JSON
 * body (fields, nulls, UTF-8 cleaning, truncation), the HMAC signature
 * (RFC 4231 test case 2) and the URL policy.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "governance.h"
#include "webhook.h"

static json_t *parse(const char *body)
{
	json_error_t e;
	json_t *j = json_loads(body, 0, &e);
	assert_non_null(j);
	return j;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void test_requested_body(void **state)
{
	char *groups[] = {"dba", "ai-agents"};
	const char sql[] = "TRUNCATE t";
	struct webhook_event ev = {
	    .event = "approval_requested",
	    .id = 42,
	    .decision = "pending",
	    .subject = "agent-1",
	    .provider = "corp",
	    .groups = groups,
	    .n_groups = 2,
	    .database = "db",
	    .db_user = "ro",
	    .application_name = "psql",
	    .statement = sql,
	    .statement_len = sizeof(sql) - 1,
	    .fingerprint = 0xabcULL,
	    .rule = "hold",
	    .expires_at = 1800000000,
	};
	char *body = webhook_body(&ev);
	json_t *j;

	(void)state;
	assert_non_null(body);
	j = parse(body);
	assert_string_equal(str(j, "event"), "approval_requested");
	assert_int_equal(json_integer_value(json_object_get(j, "id")), 42);
	assert_string_equal(str(j, "decision"), "pending");
	assert_true(json_is_null(json_object_get(j, "approver")));
	assert_string_equal(str(j, "subject"), "agent-1");
	assert_int_equal(json_array_size(json_object_get(j, "groups")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(j, "groups"), 1)),
	                    "ai-agents");
	assert_string_equal(str(j, "statement"), "TRUNCATE t");
	assert_string_equal(str(j, "fingerprint"), "0000000000000abc");
	assert_string_equal(str(j, "expires_at"), "2027-01-15T08:00:00Z");
	assert_null(json_object_get(j, "decided_at"));
	json_decref(j);
	free(body);
}

static void test_decided_body_cleans_and_truncates(void **state)
{
	char *long_sql = malloc(WEBHOOK_STMT_MAX + 100);
	struct webhook_event ev = {
	    .event = "approval_decided",
	    .id = 1,
	    .decision = "denied",
	    .approver = "alice",
	    .approver_provider = "corp",
	    .database = "bad\xff\xfe_db",
	    .statement = long_sql,
	    .statement_len = WEBHOOK_STMT_MAX + 100,
	    .decided_at = 1800000000,
	};
	char *body;
	json_t *j;

	(void)state;
	assert_non_null(long_sql);
	memset(long_sql, 'x', WEBHOOK_STMT_MAX + 100);
	/* a 2-byte character straddling the cut is dropped, not split */
	long_sql[WEBHOOK_STMT_MAX - 1] = '\xc3';
	long_sql[WEBHOOK_STMT_MAX] = '\xa9';
	body = webhook_body(&ev);
	assert_non_null(body);
	j = parse(body);
	assert_string_equal(str(j, "database"), "bad??_db");
	assert_string_equal(str(j, "approver"), "alice");
	assert_int_equal(strlen(str(j, "statement")), WEBHOOK_STMT_MAX);
	assert_true(json_is_null(json_object_get(j, "subject")));
	assert_true(json_is_null(json_object_get(j, "fingerprint")));
	assert_int_equal(json_array_size(json_object_get(j, "groups")), 0);
	assert_string_equal(str(j, "decided_at"), "2027-01-15T08:00:00Z");
	assert_null(json_object_get(j, "expires_at"));
	json_decref(j);
	free(body);
	free(long_sql);
}

/* RFC 4231, test case 2 */
static void test_signature(void **state)
{
	char sig[WEBHOOK_SIG_LEN];
	const char *msg = "what do ya want for nothing?";

	(void)state;
	assert_true(webhook_signature((const unsigned char *)"Jefe", 4, msg, strlen(msg), sig));
	assert_string_equal(
	    sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_url_policy(void **state)
{
	(void)state;
	assert_null(webhook_url_refused("https://hooks.example.com/x", false));
	assert_non_null(webhook_url_refused("http://hooks.example.com/x", false));
	assert_non_null(webhook_url_refused("http://127.0.0.1:8080/x", false));
	assert_null(webhook_url_refused("http://127.0.0.1:8080/x", true));
	assert_non_null(webhook_url_refused("http://hooks.example.com/x", true));
	assert_non_null(webhook_url_refused("http://127.0.0.1@evil.example/", true));
	assert_non_null(webhook_url_refused("https://a.example/ x", false));
	assert_non_null(webhook_url_refused("ftp://a.example/", false));
}

static struct gov_policy *load(const char *text, char *err, size_t errlen)
{
	return gov_parse_buffer(text, strlen(text), "g.yaml", "/nonexistent", err, errlen);
}

/* The approval keys in the governance loader (src/governance.c). */
static void test_policy_keys(void **state)
{
	char err[512] = "";
	struct gov_policy *pol;

	(void)state;
	pol = load("approval:\n  approvers: {groups: [dba, sre]}\n"
	           "  webhook: https://hooks.example.com/x\n",
	           err, sizeof(err));
	assert_non_null(pol);
	assert_int_equal(pol->approver_groups.n, 2);
	assert_string_equal(pol->webhook.url, "https://hooks.example.com/x");
	assert_int_equal(pol->webhook.timeout, WEBHOOK_DEFAULT_TIMEOUT);
	assert_null(pol->webhook.secret);
	gov_free(pol);

	pol = load("approval:\n  webhook: {url: \"http://127.0.0.1:9/h\", timeout: 2s,\n"
	           "    allow_insecure_loopback: true}\n",
	           err, sizeof(err));
	assert_non_null(pol);
	assert_int_equal(pol->webhook.timeout, 2);
	gov_free(pol);

	assert_null(load("approval:\n  webhook: http://hooks.example.com/x\n", err, sizeof(err)));
	assert_non_null(strstr(err, "g.yaml:2: webhook url must be https://"));
	assert_null(load("approval:\n  webhook: {timeout: 5s}\n", err, sizeof(err)));
	assert_non_null(strstr(err, "webhook needs a url"));
	assert_null(load("approval:\n  webhook: {url: https://a.example/, timeout: 61s}\n", err,
	                 sizeof(err)));
	assert_non_null(strstr(err, "webhook timeout is too large"));
	assert_null(load("approval:\n  webhook: {url: https://a.example/, secret_file: nope}\n",
	                 err, sizeof(err)));
	assert_non_null(strstr(err, "webhook secret_file: No such file"));
	assert_null(load("approval:\n  webhook: {url: https://a.example/, colour: red}\n", err,
	                 sizeof(err)));
	assert_non_null(strstr(err, "unknown key \"colour\" in webhook"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_requested_body),
	    cmocka_unit_test(test_decided_body_cleans_and_truncates),
	    cmocka_unit_test(test_signature),
	    cmocka_unit_test(test_url_policy),
	    cmocka_unit_test(test_policy_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
