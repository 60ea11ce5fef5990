/*
 * test_prepared.c - unit tests for protocol-level prepared statements and
 * result-layout tracking (src/prepared.c, src/layout.c).
 *
 * Sockets are in memory (fd -1): what pgvigil sends a socket collects in its
 * `out` buffer. The helpers below play sbuf.c's part: a message a handler
 * returns PKT_FORWARD for is appended to the linked socket's `out`.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"

static const char conf_text[] = "[databases]\n"
				"db = host=127.0.0.1 dbname=db\n"
				"[pgbouncer]\n"
				"pool_mode = transaction\n"
				"max_prepared_statements = 2\n";

struct env {
	struct pv_pool *pool;
	struct pv_socket *c, *c2, *s;
};

static struct pv_socket *mk_socket(struct pv_pool *pool, bool server)
{
	struct pv_socket *x = socket_new(server);
	assert_non_null(x);
	x->pool = pool;
	return x;
}

static void link_to(struct pv_socket *c, struct pv_socket *s)
{
	if (s->link)
		s->link->link = NULL;
	c->link = s;
	s->link = c;
}

static int setup(void **state)
{
	char err[256];
	struct env *e = calloc(1, sizeof(*e));
	struct pv_database *db;
	struct pv_user *u;

	list_init(&G.databases);
	list_init(&G.users);
	list_init(&G.pools);
	list_init(&G.login_clients);
	list_init(&G.justfree);
	G.cf = config_parse_buffer(conf_text, strlen(conf_text), "t.ini", err, sizeof(err));
	if (!G.cf)
		fail_msg("config: %s", err);
	db = database_get("db");
	u = user_get("alice");
	assert_non_null(db);
	assert_non_null(u);
	e->pool = pool_get(db, u);
	assert_non_null(e->pool);
	e->c = mk_socket(e->pool, false);
	e->c2 = mk_socket(e->pool, false);
	e->s = mk_socket(e->pool, true);
	e->s->ps_track = true;
	link_to(e->c, e->s);
	ps_layouts_needed = true;
	*state = e;
	return 0;
}

static void free_socket(struct pv_socket *x)
{
	buf_free(&x->in);
	buf_free(&x->out);
	if (x->srv) {
		buf_free(&x->srv->task_err);
		buf_free(&x->srv->repl_params);
	}
	free(x);
}

static int teardown(void **state)
{
	struct env *e = *state;
	struct pv_user *u = e->pool->user;
	struct pv_database *db = e->pool->db;

	ps_client_free(e->c);
	ps_client_free(e->c2);
	ps_server_free(e->s);
	free_socket(e->c);
	free_socket(e->c2);
	free_socket(e->s);
	pool_free(e->pool);
	database_free(db);
	list_del(&u->node);
	free(u->name);
	free(u);
	config_free(G.cf);
	G.cf = NULL;
	ps_layouts_needed = false;
	free(e);
	return 0;
}

/* --- messages ----------------------------------------------------------------------- */

static struct pv_buf msg(char type, const void *body, size_t len)
{
	struct pv_buf b;
	struct pkt_builder pb;
	buf_init(&b);
	build_begin(&pb, &b, (uint8_t)type);
	build_bytes(&pb, body, len);
	assert_true(build_end(&pb));
	return b;
}

static struct pv_buf m_parse(const char *name, const char *sql)
{
	struct pv_buf b;
	struct pkt_builder pb;
	buf_init(&b);
	build_begin(&pb, &b, 'P');
	build_string(&pb, name);
	build_string(&pb, sql);
	build_u16(&pb, 0);
	assert_true(build_end(&pb));
	return b;
}

