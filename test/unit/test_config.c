/*
 * test_config.c - unit tests for the pgbouncer.ini loader (src/config.c).
 *
 * Most cases parse an in-memory file with config_parse_buffer(); %include and
 * config_load() cases write small files under /tmp.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char err[512];

static struct pv_config *parse(const char *text)
{
	err[0] = '\0';
	return config_parse_buffer(text, strlen(text), "t.ini", err, sizeof(err));
}

/* Parse text that must fail; assert the error contains `want`. */
static void expect_error(const char *text, const char *want)
{
	struct pv_config *cf = parse(text);

	if (cf)
		fail_msg("parsed but expected error '%s':\n%s", want, text);
	if (!strstr(err, want))
		fail_msg("error '%s' does not contain '%s'", err, want);
}

static bool row_by_key(const struct pv_config *cf, const char *key, struct config_row *row)
{
	for (size_t i = 0; config_row_at(cf, i, row); i++)
		if (strcmp(row->key, key) == 0)
			return true;
	return false;
}

static void assert_row(const struct pv_config *cf, const char *key, const char *value,
		       const char *def, bool changeable)
{
	struct config_row row;

	if (!row_by_key(cf, key, &row))
		fail_msg("no SHOW CONFIG row for %s", key);
	assert_string_equal(row.value, value);
	if (def)
		assert_string_equal(row.default_value, def);
	assert_int_equal(row.changeable, changeable);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
	struct pv_config *cf = parse("[pgbouncer]\n");

	(void)state;
	assert_non_null(cf);
	assert_string_equal(cf->conffile, "t.ini");
	assert_string_equal(cf->admin_users, "");
	assert_null(cf->auth_file);
	assert_null(cf->auth_user);
	assert_null(cf->auth_dbname);
	assert_null(cf->auth_ident_file);
	assert_null(cf->user);
	assert_int_equal(cf->auth_type, AUTH_MD5);
	assert_true(strncmp(cf->auth_query, "SELECT rolname, CASE WHEN rolvaliduntil", 39) == 0);
	assert_int_equal(cf->autodb_idle_timeout, 3600 * USEC_PER_SEC);
	assert_int_equal(cf->client_login_timeout, 60 * USEC_PER_SEC);
	assert_string_equal(cf->client_tls_ciphers, "default");
	assert_string_equal(cf->client_tls_protocols, "secure");
	assert_int_equal(cf->client_tls_sslmode, SSLMODE_DISABLE);
	assert_int_equal(cf->server_tls_sslmode, SSLMODE_PREFER);
	assert_int_equal(cf->default_pool_size, 20);
	assert_string_equal(cf->governance_file, "");
	assert_string_equal(cf->job_name, "pgbouncer");
	assert_string_equal(cf->listen_addr, "");
	assert_int_equal(cf->listen_backlog, 128);
	assert_int_equal(cf->listen_port, 6432);
	assert_int_equal(cf->log_connections, 1);
	assert_int_equal(cf->log_stats, 1);
	assert_int_equal(cf->max_client_conn, 100);
	assert_int_equal(cf->max_packet_size, 2147483647);
	assert_int_equal(cf->max_prepared_statements, 200);
	assert_int_equal(cf->pkt_buf, 4096);
	assert_int_equal(cf->pool_mode, POOL_SESSION);
	assert_int_equal(cf->query_wait_notify, 5);
	assert_int_equal(cf->query_wait_timeout, 120 * USEC_PER_SEC);
	assert_int_equal(cf->reserve_pool_timeout, 5 * USEC_PER_SEC);
	assert_int_equal(cf->sbuf_loopcnt, 5);
	assert_int_equal(cf->scram_iterations, 4096);
	assert_string_equal(cf->server_check_query, "");
	assert_int_equal(cf->server_check_query_disabled, 0);
	assert_int_equal(cf->server_idle_timeout, 600 * USEC_PER_SEC);
	assert_int_equal(cf->server_lifetime, 3600 * USEC_PER_SEC);
	assert_string_equal(cf->server_reset_query, "DISCARD ALL");
	assert_int_equal(cf->stats_period, 60);
	assert_string_equal(cf->syslog_facility, "daemon");
	assert_string_equal(cf->syslog_ident, "pgbouncer");
#ifdef __linux__
	assert_int_equal(cf->tcp_defer_accept, 1);
#endif
	assert_int_equal(cf->tcp_keepalive, 1);
	assert_string_equal(cf->track_extra_parameters, "IntervalStyle");
	assert_string_equal(cf->unix_socket_dir, "/tmp");
	assert_int_equal(cf->unix_socket_mode, 0777);
	assert_int_equal(cf->verbose, 0);
	assert_true(list_empty(&cf->databases));
	assert_true(list_empty(&cf->users));
	assert_true(list_empty(&cf->peers));
	config_free(cf);
}

