/*
 * test_rules.c - unit tests for the governance rules (src/rules.c) and their
 * loader (section rules/default/unparsable of src/governance.c): table and
 * function patterns, who-conditions, first-match order, default and
 * unparsable. Classifications are built by hand, so these tests do not
 * depend on the classifier.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "governance.h"
#include "inspect.h"
#include "oidc.h"
#include "rules.h"

/*
 * Weak stand-ins so the test links before src/inspect.c exists; when the
 * real classifier is in the library its definitions win. The class words
 * used here exist in both.
 */
__attribute__((weak)) uint32_t inspect_class_from_name(const char *name)
{
	static const struct {
		const char *n;
		uint32_t bits;
	} t[] = {{"select", SC_SELECT}, {"delete", SC_DELETE}, {"update", SC_UPDATE},
	         {"ddl", SC_DDL},       {"drop", SC_DROP},     {"truncate", SC_TRUNCATE}};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcasecmp(t[i].n, name) == 0)
			return t[i].bits;
	return 0;
}
__attribute__((weak)) void inspect_release(struct inspect_result *r)
{
	(void)r;
}
__attribute__((weak)) struct inspect_result *inspect_classify(const char *sql, size_t len)
{
	(void)sql;
	(void)len;
	return NULL;
}

static const char policy_yaml[] =
    "rules:\n"
    "  - name: no-ddl-for-agents\n"
    "    when: {groups: [ai-agents], statements: [ddl]}\n"
    "    action: deny\n"
    "    message: schema changes go through migrations\n"
    "  - name: unbounded-writes\n"
    "    when: {statements: [delete, update], without_where: true}\n"
    "    action: approve\n"
    "  - name: files\n"
    "    when: {functions: [pg_read_file, \"DBLINK*\"]}\n"
    "    action: deny\n"
    "  - name: audit\n"
    "    when: {tables: [audit.*], statements: [delete, drop, truncate]}\n"
    "    action: deny\n"
    "  - name: public-t\n"
    "    when: {tables: [public.t], statements: [delete]}\n"
    "    action: deny\n"
    "  - name: ci-reporting\n"
    "    when: {subjects: [\"ci-*\"], application_names: [\"report*\"], databases: [app]}\n"
    "    action: allow\n"
    "  - name: ci-rest\n"
    "    when: {subjects: [\"ci-*\"], db_users: [ci_rw]}\n"
    "    action: deny\n"
    "default: allow\n"
    "unparsable: deny\n";

static struct gov_policy *load(const char *text, char *err, size_t errlen)
{
	return gov_parse_buffer(text, strlen(text), "gov.yaml", "/tmp", err, errlen);
}

static struct gov_policy *pol;

static int setup(void **state)
{
	char err[512];
	(void)state;
	pol = load(policy_yaml, err, sizeof(err));
	if (!pol)
		fprintf(stderr, "%s\n", err);
	return pol ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	gov_free(pol);
	return 0;
}

static void test_load(void **state)
{
	(void)state;
	assert_int_equal(pol->n_rules, 7);
	assert_true(pol->rules_enabled);
	assert_int_equal(pol->rules[1].action, GOV_APPROVE);
	assert_true(pol->rules[1].without_where);
	assert_int_equal(pol->rules[0].classes, SC_DDL);
	assert_string_equal(pol->rules[2].functions.v[1], "dblink*"); /* lower-cased */
	assert_int_equal(pol->default_action, GOV_ALLOW);
	assert_int_equal(pol->unparsable, GOV_DENY);
}

static void expect_error(const char *yaml, const char *needle)
{
	char err[512] = "";
	struct gov_policy *p = load(yaml, err, sizeof(err));
	assert_null(p);
	if (!strstr(err, needle))
		fail_msg("error \"%s\" lacks \"%s\"", err, needle);
}

