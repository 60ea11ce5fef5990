/*
 * metrics.c - the Prometheus endpoint: evhttp on G.base, GET /metrics in text
 * format 0.0.4, names as prometheus-community/pgbouncer_exporter exports them
 * (so its dashboards and alerts work unchanged), produced straight from the
 * pool objects instead of through the admin console.
 *
 * evhttp reads requests and writes replies non-blocking on the loop; a reply
 * is built in one go into an evbuffer, like an admin SHOW result.
 */
#include "metrics.h"
#include "dns.h"
#include "pool.h"
#include "stats.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

/* What SHOW VERSION answers; the exporter puts it in pgbouncer_version_info. */
#define METRICS_COMPAT_VERSION "PgBouncer 1.25.2"
#define MAX_PRODUCERS          16
#define MAX_BIND_ADDRS         8
#define HTTP_TIMEOUT_SECS      10

struct metrics_out {
	struct evbuffer *buf;
	bool failed; /* an append ran out of memory: the reply is a 500 */
};

struct producer {
	const char *name;
	metrics_producer_fn fn;
	void *arg;
};

static struct evhttp *http;
static struct producer producers[MAX_PRODUCERS];
static size_t n_producers;

/* --- text format writer ---------------------------------------------------------- */

static void out_printf(struct metrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void out_printf(struct metrics_out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (!o->failed && evbuffer_add_vprintf(o->buf, fmt, ap) < 0)
		o->failed = true;
	va_end(ap);
}

/* HELP text escapes only backslash and newline. */
static void out_help(struct metrics_out *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			out_printf(o, "\\\\");
		else if (*s == '\n')
			out_printf(o, "\\n");
		else
			out_printf(o, "%c", *s);
	}
}

/* Label values also escape the double quote. */
static void out_label_value(struct metrics_out *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			out_printf(o, "\\%c", *s);
		else if (*s == '\n')
			out_printf(o, "\\n");
		else
			out_printf(o, "%c", *s);
	}
}

void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s ", name);
	out_help(o, help);
	out_printf(o, "\n# TYPE %s %s\n", name, type);
}

void metrics_sample(struct metrics_out *o, const char *name, double value, ...)
{
	va_list ap;
	const char *key;
	bool first = true;

	out_printf(o, "%s", name);
	va_start(ap, value);
	while ((key = va_arg(ap, const char *)) != NULL) {
		const char *val = va_arg(ap, const char *);
		out_printf(o, "%s%s=\"", first ? "{" : ",", key);
		out_label_value(o, val ? val : "");
		out_printf(o, "\"");
		first = false;
	}
	va_end(ap);
	/* %.17g prints integral values without a fraction and keeps doubles exact. */
	out_printf(o, "%s %.17g\n", first ? "" : "}", value);
}

/* --- built-in producers ------------------------------------------------------------ */

static void produce_general(struct metrics_out *o, void *arg)
{
	(void)arg;
	metrics_family(o, "pgbouncer_up", "gauge", "The pgbouncer scrape succeeded");
	metrics_sample(o, "pgbouncer_up", 1, NULL);
	metrics_family(o, "pgbouncer_version_info", "gauge", "The pgbouncer version info");
	metrics_sample(o, "pgbouncer_version_info", 1, "version", METRICS_COMPAT_VERSION, NULL);
	metrics_family(o, "pgbouncer_config_max_client_connections", "gauge",
	               "Config maximum number of client connections");
	metrics_sample(o, "pgbouncer_config_max_client_connections", G.cf->max_client_conn, NULL);
	metrics_family(o, "pgbouncer_config_max_user_connections", "gauge",
	               "Config maximum number of server connections per user");
	metrics_sample(o, "pgbouncer_config_max_user_connections", G.cf->max_user_connections,
	               NULL);
}

struct list_counts {
	size_t pools, login_clients, used_clients, used_servers;
};

static void count_lists(struct list_counts *lc)
{
	struct list_head *it;

	*lc = (struct list_counts){0};
	list_for_each(it, &G.login_clients)
	{
		const struct pv_socket *s = container_of(it, struct pv_socket, node);
		lc->login_clients += s->state == CL_LOGIN;
		lc->used_clients++;
	}
	list_for_each(it, &G.pools)
	{
		const struct pv_pool *p = container_of(it, struct pv_pool, node);
		lc->pools++;
		lc->used_clients +=
		    list_count(&p->active_clients) + list_count(&p->waiting_clients);
		lc->used_servers += (size_t)pool_server_count(p) + list_count(&p->cancel_servers);
	}
}

