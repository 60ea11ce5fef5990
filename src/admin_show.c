/*
 * admin_show.c - the admin console's SHOW commands: one table of subcommands
 * (name, rights, columns, row producer) and the producers, which read pools,
 * sockets and databases from G. Column names, order and types follow
 * PgBouncer 1.25 exactly, since monitoring tools address them by position.
 */
#include "pv_build_config.h"
#include "admin.h"
#include "dns.h"
#include "listener.h"
#include "log.h"
#include "oidc.h"
#include "oidc_cache.h"
#include "peer.h"
#include "prepared.h"
#include "replication.h"
#include "rules.h"
#include "approval.h"
#include "mask_catalog.h"
#include "record_events.h"
#include "stats.h"
#include "tls.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* --- result sets ---------------------------------------------------------------------- */

void res_row_begin(struct admin_res *r)
{
	r->col = 0;
	build_begin(&r->row, r->out, 'D');
	build_u16(&r->row, (uint16_t)r->ncols);
}

static void res_value(struct admin_res *r, const char *v, size_t n)
{
	build_u32(&r->row, (uint32_t)n);
	build_bytes(&r->row, v, n);
	r->col++;
}

void res_text(struct admin_res *r, const char *v)
{
	if (!v) {
		build_u32(&r->row, 0xffffffffu); /* SQL NULL */
		r->col++;
		return;
	}
	res_value(r, v, strlen(v));
}

void res_int(struct admin_res *r, long long v)
{
	res_fmt(r, "%lld", v);
}

void res_uint(struct admin_res *r, unsigned long long v)
{
	res_fmt(r, "%llu", v);
}

void res_fmt(struct admin_res *r, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	res_value(r, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

void res_row_end(struct admin_res *r)
{
	if (r->col != r->ncols) {
		/* A producer bug: never send a row that does not match its RowDescription. */
		log_error("admin: row has %d columns, expected %d", r->col, r->ncols);
		r->row.failed = true;
	}
	if (!build_end(&r->row))
		r->failed = true;
}

static void type_info(enum admin_type t, uint32_t *oid, int16_t *len)
{
	switch (t) {
	case AT_INT4:
		*oid = 23;
		*len = 4;
		break;
	case AT_INT8:
		*oid = 20;
		*len = 8;
		break;
	case AT_NUMERIC:
		*oid = 1700;
		*len = -1;
		break;
	case AT_TEXT:
	default:
		*oid = 25;
		*len = -1;
		break;
	}
}

static bool row_description(const struct admin_show *sh, struct pv_buf *out)
{
	struct pkt_builder b;
	build_begin(&b, out, 'T');
	build_u16(&b, (uint16_t)sh->ncols);
	for (int i = 0; i < sh->ncols; i++) {
		uint32_t oid;
		int16_t len;
		type_info(sh->cols[i].type, &oid, &len);
		build_string(&b, sh->cols[i].name);
		build_u32(&b, 0); /* table OID */
		build_u16(&b, 0); /* column number */
		build_u32(&b, oid);
		build_u16(&b, (uint16_t)len);
		build_u32(&b, 0xffffffffu); /* typmod -1 */
		build_u16(&b, 0);           /* text format */
	}
	return build_end(&b);
}

bool admin_show_run(const struct admin_show *sh, struct pv_buf *out)
{
	struct admin_res r = {out, sh->ncols, 0, {0}, false};
	if (!row_description(sh, out))
		return false;
	sh->rows(&r);
	return !r.failed && msg_command_complete(out, "SHOW");
}

/* --- shared formatting --------------------------------------------------------------- */

/* PgBouncer's timestamp columns: text "YYYY-MM-DD HH:MM:SS TZ" in local time. */
static void res_time(struct admin_res *r, usec_t t)
{
	char buf[64];
	time_t sec = (time_t)(t / USEC_PER_SEC);
	struct tm tm;
	if (t <= 0 || !localtime_r(&sec, &tm) ||
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %Z", &tm) == 0) {
		res_text(r, NULL);
		return;
	}
	res_text(r, buf);
}

/* Address text and port of a socket address; unix sockets show "unix" and listen_port. */
static void format_addr(const union pv_addr *ss, bool is_unix, char *buf, size_t len,
                        int *port)
{
	*port = 0;
	buf[0] = '\0';
	if (is_unix || ss->ss_family == AF_UNIX) {
		strlcpy_pv(buf, "unix", len);
		*port = G.cf->listen_port;
	} else if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;
		inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)len);
		*port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)len);
		*port = ntohs(in6->sin6_port);
	}
}

static void res_addr(struct admin_res *r, const union pv_addr *ss, bool is_unix)
{
	char buf[INET6_ADDRSTRLEN + 8];
	int port;
	format_addr(ss, is_unix, buf, sizeof(buf), &port);
	res_text(r, buf[0] ? buf : NULL);
	res_int(r, port);
}

/* The address getsockname gives fd (family 0 when it fails), as format_addr reads it. */
static union pv_addr local_addr_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	union pv_addr local;

	memset(&local, 0, sizeof(local));
	if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
			memcpy(&local, &ss, len < sizeof(local) ? len : sizeof(local));
		else
			local.ss_family = ss.ss_family;
	}
	return local;
}

/* The local address is not kept per socket (memory): the kernel knows it while the fd is open. */
static void res_local_addr(struct admin_res *r, const struct pv_socket *s)
{
	union pv_addr local = local_addr_of(s->fd);
	res_addr(r, &local, s->is_unix);
}

static const char *var_value(const struct pv_socket *s, const char *name)
{
	int i = varcache_index(name);
	return i >= 0 ? varcache_get(&s->vars, i) : NULL;
}

static int sort_by_name(const void *a, const void *b)
{
	const struct pv_database *x = *(const struct pv_database *const *)a;
	const struct pv_database *y = *(const struct pv_database *const *)b;
	return strcmp(x->name, y->name);
}

