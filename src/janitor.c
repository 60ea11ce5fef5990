/*
 * janitor.c - periodic maintenance of pools and sockets (every 1/3 s):
 * login, wait, query, transaction and idle timeouts; idle clients whose
 * token expired; idle, old and surplus servers; min_pool_size; reaping unused
 * auto-databases and pools.
 *
 * Cost per tick: login clients and each pool's server lists are walked; the
 * waiting list only as far as clients are due for something (it is FIFO);
 * active clients and active servers only when a timeout that needs them is set
 * (active clients also while a governance policy allows token logins).
 */
#include "janitor.h"
#include "client.h"
#include "server.h"
#include "pool.h"
#include "log.h"
#include "proto.h"
#include "peer.h"
#include "governance.h"
#include "approval.h"
#include "mask_catalog.h"

#include <event2/event.h>
#include <string.h>

static struct event *janitor_ev;

/* A pool's timeouts: [users] entry of the pool user over [pgbouncer]; 0 = off. */
struct pool_timeouts {
	usec_t query;
	usec_t idle_tx;
	usec_t xact;
	usec_t client_idle;
	usec_t query_wait;
};

static usec_t user_or_global(usec_t user_value, usec_t global)
{
	return user_value > 0 ? user_value : global;
}

static void get_timeouts(const struct pv_pool *pool, struct pool_timeouts *t)
{
	const struct user_conf *uc = config_find_user(G.cf, pool->user->name);
	const struct db_conf *dc = pool->db->conf;

	t->query = user_or_global(uc ? uc->query_timeout : 0, G.cf->query_timeout);
	t->idle_tx =
	    user_or_global(uc ? uc->idle_transaction_timeout : 0, G.cf->idle_transaction_timeout);
	t->xact = user_or_global(uc ? uc->transaction_timeout : 0, G.cf->transaction_timeout);
	t->client_idle =
	    user_or_global(uc ? uc->client_idle_timeout : 0, G.cf->client_idle_timeout);
	/* query_wait_timeout: an explicit 0 in [users] / [databases] also wins. */
	if (uc && uc->query_wait_timeout >= 0)
		t->query_wait = uc->query_wait_timeout;
	else if (dc && dc->query_wait_timeout >= 0)
		t->query_wait = dc->query_wait_timeout;
	else
		t->query_wait = G.cf->query_wait_timeout;
}

/* --- clients ------------------------------------------------------------------- */

/* A cancel request that did not get through in cancel_wait_timeout is dropped. */
static void cancel_timed_out(struct pv_socket *c)
{
	struct pv_socket *sv = c->cancel_target;
	client_close(c, "cancel_wait_timeout");
	if (sv && !sv->closing)
		server_close(sv, "cancel_wait_timeout");
}

static void check_login_clients(usec_t now)
{
	struct list_head *it, *tmp;
	usec_t login = G.cf->client_login_timeout, cancel = G.cf->cancel_wait_timeout;

	if (login <= 0 && cancel <= 0)
		return;
	list_for_each_safe(it, tmp, &G.login_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		usec_t age = now - c->connect_time;
		if (c->closing)
			continue;
		if (c->state == CL_LOGIN && login > 0 && age > login)
			client_fatal(c, "08P01", "client_login_timeout");
		else if (c->state == CL_CANCEL && cancel > 0 && age > cancel)
			cancel_timed_out(c);
	}
}

static usec_t min_positive(usec_t a, usec_t b)
{
	if (a <= 0)
		return b;
	return b > 0 && b < a ? b : a;
}

/* PgBouncer sends the queue NOTICE once whole seconds waited exceed query_wait_notify. */
static usec_t notify_after(void)
{
	return G.cf->query_wait_notify > 0 ? (usec_t)(G.cf->query_wait_notify + 1) * USEC_PER_SEC
	                                   : 0;
}

static void send_queue_notice(struct pv_socket *c)
{
	struct pv_buf out;
	c->wait_notified = true;
	buf_init(&out);
	if (!msg_notice(
	        &out, "00000",
	        "No server connection available in postgres backend, client being queued") ||
	    !sbuf_queue(c, out.data, out.len))
		log_warning("sending queue notice failed");
	buf_free(&out);
}

/* One waiting client: timeouts first, then the queue NOTICE. */
static void check_waiting_client(struct pv_pool *pool, struct pv_socket *c,
                                 const struct pool_timeouts *t, usec_t age, usec_t now)
{
	usec_t login = G.cf->client_login_timeout;

	if (c->state == CL_WAITING_LOGIN && !pool->have_welcome && login > 0 &&
	    now - c->connect_time > login)
		client_fatal(c, "08P01", "client_login_timeout (server down)");
	else if (t->query > 0 && age > t->query)
		client_fatal(c, "08P01", "query_timeout");
	else if (t->query_wait > 0 && age > t->query_wait)
		client_fatal(c, "08P01", "query_wait_timeout");
	else if (c->state == CL_WAITING && !c->wait_notified && notify_after() > 0 &&
	         age >= notify_after())
		send_queue_notice(c);
}

