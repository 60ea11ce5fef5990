/*
 * test_hba.c - unit tests for auth_hba_file / auth_ident_file (src/hba.c):
 * a data-driven table of rules x requests -> method, parser errors with
 * file:line, @file includes, and ident maps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hba.h"

static char tmpdir[256];

static void write_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Parse text as if it were <tmpdir>/hba.conf, so @file resolves there. */
static struct hba *parse_hba(const char *text, char *err, size_t errlen)
{
	char origin[512];
	snprintf(origin, sizeof(origin), "%s/hba.conf", tmpdir);
	return hba_parse(text, strlen(text), origin, err, errlen);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pv_test_hba_XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	write_file("users.txt", "frank, gina\n# a comment\nhank\n");
	write_file("dbs.txt", "sales\nhr @more.txt\n");
	write_file("more.txt", "\"finance\"\n");
	write_file("bad.txt", "ok\n\"unterminated\n");
	return 0;
}

static int teardown(void **state)
{
	const char *names[] = {"users.txt", "dbs.txt", "more.txt", "bad.txt"};
	char path[512];
	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	rmdir(tmpdir);
	return 0;
}

/* Line numbers below refer to this text. */
static const char RULES[] = "# pgvigil test rules\n"						    /* 1 */
			    "local   all         pvsuper                       trust\n"		    /* 2 */
			    "local   sameuser    all                           peer map=m1\n"	    /* 3 */
			    "host    db1,db2     alice, bob  10.0.0.0/8         md5\n"		    /* 4 */
			    "host    all         @users.txt  192.168.1.0 255.255.255.0 password\n" /* 5 */
			    "hostssl all         all         0.0.0.0/0          cert map=cm\n"	    /* 6 */
			    "hostnossl all       carol       0.0.0.0/0          reject\n"	    /* 7 */
			    "host    replication all         127.0.0.1/32       trust\n"	    /* 8 */
			    "host    \"all\"       dave        ::1/128            scram-sha-256\n"   /* 9 */
			    "host    all         all         2001:db8::/32      md5\n"		    /* 10 */
			    "host    all         eve         all                scram-sha-256\n"   /* 11 */
			    "\n"								    /* 12 */
			    "host    @dbs.txt    all         127.0.0.0/8        trust # tail\n";   /* 13 */

struct req {
	bool is_unix, is_tls, repl;
	const char *addr; /* IPv4 or IPv6 text; NULL for unix */
	const char *db, *user;
	int line; /* expected matching line, 0 = no rule */
	enum auth_type method;
	const char *map;
};

static const struct req REQS[] = {
	{true, false, false, NULL, "x", "pvsuper", 2, AUTH_TRUST, NULL},
	{true, false, false, NULL, "joe", "joe", 3, AUTH_PEER, "m1"},
	{true, false, false, NULL, "db", "joe", 0, 0, NULL},
	{false, false, false, "10.1.2.3", "db1", "alice", 4, AUTH_MD5, NULL},
	{false, false, false, "10.1.2.3", "db2", "bob", 4, AUTH_MD5, NULL},
	{false, false, false, "10.1.2.3", "db3", "alice", 0, 0, NULL},
	{false, false, false, "11.0.0.1", "db1", "alice", 0, 0, NULL},
	{false, false, false, "192.168.1.7", "any", "frank", 5, AUTH_PLAIN, NULL},
	{false, false, false, "192.168.1.7", "any", "hank", 5, AUTH_PLAIN, NULL},
	{false, false, false, "192.168.2.1", "any", "frank", 0, 0, NULL},
	{false, true, false, "1.2.3.4", "x", "bob", 6, AUTH_CERT, "cm"},
	{false, false, false, "1.2.3.4", "x", "carol", 7, AUTH_REJECT, NULL},
	{false, true, false, "1.2.3.4", "x", "carol", 6, AUTH_CERT, "cm"},
	{false, false, true, "127.0.0.1", "x", "zed", 8, AUTH_TRUST, NULL},
	{false, false, true, "10.1.2.3", "db1", "alice", 0, 0, NULL},
	{false, false, false, "::1", "all", "dave", 9, AUTH_SCRAM_SHA_256, NULL},
	{false, false, false, "::1", "other", "dave", 0, 0, NULL},
	{false, false, false, "2001:db8::5", "x", "y", 10, AUTH_MD5, NULL},
	{false, false, false, "::ffff:10.1.2.3", "db1", "bob", 4, AUTH_MD5, NULL},
	{false, false, false, "8.8.8.8", "x", "eve", 11, AUTH_SCRAM_SHA_256, NULL},
	{false, false, false, "127.0.0.5", "sales", "u", 13, AUTH_TRUST, NULL},
	{false, false, false, "127.0.0.5", "hr", "u", 13, AUTH_TRUST, NULL},
	{false, false, false, "127.0.0.5", "finance", "u", 13, AUTH_TRUST, NULL},
	{false, false, false, "127.0.0.5", "foo", "u", 0, 0, NULL},
	{false, false, false, "127.0.0.5", "x", "pvsuper", 0, 0, NULL},
};