/* Live databases sorted by name (PgBouncer keeps its list sorted); NULL + failed on OOM. */
static struct pv_database **sorted_databases(struct admin_res *r, size_t *n)
{
	struct list_head *it;
	struct pv_database **v;
	size_t cnt = 0;

	list_for_each(it, &G.databases) cnt++;
	v = calloc(cnt ? cnt : 1, sizeof(*v));
	if (!v) {
		r->failed = true;
		return NULL;
	}
	cnt = 0;
	list_for_each(it, &G.databases)
	{
		struct pv_database *db = container_of(it, struct pv_database, node);
		if (!db->dead)
			v[cnt++] = db;
	}
	qsort(v, cnt, sizeof(*v), sort_by_name);
	*n = cnt;
	return v;
}

/* --- stats ---------------------------------------------------------------------------- */

#define N_STATS 12

static void stats_values(const struct pv_stats *s, uint64_t v[N_STATS])
{
	v[0] = s->server_assignment_count;
	v[1] = s->xact_count;
	v[2] = s->query_count;
	v[3] = s->bytes_received;
	v[4] = s->bytes_sent;
	v[5] = s->xact_time;
	v[6] = s->query_time;
	v[7] = s->wait_time;
	v[8] = s->client_parse_count;
	v[9] = s->server_parse_count;
	v[10] = s->bind_count;
	v[11] = s->client_login_count;
}

static void res_stats(struct admin_res *r, const struct pv_stats *s)
{
	uint64_t v[N_STATS];
	stats_values(s, v);
	for (int i = 0; i < N_STATS; i++)
		res_uint(r, v[i]);
}

/* One row per database: name, then totals and/or averages. */
static void stats_rows(struct admin_res *r, bool totals, bool avgs)
{
	size_t n = 0;
	struct pv_database **dbs = sorted_databases(r, &n);
	for (size_t i = 0; dbs && i < n; i++) {
		struct pv_stats tot, avg;
		stats_snapshot_db(dbs[i], &tot, &avg);
		res_row_begin(r);
		res_text(r, dbs[i]->name);
		if (totals)
			res_stats(r, &tot);
		if (avgs)
			res_stats(r, &avg);
		res_row_end(r);
	}
	free(dbs);
}

static void show_stats(struct admin_res *r)
{
	stats_rows(r, true, true);
}

static void show_stats_totals(struct admin_res *r)
{
	stats_rows(r, true, false);
}

static void show_stats_averages(struct admin_res *r)
{
	stats_rows(r, false, true);
}

static void show_totals(struct admin_res *r)
{
	static const char *const names[N_STATS] = {"server_assignment_count",
	                                           "xact_count",
	                                           "query_count",
	                                           "client_bytes",
	                                           "server_bytes",
	                                           "xact_time",
	                                           "query_time",
	                                           "wait_time",
	                                           "ps_client_parse_count",
	                                           "ps_server_parse_count",
	                                           "ps_bind_count",
	                                           "client_login_count"};
	struct pv_stats tot, avg;
	uint64_t v[2][N_STATS];

	stats_snapshot_all(&tot, &avg);
	stats_values(&tot, v[0]);
	stats_values(&avg, v[1]);
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < N_STATS; i++) {
			res_row_begin(r);
			res_fmt(r, "%s_%s", k ? "avg" : "total", names[i]);
			res_uint(r, v[k][i]);
			res_row_end(r);
		}
	}
}

/* --- clients, servers, sockets ----------------------------------------------------------- */

/* SHOW SOCKETS state names: PgBouncer's list names. */
static const char *socket_list_name(const struct pv_socket *s)
{
	switch (s->state) {
	case CL_LOGIN:
		return "cl_login";
	case CL_WAITING_LOGIN:
	case CL_WAITING:
		return "cl_waiting";
	case CL_ACTIVE:
		return "cl_active";
	case CL_CANCEL:
		return "cl_active_cancel_req";
	case SV_LOGIN:
		return "sv_login";
	case SV_IDLE:
		return "sv_idle";
	case SV_USED:
		return "sv_used";
	case SV_TESTED:
		return "sv_tested";
	case SV_ACTIVE:
		return "sv_active";
	case SV_CANCEL:
		return "sv_active_cancel";
	default:
		return "free";
	}
}

static int remote_pid(const struct pv_socket *s)
{
	const uint8_t *k = s->cancel_key;
	if (s->is_unix)
		return s->peer_pid;
	if (!s->is_server)
		return 0;
	/* A server's BackendKeyData starts with the backend's pid. */
	return (int)(((uint32_t)k[0] << 24) | ((uint32_t)k[1] << 16) | ((uint32_t)k[2] << 8) |
	             (uint32_t)k[3]);
}

/* The 21 columns shared by SHOW CLIENTS, SERVERS and SOCKETS. */
static void socket_columns(struct admin_res *r, const struct pv_socket *s, bool list_names)
{
	const char *user = s->is_server || !s->startup_user ? (s->pool ? s->pool->user->name : NULL)
	                                                    : s->startup_user;
	usec_t wait = 0;
	const char *app;
	char tls[128];

	if (s->state == CL_WAITING && s->wait_start)
		wait = now_usec() - s->wait_start;
	res_text(r, s->is_server ? "S" : "C");
	res_text(r, user);
	res_text(r, s->pool ? s->pool->db->name : s->startup_db);
	res_text(r, repl_kind_name(s->replication));
	res_text(r, list_names ? socket_list_name(s) : socket_state_name(s));
	res_addr(r, &s->remote, s->is_unix);
	res_local_addr(r, s);
	res_time(r, s->connect_time);
	res_time(r, s->request_time ? s->request_time : s->connect_time);
	res_int(r, wait / USEC_PER_SEC);
	res_int(r, wait % USEC_PER_SEC);
	res_int(r, s->close_needed ? 1 : 0);
	res_fmt(r, "%p", (const void *)s);
	if (s->link)
		res_fmt(r, "%p", (const void *)s->link);
	else
		res_text(r, NULL);
	res_int(r, remote_pid(s));
	tls_info(s, tls, sizeof(tls)); /* "" without TLS */
	res_text(r, tls);
	app = s->is_server ? var_value(s, "application_name") : s->app_name;
	if (!app && !s->is_server)
		app = var_value(s, "application_name");
	res_text(r, app ? app : "");
	res_int(r, s->is_server ? ps_server_count(s) : ps_client_count(s)); /* prepared_statements */
	res_uint(r, (unsigned long long)s->id);
}