static void check_waiting_clients(struct pv_pool *pool, const struct pool_timeouts *t, usec_t now)
{
	struct list_head *it, *tmp;
	usec_t first_due = min_positive(min_positive(t->query, t->query_wait), notify_after());

	if (!pool->have_welcome)
		first_due = min_positive(first_due, G.cf->client_login_timeout);
	if (first_due <= 0)
		return;
	list_for_each_safe(it, tmp, &pool->waiting_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		usec_t age = now - (c->wait_start ? c->wait_start : c->connect_time);
		/*
		 * The list is FIFO, so everyone behind a client that is not due
		 * yet has waited less (a CL_WAITING_LOGIN client counts from its
		 * connect time and may be handled up to one login later).
		 */
		if (age <= first_due)
			break;
		check_waiting_client(pool, c, t, age, now);
	}
}

/*
 * Idle clients (no server, so not in a transaction): client_idle_timeout, and
 * token logins whose token expired while idle (the next request would refuse
 * them too, but an idle client may never send one). Walked when either can
 * apply: token logins exist only while a governance policy is loaded (a
 * client left over after a reload that dropped it is caught by its next request).
 */
static void check_idle_clients(struct pv_pool *pool, const struct pool_timeouts *t, usec_t now)
{
	struct list_head *it, *tmp;
	bool tokens = gov_active() != NULL;
	if (t->client_idle <= 0 && !tokens)
		return;
	list_for_each_safe(it, tmp, &pool->active_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		usec_t last = c->request_time ? c->request_time : c->connect_time;
		/* a held statement (approval.h) is a running request, not idleness */
		if (c->link || c->closing || c->approval)
			continue;
		if (tokens && client_token_expired(c))
			client_fatal(c, "28000", "token expired");
		else if (t->client_idle > 0 && now - last > t->client_idle)
			client_fatal(c, "08P01", "client_idle_timeout");
	}
}

/* --- servers ------------------------------------------------------------------- */

/* The server is closed for reason and its client gets reason as a FATAL error. */
static void disconnect_pair(struct pv_socket *s, struct pv_socket *c, const char *reason)
{
	s->link = NULL;
	c->link = NULL;
	server_close(s, reason);
	client_fatal(c, "08P01", "%s", reason);
}

static bool idle_in_transaction(const struct pv_socket *s)
{
	return (s->tx_status == 'T' || s->tx_status == 'E') && s->expect_rfq == 0 &&
	       !s->in_extended && !s->copy_in && s->srv->task == TASK_NONE;
}

/* query_timeout, idle_transaction_timeout and transaction_timeout of linked servers. */
static void check_active_servers(struct pv_pool *pool, const struct pool_timeouts *t, usec_t now)
{
	struct list_head *it, *tmp;
	if (t->query <= 0 && t->idle_tx <= 0 && t->xact <= 0)
		return;
	list_for_each_safe(it, tmp, &pool->active_servers)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		struct pv_socket *c = s->link;
		if (!c || s->closing || server_is_ready(s))
			continue;
		if (t->query > 0 && c->query_start && now - c->query_start > t->query)
			disconnect_pair(s, c, "query timeout");
		else if (t->idle_tx > 0 && idle_in_transaction(s) &&
		         now - s->srv->idle_since > t->idle_tx)
			disconnect_pair(s, c, "idle transaction timeout");
		else if (t->xact > 0 && c->xact_start && now - c->xact_start > t->xact)
			disconnect_pair(s, c, "transaction timeout");
	}
}

static void check_login_servers(struct pv_pool *pool, usec_t now)
{
	struct list_head *it, *tmp;
	if (G.cf->server_connect_timeout <= 0)
		return;
	list_for_each_safe(it, tmp, &pool->login_servers)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		if (now - s->connect_time > G.cf->server_connect_timeout) {
			pool_server_login_failed(s, "08006",
			                         "server login failed: connect timeout");
			server_close(s, "connect timeout");
		}
	}
}

/* Idle (idle_list) or used servers: close or move to used for a check before reuse. */
static void check_unused_servers(struct pv_pool *pool, struct list_head *list, bool idle_list,
                                 usec_t now)
{
	struct list_head *it, *tmp;
	int min = pool_min_size(pool), count = pool_server_count(pool);
	usec_t idle_timeout = G.cf->server_idle_timeout, delay = G.cf->server_check_delay;

	list_for_each_safe(it, tmp, list)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		usec_t idle = now - s->srv->idle_since;
		const char *reason = NULL;

		if (s->close_needed || pool->db->dead)
			reason = "database configuration changed";
		else if (idle_timeout > 0 && idle > idle_timeout && (min <= 0 || count > min))
			reason = "server idle timeout";
		else if (pool_lifetime_over(pool, s, now))
			reason = "server lifetime over";
		if (reason) {
			server_close(s, reason);
			count--;
		} else if (idle_list && !G.cf->server_check_query_disabled && idle > delay) {
			socket_set_state(s, SV_USED);
		}
	}
}

