/*
 * auth_query.c - auth_user / auth_query / auth_dbname: fetch the credentials
 * of users missing from auth_file through a pooled auth_user connection, and
 * cache them per (database, user). The flow is described in
 * include/auth_query.h.
 */
#include "auth_query.h"
#include "admin.h"
#include "authfile.h"
#include "client.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"

#include <stdlib.h>
#include <string.h>

/* Replies bigger than this are not credentials: the query is treated as broken. */
#define AQ_MAX_REPLY 65536
/* Bounded cache: past this, the least recently refreshed entry is dropped. */
#define AQ_MAX_ENTRIES 100000
#define AQ_BUCKETS     4096

struct aq_entry {
	struct list_head bucket; /* hash chain */
	struct list_head lru;    /* least recently refreshed first */
	char *db;
	struct auth_entry e;
};

static struct list_head buckets[AQ_BUCKETS];
static struct list_head lru = LIST_HEAD_INIT(lru);
static size_t n_entries;
static bool cache_ready;

/* --- the cache ------------------------------------------------------------------- */

static void cache_init(void)
{
	if (cache_ready)
		return;
	for (size_t i = 0; i < AQ_BUCKETS; i++)
		list_init(&buckets[i]);
	cache_ready = true;
}

/* FNV-1a over "db\0user". */
static size_t bucket_of(const char *db, const char *user)
{
	uint32_t h = 2166136261u;
	for (const char *p = db; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ 0) * 16777619u;
	for (const char *p = user; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h % AQ_BUCKETS;
}

static struct aq_entry *cache_lookup(const char *db, const char *user)
{
	struct list_head *it;
	struct list_head *b;

	cache_init();
	b = &buckets[bucket_of(db, user)];
	list_for_each(it, b)
	{
		struct aq_entry *a = container_of(it, struct aq_entry, bucket);
		if (strcmp(a->e.name, user) == 0 && strcmp(a->db, db) == 0)
			return a;
	}
	return NULL;
}

static void entry_free(struct aq_entry *a)
{
	list_del(&a->bucket);
	list_del(&a->lru);
	n_entries--;
	free(a->db);
	free(a->e.name);
	free(a->e.secret);
	free(a);
}

static void cache_remove(const char *db, const char *user)
{
	struct aq_entry *a = cache_lookup(db, user);
	if (a)
		entry_free(a);
}

/* Store or refresh a secret ("" = unusable: NULL from the query). false on OOM. */
static bool cache_store(const char *db, const char *user, const char *secret)
{
	struct aq_entry *a = cache_lookup(db, user);
	char *copy = strdup(secret);

	if (!copy)
		return false;
	if (!a) {
		if (n_entries >= AQ_MAX_ENTRIES)
			entry_free(container_of(list_first(&lru), struct aq_entry, lru));
		a = calloc(1, sizeof(*a));
		if (!a || !(a->db = strdup(db)) || !(a->e.name = strdup(user))) {
			if (a)
				free(a->db);
			free(a);
			free(copy);
			return false;
		}
		list_append(&buckets[bucket_of(db, user)], &a->bucket);
		list_init(&a->lru);
		n_entries++;
	}
	free(a->e.secret);
	a->e.secret = copy;
	a->e.kind = secret_kind_of(copy);
	list_del(&a->lru);
	list_append(&lru, &a->lru);
	return true;
}

const struct auth_entry *auth_query_find(const char *db, const char *user)
{
	struct aq_entry *a;
	if (!db || !user)
		return NULL;
	a = cache_lookup(db, user);
	return a ? &a->e : NULL;
}

void auth_query_cache_clear(void)
{
	cache_init();
	while (!list_empty(&lru))
		entry_free(container_of(list_first(&lru), struct aq_entry, lru));
}

/* --- settings ------------------------------------------------------------------ */

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

/* db-level auth_user / auth_query / auth_dbname win over the [pgbouncer] ones. */
static const char *auth_user_of(const struct pv_database *db)
{
	const struct db_conf *dc = db->conf;
	if (dc && nonempty(dc->auth_user))
		return dc->auth_user;
	return nonempty(G.cf->auth_user);
}

static const char *auth_query_of(const struct pv_database *db)
{
	const struct db_conf *dc = db->conf;
	if (dc && nonempty(dc->auth_query))
		return dc->auth_query;
	return G.cf->auth_query;
}

static const char *auth_dbname_of(const struct pv_database *db)
{
	const struct db_conf *dc = db->conf;
	if (dc && nonempty(dc->auth_dbname))
		return dc->auth_dbname;
	if (nonempty(G.cf->auth_dbname))
		return G.cf->auth_dbname;
	return db->name;
}

bool auth_query_needed(const struct pv_socket *c)
{
	if (c->aq_done || !c->pool || c->pool->db->is_admin)
		return false;
	if (G.auth && authfile_find(G.auth, c->startup_user))
		return false;
	return auth_user_of(c->pool->db) != NULL;
}

/* --- running the query --------------------------------------------------------- */

void auth_query_start(struct pv_socket *c)
{
	struct pv_database *home = c->pool->db, *adb;
	const char *dbname = auth_dbname_of(home);
	struct pv_user *u;
	struct pv_pool *pool;

	if (admin_is_admin_db_name(dbname)) {
		client_fatal(c, "08P01", "bouncer config error");
		return;
	}
	adb = database_get(dbname);
	if (!adb) {
		client_fatal(c, "08P01", "no such database: %s", dbname);
		return;
	}
	if (adb->disabled) {
		client_fatal(c, "08P01", "authentication database \"%s\" is disabled", dbname);
		return;
	}
	u = user_get(auth_user_of(home));
	pool = u ? pool_get(adb, u) : NULL;
	if (!pool) {
		client_fatal(c, "53200", "out of memory");
		return;
	}
	slog_debug(c, "auth_query for user %s via %s/%s", c->startup_user, adb->name, u->name);
	c->aq_home_pool = c->pool;
	c->aq_rows = 0;
	c->pool = pool;
	pool_request_server(c);
}

/* Parse/Bind/Execute/Sync with the unnamed statement and portal. */
static bool build_query(struct pv_buf *out, const char *sql, const char *user)
{
	struct pkt_builder b;
	size_t ulen = strlen(user);
	bool ok;

	build_begin(&b, out, 'P');
	build_string(&b, "");
	build_string(&b, sql);
	build_u16(&b, 0); /* parameter types: let the server infer */
	ok = build_end(&b);
	build_begin(&b, out, 'B');
	build_string(&b, "");
	build_string(&b, "");
	build_u16(&b, 0); /* parameter formats: all text */
	build_u16(&b, 1);
	build_u32(&b, (uint32_t)ulen);
	build_bytes(&b, user, ulen);
	build_u16(&b, 0); /* result formats: all text */
	ok = build_end(&b) && ok;
	build_begin(&b, out, 'E');
	build_string(&b, "");
	build_u32(&b, 0);
	ok = build_end(&b) && ok;
	build_begin(&b, out, 'S');
	return build_end(&b) && ok;
}

bool auth_query_link(struct pv_socket *c, struct pv_socket *s)
{
	struct pv_buf out;
	bool ok;

	s->srv->task = TASK_AUTH_QUERY;
	s->srv->task_failed = false;
	buf_reset(&s->srv->task_err);
	buf_init(&out);
	ok = build_query(&out, auth_query_of(c->aq_home_pool->db), c->startup_user) &&
	     sbuf_queue(s, out.data, out.len);
	buf_free(&out);
	if (!ok) {
		server_close(s, "out of memory");
		return false;
	}
	s->expect_rfq++;
	return false;
}

/* One DataRow: exactly (name, password); a NULL password makes the user unusable. */
static bool take_row(struct pv_socket *c, const struct pkt *p)
{
	struct pkt_reader r;
	const uint8_t *pw = NULL;
	char secret[AQ_MAX_REPLY];
	int32_t len;

	reader_init_pkt(&r, p);
	if (read_u16(&r) != 2)
		return false;
	len = (int32_t)read_u32(&r);
	if (len > 0)
		read_bytes(&r, (size_t)len);
	len = (int32_t)read_u32(&r);
	if (len >= 0 && !(pw = read_bytes(&r, (size_t)len)))
		return false;
	if (r.bad || reader_left(&r) != 0 || len >= (int32_t)sizeof(secret))
		return false;
	if (pw && memchr(pw, '\0', (size_t)len))
		return false;
	secret[0] = '\0';
	if (pw) {
		memcpy(secret, pw, (size_t)len);
		secret[len] = '\0';
	}
	return cache_store(c->aq_home_pool->db->name, c->startup_user, secret);
}

/* The client leaves the auth pool and is a login client of its own pool again. */
static void restore_client(struct pv_socket *c, struct pv_socket *s)
{
	c->link = NULL;
	s->link = NULL;
	c->pool = c->aq_home_pool;
	c->aq_home_pool = NULL;
	c->wait_start = 0;
	socket_set_state(c, CL_LOGIN);
}

/* Decide for the client once the server is back in (or out of) its pool. */
static void conclude(struct pv_socket *c, bool query_ok)
{
	if (!query_ok || c->aq_rows < 0 || c->aq_rows > 1) {
		client_fatal(c, "08P01", "authentication query failed");
		return;
	}
	if (c->aq_rows == 0) {
		/* No mock authentication here: the answer is authoritative. */
		cache_remove(c->pool->db->name, c->startup_user);
		client_fatal(c, "08P01", "no such user");
		return;
	}
	c->aq_done = true;
	auth_start(c);
	if (!c->closing)
		sbuf_wakeup(c);
}

static enum pkt_action finish(struct pv_socket *s, const struct pkt *p)
{
	struct pv_socket *c = s->link;
	bool ok;

	if (!server_take_ready(s, p))
		return PKT_STOP;
	s->srv->task = TASK_NONE;
	ok = !s->srv->task_failed && s->tx_status == 'I';
	if (c)
		restore_client(c, s);
	if (ok)
		pool_release_server(s);
	else
		server_close(s, "auth query failed");
	if (c)
		conclude(c, ok);
	return s->closing ? PKT_STOP : PKT_CONSUMED;
}

static void note_error(struct pv_socket *s, const struct pkt *p)
{
	struct error_fields ef;
	if (proto_parse_error(pkt_body(p), pkt_body_len(p), &ef) && ef.message)
		slog_warning(s, "auth_query failed: %s", ef.message);
	s->srv->task_failed = true;
}

enum pkt_action auth_query_server_pkt(struct pv_socket *s, struct pkt *p)
{
	struct pv_socket *c = s->link;

	if (p->len > AQ_MAX_REPLY) {
		slog_warning(s, "auth_query reply too large");
		s->srv->task_failed = true;
		return PKT_DROP;
	}
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	switch (p->type) {
	case '1': /* ParseComplete */
	case '2': /* BindComplete */
	case 'C':
	case 'N':
	case 'n':
	case 'I':
	case 'S':
		return PKT_CONSUMED;
	case 'D':
		if (c && c->aq_rows >= 0)
			c->aq_rows = take_row(c, p) ? c->aq_rows + 1 : -1;
		return PKT_CONSUMED;
	case 'E':
		note_error(s, p);
		return PKT_CONSUMED;
	case 'Z':
		return finish(s, p);
	default:
		slog_warning(s, "auth_query: unexpected message '%c'", p->type);
		s->srv->task_failed = true;
		return PKT_CONSUMED;
	}
}