static void client_row_cb(struct pv_socket *s, void *arg)
{
	struct admin_res *r = arg;
	if (s->closing || s->state == CL_CANCEL)
		return;
	res_row_begin(r);
	socket_columns(r, s, false);
	res_row_end(r);
}

static void show_clients(struct admin_res *r)
{
	admin_for_each_client(client_row_cb, r);
}

static void show_servers(struct admin_res *r)
{
	admin_for_each_server(client_row_cb, r);
}

/* SHOW SESSIONS: one row per logged-in client with its token identity (if any). */
static void session_row_cb(struct pv_socket *s, void *arg)
{
	struct admin_res *r = arg;
	const struct pv_identity *id = s->identity;
	const char *app = s->app_name ? s->app_name : var_value(s, "application_name");
	char groups[1024];

	if (s->closing || s->state == CL_CANCEL || s->login_phase != LOGIN_DONE)
		return;
	identity_groups_str(id, groups, sizeof(groups));
	res_row_begin(r);
	res_uint(r, (unsigned long long)s->id);
	res_text(r, id ? id->subject : NULL);
	res_text(r, id ? id->provider : NULL);
	res_text(r, id ? groups : NULL);
	res_text(r, s->startup_user);
	res_text(r, s->pool ? s->pool->db->name : s->startup_db);
	res_text(r, app ? app : "");
	res_time(r, id ? (usec_t)id->exp * USEC_PER_SEC : 0);
	res_uint(r, (unsigned long long)s->stmt_count);
	res_uint(r, (unsigned long long)s->denials);
	res_int(r, s->approval && s->approval->state == APPROVAL_PENDING ? 1 : 0);
	res_row_end(r);
}

static void show_sessions(struct admin_res *r)
{
	admin_for_each_client(session_row_cb, r);
}

static void policy_row(void *arg, const char *rule, const char *action, uint64_t hits,
                       const char *message)
{
	struct admin_res *r = arg;
	res_row_begin(r);
	res_text(r, rule);
	res_text(r, action);
	res_uint(r, (unsigned long long)hits);
	res_text(r, message);
	res_row_end(r);
}

/* Rules of the running policy in file order, then default and unparsable. */
static void show_policy(struct admin_res *r)
{
	rules_show(gov_active(), policy_row, r);
}

static void approval_row(const struct approval *a, void *arg)
{
	struct admin_res *r = arg;
	usec_t now = now_usec();
	usec_t left = a->deadline > now ? a->deadline - now : 0;

	res_row_begin(r);
	res_uint(r, (unsigned long long)a->id);
	res_text(r, a->rule);
	res_text(r, a->subject);
	res_text(r, a->database);
	res_text(r, a->db_user);
	res_text(r, a->statement);
	res_int(r, (long long)((now - a->created) / USEC_PER_SEC));
	res_int(r, (long long)((left + USEC_PER_SEC - 1) / USEC_PER_SEC)); /* seconds left */
	res_row_end(r);
}

static void mask_row(void *arg, const struct mask_show_row *m)
{
	struct admin_res *r = arg;

	res_row_begin(r);
	res_text(r, m->database);
	res_text(r, m->rule->name);
	res_text(r, m->schema);
	res_text(r, m->table);
	res_text(r, m->column);
	if (m->table_oid) {
		res_uint(r, m->table_oid);
		res_int(r, m->attnum);
	} else {
		res_text(r, NULL);
		res_text(r, NULL);
	}
	res_text(r, mask_method_name(m->rule->spec.method));
	res_text(r, m->via ? m->via : "");
	res_time(r, m->resolved_at); /* NULL for detect rules */
	res_row_end(r);
}

/* Resolved columns per database, then one row per detect rule (mask_catalog.h). */
static void show_masks(struct admin_res *r)
{
	mask_catalog_show(mask_row, r);
}

/* Statements held for a decision, oldest first (approval.h). */
static void show_approvals(struct admin_res *r)
{
	approval_for_each_pending(approval_row, r);
}

struct sockets_arg {
	struct admin_res *r;
	bool active_only;
};

static void socket_row_cb(struct pv_socket *s, void *arg)
{
	struct sockets_arg *sa = arg;
	struct admin_res *r = sa->r;
	if (s->closing)
		return;
	/* ACTIVE_SOCKETS: sockets holding buffered bytes (PgBouncer: an allocated iobuf). */
	if (sa->active_only && buf_pending(&s->in) == 0 && buf_pending(&s->out) == 0)
		return;
	res_row_begin(r);
	socket_columns(r, s, true);
	res_uint(r, s->in.len);                          /* recv_pos */
	res_uint(r, s->in.pos);                          /* pkt_pos */
	res_uint(r, (unsigned long long)s->pass_remain); /* pkt_remain */
	res_uint(r, s->out.pos);                         /* send_pos */
	res_int(r, 0);                                   /* send_remain */
	res_uint(r, buf_pending(&s->in));                /* pkt_avail */
	res_uint(r, buf_pending(&s->out));               /* send_avail */
	res_row_end(r);
}