static void test_value_types(void **state)
{
	struct pv_config *cf = parse("; comment\n"
				     "# another\n"
				     "  [pgbouncer]  \r\n"
				     "listen_port = 0x1939\n"
				     "max_client_conn=017\n"
				     "unix_socket_mode = 0600\n"
				     "log_connections = off\n"
				     "log_disconnections = No\n"
				     "server_round_robin = TRUE\n"
				     "syslog = 1\n"
				     "query_timeout = 0.5\n"
				     "client_idle_timeout = 2\n"
				     "max_packet_size = 8589934592\n"
				     "auth_type = SCRAM-SHA-256\n"
				     "pool_mode = Transaction\n"
				     "client_tls_sslmode = verify-FULL\n"
				     "listen_addr = 127.0.0.1, ::1 ; not a comment   \t\r\n"
				     "admin_users =\n"
				     "auth_file = /etc/userlist.txt\n"
				     "'auth_user' = pgv\n"
				     "tcp_defer_accept = 45\n"
				     "verbose = -0\n");

	(void)state;
	assert_non_null(cf);
	assert_int_equal(cf->listen_port, 6457);
	assert_int_equal(cf->max_client_conn, 15);
	assert_int_equal(cf->unix_socket_mode, 0600);
	assert_int_equal(cf->log_connections, 0);
	assert_int_equal(cf->log_disconnections, 0);
	assert_int_equal(cf->server_round_robin, 1);
	assert_int_equal(cf->syslog, 1);
	assert_int_equal(cf->query_timeout, 500000);
	assert_int_equal(cf->client_idle_timeout, 2 * USEC_PER_SEC);
	assert_int_equal(cf->max_packet_size, 8589934592LL);
	assert_int_equal(cf->auth_type, AUTH_SCRAM_SHA_256);
	assert_int_equal(cf->pool_mode, POOL_TRANSACTION);
	assert_int_equal(cf->client_tls_sslmode, SSLMODE_VERIFY_FULL);
	assert_string_equal(cf->listen_addr, "127.0.0.1, ::1 ; not a comment");
	assert_string_equal(cf->admin_users, "");
	assert_string_equal(cf->auth_file, "/etc/userlist.txt");
	assert_string_equal(cf->auth_user, "pgv");
	assert_int_equal(cf->tcp_defer_accept, 45);
	config_free(cf);
}