static void test_load_errors(void **state)
{
	(void)state;
	expect_error("rules:\n  - name: a\n    action: nope\n", "gov.yaml:3: action must be");
	expect_error("rules:\n  - name: a\n    action: deny\n    when: {statements: [bogus]}\n",
	             "gov.yaml:4: unknown statement class \"bogus\"");
	expect_error("rules:\n  - name: a\n    action: deny\n    when: {colour: red}\n",
	             "gov.yaml:4: unknown key \"colour\" in when");
	expect_error("rules:\n  - name: a\n    actoin: deny\n", "gov.yaml:3: unknown key");
	expect_error("rules:\n  - action: deny\n", "gov.yaml:2: rule needs a name");
	expect_error("rules:\n  - name: a\n", "rule \"a\" needs an action");
	expect_error("rules:\n  - {name: a, action: deny}\n  - {name: a, action: allow}\n",
	             "gov.yaml:3: rule name \"a\" is used twice");
	expect_error("default: approve\n", "gov.yaml:1: default must be allow or deny");
	expect_error("unparsable: maybe\n", "unparsable must be allow or deny");
	expect_error("rules:\n  - {name: a, action: deny, when: {without_where: 3}}\n",
	             "without_where must be true or false");
}

static void test_no_rules(void **state)
{
	char err[256];
	struct gov_policy *p = load("identity:\n  grants: []\n", err, sizeof(err));
	(void)state;
	assert_non_null(p);
	assert_false(p->rules_enabled); /* the hook stays uninstalled */
	gov_free(p);
	p = load("default: deny\n", err, sizeof(err));
	assert_non_null(p);
	assert_true(p->rules_enabled);
	assert_int_equal(p->n_rules, 0);
	gov_free(p);
}

struct row {
	const char *pattern, *name;
	bool match;
};