/* Bind without parameters; nfmt result-format codes fmt[]. */
static struct pv_buf m_bind(const char *portal, const char *stmt, int nfmt, const int *fmt)
{
	struct pv_buf b;
	struct pkt_builder pb;
	buf_init(&b);
	build_begin(&pb, &b, 'B');
	build_string(&pb, portal);
	build_string(&pb, stmt);
	build_u16(&pb, 0);
	build_u16(&pb, 0);
	build_u16(&pb, (uint16_t)nfmt);
	for (int i = 0; i < nfmt; i++)
		build_u16(&pb, (uint16_t)fmt[i]);
	assert_true(build_end(&pb));
	return b;
}

static struct pv_buf m_kind_name(char type, char kind, const char *name)
{
	struct pv_buf b;
	struct pkt_builder pb;
	buf_init(&b);
	build_begin(&pb, &b, (uint8_t)type);
	build_u8(&pb, (uint8_t)kind);
	build_string(&pb, name);
	assert_true(build_end(&pb));
	return b;
}

static struct pv_buf m_execute(const char *portal)
{
	struct pv_buf b;
	struct pkt_builder pb;
	buf_init(&b);
	build_begin(&pb, &b, 'E');
	build_string(&pb, portal);
	build_u32(&pb, 0);
	assert_true(build_end(&pb));
	return b;
}

static struct pv_buf m_string(char type, const char *s)
{
	return msg(type, s, strlen(s) + 1);
}

/* RowDescription of ncols int4 columns of table `table`, all in text format. */
static struct pv_buf m_rowdesc(int ncols, uint32_t table)
{
	struct pv_buf b;
	struct pkt_builder pb;
	buf_init(&b);
	build_begin(&pb, &b, 'T');
	build_u16(&pb, (uint16_t)ncols);
	for (int i = 0; i < ncols; i++) {
		build_string(&pb, "col");
		build_u32(&pb, table);
		build_u16(&pb, (uint16_t)(i + 1));
		build_u32(&pb, 23);
		build_u16(&pb, 4);
		build_u32(&pb, 0xffffffffu);
		build_u16(&pb, 0);
	}
	assert_true(build_end(&pb));
	return b;
}

static struct pv_buf m_datarow(void)
{
	static const uint8_t body[] = {0, 1, 0, 0, 0, 1, '1'};
	return msg('D', body, sizeof(body));
}

static struct pv_buf m_error(void)
{
	static const uint8_t body[] = "SERROR\0C42P01\0Mno such table\0";
	return msg('E', body, sizeof(body));
}

/* --- plumbing standing in for sbuf.c ------------------------------------------------- */

static enum pkt_action from_client(struct pv_socket *c, struct pv_buf m)
{
	struct pkt p;
	enum pkt_action a;
	assert_int_equal(proto_frame(m.data, m.len, &p), FRAME_OK);
	a = ps_client_msg(c, c->link, &p);
	if (a == PKT_FORWARD)
		assert_true(buf_append(&c->link->out, m.data, m.len));
	buf_free(&m);
	return a;
}

static enum pkt_action from_server(struct pv_socket *s, struct pv_buf m)
{
	struct pkt p;
	enum pkt_action a;
	buf_reset(&s->in);
	assert_true(buf_append(&s->in, m.data, m.len));
	assert_int_equal(proto_frame(s->in.data, s->in.len, &p), FRAME_OK);
	if (p.type == 'E') /* as server.c: before the hooks, which may consume it */
		ps_server_error(s);
	a = ps_server_msg(s, &p);
	if (a == PKT_FORWARD && s->link)
		assert_true(buf_append(&s->link->out, m.data, m.len));
	sbuf_forward_flush();
	if (p.type == 'Z' && a == PKT_FORWARD)
		ps_after_forward(s);
	buf_free(&m);
	return a;
}

static void server_says(struct pv_socket *s, char type)
{
	static const uint8_t idle = 'I';
	if (type == 'Z')
		from_server(s, msg('Z', &idle, 1));
	else if (type == 'C')
		from_server(s, m_string('C', "SELECT 1"));
	else
		from_server(s, msg(type, NULL, 0));
}