static void test_auth_types(void **state)
{
	static const struct {
		const char *text;
		enum auth_type t;
	} ok[] = {{"any", AUTH_ANY},  {"trust", AUTH_TRUST}, {"plain", AUTH_PLAIN},
		  {"md5", AUTH_MD5},  {"cert", AUTH_CERT},   {"hba", AUTH_HBA},
		  {"oidc", AUTH_OIDC}, {"scram-sha-256", AUTH_SCRAM_SHA_256}};
	char buf[128];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct pv_config *cf;

		snprintf(buf, sizeof(buf), "[pgbouncer]\nauth_type = %s\n", ok[i].text);
		cf = parse(buf);
		assert_non_null(cf);
		assert_int_equal(cf->auth_type, ok[i].t);
		assert_string_equal(auth_type_name(cf->auth_type), ok[i].text);
		config_free(cf);
	}
	expect_error("[pgbouncer]\nauth_type = ldap\n",
		     "t.ini:2: auth_type ldap is not supported by this build");
	expect_error("[pgbouncer]\nauth_type = pam\n", "auth_type pam is not supported");
	expect_error("[pgbouncer]\nauth_type = peer\n", "t.ini:2: invalid value 'peer'");
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_error("[pgbouncer]\n\nlisten_port = 64x\n", "t.ini:3: invalid value '64x' for listen_port");
	expect_error("[pgbouncer]\nlisten_port =\n", "t.ini:2: invalid value");
	expect_error("[pgbouncer]\nlisten_port = 99999999999\n", "t.ini:2:");
	expect_error("[pgbouncer]\nlisten_port = 0x\n", "t.ini:2:");
	expect_error("[pgbouncer]\nlog_stats = 2\n", "t.ini:2: invalid value '2' for log_stats");
	expect_error("[pgbouncer]\nlog_stats = maybe\n", "t.ini:2:");
	expect_error("[pgbouncer]\nquery_timeout = 1s\n", "t.ini:2:");
	expect_error("[pgbouncer]\nquery_timeout = inf\n", "t.ini:2:");
	expect_error("[pgbouncer]\nquery_timeout = nan\n", "t.ini:2:");
	expect_error("[pgbouncer]\nquery_timeout = 1e300\n", "t.ini:2:");
	expect_error("[pgbouncer]\npool_mode = sessions\n", "t.ini:2: invalid value 'sessions'");
	expect_error("[pgbouncer]\nserver_tls_sslmode = verify\n", "t.ini:2:");
	expect_error("[pgbouncer]\nmax_packet_size = 99999999999999999999\n", "t.ini:2:");
	expect_error("[pgbouncer]\nunix_socket_mode = 0789\n", "t.ini:2:");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	expect_error("[pgbouncer]\nno_such_key = 1\n",
		     "t.ini:2: unknown parameter 'no_such_key' in section [pgbouncer]");
	expect_error("[pgbouncer]\nListen_Port = 1\n", "t.ini:2: unknown parameter");
	expect_error("[pgbouncer]\n[PgBouncer]\n", "t.ini:2: unknown section 'PgBouncer'");
	expect_error("[pgbouncer]\n[bogus]\n", "t.ini:2: unknown section 'bogus'");
	expect_error("[pgbouncer]\n[databases\n", "t.ini:2: syntax error in section header");
	expect_error("[pgbouncer] x\n", "t.ini:1: syntax error in section header");
	expect_error("listen_port = 1\n[pgbouncer]\n", "t.ini:1: key 'listen_port' outside");
	expect_error("[pgbouncer]\nlisten_port 1\n", "t.ini:2: syntax error: expected '='");
	expect_error("[pgbouncer]\n= 1\n", "t.ini:2: syntax error");
	expect_error("[pgbouncer]\n'listen_port = 1\n", "t.ini:2: unterminated quoted key");
	expect_error("[pgbouncer]\n%define x\n", "t.ini:2: unknown directive");
	expect_error("[pgbouncer]\n'' = 1\n", "t.ini:2: empty key");
	expect_error("[databases]\n\"\" = host=x\n", "t.ini:2: empty key");
	expect_error("[pgbouncer]\nlisten_port = 1 # comment\n", "t.ini:2:");
}

static void test_nul_byte(void **state)
{
	static const char text[] = "[pgbouncer]\nlisten_addr = a\0b\n";
	struct pv_config *cf;

	(void)state;
	cf = config_parse_buffer(text, sizeof(text) - 1, "nul.ini", err, sizeof(err));
	assert_null(cf);
	assert_non_null(strstr(err, "nul.ini:2: NUL byte"));
	/* No trailing newline and a NULL origin are both fine. */
	cf = config_parse_buffer("[pgbouncer]\nverbose=2", 21, NULL, err, sizeof(err));
	assert_non_null(cf);
	assert_int_equal(cf->verbose, 2);
	assert_string_equal(cf->conffile, "<buffer>");
	config_free(cf);
}

static void test_main_section_missing(void **state)
{
	(void)state;
	expect_error("", "t.ini: main section missing from config file");
	expect_error("[databases]\nfoo = host=x\n", "main section missing from config file");
	/* NULL err buffer must be tolerated. */
	assert_null(config_parse_buffer("", 0, "x", NULL, 0));
}

static void test_repeated_main_header(void **state)
{
	struct pv_config *cf = parse("[pgbouncer]\n"
				     "listen_port = 7000\n"
				     "pool_mode = statement\n"
				     "[databases]\n"
				     "a = host=h\n"
				     "[pgbouncer]\n"
				     "max_client_conn = 5\n");

	(void)state;
	assert_non_null(cf);
	/* The second header reset [pgbouncer] keys, but not [databases]. */
	assert_int_equal(cf->listen_port, 6432);
	assert_int_equal(cf->pool_mode, POOL_SESSION);
	assert_int_equal(cf->max_client_conn, 5);
	assert_non_null(config_find_db(cf, "a"));
	config_free(cf);
}