static void sockets_rows(struct admin_res *r, bool active_only)
{
	struct sockets_arg sa = {r, active_only};
	struct list_head *it, *tmp;
	list_for_each_safe(it, tmp, &G.login_clients)
	    socket_row_cb(container_of(it, struct pv_socket, node), &sa);
	admin_for_each_client(socket_row_cb, &sa);
	admin_for_each_server(socket_row_cb, &sa);
}

static void show_sockets(struct admin_res *r)
{
	sockets_rows(r, false);
}

static void show_active_sockets(struct admin_res *r)
{
	sockets_rows(r, true);
}

/* --- pools, databases, users, peers ----------------------------------------------------- */

static int count_state(const struct list_head *l, enum sock_state st)
{
	const struct list_head *it;
	int n = 0;
	list_for_each(it, l) if (container_of(it, const struct pv_socket, node)->state == st) n++;
	return n;
}

static usec_t max_wait(const struct pv_pool *p)
{
	const struct list_head *it;
	usec_t now = now_usec(), max = 0;
	list_for_each(it, &p->waiting_clients)
	{
		const struct pv_socket *c = container_of(it, const struct pv_socket, node);
		usec_t since = c->wait_start ? c->wait_start : c->connect_time;
		if (now - since > max)
			max = now - since;
	}
	return max;
}

/* NULL unless the entry has a host list (PgBouncer shows the setting only then). */
static const char *lb_hosts_of(const struct pv_database *db)
{
	const struct db_conf *dc = db->conf;
	if (!dc || !dc->host || !strchr(dc->host, ','))
		return NULL;
	return lb_hosts_name(dc->load_balance_hosts);
}

static int sort_pools(const void *a, const void *b)
{
	const struct pv_pool *x = *(const struct pv_pool *const *)a;
	const struct pv_pool *y = *(const struct pv_pool *const *)b;
	int c = strcmp(x->db->name, y->db->name);
	return c ? c : strcmp(x->user->name, y->user->name);
}

static void pool_row(struct admin_res *r, const struct pv_pool *p)
{
	usec_t wait = max_wait(p);
	res_row_begin(r);
	res_text(r, p->db->name);
	res_text(r, p->user->name);
	res_int(r, (long long)list_count(&p->active_clients));
	res_int(r, (long long)list_count(&p->waiting_clients));
	res_int(r, 0); /* cl_active_cancel_req */
	res_int(r, 0); /* cl_waiting_cancel_req */
	res_int(r, (long long)list_count(&p->active_servers));
	res_int(r, count_state(&p->cancel_servers, SV_CANCEL));
	res_int(r, 0); /* sv_being_canceled */
	res_int(r, (long long)list_count(&p->idle_servers));
	res_int(r, (long long)list_count(&p->used_servers));
	res_int(r, (long long)list_count(&p->tested_servers));
	res_int(r, (long long)list_count(&p->login_servers));
	res_int(r, wait / USEC_PER_SEC);
	res_int(r, wait % USEC_PER_SEC);
	res_text(r, pool_mode_name(pool_effective_mode(p)));
	res_text(r, lb_hosts_of(p->db));
	res_row_end(r);
}

static void show_pools(struct admin_res *r)
{
	struct list_head *it;
	struct pv_pool **v;
	size_t n = 0;

	admin_pool_get();
	list_for_each(it, &G.pools) n++;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		r->failed = true;
		return;
	}
	n = 0;
	list_for_each(it, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (!p->db->dead)
			v[n++] = p;
	}
	qsort(v, n, sizeof(*v), sort_pools);
	for (size_t i = 0; i < n; i++)
		pool_row(r, v[i]);
	free(v);
}

static int pick(int db_value, int global)
{
	return db_value >= 0 ? db_value : global;
}

/* A limit of 0 or less in an entry means "use the global one". */
static int pick_limit(int value, int global)
{
	return value > 0 ? value : global;
}

static void admin_db_row(struct admin_res *r, const struct pv_database *db)
{
	res_text(r, NULL);
	res_int(r, G.cf->listen_port);
	res_text(r, ADMIN_DB_NAME);
	res_text(r, ADMIN_USER_NAME);
	res_int(r, 2); /* pool_size */
	res_int(r, 0);
	res_int(r, 0);
	res_int(r, 0);
	res_text(r, pool_mode_name(POOL_STATEMENT));
	res_text(r, NULL);
	res_int(r, 0);
	res_int(r, db->server_count);
	res_int(r, 0);
	res_int(r, db->client_count);
}

static void conf_db_row(struct admin_res *r, const struct pv_database *db)
{
	const struct db_conf *dc = db->conf;
	usec_t lifetime = dc->server_lifetime >= 0 ? dc->server_lifetime : G.cf->server_lifetime;

	res_text(r, dc->host);
	res_int(r, dc->port > 0 ? dc->port : 5432);
	res_text(r, dc->dbname ? dc->dbname : db->name);
	res_text(r, dc->user);
	res_int(r, pick(dc->pool_size, G.cf->default_pool_size));
	res_int(r, pick(dc->min_pool_size, G.cf->min_pool_size));
	res_int(r, pick(dc->reserve_pool_size, G.cf->reserve_pool_size));
	res_int(r, lifetime / USEC_PER_SEC);
	res_text(r, dc->pool_mode == POOL_INHERIT ? NULL : pool_mode_name(dc->pool_mode));
	res_text(r, lb_hosts_of(db));
	res_int(r, pick_limit(dc->max_db_connections, G.cf->max_db_connections));
	res_int(r, db->server_count);
	res_int(r, pick_limit(dc->max_db_client_connections, G.cf->max_db_client_connections));
	res_int(r, db->client_count);
}

static void show_databases(struct admin_res *r)
{
	size_t n = 0;
	struct pv_database **dbs = sorted_databases(r, &n);
	for (size_t i = 0; dbs && i < n; i++) {
		if (!dbs[i]->is_admin && !dbs[i]->conf)
			continue;
		res_row_begin(r);
		res_text(r, dbs[i]->name);
		if (dbs[i]->is_admin)
			admin_db_row(r, dbs[i]);
		else
			conf_db_row(r, dbs[i]);
		res_int(r, dbs[i]->paused ? 1 : 0);
		res_int(r, dbs[i]->disabled ? 1 : 0);
		res_row_end(r);
	}
	free(dbs);
}