/* The types of the messages x was sent since the last call, e.g. "12DCZ". */
static void assert_sent(struct pv_socket *x, const char *want)
{
	char got[64];
	size_t n = 0;
	struct pkt p;

	while (buf_pending(&x->out) > 0 && n + 1 < sizeof(got)) {
		assert_int_equal(proto_frame(x->out.data + x->out.pos, buf_pending(&x->out), &p),
				 FRAME_OK);
		got[n++] = (char)p.type;
		x->out.pos += p.len;
	}
	got[n] = '\0';
	buf_reset(&x->out);
	assert_string_equal(got, want);
}

static void assert_layout(struct pv_socket *s, int ncols, uint32_t table, int format)
{
	const struct ps_layout *l = ps_current_layout(s);
	assert_non_null(l);
	assert_int_equal(l->ncols, ncols);
	for (int i = 0; i < ncols; i++) {
		assert_int_equal(l->cols[i].table_oid, table);
		assert_int_equal(l->cols[i].attnum, i + 1);
		assert_int_equal(l->cols[i].type_oid, 23);
		assert_int_equal(l->cols[i].format, format);
		assert_string_equal(l->cols[i].name, "col");
	}
}

/* --- result layouts ------------------------------------------------------------------ */

static void simple_query_result_sets(void **state)
{
	struct env *e = *state;
	from_client(e->c, m_string('Q', "select a from t1; select b, c from t2"));
	assert_null(ps_current_layout(e->s));
	from_server(e->s, m_rowdesc(1, 100));
	from_server(e->s, m_datarow());
	assert_layout(e->s, 1, 100, 0);
	server_says(e->s, 'C');
	assert_null(ps_current_layout(e->s));
	from_server(e->s, m_rowdesc(2, 200));
	from_server(e->s, m_datarow());
	assert_layout(e->s, 2, 200, 0);
	server_says(e->s, 'C');
	server_says(e->s, 'Z');
	assert_null(ps_current_layout(e->s));
	assert_sent(e->c, "TDCTDCZ");
	assert_int_equal(ps_pending_count(e->s), 0);
}

static void statement_describe_then_execute(void **state)
{
	struct env *e = *state;
	from_client(e->c, m_parse("s1", "select a, b from t"));
	from_client(e->c, m_kind_name('D', 'S', "s1"));
	from_client(e->c, m_bind("", "s1", 0, NULL));
	from_client(e->c, m_execute(""));
	from_client(e->c, msg('S', NULL, 0));
	assert_sent(e->s, "PDBES");
	server_says(e->s, '1');
	from_server(e->s, msg('t', "\0\0", 2));
	from_server(e->s, m_rowdesc(2, 300));
	server_says(e->s, '2');
	from_server(e->s, m_datarow());
	assert_layout(e->s, 2, 300, 0);
	server_says(e->s, 'C');
	assert_null(ps_current_layout(e->s));
	server_says(e->s, 'Z');
	assert_sent(e->c, "1tT2DCZ");
	assert_non_null(ps_statement_layout(e->c, e->s, "s1"));
	assert_null(ps_statement_layout(e->c, e->s, "nope"));
}

static void portal_describe_then_execute(void **state)
{
	struct env *e = *state;
	from_client(e->c, m_parse("", "select a from t"));
	from_client(e->c, m_bind("", "", 0, NULL));
	from_client(e->c, m_kind_name('D', 'P', ""));
	from_client(e->c, m_execute(""));
	from_client(e->c, msg('S', NULL, 0));
	server_says(e->s, '1');
	server_says(e->s, '2');
	from_server(e->s, m_rowdesc(3, 400));
	from_server(e->s, m_datarow());
	assert_layout(e->s, 3, 400, 0);
	server_says(e->s, 'C');
	server_says(e->s, 'Z');
	assert_sent(e->c, "12TDCZ");
}