static void make_addr(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (!text)
		return;
	if (strchr(text, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
	}
}

static void test_rule_table(void **state)
{
	char err[512] = "";
	struct hba *h = parse_hba(RULES, err, sizeof(err));
	(void)state;
	if (!h)
		fail_msg("parse failed: %s", err);
	assert_int_equal(h->count, 11);
	for (size_t i = 0; i < sizeof(REQS) / sizeof(REQS[0]); i++) {
		const struct req *q = &REQS[i];
		struct sockaddr_storage ss;
		const struct hba_rule *r;
		make_addr(q->addr, &ss);
		r = hba_match(h, q->is_unix, q->is_tls, (struct sockaddr *)&ss, q->db, q->user,
			      q->repl);
		if (!q->line) {
			if (r)
				fail_msg("request %zu (%s/%s): expected no rule, got line %d", i,
					 q->db, q->user, r->line);
			continue;
		}
		if (!r)
			fail_msg("request %zu (%s/%s): expected line %d, got none", i, q->db,
				 q->user, q->line);
		if (r->line != q->line || r->method != q->method)
			fail_msg("request %zu (%s/%s): expected line %d method %d, got %d/%d", i,
				 q->db, q->user, q->line, q->method, r->line, r->method);
		if (q->map)
			assert_string_equal(r->map, q->map);
		else
			assert_null(r->map);
	}
	hba_free(h);
}

struct bad_case {
	const char *text;
	const char *expect; /* substring of the error, after "<origin>:" */
};

static const struct bad_case BAD[] = {
	{"host all all 10.0.0.0/33 md5\n", "hba.conf:1: invalid CIDR mask"},
	{"\nhost all all db.example.com md5\n", "hba.conf:2: invalid IP address"},
	{"local all all ldap\n", "hba.conf:1: invalid or unsupported authentication method"},
	{"local all all pam\n", "hba.conf:1: invalid or unsupported authentication method"},
	{"hostgssenc all all all md5\n", "hba.conf:1: invalid connection type"},
	{"local all all md5 map=x\n", "hba.conf:1: map is only allowed with peer and cert"},
	{"local all all peer ldapserver=x\n", "hba.conf:1: unsupported option"},
	{"host all all 10.0.0.1 md5\n", "hba.conf:1: invalid IP mask"},
	{"host all all 10.0.0.1 ffff::\n", "hba.conf:1: invalid IP mask"},
	{"local all +admins trust\n", "hba.conf:1: group names"},
	{"local samerole all trust\n", "hba.conf:1: \"samerole\" is not supported"},
	{"host all all samenet trust\n", "hba.conf:1: \"samenet\" is not supported"},
	{"# x\n\nlocal all\n", "hba.conf:3: end-of-line before authentication method"},
	{"host all all 10.0.0.0/8\n", "hba.conf:1: missing authentication method"},
	{"local \"all all trust\n", "hba.conf:1: unterminated quoted string"},
	{"local all,,x all trust\n", "hba.conf:1: empty name in list"},
	{"local all @missing.txt trust\n", "hba.conf:1: could not read @file"},
	{"local all @bad.txt trust\n", "bad.txt:2: unterminated quoted string"},
	{"local all all trust\nlocal all all trust trust\n", "hba.conf:2: invalid option"},
};

static void test_parse_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
		char err[512] = "";
		struct hba *h = parse_hba(BAD[i].text, err, sizeof(err));
		if (h)
			fail_msg("case %zu parsed but should fail: %s", i, BAD[i].text);
		if (!strstr(err, BAD[i].expect))
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, BAD[i].expect);
	}
}