static int sort_users(const void *a, const void *b)
{
	const struct pv_user *x = *(const struct pv_user *const *)a;
	const struct pv_user *y = *(const struct pv_user *const *)b;
	return strcmp(x->name, y->name);
}

static void res_padded(struct admin_res *r, int v)
{
	if (v >= 0)
		res_fmt(r, "%9d", v);
	else
		res_text(r, "");
}

static void user_row(struct admin_res *r, const struct pv_user *u)
{
	const struct user_conf *uc = config_find_user(G.cf, u->name);
	res_row_begin(r);
	res_text(r, u->name);
	res_padded(r, uc ? uc->pool_size : -1);
	res_padded(r, uc ? uc->reserve_pool_size : -1);
	res_text(r, uc && uc->pool_mode != POOL_INHERIT ? pool_mode_name(uc->pool_mode) : NULL);
	res_int(r, pick_limit(uc ? uc->max_user_connections : 0, G.cf->max_user_connections));
	res_int(r, u->server_count);
	res_int(r, pick_limit(uc ? uc->max_user_client_connections : 0,
	                      G.cf->max_user_client_connections));
	res_int(r, u->client_count);
	res_row_end(r);
}

static void show_users(struct admin_res *r)
{
	struct list_head *it;
	struct pv_user **v;
	size_t n = 0;

	/* [users] entries are users even before anyone logged in as them. */
	list_for_each(it, &G.cf->users) user_get(container_of(it, struct user_conf, node)->name);
	list_for_each(it, &G.users) n++;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		r->failed = true;
		return;
	}
	n = 0;
	list_for_each(it, &G.users) v[n++] = container_of(it, struct pv_user, node);
	qsort(v, n, sizeof(*v), sort_users);
	for (size_t i = 0; i < n; i++)
		user_row(r, v[i]);
	free(v);
}

static void show_peers(struct admin_res *r)
{
	struct list_head *it;
	list_for_each(it, &G.cf->peers)
	{
		const struct peer_conf *pc = container_of(it, struct peer_conf, node);
		res_row_begin(r);
		res_int(r, pc->peer_id);
		res_text(r, pc->host);
		res_int(r, pc->port);
		res_int(r, pick(pc->pool_size, G.cf->default_pool_size));
		res_row_end(r);
	}
}

/* Peer pools (peer.c): cancel requests forwarded to other processes, per peer id. */
static void show_peer_pools(struct admin_res *r)
{
	struct peer_pool_row row;
	for (size_t i = 0; peer_pool_row_at(i, &row); i++) {
		res_row_begin(r);
		res_int(r, row.peer_id);
		res_int(r, row.cl_active_cancel_req);
		res_int(r, row.cl_waiting_cancel_req);
		res_int(r, row.sv_active_cancel);
		res_int(r, row.sv_login);
		res_row_end(r);
	}
}

/* --- lists, memory, config, fds, dns, state, version --------------------------------- */

struct sock_counts {
	int clients, servers, login;
	size_t buffers, buffer_bytes;
};

static void count_cb(struct pv_socket *s, void *arg)
{
	struct sock_counts *sc = arg;
	if (s->is_server)
		sc->servers++;
	else
		sc->clients++;
	sc->buffers += (s->in.cap > 0) + (s->out.cap > 0);
	sc->buffer_bytes += s->in.cap + s->out.cap;
}

static void count_sockets(struct sock_counts *sc)
{
	struct list_head *it;
	memset(sc, 0, sizeof(*sc));
	admin_for_each_client(count_cb, sc);
	admin_for_each_server(count_cb, sc);
	list_for_each(it, &G.login_clients)
	{
		count_cb(container_of(it, struct pv_socket, node), sc);
		sc->login++;
	}
}

static void list_row(struct admin_res *r, const char *name, long long n)
{
	res_row_begin(r);
	res_text(r, name);
	res_int(r, n);
	res_row_end(r);
}

static long long count_live_dbs(void)
{
	struct list_head *it;
	long long n = 0;
	list_for_each(it, &G.databases) if (!container_of(it, struct pv_database, node)->dead) n++;
	return n;
}

static void show_lists(struct admin_res *r)
{
	struct sock_counts sc;
	count_sockets(&sc);
	list_row(r, "databases", count_live_dbs());
	list_row(r, "users", (long long)list_count(&G.users));
	list_row(r, "peers", (long long)list_count(&G.cf->peers));
	list_row(r, "pools", (long long)list_count(&G.pools));
	list_row(r, "peer_pools", (long long)peer_pool_count());
	list_row(r, "free_clients", 0);
	list_row(r, "used_clients", sc.clients);
	list_row(r, "login_clients", sc.login);
	list_row(r, "free_servers", 0);
	list_row(r, "used_servers", sc.servers);
	list_row(r, "dns_names", dns_names_count(G.dns));
	list_row(r, "dns_zones", dns_zones_count(G.dns));
	list_row(r, "dns_queries", dns_pending_count(G.dns));
	list_row(r, "dns_pending", dns_pending_count(G.dns));
}

static void mem_row(struct admin_res *r, const char *name, size_t size, size_t used, size_t total)
{
	res_row_begin(r);
	res_text(r, name);
	res_uint(r, size);
	res_uint(r, used);
	res_int(r, 0); /* free: objects are malloc'd, nothing is kept in a free list */
	res_uint(r, total);
	res_row_end(r);
}