/* Client 1 described the statement; client 2 binds it in binary without any Describe. */
static void statement_described_by_another_client(void **state)
{
	struct env *e = *state;
	const int binary = 1;

	from_client(e->c, m_parse("mine", "select x, y from t"));
	from_client(e->c, m_kind_name('D', 'S', "mine"));
	from_client(e->c, msg('S', NULL, 0));
	server_says(e->s, '1');
	from_server(e->s, msg('t', "\0\0", 2));
	from_server(e->s, m_rowdesc(2, 500));
	server_says(e->s, 'Z');
	assert_sent(e->c, "1tTZ");

	link_to(e->c2, e->s);
	from_client(e->c2, m_parse("theirs", "select x, y from t"));
	assert_sent(e->c2, "1"); /* the server has it: answered locally */
	from_client(e->c2, m_bind("", "theirs", 1, &binary));
	from_client(e->c2, m_execute(""));
	from_client(e->c2, msg('S', NULL, 0));
	assert_sent(e->s, "PDSBES");
	server_says(e->s, '2');
	from_server(e->s, m_datarow());
	assert_layout(e->s, 2, 500, 1);
	server_says(e->s, 'C');
	server_says(e->s, 'Z');
	assert_sent(e->c2, "2DCZ");
}

static void bind_per_column_formats(void **state)
{
	struct env *e = *state;
	const int fmts[] = {0, 1};
	const struct ps_layout *l;

	from_client(e->c, m_parse("s", "select x, y from t"));
	from_client(e->c, m_kind_name('D', 'S', "s"));
	from_client(e->c, m_bind("p", "s", 2, fmts));
	from_client(e->c, m_execute("p"));
	from_client(e->c, msg('S', NULL, 0));
	server_says(e->s, '1');
	from_server(e->s, msg('t', "\0\0", 2));
	from_server(e->s, m_rowdesc(2, 600));
	server_says(e->s, '2');
	from_server(e->s, m_datarow());
	l = ps_current_layout(e->s);
	assert_non_null(l);
	assert_int_equal(l->cols[0].format, 0);
	assert_int_equal(l->cols[1].format, 1);
	/* the body is patched too */
	assert_int_equal(l->body[l->body_len - 1], 1);
	server_says(e->s, 's');
	server_says(e->s, 'Z');
	assert_sent(e->c, "1tT2DsZ");
}

static void unknown_layout_is_null(void **state)
{
	struct env *e = *state;
	from_client(e->c, m_parse("s", "select 1"));
	from_client(e->c, m_bind("", "s", 0, NULL));
	from_client(e->c, m_execute(""));
	from_client(e->c, msg('S', NULL, 0));
	server_says(e->s, '1');
	server_says(e->s, '2');
	from_server(e->s, m_datarow());
	assert_null(ps_current_layout(e->s));
	server_says(e->s, 'C');
	server_says(e->s, 'Z');
	/* Execute of a portal that does not exist (any more) */
	from_client(e->c, m_execute("gone"));
	from_client(e->c, msg('S', NULL, 0));
	assert_null(ps_current_layout(e->s));
}

static void layouts_off_records_nothing(void **state)
{
	struct env *e = *state;
	ps_layouts_needed = false;
	from_client(e->c, m_string('Q', "select 1"));
	from_server(e->s, m_rowdesc(1, 0));
	from_server(e->s, m_datarow());
	assert_null(ps_current_layout(e->s));
	server_says(e->s, 'C');
	server_says(e->s, 'Z');
	assert_sent(e->c, "TDCZ");
}

static void layout_rejects_malformed(void **state)
{
	struct pv_buf b = m_rowdesc(2, 1);
	(void)state;
	/* truncated last column */
	assert_null(ps_layout_new(b.data + MSG_HDR_LEN, b.len - MSG_HDR_LEN - 1));
	/* trailing garbage */
	assert_true(buf_append(&b, "x", 1));
	assert_null(ps_layout_new(b.data + MSG_HDR_LEN, b.len - MSG_HDR_LEN));
	/* column count larger than the body */
	b.data[MSG_HDR_LEN + 1] = 200;
	assert_null(ps_layout_new(b.data + MSG_HDR_LEN, b.len - MSG_HDR_LEN - 1));
	buf_free(&b);
}