/* --- pools and auto-databases ------------------------------------------------------ */

/* PgBouncer keeps a pool for each forced-user database with min_pool_size > 0. */
static void create_min_pools(void)
{
	struct list_head *it;
	list_for_each(it, &G.cf->databases)
	{
		struct db_conf *dc = container_of(it, struct db_conf, node);
		int min = dc->min_pool_size >= 0 ? dc->min_pool_size : G.cf->min_pool_size;
		struct pv_database *db;
		struct pv_user *user;
		if (min <= 0 || !dc->user || strcmp(dc->name, "*") == 0)
			continue;
		db = database_get(dc->name);
		user = db ? user_get(dc->user) : NULL;
		if (user)
			pool_get(db, user);
	}
}

/* Nothing refers to the pool: no client (logging in or not), no server. */
static bool pool_unused(const struct pv_pool *pool)
{
	struct list_head *it;
	if (!list_empty(&pool->active_clients) || !list_empty(&pool->waiting_clients) ||
	    !list_empty(&pool->cancel_servers) || pool_server_count(pool) > 0)
		return false;
	list_for_each(it, &G.login_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		if (c->pool == pool)
			return false;
	}
	return true;
}

static bool database_unused(const struct pv_database *db)
{
	struct list_head *it;
	if (db->client_count > 0 || db->server_count > 0)
		return false;
	list_for_each(it, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (p->db == db && !pool_unused(p))
			return false;
	}
	return true;
}

static void drop_database(struct pv_database *db)
{
	struct list_head *it, *tmp;
	log_info("dropping database '%s' as it does not exist anymore or inactive auto-database",
	         db->name);
	list_for_each_safe(it, tmp, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (p->db == db)
			pool_free(p);
	}
	database_free(db);
}

static void reap_autodbs(usec_t now)
{
	struct list_head *it, *tmp;
	if (G.cf->autodb_idle_timeout <= 0)
		return;
	list_for_each_safe(it, tmp, &G.databases)
	{
		struct pv_database *db = container_of(it, struct pv_database, node);
		if (!db->is_auto)
			continue;
		if (!database_unused(db))
			db->inactive_since = 0;
		else if (!db->inactive_since)
			db->inactive_since = now;
		else if (now - db->inactive_since > G.cf->autodb_idle_timeout)
			drop_database(db);
	}
}

/* pool_idle_timeout (PgBouncer, unreleased): free pools unused that long. */
static void reap_pools(usec_t now)
{
	struct list_head *it, *tmp;
	if (G.cf->pool_idle_timeout <= 0)
		return;
	list_for_each_safe(it, tmp, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (p->db->is_admin || !pool_unused(p))
			p->unused_since = 0;
		else if (!p->unused_since)
			p->unused_since = now;
		else if (now - p->unused_since > G.cf->pool_idle_timeout) {
			log_info("cleaning up idle pool %s/%s", p->db->name, p->user->name);
			pool_free(p);
		}
	}
}

/* server_fast_close, and replication servers tagged close_needed (server.c decides). */
static void check_close_needed(struct pv_pool *pool)
{
	struct list_head *it, *tmp;
	list_for_each_safe(it, tmp, &pool->active_servers)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		if (s->close_needed)
			server_fast_close_check(s);
	}
}

static void maintain_pool(struct pv_pool *pool, usec_t now)
{
	struct pool_timeouts t;
	get_timeouts(pool, &t);
	check_waiting_clients(pool, &t, now);
	check_idle_clients(pool, &t, now);
	check_active_servers(pool, &t, now);
	check_close_needed(pool);
	check_login_servers(pool, now);
	check_unused_servers(pool, &pool->idle_servers, true, now);
	check_unused_servers(pool, &pool->used_servers, false, now);
	pool_maintain_size(pool);
}

static void janitor_run(evutil_socket_t fd, short what, void *arg)
{
	usec_t now = now_usec();
	struct list_head *it;

	/* Nothing may change under a SUSPEND (sockets are being handed over). */
	if (G.pause_mode == PAUSE_SUSPEND)
		return;
	check_login_clients(now);
	approval_tick(now);
	mask_catalog_tick(now);
	create_min_pools();
	list_for_each(it, &G.pools)
	{
		struct pv_pool *pool = container_of(it, struct pv_pool, node);
		if (!pool->db->is_admin)
			maintain_pool(pool, now);
	}
	reap_pools(now);
	reap_autodbs(now);
	peers_janitor(now);
	pools_per_loop();
}

bool janitor_start(void)
{
	struct timeval tv = {0, 333333};
	janitor_ev = event_new(G.base, -1, EV_PERSIST, janitor_run, NULL);
	return janitor_ev && event_add(janitor_ev, &tv) == 0;
}

void janitor_stop(void)
{
	if (janitor_ev)
		event_free(janitor_ev);
	janitor_ev = NULL;
}