static void test_name_patterns(void **state)
{
	static const struct row rows[] = {
	    {"audit.*", "audit.x", true},	{"audit.*", "public.x", false},
	    {"audit.*", "x", false},		{"t", "t", true},
	    {"t", "anyschema.t", true},		{"t", "u", false},
	    {"public.t", "t", true},		{"public.t", "public.t", true},
	    {"public.t", "other.t", false},	{"public.t", "tt", false},
	    {"a*.log", "app.log", true},		{"a*.log", "log", true},
	    {"audit.*", "db.audit.x", true},	{"dblink*", "dblink_exec", true},
	    {"dblink*", "public.dblink", true}, {"pg_read_file", "pg_catalog.pg_read_file", true},
	    {"pg_catalog.pg_read_file", "pg_read_file", true},
	    {"*", "anything.at_all", true},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (rules_name_matches(rows[i].pattern, rows[i].name) != rows[i].match)
			fail_msg("%s vs %s: expected %d", rows[i].pattern, rows[i].name,
			         rows[i].match);
}

static struct inspect_result res(uint32_t classes, char **tables, int nt, char **fns, int nf,
                                 bool without_where)
{
	return (struct inspect_result){.classes = classes,
	                               .tables = tables,
	                               .n_tables = nt,
	                               .functions = fns,
	                               .n_functions = nf,
	                               .without_where = without_where,
	                               .n_statements = 1};
}

static const char *decide_name(const struct inspect_result *r, const struct rule_ctx *ctx,
                               enum gov_action *action)
{
	struct rule_decision d = rules_decide(pol, r, ctx);
	*action = d.action;
	return d.name;
}

#define EXPECT(r, ctx, name, act)                                                                  \
	do {                                                                                       \
		enum gov_action a_;                                                                \
		assert_string_equal(decide_name((r), (ctx), &a_), (name));                        \
		assert_int_equal(a_, (act));                                                       \
	} while (0)

static void test_decide(void **state)
{
	char *agent_groups[] = {"staff", "ai-agents"};
	struct pv_identity agent = {.provider = "corp", .subject = "bot-1", .groups = agent_groups,
	                            .n_groups = 2};
	struct pv_identity ci = {.provider = "corp", .subject = "ci-nightly"};
	struct rule_ctx anon = {.database = "app", .db_user = "u"};
	struct rule_ctx as_agent = {.database = "app", .db_user = "u", .identity = &agent};
	struct rule_ctx as_ci = {.database = "app", .db_user = "ci_rw", .identity = &ci};
	struct rule_ctx as_ci_report = as_ci;
	char *audit_t[] = {"audit.log"}, *t[] = {"t"}, *other_t[] = {"other.t"};
	char *rf[] = {"pg_catalog.pg_read_file"}, *dbl[] = {"dblink_exec"}, *now[] = {"now"};
	struct inspect_result ddl = res(SC_DDL | SC_DROP, NULL, 0, NULL, 0, false);
	struct inspect_result del_all = res(SC_DELETE, NULL, 0, NULL, 0, true);
	struct inspect_result del_audit = res(SC_DELETE, audit_t, 1, NULL, 0, false);
	struct inspect_result del_t = res(SC_DELETE, t, 1, NULL, 0, false);
	struct inspect_result del_other_t = res(SC_DELETE, other_t, 1, NULL, 0, false);
	struct inspect_result sel_rf = res(SC_SELECT, NULL, 0, rf, 1, false);
	struct inspect_result sel_dbl = res(SC_SELECT, NULL, 0, dbl, 1, false);
	struct inspect_result sel_now = res(SC_SELECT, NULL, 0, now, 1, false);
	struct inspect_result bad = {.parse_error = true};
	uint64_t before;
	(void)state;

	as_ci_report.application_name = "reporting-job";
	EXPECT(&ddl, &as_agent, "no-ddl-for-agents", GOV_DENY);
	EXPECT(&ddl, &anon, "default", GOV_ALLOW); /* groups need an identity */
	EXPECT(&del_all, &anon, "unbounded-writes", GOV_APPROVE);
	/* first match: the group rule wins over the later table rule */
	EXPECT(&del_audit, &anon, "audit", GOV_DENY);
	EXPECT(&del_t, &anon, "public-t", GOV_DENY); /* unqualified t may be public.t */
	EXPECT(&del_other_t, &anon, "default", GOV_ALLOW);
	EXPECT(&sel_rf, &anon, "files", GOV_DENY);
	EXPECT(&sel_dbl, &anon, "files", GOV_DENY);
	EXPECT(&sel_now, &anon, "default", GOV_ALLOW);
	/* subject globs and application_name globs, first match in order */
	EXPECT(&sel_now, &as_ci_report, "ci-reporting", GOV_ALLOW);
	EXPECT(&sel_now, &as_ci, "ci-rest", GOV_DENY);
	before = pol->hits[pol->n_rules + 1];
	EXPECT(&bad, &as_agent, "unparsable", GOV_DENY);
	EXPECT(NULL, &anon, "unparsable", GOV_DENY); /* classifier out of memory: fail closed */
	assert_int_equal(pol->hits[pol->n_rules + 1], before + 2);
	assert_true(pol->hits[0] >= 1);
}

static void test_default_deny(void **state)
{
	char err[256];
	struct gov_policy *p = load("rules:\n  - {name: reads, action: allow, when: "
	                            "{statements: [select]}}\ndefault: deny\nunparsable: allow\n",
	                            err, sizeof(err));
	struct rule_ctx ctx = {0};
	struct inspect_result sel = res(SC_SELECT, NULL, 0, NULL, 0, false);
	struct inspect_result upd = res(SC_UPDATE, NULL, 0, NULL, 0, false);
	struct inspect_result bad = {.parse_error = true};
	(void)state;
	assert_non_null(p);
	assert_int_equal(rules_decide(p, &sel, &ctx).action, GOV_ALLOW);
	assert_int_equal(rules_decide(p, &upd, &ctx).action, GOV_DENY);
	assert_int_equal(rules_decide(p, &upd, &ctx).rule, RULE_DEFAULT);
	assert_int_equal(rules_decide(p, &bad, &ctx).action, GOV_ALLOW);
	assert_int_equal(p->hits[0], 1);
	assert_int_equal(p->hits[1], 2);
	gov_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_load),	 cmocka_unit_test(test_load_errors),
	    cmocka_unit_test(test_no_rules),	 cmocka_unit_test(test_name_patterns),
	    cmocka_unit_test(test_decide),	 cmocka_unit_test(test_default_deny),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