/* --- pipeline behaviour ---------------------------------------------------------------- */

/* Statement "s" prepared by the client and answered: Parse and Sync forwarded, 1Z back. */
static void prepare_s(struct env *e)
{
	from_client(e->c, m_parse("s", "select 1"));
	from_client(e->c, msg('S', NULL, 0));
	server_says(e->s, '1');
	server_says(e->s, 'Z');
	assert_sent(e->c, "1Z");
	assert_sent(e->s, "PS");
}

/* A Parse answered locally appears after the responses to earlier requests. */
static void fake_parse_complete_in_order(void **state)
{
	struct env *e = *state;
	prepare_s(e);

	link_to(e->c2, e->s);
	from_client(e->c2, m_parse("", "select 2"));
	from_client(e->c2, m_parse("t", "select 1"));
	from_client(e->c2, msg('S', NULL, 0));
	assert_sent(e->c2, ""); /* the local ParseComplete waits for the server's */
	assert_sent(e->s, "PS");
	server_says(e->s, '1');
	assert_sent(e->c2, "11");
	server_says(e->s, 'Z');
	assert_sent(e->c2, "Z");
	assert_int_equal(ps_client_count(e->c2), 1);
}

/* An error overtaking the client's Sync: the rest passes untracked, the Parse is undone. */
static void error_discards_until_sync(void **state)
{
	struct env *e = *state;
	from_client(e->c, m_parse("s", "select * from nope"));
	from_client(e->c, m_parse("t", "select 2"));
	from_client(e->c, m_bind("", "t", 0, NULL));
	assert_int_equal(ps_pending_count(e->s), 3);
	from_server(e->s, m_error());
	assert_int_equal(ps_pending_count(e->s), 0);
	assert_int_equal(ps_client_count(e->c), 0);
	assert_int_equal(ps_server_count(e->s), 0);
	/* ignored by PostgreSQL up to the Sync: forwarded as is */
	assert_int_equal(from_client(e->c, m_execute("")), PKT_FORWARD);
	assert_int_equal(ps_pending_count(e->s), 0);
	from_client(e->c, msg('S', NULL, 0));
	assert_int_equal(ps_pending_count(e->s), 1);
	server_says(e->s, 'Z');
	assert_int_equal(ps_pending_count(e->s), 0);
	assert_sent(e->c, "EZ");
	/* The next pipeline is tracked again: a fresh Parse of "s" is sent. */
	from_client(e->c, m_parse("s", "select 1"));
	assert_int_equal(ps_pending_count(e->s), 1);
}

/* Over max_prepared_statements (2) the LRU statement is closed; its reply is swallowed. */
static void lru_eviction_close_skipped(void **state)
{
	struct env *e = *state;
	from_client(e->c, m_parse("a", "select 1"));
	from_client(e->c, m_parse("b", "select 2"));
	from_client(e->c, m_parse("c", "select 3"));
	from_client(e->c, msg('S', NULL, 0));
	assert_sent(e->s, "PPCPS");
	assert_int_equal(ps_server_count(e->s), 2);
	server_says(e->s, '1');
	server_says(e->s, '1');
	server_says(e->s, '3');
	server_says(e->s, '1');
	server_says(e->s, 'Z');
	assert_sent(e->c, "111Z");
	assert_int_equal(ps_pending_count(e->s), 0);
	/* "a" was evicted: a Bind re-prepares it first, and that ParseComplete is not shown */
	from_client(e->c, m_bind("", "a", 0, NULL));
	from_client(e->c, msg('S', NULL, 0));
	assert_sent(e->s, "PCPBS" + 1); /* Close of "b" (LRU), then Parse, Bind, Sync */
	server_says(e->s, '3');
	server_says(e->s, '1');
	server_says(e->s, '2');
	server_says(e->s, 'Z');
	assert_sent(e->c, "2Z");
}