static void gauge(struct metrics_out *o, const char *name, const char *help, double v)
{
	metrics_family(o, name, "gauge", help);
	metrics_sample(o, name, v, NULL);
}

/* SHOW LISTS. Sockets are malloc'ed and freed, so there are never free ones. */
static void produce_lists(struct metrics_out *o, void *arg)
{
	struct list_counts lc;

	(void)arg;
	count_lists(&lc);
	gauge(o, "pgbouncer_databases", "Count of databases", (double)list_count(&G.databases));
	gauge(o, "pgbouncer_users", "Count of users", (double)list_count(&G.users));
	gauge(o, "pgbouncer_pools", "Count of pools", (double)lc.pools);
	gauge(o, "pgbouncer_free_clients", "Count of free clients", 0);
	gauge(o, "pgbouncer_used_clients", "Count of used clients", (double)lc.used_clients);
	gauge(o, "pgbouncer_login_clients", "Count of clients in login state",
	      (double)lc.login_clients);
	gauge(o, "pgbouncer_free_servers", "Count of free servers", 0);
	gauge(o, "pgbouncer_used_servers", "Count of used servers", (double)lc.used_servers);
	gauge(o, "pgbouncer_cached_dns_names", "Count of DNS names in the cache",
	      G.dns ? dns_names_count(G.dns) : 0);
	gauge(o, "pgbouncer_cached_dns_zones", "Count of DNS zones in the cache",
	      G.dns ? dns_zones_count(G.dns) : 0);
	gauge(o, "pgbouncer_in_flight_dns_queries", "Count of in-flight DNS queries",
	      G.dns ? dns_pending_count(G.dns) : 0);
}

/* --- SHOW DATABASES ---------------------------------------------------------------- */

/* One SHOW DATABASES row, as label strings and numbers. */
struct db_row {
	const char *name, *host, *database, *force_user, *pool_mode;
	char port[16];
	double v[6]; /* indexed like db_gauges */
};

static const struct {
	const char *name, *help;
} db_gauges[] = {
    {"pgbouncer_databases_pool_size", "Maximum number of server connections"},
    {"pgbouncer_databases_reserve_pool_size",
     "Maximum number of additional connections for this database"},
    {"pgbouncer_databases_max_connections",
     "Maximum number of allowed connections for this database"},
    {"pgbouncer_databases_current_connections", "Current number of connections for this database"},
    {"pgbouncer_databases_paused", "1 if this database is currently paused, else 0"},
    {"pgbouncer_databases_disabled", "1 if this database is currently disabled, else 0"},
};

static int conf_or(int v, int dflt)
{
	return v >= 0 ? v : dflt;
}

/*
 * The admin database is virtual: SHOW DATABASES reports it on the listen
 * port with forced user pgbouncer, statement mode and a pool of 2.
 */
static void fill_db_row(const struct pv_database *db, struct db_row *r)
{
	const struct db_conf *c = db->conf;

	r->name = db->name;
	r->host = c && c->host ? c->host : "";
	r->database = c && c->dbname ? c->dbname : db->name;
	r->force_user = c && c->user ? c->user : (db->is_admin ? "pgbouncer" : "");
	r->pool_mode = c && c->pool_mode != POOL_INHERIT ? pool_mode_name(c->pool_mode)
	               : db->is_admin                    ? "statement"
	                                                 : "";
	snprintf(r->port, sizeof(r->port), "%d",
	         c ? (c->port > 0 ? c->port : 5432) : G.cf->listen_port);
	r->v[0] = c ? conf_or(c->pool_size, G.cf->default_pool_size) : 2;
	r->v[1] = c ? conf_or(c->reserve_pool_size, G.cf->reserve_pool_size) : 0;
	/* as SHOW DATABASES: a per-database limit of 0 means the global one */
	r->v[2] =
	    c ? (c->max_db_connections > 0 ? c->max_db_connections : G.cf->max_db_connections) : 0;
	r->v[3] = db->server_count;
	r->v[4] = db->paused;
	r->v[5] = db->disabled;
}