static void show_mem(struct admin_res *r)
{
	struct sock_counts sc;
	size_t n;
	count_sockets(&sc);
	n = list_count(&G.users);
	mem_row(r, "user_cache", sizeof(struct pv_user), n, n * sizeof(struct pv_user));
	n = (size_t)count_live_dbs();
	mem_row(r, "db_cache", sizeof(struct pv_database), n, n * sizeof(struct pv_database));
	n = list_count(&G.pools);
	mem_row(r, "pool_cache", sizeof(struct pv_pool), n, n * sizeof(struct pv_pool));
	n = (size_t)sc.servers;
	mem_row(r, "server_cache", socket_alloc_size(true), n, n * socket_alloc_size(true));
	n = (size_t)sc.clients;
	mem_row(r, "client_cache", socket_alloc_size(false), n, n * socket_alloc_size(false));
	mem_row(r, "iobuf_cache", (size_t)G.cf->pkt_buf, sc.buffers, sc.buffer_bytes);
}

static void show_config(struct admin_res *r)
{
	struct config_row row;
	for (size_t i = 0; config_row_at(G.cf, i, &row); i++) {
		res_row_begin(r);
		res_text(r, row.key);
		res_text(r, row.value);
		res_text(r, row.default_value);
		res_text(r, row.changeable ? "yes" : "no");
		res_row_end(r);
	}
}

static void fd_listener_rows(struct admin_res *r)
{
	int fd;
	bool is_unix;
	for (int i = 0; listeners_fd_at(i, &fd, &is_unix); i++) {
		union pv_addr ss = local_addr_of(fd);
		if (!ss.ss_family)
			continue;
		res_row_begin(r);
		res_int(r, fd);
		res_text(r, "pooler");
		res_text(r, NULL);
		res_text(r, NULL);
		res_addr(r, &ss, is_unix);
		res_int(r, 0);
		res_int(r, 0);
		for (int k = 0; k < 7; k++)
			res_text(r, NULL);
		res_row_end(r);
	}
}

static unsigned long long key_u64(const uint8_t k[8])
{
	unsigned long long v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | k[i];
	return v;
}

/*
 * Client and server fds as PgBouncer lists them for online restart. pgvigil
 * does not pass fds (takeover, -R, is not supported), so no fd is attached and
 * secrets (password, SCRAM keys) are never shown.
 */
static void fd_socket_cb(struct pv_socket *s, void *arg)
{
	struct admin_res *r = arg;
	if (s->closing || s->fd < 0 || s->state == SV_LOGIN || s->state == SV_CANCEL ||
	    s->state == CL_CANCEL || s->tls) /* TLS state cannot be handed over: skipped */
		return;
	res_row_begin(r);
	res_int(r, s->fd);
	res_text(r, s->is_server ? "server" : "client");
	res_text(r, s->pool ? s->pool->user->name : NULL);
	res_text(r, s->pool ? s->pool->db->name : NULL);
	res_addr(r, &s->remote, s->is_unix);
	res_uint(r, key_u64(s->cancel_key));
	res_int(r, s->link ? s->link->fd : 0);
	res_text(r, var_value(s, "client_encoding"));
	res_text(r, var_value(s, "standard_conforming_strings"));
	res_text(r, var_value(s, "DateStyle"));
	res_text(r, var_value(s, "TimeZone"));
	res_text(r, NULL);
	res_text(r, NULL);
	res_text(r, NULL);
	res_row_end(r);
}

static void show_fds(struct admin_res *r)
{
	fd_listener_rows(r);
	admin_for_each_client(fd_socket_cb, r);
	admin_for_each_server(fd_socket_cb, r);
}

static void show_dns_hosts(struct admin_res *r)
{
	char host[256], addrs[1024];
	long long ttl;
	for (size_t i = 0; dns_cache_row(G.dns, i, host, sizeof(host), &ttl, addrs, sizeof(addrs));
	     i++) {
		res_row_begin(r);
		res_text(r, host);
		res_int(r, ttl);
		res_text(r, addrs);
		res_row_end(r);
	}
}

/* Empty unless dns_zone_check_period is set. */
static void show_dns_zones(struct admin_res *r)
{
	char zone[256];
	long long serial;
	int count;

	for (size_t i = 0; dns_zone_row(G.dns, i, zone, sizeof(zone), &serial, &count); i++) {
		res_row_begin(r);
		res_text(r, zone);
		res_int(r, serial);
		res_int(r, count);
		res_row_end(r);
	}
}

static void state_row(struct admin_res *r, const char *key, bool yes)
{
	res_row_begin(r);
	res_text(r, key);
	res_text(r, yes ? "yes" : "no");
	res_row_end(r);
}

static void show_state(struct admin_res *r)
{
	state_row(r, "active", G.pause_mode == PAUSE_NONE);
	state_row(r, "paused", G.pause_mode == PAUSE_PAUSE);
	state_row(r, "suspended", G.pause_mode == PAUSE_SUSPEND);
}

/* One row while a recorder runs (doc/recordings.md); none when recording is off. */
static void show_recorder(struct admin_res *r)
{
	struct rec_stats st;

	if (!record_stats(&st))
		return;
	res_row_begin(r);
	res_text(r, st.file);
	res_uint(r, st.bytes);
	res_uint(r, st.events);
	res_uint(r, st.queue_depth);
	res_uint(r, st.drops);
	res_text(r, st.failing ? "yes" : "no");
	res_text(r, st.last_error);
	res_row_end(r);
}

/* One row: the OIDC verified-token cache (oidc_cache.h), whether or not OIDC is configured. */
static void show_token_cache(struct admin_res *r)
{
	struct oidc_cache_stats st;

	oidc_cache_get_stats(&st);
	res_row_begin(r);
	res_uint(r, st.entries);
	res_uint(r, OIDC_CACHE_MAX_ENTRIES);
	res_uint(r, st.hits);
	res_uint(r, st.misses);
	res_uint(r, st.stale);
	res_uint(r, st.evictions);
	res_uint(r, st.flushes);
	res_row_end(r);
}