/* Two batches in flight: the error skips the first up to its Sync, the second runs. */
static void error_skips_only_to_first_sync(void **state)
{
	struct env *e = *state;
	prepare_s(e);
	/* an Execute without the client's Describe: pgvigil describes the portal itself */
	from_client(e->c, m_bind("", "s", 0, NULL));
	from_client(e->c, m_execute(""));
	from_client(e->c, m_bind("", "s", 0, NULL));
	from_client(e->c, m_execute(""));
	from_client(e->c, msg('S', NULL, 0));
	from_client(e->c, m_bind("", "s", 0, NULL));
	from_client(e->c, m_execute(""));
	from_client(e->c, msg('S', NULL, 0));
	assert_sent(e->s, "BDEBDESBDES");
	assert_int_equal(ps_pending_count(e->s), 11);
	from_server(e->s, m_error()); /* answers the first Bind */
	assert_int_equal(ps_pending_count(e->s), 5); /* its Sync, then the second batch */
	assert_false(ps_current_is_execute(e->s));
	server_says(e->s, 'Z');
	assert_sent(e->c, "EZ");
	/* the second batch: its injected Describe's answer is recorded, not shown */
	server_says(e->s, '2');
	from_server(e->s, m_rowdesc(1, 7));
	assert_true(ps_current_is_execute(e->s));
	from_server(e->s, m_datarow());
	assert_layout(e->s, 1, 7, 0);
	server_says(e->s, 'C');
	server_says(e->s, 'Z');
	assert_sent(e->c, "2DCZ");
	assert_int_equal(ps_pending_count(e->s), 0);
	/* a second report of the same error changes nothing */
	from_client(e->c, m_bind("", "s", 0, NULL));
	from_client(e->c, msg('S', NULL, 0));
	ps_server_error(e->s);
	ps_server_error(e->s);
	assert_int_equal(ps_pending_count(e->s), 1);
}

/*
 * An eviction Close skipped after an error closed nothing: the server still
 * holds the statement, so it is not prepared again under the same name.
 */
static void skipped_eviction_close_keeps_statement(void **state)
{
	struct env *e = *state;
	from_client(e->c, m_parse("a", "select 1"));
	from_client(e->c, m_parse("b", "select 2"));
	from_client(e->c, msg('S', NULL, 0));
	server_says(e->s, '1');
	server_says(e->s, '1');
	server_says(e->s, 'Z');
	assert_sent(e->c, "11Z");
	assert_sent(e->s, "PPS");
	/* the Bind of b fails; c evicts a (LRU), then a evicts b: all skipped */
	from_client(e->c, m_bind("", "b", 0, NULL));
	from_client(e->c, m_parse("c", "select 3"));
	from_client(e->c, m_bind("", "a", 0, NULL));
	from_client(e->c, msg('S', NULL, 0));
	assert_sent(e->s, "BCPCPBS");
	from_server(e->s, m_error());
	server_says(e->s, 'Z');
	assert_sent(e->c, "EZ");
	assert_int_equal(ps_server_count(e->s), 2);
	assert_int_equal(ps_client_count(e->c), 2); /* c was never created */
	/* a and b are still on the server: bound without a Parse */
	from_client(e->c, m_bind("", "a", 0, NULL));
	from_client(e->c, m_bind("", "b", 0, NULL));
	from_client(e->c, msg('S', NULL, 0));
	assert_sent(e->s, "BBS");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(simple_query_result_sets),
		T(statement_describe_then_execute),
		T(portal_describe_then_execute),
		T(statement_described_by_another_client),
		T(bind_per_column_formats),
		T(unknown_layout_is_null),
		T(layouts_off_records_nothing),
		T(layout_rejects_malformed),
		T(fake_parse_complete_in_order),
		T(error_discards_until_sync),
		T(lru_eviction_close_skipped),
		T(error_skips_only_to_first_sync),
		T(skipped_eviction_close_keeps_statement),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