static void produce_databases(struct metrics_out *o, void *arg)
{
	(void)arg;
	for (size_t g = 0; g < sizeof(db_gauges) / sizeof(db_gauges[0]); g++) {
		struct list_head *it;
		metrics_family(o, db_gauges[g].name, "gauge", db_gauges[g].help);
		list_for_each(it, &G.databases)
		{
			const struct pv_database *db = container_of(it, struct pv_database, node);
			struct db_row r;
			/* the rows of SHOW DATABASES: configured entries and the admin db */
			if (db->dead || (!db->conf && !db->is_admin))
				continue;
			fill_db_row(db, &r);
			metrics_sample(o, db_gauges[g].name, r.v[g], "name", r.name, "host", r.host,
			               "port", r.port, "database", r.database, "force_user",
			               r.force_user, "pool_mode", r.pool_mode, NULL);
		}
	}
}

/* --- SHOW POOLS -------------------------------------------------------------------- */

enum pool_gauge {
	PG_CL_ACTIVE,
	PG_CL_WAITING,
	PG_CL_ACTIVE_CANCEL,
	PG_CL_WAITING_CANCEL,
	PG_SV_ACTIVE,
	PG_SV_ACTIVE_CANCEL,
	PG_SV_BEING_CANCELED,
	PG_SV_IDLE,
	PG_SV_USED,
	PG_SV_TESTED,
	PG_SV_LOGIN,
	PG_MAXWAIT,
	PG_COUNT
};

static const struct {
	const char *name, *help;
} pool_gauges[PG_COUNT] = {
    [PG_CL_ACTIVE] = {"pgbouncer_pools_client_active_connections",
                      "Client connections linked to server connection and able to process "
                      "queries, shown as connection"},
    [PG_CL_WAITING] = {"pgbouncer_pools_client_waiting_connections",
                       "Client connections waiting on a server connection, shown as connection"},
    [PG_CL_ACTIVE_CANCEL] = {"pgbouncer_pools_client_active_cancel_connections",
                             "Client connections that have forwarded query cancellations to "
                             "the server and are waiting for the server response"},
    [PG_CL_WAITING_CANCEL] = {"pgbouncer_pools_client_waiting_cancel_connections",
                              "Client connections that have not forwarded query "
                              "cancellations to the server yet"},
    [PG_SV_ACTIVE] = {"pgbouncer_pools_server_active_connections",
                      "Server connections linked to a client connection, shown as connection"},
    [PG_SV_ACTIVE_CANCEL] = {"pgbouncer_pools_server_active_cancel_connections",
                             "Server connections that are currently forwarding a cancel "
                             "request"},
    [PG_SV_BEING_CANCELED] = {"pgbouncer_pools_server_being_canceled_connections",
                              "Servers that normally could become idle but are waiting to do "
                              "so until all in-flight cancel requests have completed"},
    [PG_SV_IDLE] = {"pgbouncer_pools_server_idle_connections",
                    "Server connections idle and ready for a client query, shown as "
                    "connection"},
    [PG_SV_USED] = {"pgbouncer_pools_server_used_connections",
                    "Server connections idle more than server_check_delay, needing "
                    "server_check_query, shown as connection"},
    [PG_SV_TESTED] = {"pgbouncer_pools_server_testing_connections",
                      "Server connections currently running either server_reset_query or "
                      "server_check_query, shown as connection"},
    [PG_SV_LOGIN] = {"pgbouncer_pools_server_login_connections",
                     "Server connections currently in the process of logging in, shown as "
                     "connection"},
    [PG_MAXWAIT] = {"pgbouncer_pools_client_maxwait_seconds",
                    "Age of oldest unserved client connection, shown as second"},
};

/* Cancel-request clients live in the global login list, tagged with their pool. */
static void count_cancel_clients(const struct pv_pool *p, double *v)
{
	struct list_head *it;
	list_for_each(it, &G.login_clients)
	{
		const struct pv_socket *c = container_of(it, struct pv_socket, node);
		if (c->state != CL_CANCEL || c->pool != p)
			continue;
		if (c->cancel_target)
			v[PG_CL_ACTIVE_CANCEL]++;
		else
			v[PG_CL_WAITING_CANCEL]++;
	}
}