static void show_version(struct admin_res *r)
{
	res_row_begin(r);
	/* Starts like PgBouncer's so tools that parse "PgBouncer X.Y.Z" keep working. */
	res_text(r, "PgBouncer " ADMIN_COMPAT_VERSION " (pgvigil " PACKAGE_VERSION ")");
	res_row_end(r);
}

/* --- the table ----------------------------------------------------------------------- */

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define S    AT_TEXT
#define I    AT_INT4
#define Q    AT_INT8
#define NUM  AT_NUMERIC

static const struct admin_col cols_stats[] = {
    {"database", S},
    {"total_server_assignment_count", NUM},
    {"total_xact_count", NUM},
    {"total_query_count", NUM},
    {"total_received", NUM},
    {"total_sent", NUM},
    {"total_xact_time", NUM},
    {"total_query_time", NUM},
    {"total_wait_time", NUM},
    {"total_client_parse_count", NUM},
    {"total_server_parse_count", NUM},
    {"total_bind_count", NUM},
    {"total_client_login_count", NUM},
    {"avg_server_assignment_count", NUM},
    {"avg_xact_count", NUM},
    {"avg_query_count", NUM},
    {"avg_recv", NUM},
    {"avg_sent", NUM},
    {"avg_xact_time", NUM},
    {"avg_query_time", NUM},
    {"avg_wait_time", NUM},
    {"avg_client_parse_count", NUM},
    {"avg_server_parse_count", NUM},
    {"avg_bind_count", NUM},
    {"avg_client_login_count", NUM},
};

static const struct admin_col cols_stats_totals[] = {
    {"database", S},
    {"server_assignment_count", NUM},
    {"xact_count", NUM},
    {"query_count", NUM},
    {"bytes_received", NUM},
    {"bytes_sent", NUM},
    {"xact_time", NUM},
    {"query_time", NUM},
    {"wait_time", NUM},
    {"client_parse_count", NUM},
    {"server_parse_count", NUM},
    {"bind_count", NUM},
    {"client_login_count", NUM},
};

/* The names really mix prefixed and unprefixed columns in PgBouncer. */
static const struct admin_col cols_stats_averages[] = {
    {"database", S},
    {"server_assignment_count", NUM},
    {"xact_count", NUM},
    {"query_count", NUM},
    {"bytes_received", NUM},
    {"bytes_sent", NUM},
    {"xact_time", NUM},
    {"query_time", NUM},
    {"wait_time", NUM},
    {"avg_client_parse_count", NUM},
    {"avg_server_parse_count", NUM},
    {"avg_bind_count", NUM},
    {"avg_client_login_count", NUM},
};

static const struct admin_col cols_totals[] = {{"name", S}, {"value", NUM}};

#define SOCKET_COLS                                                                                \
	{"type", S}, {"user", S}, {"database", S}, {"replication", S}, {"state", S}, {"addr", S},  \
	    {"port", I}, {"local_addr", S}, {"local_port", I}, {"connect_time", S},                \
	    {"request_time", S}, {"wait", I}, {"wait_us", I}, {"close_needed", I}, {"ptr", S},     \
	    {"link", S}, {"remote_pid", I}, {"tls", S}, {"application_name", S},                   \
	    {"prepared_statements", I},                                                            \
	{                                                                                          \
		"id", I                                                                            \
	}

static const struct admin_col cols_clients[] = {SOCKET_COLS};

static const struct admin_col cols_sockets[] = {
    SOCKET_COLS,     {"recv_pos", I},    {"pkt_pos", I},   {"pkt_remain", I},
    {"send_pos", I}, {"send_remain", I}, {"pkt_avail", I}, {"send_avail", I},
};

static const struct admin_col cols_pools[] = {
    {"database", S},
    {"user", S},
    {"cl_active", I},
    {"cl_waiting", I},
    {"cl_active_cancel_req", I},
    {"cl_waiting_cancel_req", I},
    {"sv_active", I},
    {"sv_active_cancel", I},
    {"sv_being_canceled", I},
    {"sv_idle", I},
    {"sv_used", I},
    {"sv_tested", I},
    {"sv_login", I},
    {"maxwait", I},
    {"maxwait_us", I},
    {"pool_mode", S},
    {"load_balance_hosts", S},
};

static const struct admin_col cols_peer_pools[] = {
    {"peer_id", I},
    {"cl_active_cancel_req", I},
    {"cl_waiting_cancel_req", I},
    {"sv_active_cancel", I},
    {"sv_login", I},
};

static const struct admin_col cols_databases[] = {
    {"name", S},
    {"host", S},
    {"port", I},
    {"database", S},
    {"force_user", S},
    {"pool_size", I},
    {"min_pool_size", I},
    {"reserve_pool_size", I},
    {"server_lifetime", I},
    {"pool_mode", S},
    {"load_balance_hosts", S},
    {"max_connections", I},
    {"current_connections", I},
    {"max_client_connections", I},
    {"current_client_connections", I},
    {"paused", I},
    {"disabled", I},
};

static const struct admin_col cols_peers[] = {
    {"peer_id", I}, {"host", S}, {"port", I}, {"pool_size", I}};

static const struct admin_col cols_users[] = {
    {"name", S},
    {"pool_size", S},
    {"reserve_pool_size", S},
    {"pool_mode", S},
    {"max_user_connections", I},
    {"current_connections", I},
    {"max_user_client_connections", I},
    {"current_client_connections", I},
};

static const struct admin_col cols_lists[] = {{"list", S}, {"items", I}};

static const struct admin_col cols_mem[] = {
    {"name", S}, {"size", I}, {"used", I}, {"free", I}, {"memtotal", I}};

static const struct admin_col cols_config[] = {
    {"key", S}, {"value", S}, {"default", S}, {"changeable", S}};