static void test_include(void **state)
{
	struct pv_config *cf;
	char text[256];

	(void)state;
	write_file("/tmp/pv_test_inc_b.ini", "listen_port = 7001\n[databases]\nincdb = host=x\n");
	write_file("/tmp/pv_test_inc_a.ini", "[pgbouncer]\n%include /tmp/pv_test_inc_b.ini\n"
					     "[users]\nbob = pool_size=3\n");
	cf = parse("%include /tmp/pv_test_inc_a.ini\n");
	assert_non_null(cf);
	assert_int_equal(cf->listen_port, 7001);
	assert_non_null(config_find_db(cf, "incdb"));
	assert_non_null(config_find_user(cf, "bob"));
	config_free(cf);

	/* The included file's section carries on after the %include line. */
	cf = parse("[pgbouncer]\n%include /tmp/pv_test_inc_b.ini\nother = host=y\n");
	assert_non_null(cf);
	assert_non_null(config_find_db(cf, "other"));
	config_free(cf);

	/* Errors name the included file and its line. */
	write_file("/tmp/pv_test_inc_bad.ini", "\n\nlisten_port = x\n");
	expect_error("[pgbouncer]\n%include /tmp/pv_test_inc_bad.ini\n",
		     "/tmp/pv_test_inc_bad.ini:3: invalid value 'x'");
	expect_error("[pgbouncer]\n%include /tmp/pv_no_such_file.ini\n",
		     "t.ini:2: cannot open '/tmp/pv_no_such_file.ini'");
	expect_error("[pgbouncer]\n%include\n", "t.ini:2: %include needs a file name");
	expect_error("[pgbouncer]\n%include /dev/null/x\n", "t.ini:2:");
	expect_error("[pgbouncer]\n%include /dev/zero\n", "t.ini:2: '/dev/zero' is not a regular");

	/* A file including itself hits the nesting limit. */
	write_file("/tmp/pv_test_inc_self.ini", "%include /tmp/pv_test_inc_self.ini\n");
	expect_error("[pgbouncer]\n%include /tmp/pv_test_inc_self.ini\n",
		     "/tmp/pv_test_inc_self.ini:1: %include nested too deeply (max 10)");

	/* Exactly 10 levels are allowed, 11 are not. */
	for (int i = 1; i <= 11; i++) {
		char path[64], body[128];

		snprintf(path, sizeof(path), "/tmp/pv_test_nest_%d.ini", i);
		if (i < 11)
			snprintf(body, sizeof(body), "%%include /tmp/pv_test_nest_%d.ini\n", i + 1);
		else
			snprintf(body, sizeof(body), "verbose = 3\n");
		write_file(path, body);
	}
	snprintf(text, sizeof(text), "[pgbouncer]\n%%include /tmp/pv_test_nest_2.ini\n");
	cf = parse(text);
	assert_non_null(cf);
	assert_int_equal(cf->verbose, 3);
	config_free(cf);
	expect_error("[pgbouncer]\n%include /tmp/pv_test_nest_1.ini\n", "nested too deeply");

	unlink("/tmp/pv_test_inc_a.ini");
	unlink("/tmp/pv_test_inc_b.ini");
	unlink("/tmp/pv_test_inc_bad.ini");
	unlink("/tmp/pv_test_inc_self.ini");
	for (int i = 1; i <= 11; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/tmp/pv_test_nest_%d.ini", i);
		unlink(path);
	}
}