static double max_wait_secs(const struct pv_pool *p, usec_t now)
{
	usec_t oldest = 0;
	struct list_head *it;
	list_for_each(it, &p->waiting_clients)
	{
		const struct pv_socket *c = container_of(it, struct pv_socket, node);
		usec_t since = c->wait_start ? c->wait_start : c->connect_time;
		if (since > 0 && now - since > oldest)
			oldest = now - since;
	}
	return (double)oldest / USEC_PER_SEC;
}

static void pool_values(const struct pv_pool *p, double *v, usec_t now)
{
	memset(v, 0, sizeof(double) * PG_COUNT);
	v[PG_CL_ACTIVE] = (double)list_count(&p->active_clients);
	v[PG_CL_WAITING] = (double)list_count(&p->waiting_clients);
	count_cancel_clients(p, v);
	v[PG_SV_ACTIVE] = (double)list_count(&p->active_servers);
	v[PG_SV_ACTIVE_CANCEL] = (double)list_count(&p->cancel_servers);
	v[PG_SV_IDLE] = (double)list_count(&p->idle_servers);
	v[PG_SV_USED] = (double)list_count(&p->used_servers);
	v[PG_SV_TESTED] = (double)list_count(&p->tested_servers);
	v[PG_SV_LOGIN] = (double)list_count(&p->login_servers);
	v[PG_MAXWAIT] = max_wait_secs(p, now);
}

static void produce_pools(struct metrics_out *o, void *arg)
{
	usec_t now = now_usec();

	(void)arg;
	for (int g = 0; g < PG_COUNT; g++) {
		struct list_head *it;
		metrics_family(o, pool_gauges[g].name, "gauge", pool_gauges[g].help);
		list_for_each(it, &G.pools)
		{
			const struct pv_pool *p = container_of(it, struct pv_pool, node);
			double v[PG_COUNT];
			if (p->db->dead)
				continue;
			pool_values(p, v, now);
			metrics_sample(o, pool_gauges[g].name, v[g], "database", p->db->name,
			               "user", p->user->name, NULL);
		}
	}
}

/* --- SHOW STATS (totals per database) ----------------------------------------------- */

enum stat_counter {
	SC_QUERIES,
	SC_QUERY_SECS,
	SC_RECEIVED,
	SC_SENT,
	SC_WAIT_SECS,
	SC_XACTS,
	SC_XACT_SECS,
	SC_COUNT
};

static const struct {
	const char *name, *help;
} stat_counters[SC_COUNT] = {
    [SC_QUERIES] = {"pgbouncer_stats_queries_pooled_total", "Total number of SQL queries pooled"},
    [SC_QUERY_SECS] = {"pgbouncer_stats_queries_duration_seconds_total",
                       "Total number of seconds spent by pgbouncer when actively connected to "
                       "PostgreSQL, executing queries"},
    [SC_RECEIVED] = {"pgbouncer_stats_received_bytes_total",
                     "Total volume in bytes of network traffic received by pgbouncer, shown as "
                     "bytes"},
    [SC_SENT] = {"pgbouncer_stats_sent_bytes_total",
                 "Total volume in bytes of network traffic sent by pgbouncer, shown as bytes"},
    [SC_WAIT_SECS] = {"pgbouncer_stats_client_wait_seconds_total",
                      "Time spent by clients waiting for a server in seconds"},
    [SC_XACTS] = {"pgbouncer_stats_sql_transactions_pooled_total",
                  "Total number of SQL transactions pooled"},
    [SC_XACT_SECS] = {"pgbouncer_stats_server_in_transaction_seconds_total",
                      "Total number of seconds spent by pgbouncer when connected to PostgreSQL "
                      "in a transaction, either idle in transaction or executing queries"},
};

static void stat_values(const struct pv_stats *t, double *v)
{
	v[SC_QUERIES] = (double)t->query_count;
	v[SC_QUERY_SECS] = (double)t->query_time / USEC_PER_SEC;
	v[SC_RECEIVED] = (double)t->bytes_received;
	v[SC_SENT] = (double)t->bytes_sent;
	v[SC_WAIT_SECS] = (double)t->wait_time / USEC_PER_SEC;
	v[SC_XACTS] = (double)t->xact_count;
	v[SC_XACT_SECS] = (double)t->xact_time / USEC_PER_SEC;
}