static const struct admin_col cols_fds[] = {
    {"fd", I},
    {"task", S},
    {"user", S},
    {"database", S},
    {"addr", S},
    {"port", I},
    {"cancel", Q},
    {"link", I},
    {"client_encoding", S},
    {"std_strings", S},
    {"datestyle", S},
    {"timezone", S},
    {"password", S},
    {"scram_client_key", S},
    {"scram_server_key", S},
};

static const struct admin_col cols_dns_hosts[] = {{"hostname", S}, {"ttl", Q}, {"addrs", S}};
static const struct admin_col cols_dns_zones[] = {{"zonename", S}, {"serial", Q}, {"count", I}};
static const struct admin_col cols_sessions[] = {
    {"id", Q},         {"identity", S}, {"provider", S},         {"groups", S},
    {"db_user", S},    {"database", S}, {"application_name", S}, {"token_expiry", S},
    {"statements", Q}, {"denials", Q},  {"held", Q},
};
static const struct admin_col cols_policy[] = {
    {"rule", S}, {"action", S}, {"hits", Q}, {"message", S}};
static const struct admin_col cols_approvals[] = {
    {"id", Q},        {"rule", S},      {"subject", S}, {"database", S},
    {"db_user", S},   {"statement", S}, {"age_s", Q},   {"timeout_s", Q},
};
static const struct admin_col cols_masks[] = {
    {"database", S}, {"mask", S},   {"schema", S}, {"table", S},	   {"column", S},
    {"table_oid", Q}, {"attnum", I}, {"method", S}, {"via_view", S}, {"resolved_at", S},
};
static const struct admin_col cols_recorder[] = {
    {"file", S}, {"bytes", Q}, {"events", Q}, {"queue_depth", Q},
    {"drops", Q}, {"failing", S}, {"last_error", S},
};
static const struct admin_col cols_token_cache[] = {
    {"entries", Q}, {"max_entries", Q}, {"hits", Q}, {"misses", Q},
    {"stale", Q}, {"evictions", Q}, {"flushes", Q},
};
static const struct admin_col cols_state[] = {{"key", S}, {"value", S}};
static const struct admin_col cols_version[] = {{"version", S}};

#define SHOW(name, admin, cols, fn)                                                                \
	{                                                                                          \
		name, admin, cols, N(cols), fn                                                     \
	}

/* SHOW HELP lists these in this order. */
static const struct admin_show shows[] = {
    SHOW("CONFIG", false, cols_config, show_config),
    SHOW("DATABASES", false, cols_databases, show_databases),
    SHOW("POOLS", false, cols_pools, show_pools),
    SHOW("CLIENTS", false, cols_clients, show_clients),
    SHOW("SERVERS", false, cols_clients, show_servers),
    SHOW("USERS", false, cols_users, show_users),
    SHOW("VERSION", false, cols_version, show_version),
    SHOW("PEERS", false, cols_peers, show_peers),
    SHOW("PEER_POOLS", false, cols_peer_pools, show_peer_pools),
    SHOW("FDS", true, cols_fds, show_fds),
    SHOW("SOCKETS", false, cols_sockets, show_sockets),
    SHOW("ACTIVE_SOCKETS", false, cols_sockets, show_active_sockets),
    SHOW("LISTS", false, cols_lists, show_lists),
    SHOW("MEM", false, cols_mem, show_mem),
    SHOW("STATE", false, cols_state, show_state),
    SHOW("DNS_HOSTS", false, cols_dns_hosts, show_dns_hosts),
    SHOW("DNS_ZONES", false, cols_dns_zones, show_dns_zones),
    SHOW("STATS", false, cols_stats, show_stats),
    SHOW("STATS_TOTALS", false, cols_stats_totals, show_stats_totals),
    SHOW("STATS_AVERAGES", false, cols_stats_averages, show_stats_averages),
    SHOW("TOTALS", false, cols_totals, show_totals),
    SHOW("SESSIONS", false, cols_sessions, show_sessions),
    SHOW("POLICY", false, cols_policy, show_policy),
    SHOW("APPROVALS", true, cols_approvals, show_approvals),
    SHOW("MASKS", false, cols_masks, show_masks),
    SHOW("RECORDER", false, cols_recorder, show_recorder),
    SHOW("TOKEN_CACHE", false, cols_token_cache, show_token_cache),
};

const struct admin_show *admin_show_find(const char *name)
{
	for (int i = 0; i < N(shows); i++)
		if (strcasecmp(shows[i].name, name) == 0)
			return &shows[i];
	return NULL;
}

const struct admin_show *admin_show_at(size_t i)
{
	return i < (size_t)N(shows) ? &shows[i] : NULL;
}

const char *admin_help_text(void)
{
	static char text[2048];
	static const char control[] = "\tSET key = arg\n"
	                              "\tRELOAD\n"
	                              "\tPAUSE [<db>]\n"
	                              "\tRESUME [<db>]\n"
	                              "\tDISABLE <db>\n"
	                              "\tENABLE <db>\n"
	                              "\tRECONNECT [<db>]\n"
	                              "\tKILL [<db>]\n"
	                              "\tKILL_CLIENT <client_id>\n"
	                              "\tSUSPEND\n"
	                              "\tSHUTDOWN\n"
	                              "\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n"
	                              "\tWAIT_CLOSE [<db>]\n"
	                              "\tAPPROVE <id> [FOR <duration>]\n"
	                              "\tDENY <id> [reason]";
	size_t len;

	/* Built from the table so every registered SHOW is listed, six per line. */
	len = (size_t)snprintf(text, sizeof(text), "Console usage\n\tSHOW HELP");
	for (int i = 0; i < N(shows) && len < sizeof(text); i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%s",
		                        (i + 1) % 6 == 0 ? "\n\tSHOW " : "|", shows[i].name);
	if (len < sizeof(text))
		snprintf(text + len, sizeof(text) - len, "\n%s", control);
	return text;
}