static void test_databases(void **state)
{
	struct pv_config *cf = parse(
		"[databases]\n"
		"db1 = host=10.0.0.1,10.0.0.2 port=5433 dbname=real user=bob "
		"password='it''s a \\'secret\\'' connect_query='SELECT 1' reserve_pool=4 "
		"pool_mode=TRANSACTION load_balance_hosts=disable query_wait_timeout=1.5 "
		"server_lifetime=30 max_db_connections=9 max_db_client_connections=8 "
		"min_pool_size=2 pool_size=7 auth_user=au auth_query='SELECT x' auth_dbname=ad "
		"client_encoding=UTF8 datestyle=ISO timezone=UTC application_name=app\n"
		"db2 =\n"
		"\"my db\" = dbname='with space'\n"
		"'q''uoted' = host= dbname=z\n"
		"* = host=fallback\n"
		"db2 = dbname=replaced\n"
		"[pgbouncer]\n");
	struct db_conf *db;

	(void)state;
	assert_non_null(cf);
	db = config_find_db(cf, "db1");
	assert_non_null(db);
	assert_string_equal(db->host, "10.0.0.1,10.0.0.2");
	assert_int_equal(db->port, 5433);
	assert_string_equal(db->dbname, "real");
	assert_string_equal(db->user, "bob");
	assert_string_equal(db->password, "it's a 'secret'");
	assert_string_equal(db->connect_query, "SELECT 1");
	assert_int_equal(db->reserve_pool_size, 4);
	assert_int_equal(db->pool_mode, POOL_TRANSACTION);
	assert_int_equal(db->load_balance_hosts, LB_DISABLE);
	assert_true(db->load_balance_hosts_set);
	assert_int_equal(db->query_wait_timeout, 1500000);
	assert_int_equal(db->server_lifetime, 30 * USEC_PER_SEC);
	assert_int_equal(db->max_db_connections, 9);
	assert_int_equal(db->max_db_client_connections, 8);
	assert_int_equal(db->min_pool_size, 2);
	assert_int_equal(db->pool_size, 7);
	assert_string_equal(db->auth_user, "au");
	assert_string_equal(db->auth_query, "SELECT x");
	assert_string_equal(db->auth_dbname, "ad");
	assert_string_equal(db->client_encoding, "UTF8");
	assert_string_equal(db->datestyle, "ISO");
	assert_string_equal(db->timezone, "UTC");
	assert_string_equal(db->application_name, "app");

	/* A later entry of the same name replaces the earlier one. */
	db = config_find_db(cf, "db2");
	assert_non_null(db);
	assert_string_equal(db->dbname, "replaced");
	assert_null(db->host);
	assert_int_equal(db->port, 5432);
	assert_int_equal(db->pool_size, -1);
	assert_int_equal(db->max_db_connections, -1);
	assert_int_equal(db->query_wait_timeout, -1);
	assert_int_equal(db->pool_mode, POOL_INHERIT);
	assert_int_equal(db->load_balance_hosts, LB_ROUND_ROBIN);
	assert_false(db->load_balance_hosts_set);
	assert_null(db->password);

	db = config_find_db(cf, "my db");
	assert_non_null(db);
	assert_string_equal(db->dbname, "with space");
	/* libpq rule: "host= dbname=z" gives host the next word. */
	db = config_find_db(cf, "q'uoted");
	assert_non_null(db);
	assert_string_equal(db->host, "dbname=z");
	assert_null(db->dbname);
	assert_non_null(config_find_db(cf, "*"));
	assert_null(config_find_db(cf, "DB1"));
	assert_int_equal(list_count(&cf->databases), 5);
	/* File order, with db2 kept in its first position. */
	db = container_of(list_first(&cf->databases), struct db_conf, node);
	assert_string_equal(db->name, "db1");
	db = container_of(db->node.next, struct db_conf, node);
	assert_string_equal(db->name, "db2");
	config_free(cf);
}

static void test_database_errors(void **state)
{
	(void)state;
	expect_error("[pgbouncer]\n[databases]\nx = hots=a\n",
		     "t.ini:3: unknown parameter 'hots' in database entry 'x'");
	expect_error("[pgbouncer]\n[databases]\npgbouncer = host=a\n",
		     "t.ini:3: database name 'pgbouncer' is reserved");
	expect_error("[pgbouncer]\n[databases]\npgvigil = host=a\n", "is reserved");
	expect_error("[pgbouncer]\n[databases]\nx = password='abc\n", "t.ini:3: syntax error");
	expect_error("[pgbouncer]\n[databases]\nx = host\n", "t.ini:3: syntax error");
	expect_error("[pgbouncer]\n[databases]\nx = port=0\n", "t.ini:3: invalid port '0'");
	expect_error("[pgbouncer]\n[databases]\nx = port=70000\n", "invalid port");
	expect_error("[pgbouncer]\n[databases]\nx = pool_size=a\n", "invalid value 'a'");
	expect_error("[pgbouncer]\n[databases]\nx = pool_mode=none\n", "invalid pool_mode");
	expect_error("[pgbouncer]\n[databases]\nx = load_balance_hosts=x\n",
		     "invalid load_balance_hosts");
	expect_error("[pgbouncer]\n[databases]\nx = server_lifetime=x\n", "invalid value");
	expect_error("[pgbouncer]\n[databases]\n\"x = host=a\n", "unterminated quoted key");
	expect_error("[pgbouncer]\n[databases]\nx = dbname='a'b\n", "syntax error");
}