static void produce_stats(struct metrics_out *o, void *arg)
{
	(void)arg;
	for (int g = 0; g < SC_COUNT; g++) {
		struct list_head *it;
		metrics_family(o, stat_counters[g].name, "counter", stat_counters[g].help);
		list_for_each(it, &G.databases)
		{
			const struct pv_database *db = container_of(it, struct pv_database, node);
			struct pv_stats t;
			double v[SC_COUNT];
			if (db->dead)
				continue;
			stats_snapshot_db(db, &t, NULL);
			stat_values(&t, v);
			metrics_sample(o, stat_counters[g].name, v[g], "database", db->name, NULL);
		}
	}
}

static const struct producer builtin[] = {
    {"general", produce_general, NULL},     {"lists", produce_lists, NULL},
    {"databases", produce_databases, NULL}, {"pools", produce_pools, NULL},
    {"stats", produce_stats, NULL},
};

/* --- registry and rendering --------------------------------------------------------- */

bool metrics_register(const char *name, metrics_producer_fn fn, void *arg)
{
	if (!fn || n_producers >= MAX_PRODUCERS) {
		log_error("metrics: cannot register producer %s", name ? name : "?");
		return false;
	}
	producers[n_producers++] = (struct producer){name, fn, arg};
	return true;
}

static bool render_into(struct evbuffer *buf)
{
	struct metrics_out o = {buf, false};
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		builtin[i].fn(&o, builtin[i].arg);
	for (size_t i = 0; i < n_producers; i++)
		producers[i].fn(&o, producers[i].arg);
	return !o.failed;
}

char *metrics_render(void)
{
	struct evbuffer *buf = evbuffer_new();
	char *text = NULL;
	size_t len;

	if (!buf)
		return NULL;
	if (render_into(buf)) {
		len = evbuffer_get_length(buf);
		text = malloc(len + 1);
		if (text) {
			evbuffer_remove(buf, text, len);
			text[len] = '\0';
		}
	}
	evbuffer_free(buf);
	return text;
}

/* --- HTTP ------------------------------------------------------------------------- */

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, code, reason, body);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct evbuffer *buf = evbuffer_new();

	(void)arg;
	if (!buf) {
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	if (!render_into(buf)) {
		evbuffer_free(buf);
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	reply_text(req, HTTP_OK, "OK", buf);
	evbuffer_free(buf);
}

static void on_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, HTTP_NOTFOUND, "Not Found");
}

/* Bind every address of the comma/space separated list; "*" means all IPv4 and IPv6. */
static bool bind_addrs(const char *list, int port)
{
	char copy[512], *save = NULL;
	int n = 0;

	if (strlen(list) >= sizeof(copy)) {
		log_error("metrics: metrics_listen_addr is too long");
		return false;
	}
	strcpy(copy, list);
	for (char *a = strtok_r(copy, ", \t", &save); a; a = strtok_r(NULL, ", \t", &save)) {
		const char *addrs[2] = {a, NULL};
		if (strcmp(a, "*") == 0) {
			addrs[0] = "0.0.0.0";
			addrs[1] = "::";
		}
		for (int i = 0; i < 2 && addrs[i]; i++) {
			if (n >= MAX_BIND_ADDRS ||
			    !evhttp_bind_socket_with_handle(http, addrs[i], (ev_uint16_t)port)) {
				log_error("metrics: could not listen on %s:%d", addrs[i], port);
				return false;
			}
			n++;
		}
	}
	return n > 0;
}

bool metrics_start(void)
{
	const char *addr = G.cf->metrics_listen_addr;
	int port = G.cf->metrics_listen_port;

	if (!addr || !addr[0])
		return true;
	if (port <= 0 || port > 65535) {
		log_error("metrics: invalid metrics_listen_port %d", port);
		return false;
	}
	http = evhttp_new(G.base);
	if (!http) {
		log_error("metrics: out of memory");
		return false;
	}
	/* Bound what one scraper can make the loop hold: small requests, idle timeout. */
	evhttp_set_timeout(http, HTTP_TIMEOUT_SECS);
	evhttp_set_max_headers_size(http, 8192);
	evhttp_set_max_body_size(http, 4096);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	if (evhttp_set_cb(http, "/metrics", on_metrics, NULL) != 0 || !bind_addrs(addr, port)) {
		metrics_stop();
		return false;
	}
	evhttp_set_gencb(http, on_other, NULL);
	log_info("metrics: listening on %s:%d", addr, port);
	return true;
}

void metrics_stop(void)
{
	if (http) {
		evhttp_free(http);
		http = NULL;
	}
}