static void test_quoted_keywords_and_empty(void **state)
{
	char err[256];
	struct hba *h = parse_hba("local \"sameuser\" \"all\" trust\n", err, sizeof(err));
	(void)state;
	assert_non_null(h);
	/* quoted words are names, never keywords */
	assert_null(hba_match(h, true, false, NULL, "bob", "bob", false));
	assert_non_null(hba_match(h, true, false, NULL, "sameuser", "all", false));
	hba_free(h);
	h = parse_hba("", err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(h->count, 0);
	assert_null(hba_match(h, true, false, NULL, "a", "b", false));
	hba_free(h);
}

static void test_ident(void **state)
{
	char err[256];
	const char *text = "# map  sys   pg\n"
			   "m1     root  postgres\n"
			   "m1     joe   all\n"
			   "m2     ann   \"all\"\n";
	struct ident_map *m = ident_parse(text, strlen(text), "ident.conf", err, sizeof(err));
	(void)state;
	assert_non_null(m);
	assert_int_equal(m->count, 3);
	assert_true(ident_allows(m, "m1", "root", "postgres"));
	assert_false(ident_allows(m, "m1", "root", "other"));
	assert_true(ident_allows(m, "m1", "joe", "anything"));
	assert_false(ident_allows(m, "m2", "ann", "anything"));
	assert_true(ident_allows(m, "m2", "ann", "all"));
	assert_false(ident_allows(m, "m3", "root", "postgres"));
	assert_true(ident_allows(m, NULL, "same", "same"));
	assert_false(ident_allows(m, NULL, "a", "b"));
	assert_false(ident_allows(NULL, "m1", "root", "postgres"));
	ident_free(m);

	m = ident_parse("m1 root\n", 8, "ident.conf", err, sizeof(err));
	assert_null(m);
	assert_non_null(strstr(err, "ident.conf:1: expected 3 fields"));
	m = ident_parse("\nm1 /^(.*)$ x\n", 14, "ident.conf", err, sizeof(err));
	assert_null(m);
	assert_non_null(strstr(err, "ident.conf:2: regular expressions"));
}

static void test_load_missing_file(void **state)
{
	char err[256];
	(void)state;
	assert_null(hba_load("/nonexistent/pv_hba.conf", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/pv_hba.conf"));
	assert_null(ident_load("/nonexistent/pv_ident.conf", err, sizeof(err)));
}

static void test_long_line_and_nul(void **state)
{
	char err[256];
	size_t n = 10000;
	char *text = malloc(n + 1);
	(void)state;
	assert_non_null(text);
	memset(text, 'a', n);
	text[n] = '\0';
	assert_null(hba_parse(text, n, "h", err, sizeof(err)));
	assert_non_null(strstr(err, "h:1: line too long"));
	free(text);
	assert_null(hba_parse("local all all trust\0x\n", 22, "h", err, sizeof(err)));
	assert_non_null(strstr(err, "h:1: NUL byte"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_table),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_quoted_keywords_and_empty),
		cmocka_unit_test(test_ident),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_long_line_and_nul),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