static void test_users(void **state)
{
	struct pv_config *cf = parse("[pgbouncer]\n[users]\n"
				     "alice = pool_mode=statement pool_size=3 reserve_pool_size=1 "
				     "max_user_connections=4 max_user_client_connections=5 "
				     "query_timeout=1 query_wait_timeout=2 idle_transaction_timeout=3 "
				     "transaction_timeout=4 client_idle_timeout=0.25\n"
				     "bob =\n");
	struct user_conf *u;

	(void)state;
	assert_non_null(cf);
	u = config_find_user(cf, "alice");
	assert_non_null(u);
	assert_int_equal(u->pool_mode, POOL_STATEMENT);
	assert_int_equal(u->pool_size, 3);
	assert_int_equal(u->reserve_pool_size, 1);
	assert_int_equal(u->max_user_connections, 4);
	assert_int_equal(u->max_user_client_connections, 5);
	assert_int_equal(u->query_timeout, 1 * USEC_PER_SEC);
	assert_int_equal(u->query_wait_timeout, 2 * USEC_PER_SEC);
	assert_int_equal(u->idle_transaction_timeout, 3 * USEC_PER_SEC);
	assert_int_equal(u->transaction_timeout, 4 * USEC_PER_SEC);
	assert_int_equal(u->client_idle_timeout, 250000);
	u = config_find_user(cf, "bob");
	assert_non_null(u);
	assert_int_equal(u->pool_mode, POOL_INHERIT);
	assert_int_equal(u->pool_size, -1);
	assert_int_equal(u->max_user_connections, -1);
	assert_int_equal(u->query_timeout, -1);
	assert_null(config_find_user(cf, "carol"));
	config_free(cf);
	expect_error("[pgbouncer]\n[users]\nu = host=x\n",
		     "t.ini:3: unknown parameter 'host' in user entry 'u'");
}

static void test_peers(void **state)
{
	struct pv_config *cf = parse("[pgbouncer]\n[peers]\n"
				     "1 = host=10.0.0.1\n"
				     "65535 = host=/tmp port=7000 pool_size=3\n");
	struct peer_conf *pc;

	(void)state;
	assert_non_null(cf);
	assert_int_equal(list_count(&cf->peers), 2);
	pc = container_of(list_first(&cf->peers), struct peer_conf, node);
	assert_int_equal(pc->peer_id, 1);
	assert_string_equal(pc->host, "10.0.0.1");
	assert_int_equal(pc->port, 6432);
	assert_int_equal(pc->pool_size, -1);
	pc = container_of(pc->node.next, struct peer_conf, node);
	assert_int_equal(pc->peer_id, 65535);
	assert_int_equal(pc->port, 7000);
	assert_int_equal(pc->pool_size, 3);
	config_free(cf);
	expect_error("[pgbouncer]\n[peers]\n0 = host=a\n", "t.ini:3: invalid peer id '0'");
	expect_error("[pgbouncer]\n[peers]\n65536 = host=a\n", "invalid peer id");
	expect_error("[pgbouncer]\n[peers]\nx = host=a\n", "invalid peer id");
	expect_error("[pgbouncer]\n[peers]\n2 = port=1\n", "t.ini:3: peer 2: host is required");
	expect_error("[pgbouncer]\n[peers]\n2 = host=a dbname=x\n", "unknown parameter 'dbname'");
}

static void test_server_check_query(void **state)
{
	struct pv_config *cf;

	(void)state;
	cf = parse("[pgbouncer]\nserver_check_query =\n");
	assert_non_null(cf);
	assert_int_equal(cf->server_check_query_disabled, 1);
	assert_row(cf, "server_check_query", "", "<empty>", true);
	config_free(cf);

	cf = parse("[pgbouncer]\nserver_check_query = <empty>\n");
	assert_non_null(cf);
	assert_int_equal(cf->server_check_query_disabled, 0);
	assert_string_equal(cf->server_check_query, "");
	assert_row(cf, "server_check_query", "<empty>", "<empty>", true);
	config_free(cf);

	cf = parse("[pgbouncer]\nserver_check_query = select 1\n");
	assert_non_null(cf);
	assert_int_equal(cf->server_check_query_disabled, 0);
	assert_row(cf, "server_check_query", "select 1", "<empty>", true);
	config_free(cf);
}

static void test_show_config_rows(void **state)
{
	struct pv_config *cf = parse("[pgbouncer]\n"
				     "query_timeout = 0.5\n"
				     "suspend_timeout = 1234567\n"
				     "unix_socket_mode = 0600\n"
				     "auth_type = scram-sha-256\n"
				     "log_stats = yes\n"
				     "max_packet_size = 8589934592\n");
	struct config_row row, prev;
	size_t n = 0;

	(void)state;
	assert_non_null(cf);
	/* Alphabetical, complete, and terminated. */
	for (size_t i = 0; config_row_at(cf, i, &row); i++) {
		if (i > 0 && strcmp(prev.key, row.key) >= 0)
			fail_msg("keys out of order: %s, %s", prev.key, row.key);
		prev = row;
		n++;
	}
	assert_int_equal(n, config_key_count());
	assert_true(n >= 100);
	assert_false(config_row_at(cf, n, &row));

	assert_row(cf, "query_timeout", "0.5", "0", true);
	assert_row(cf, "suspend_timeout", "1.23457e+06", "10", true);
	assert_row(cf, "autodb_idle_timeout", "3600", "3600", true);
	assert_row(cf, "unix_socket_mode", "0600", "0777", false);
	assert_row(cf, "auth_type", "scram-sha-256", "md5", true);
	assert_row(cf, "pool_mode", "session", "session", true);
	assert_row(cf, "server_tls_sslmode", "prefer", "prefer", true);
	assert_row(cf, "log_stats", "1", "1", true);
	assert_row(cf, "max_packet_size", "8589934592", "2147483647", true);
	assert_row(cf, "listen_port", "6432", "6432", false);
	assert_row(cf, "auth_file", "", "", true);
	assert_row(cf, "server_reset_query", "DISCARD ALL", "DISCARD ALL", true);
	assert_row(cf, "governance_file", "", "", true);
	assert_row(cf, "conffile", "t.ini", "t.ini", true);
	assert_row(cf, "disable_pqexec", "0", "0", false);
	assert_row(cf, "track_extra_parameters", "IntervalStyle", "IntervalStyle", false);
	assert_row(cf, "user", "", "", false);
	assert_false(row_by_key(cf, "server_check_query_disabled", &row));
	config_free(cf);
}

static void test_set_key(void **state)
{
	struct pv_config *cf = parse("[pgbouncer]\n");

	(void)state;
	assert_non_null(cf);
	assert_true(config_set_key(cf, "default_pool_size", "50", err, sizeof(err)));
	assert_int_equal(cf->default_pool_size, 50);
	assert_true(config_set_key(cf, "query_timeout", "2.5", err, sizeof(err)));
	assert_int_equal(cf->query_timeout, 2500000);
	assert_true(config_set_key(cf, "pool_mode", "STATEMENT", err, sizeof(err)));
	assert_int_equal(cf->pool_mode, POOL_STATEMENT);
	assert_true(config_set_key(cf, "admin_users", "a, b", err, sizeof(err)));
	assert_string_equal(cf->admin_users, "a, b");
	assert_true(config_set_key(cf, "auth_file", "", err, sizeof(err)));
	assert_null(cf->auth_file);

	/* Bad values fail and leave the old value. */
	assert_false(config_set_key(cf, "default_pool_size", "lots", err, sizeof(err)));
	assert_non_null(strstr(err, "invalid value 'lots' for default_pool_size"));
	assert_int_equal(cf->default_pool_size, 50);
	assert_false(config_set_key(cf, "pool_mode", "x", err, sizeof(err)));
	assert_int_equal(cf->pool_mode, POOL_STATEMENT);
	assert_false(config_set_key(cf, "nope", "1", err, sizeof(err)));
	assert_non_null(strstr(err, "unknown config parameter: nope"));
	assert_false(config_set_key(cf, "nope", "1", NULL, 0));

	/* Non-reloadable: success reported, nothing changes. */
	assert_true(config_set_key(cf, "listen_port", "7777", err, sizeof(err)));
	assert_int_equal(cf->listen_port, 6432);
	assert_true(config_set_key(cf, "unix_socket_dir", "/var/run", err, sizeof(err)));
	assert_string_equal(cf->unix_socket_dir, "/tmp");
	config_free(cf);
}

static void test_keep_non_reloadable(void **state)
{
	struct pv_config *run = parse("[pgbouncer]\nlisten_port = 7000\nunix_socket_dir = /run\n"
				      "user = pgv\npkt_buf = 8192\nmax_client_conn = 10\n");
	struct pv_config *next = parse("[pgbouncer]\nlisten_port = 8000\nunix_socket_dir =\n"
				       "pidfile = /x.pid\nmax_client_conn = 20\n");

	(void)state;
	assert_non_null(run);
	assert_non_null(next);
	assert_true(config_keep_non_reloadable(next, run));
	assert_int_equal(next->listen_port, 7000);
	assert_string_equal(next->unix_socket_dir, "/run");
	assert_string_equal(next->user, "pgv");
	assert_string_equal(next->pidfile, "");
	assert_int_equal(next->pkt_buf, 8192);
	assert_int_equal(next->unix_socket_mode, 0777);
	/* Reloadable keys keep the new file's values. */
	assert_int_equal(next->max_client_conn, 20);
	/* Copies, not shared pointers. */
	assert_ptr_not_equal(next->unix_socket_dir, run->unix_socket_dir);
	config_free(run);
	config_free(next);
}

static void test_list_contains(void **state)
{
	(void)state;
	assert_true(config_list_contains("admin", "admin"));
	assert_true(config_list_contains("a, b,c  d", "b"));
	assert_true(config_list_contains("a, b,c  d", "c"));
	assert_true(config_list_contains("a, b,c  d", "d"));
	assert_true(config_list_contains(" ,a", "a"));
	assert_false(config_list_contains("a, b", "A"));
	assert_false(config_list_contains("ab", "a"));
	assert_false(config_list_contains("a", "ab"));
	assert_false(config_list_contains("*", "a"));
	assert_false(config_list_contains("", "a"));
	assert_false(config_list_contains("a", ""));
	assert_false(config_list_contains(NULL, "a"));
}

static void test_load_file(void **state)
{
	struct pv_config *cf;

	(void)state;
	write_file("/tmp/pv_test_load.ini", "[pgbouncer]\nlisten_port = 6500\n[databases]\nx =\n");
	cf = config_load("/tmp/pv_test_load.ini", err, sizeof(err));
	assert_non_null(cf);
	assert_string_equal(cf->conffile, "/tmp/pv_test_load.ini");
	assert_int_equal(cf->listen_port, 6500);
	config_free(cf);
	write_file("/tmp/pv_test_load.ini", "[pgbouncer]\nlisten_port = bad\n");
	assert_null(config_load("/tmp/pv_test_load.ini", err, sizeof(err)));
	assert_non_null(strstr(err, "/tmp/pv_test_load.ini:2: invalid value 'bad'"));
	unlink("/tmp/pv_test_load.ini");
	assert_null(config_load("/tmp/pv_test_load.ini", err, sizeof(err)));
	assert_non_null(strstr(err, "/tmp/pv_test_load.ini: cannot open"));
	config_free(NULL);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(pool_mode_name(POOL_SESSION), "session");
	assert_string_equal(pool_mode_name(POOL_TRANSACTION), "transaction");
	assert_string_equal(pool_mode_name(POOL_STATEMENT), "statement");
	assert_string_equal(auth_type_name(AUTH_PEER), "peer");
	assert_string_equal(auth_type_name(AUTH_REJECT), "reject");
	assert_string_equal(auth_type_name(AUTH_SCRAM_SHA_256), "scram-sha-256");
	assert_string_equal(ssl_mode_name(SSLMODE_VERIFY_CA), "verify-ca");
	assert_string_equal(ssl_mode_name(SSLMODE_DISABLE), "disable");
	assert_string_equal(lb_hosts_name(LB_ROUND_ROBIN), "round-robin");
	assert_string_equal(lb_hosts_name(LB_DISABLE), "disable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_value_types),
		cmocka_unit_test(test_auth_types),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_main_section_missing),
		cmocka_unit_test(test_repeated_main_header),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_databases),
		cmocka_unit_test(test_database_errors),
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_peers),
		cmocka_unit_test(test_server_check_query),
		cmocka_unit_test(test_show_config_rows),
		cmocka_unit_test(test_set_key),
		cmocka_unit_test(test_keep_non_reloadable),
		cmocka_unit_test(test_list_contains),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
