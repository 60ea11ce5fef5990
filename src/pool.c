/*
 * pool.c - pooling decisions: linking clients to servers, releasing servers
 * at the end of a transaction, queueing, and launching new connections.
 */
#include "pool.h"
#include "client.h"
#include "server.h"
#include "sbuf.h"
#include "log.h"
#include "replication.h"
#include "auth_query.h"
#include "mask_catalog.h"

#include <stdlib.h>
#include <string.h>

/* Is the pool still in its server_login_retry back-off after a failed login? */
static bool in_login_backoff(const struct pv_pool *pool)
{
	return pool->last_login_failed_at &&
	       now_usec() - pool->last_login_failed_at < G.cf->server_login_retry;
}

/* --- effective limits ------------------------------------------------------ */

static const struct user_conf *pool_user_conf(const struct pv_pool *pool)
{
	return config_find_user(G.cf, pool->user->name);
}

int pool_min_size(const struct pv_pool *pool)
{
	const struct db_conf *dc = pool->db->conf;
	if (pool->db->is_admin)
		return 0;
	return dc && dc->min_pool_size >= 0 ? dc->min_pool_size : G.cf->min_pool_size;
}

int pool_reserve_size(const struct pv_pool *pool)
{
	const struct user_conf *uc = pool_user_conf(pool);
	const struct db_conf *dc = pool->db->conf;
	if (pool->db->is_admin)
		return 0;
	if (uc && uc->reserve_pool_size >= 0)
		return uc->reserve_pool_size;
	if (dc && dc->reserve_pool_size >= 0)
		return dc->reserve_pool_size;
	return G.cf->reserve_pool_size;
}

/* A database's own server_lifetime wins when it is set (> 0 there means "set"). */
usec_t pool_server_lifetime(const struct pv_pool *pool)
{
	const struct db_conf *dc = pool->db->conf;
	return dc && dc->server_lifetime > 0 ? dc->server_lifetime : G.cf->server_lifetime;
}

/* max_* limits of 0 or less in [databases] / [users] fall back to the global value. */
static int db_max_connections(const struct pv_database *db)
{
	if (db->conf && db->conf->max_db_connections > 0)
		return db->conf->max_db_connections;
	return G.cf->max_db_connections;
}

static int user_max_connections(const struct pv_user *user)
{
	const struct user_conf *uc = config_find_user(G.cf, user->name);
	if (uc && uc->max_user_connections > 0)
		return uc->max_user_connections;
	return G.cf->max_user_connections;
}

const char *pool_client_limit(const struct pv_pool *pool)
{
	const struct db_conf *dc = pool->db->conf;
	const struct user_conf *uc = pool_user_conf(pool);
	int max;

	max = dc && dc->max_db_client_connections > 0 ? dc->max_db_client_connections
	                                              : G.cf->max_db_client_connections;
	if (max > 0 && pool->db->client_count >= max)
		return "client connections exceeded (max_db_client_connections)";
	max = uc && uc->max_user_client_connections > 0 ? uc->max_user_client_connections
	                                                : G.cf->max_user_client_connections;
	if (max > 0 && pool->user->client_count >= max)
		return "client connections exceeded (max_user_client_connections)";
	return NULL;
}

/* --- launching and evicting ------------------------------------------------- */

static bool pool_has_waiters(const struct pv_pool *pool)
{
	return !list_empty(&pool->waiting_clients);
}

enum room {
	ROOM_NONE,
	ROOM_POOL,    /* below pool_size (or pool_size = 0: unlimited) */
	ROOM_RESERVE, /* full, but the reserve pool may be used */
};

/*
 * PgBouncer opens reserve connections only once the oldest waiter (the list
 * head: waiting is FIFO) has waited reserve_pool_timeout.
 */
static enum room pool_room(const struct pv_pool *pool)
{
	int size = pool_effective_size(pool), count = pool_server_count(pool);
	int reserve = pool_reserve_size(pool);
	struct list_head *first = list_first(&pool->waiting_clients);
	struct pv_socket *c;

	if (size == 0 || count < size)
		return ROOM_POOL;
	if (reserve <= 0 || count >= size + reserve || !first)
		return ROOM_NONE;
	c = container_of(first, struct pv_socket, node);
	if (now_usec() - (c->wait_start ? c->wait_start : c->connect_time) <
	    G.cf->reserve_pool_timeout)
		return ROOM_NONE;
	return ROOM_RESERVE;
}

/* The server with the oldest connect_time in list, or best if that is older. */
static struct pv_socket *oldest_unused(struct list_head *list, struct pv_socket *best)
{
	struct list_head *it;
	list_for_each(it, list)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		if (!best || s->connect_time < best->connect_time)
			best = s;
	}
	return best;
}

/*
 * Close the oldest idle (else used) server of another pool of the same
 * database (by_db) or user, to make room under max_db/user_connections.
 */
static bool evict_one(const struct pv_pool *pool, bool by_db)
{
	struct pv_socket *best = NULL;
	struct list_head *it;

	list_for_each(it, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (p == pool || (by_db ? p->db != pool->db : p->user != pool->user))
			continue;
		best = oldest_unused(&p->idle_servers, best);
	}
	if (!best) {
		list_for_each(it, &G.pools)
		{
			struct pv_pool *p = container_of(it, struct pv_pool, node);
			if (p == pool || (by_db ? p->db != pool->db : p->user != pool->user))
				continue;
			best = oldest_unused(&p->used_servers, best);
		}
	}
	if (!best)
		return false;
	server_close(best, "evicted");
	return true;
}

/* max_db_connections / max_user_connections: room now, possibly after evicting. */
static bool under_server_caps(const struct pv_pool *pool, bool evict)
{
	int max = db_max_connections(pool->db);
	while (max > 0 && pool->db->server_count >= max)
		if (!evict || !evict_one(pool, true))
			return false;
	max = user_max_connections(pool->user);
	while (max > 0 && pool->user->server_count >= max)
		if (!evict || !evict_one(pool, false))
			return false;
	return true;
}

/* One connection attempt at a time per pool, none during back-off or shutdown. */
static bool may_connect(const struct pv_pool *pool)
{
	return list_empty(&pool->login_servers) && !in_login_backoff(pool) && !G.shutting_down;
}

static void launch_if_needed(struct pv_pool *pool)
{
	enum room room;

	if (!may_connect(pool) || !pool_has_waiters(pool))
		return;
	/* Before the first login the pool has no server at all: always try one. */
	room = pool->have_welcome ? pool_room(pool) : ROOM_POOL;
	if (room == ROOM_NONE || !under_server_caps(pool, true))
		return;
	if (room == ROOM_RESERVE)
		slog_info(container_of(list_first(&pool->waiting_clients), struct pv_socket, node),
		          "taking connection from reserve_pool");
	server_launch(pool);
}

static bool pool_has_clients(const struct pv_pool *pool)
{
	return !list_empty(&pool->active_clients) || !list_empty(&pool->waiting_clients);
}

/* Close unused servers above pool_size + reserve (after RELOAD lowered them). */
static void shrink_pool(struct pv_pool *pool)
{
	int size = pool_effective_size(pool);
	int many = pool_server_count(pool) - size - pool_reserve_size(pool);
	struct list_head *first;

	while (size > 0 && many-- > 0) {
		first = list_first(&pool->used_servers);
		if (!first)
			first = list_first(&pool->idle_servers);
		if (!first)
			return;
		server_close(container_of(first, struct pv_socket, node),
		             "too many servers in the pool");
	}
}

void pool_maintain_size(struct pv_pool *pool)
{
	int min = pool_min_size(pool), size = pool_effective_size(pool);
	int count;
	bool forced = pool->db->conf && pool->db->conf->user;

	shrink_pool(pool);
	count = pool_server_count(pool);
	if (min <= 0 || count >= min || (size > 0 && count >= size))
		return;
	/* Only for pools in use, or a forced user's single pool (PgBouncer does the same). */
	if (!pool_has_clients(pool) && !forced)
		return;
	if (may_connect(pool) && !pool_is_paused(pool) && under_server_caps(pool, false)) {
		log_debug("%s/%s: launching new connection to satisfy min_pool_size",
		          pool->db->name, pool->user->name);
		server_launch(pool);
	}
}

/*
 * server_lifetime closes are spread out: after one, the next waits
 * lifetime / pool_size, so a pool does not reconnect all at once.
 * A lifetime of 0 means "use once".
 */
bool pool_lifetime_over(struct pv_pool *pool, const struct pv_socket *server, usec_t now)
{
	usec_t lifetime = pool_server_lifetime(pool);
	int size = pool_effective_size(pool);
	usec_t gap = size > 0 ? lifetime / size : 0;

	if (now - server->connect_time < lifetime)
		return false;
	if (pool->last_lifetime_close && now - pool->last_lifetime_close < gap)
		return false;
	pool->last_lifetime_close = now;
	return true;
}

/*
 * Link client and server. Returns true if the client's request can be
 * forwarded now, false if the server first runs a SET to match the client's
 * tracked parameters (the client is woken when that finishes).
 */
static bool link_pair(struct pv_socket *client, struct pv_socket *server)
{
	usec_t now = now_usec();

	client->link = server;
	server->link = client;
	socket_set_state(server, SV_ACTIVE);
	if (client->state != CL_ACTIVE)
		socket_set_state(client, CL_ACTIVE);
	client->pool->stats.server_assignment_count++;
	if (client->wait_start) {
		client->pool->stats.wait_time += (uint64_t)(now - client->wait_start);
		client->wait_start = 0;
	}
	if (server->bp_paused)
		sbuf_resume_bp(server);
	/* A login client parked for auth_query: the query runs instead of any SET. */
	if (client->aq_home_pool)
		return auth_query_link(client, server);
	/* Masking: a stale column catalog is resolved on this server first (fail closed). */
	if (mask_catalog_link(client, server))
		return false;
	return pool_link_sync_vars(client, server);
}

bool pool_link_sync_vars(struct pv_socket *client, struct pv_socket *server)
{
	struct pv_buf sql;
	bool need_set;

	buf_init(&sql);
	need_set = varcache_diff_sql(&client->vars, &server->vars, &sql);
	if (need_set && buf_append(&sql, "", 1)) {
		slog_debug(server, "varcache_apply: %s", (char *)sql.data);
		server_run_task(server, TASK_SET_VARS, (char *)sql.data);
	}
	buf_free(&sql);
	return !need_set;
}

/* Take a server that can run a request right away, or NULL. */
static struct pv_socket *take_idle_server(struct pv_pool *pool)
{
	struct list_head *first;
	while ((first = list_first(&pool->idle_servers)) != NULL) {
		struct pv_socket *s = container_of(first, struct pv_socket, node);
		return s;
	}
	return NULL;
}

/* Idle servers that waited longer than server_check_delay get a check query first. */
static void check_used_servers(struct pv_pool *pool)
{
	struct list_head *first = list_first(&pool->used_servers);
	if (!first)
		return;
	struct pv_socket *s = container_of(first, struct pv_socket, node);
	if (G.cf->server_check_query_disabled) {
		socket_set_state(s, SV_IDLE);
		return;
	}
	server_run_task(s, TASK_CHECK, G.cf->server_check_query);
}

bool pool_request_server(struct pv_socket *client)
{
	struct pv_pool *pool = client->pool;
	struct pv_socket *server;

	/* An idle server means nobody is queued: releases hand servers to waiters at once. */
	server = pool_is_paused(pool) ? NULL : take_idle_server(pool);
	if (server)
		return link_pair(client, server);
	if (client->state != CL_WAITING) {
		client->wait_start = now_usec();
		socket_set_state(client, CL_WAITING);
	}
	/* admin PAUSE/SUSPEND/PAUSE db: wait without a server until RESUME (admin.c) */
	if (pool_is_paused(pool))
		return false;
	check_used_servers(pool);
	launch_if_needed(pool);
	return false;
}

void pool_activate(struct pv_pool *pool)
{
	struct list_head *it, *tmp;

	/* admin PAUSE/SUSPEND/PAUSE db: no linking, no launching (admin.c) */
	if (pool_is_paused(pool))
		return;
	list_for_each_safe(it, tmp, &pool->waiting_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		struct pv_socket *s;
		if (c->state != CL_WAITING)
			continue;
		s = take_idle_server(pool);
		if (!s)
			break;
		if (link_pair(c, s))
			sbuf_wakeup(c);
	}
	if (pool_has_waiters(pool)) {
		check_used_servers(pool);
		launch_if_needed(pool);
	}
}

void pools_per_loop(void)
{
	struct list_head *it;
	list_for_each(it, &G.pools)
	{
		struct pv_pool *pool = container_of(it, struct pv_pool, node);
		if (pool_has_waiters(pool))
			pool_activate(pool);
	}
}

void pool_release_server(struct pv_socket *server)
{
	struct pv_pool *pool = server->pool;
	bool from_login = server->state == SV_LOGIN;
	bool from_client = server->state == SV_ACTIVE;

	if (server->link) {
		struct pv_socket *c = server->link;
		c->link = NULL;
		server->link = NULL;
		if (c->bp_paused)
			sbuf_resume_bp(c);
	}
	if (server->closing)
		return;
	if (server->close_needed || pool->db->dead) {
		server_close(server, "database configuration changed");
		return;
	}
	/* A fresh login is never "over" (server_lifetime = 0 would loop on connects). */
	if (!from_login && pool_lifetime_over(pool, server, now_usec())) {
		server_close(server, "server lifetime over");
		return;
	}
	if (server->bp_paused)
		sbuf_resume_bp(server);
	server->srv->idle_since = now_usec();
	/* server_check_delay = 0: a server coming back from a client is checked before reuse. */
	if (from_client && G.cf->server_check_delay == 0 && !G.cf->server_check_query_disabled)
		socket_set_state(server, SV_USED);
	else
		socket_set_state(server, SV_IDLE);
	pool_activate(pool);
}

void pool_unlink(struct pv_socket *client, struct pv_socket *server)
{
	bool reset;

	client->link = NULL;
	server->link = NULL;
	/* A replication server was made for its client alone: it leaves with it. */
	if (server->replication) {
		server_close(server, "replication client disconnected");
		return;
	}
	if (!server_is_ready(server)) {
		server_close(server, server->expect_rfq > 0 || server->in_extended
		                         ? "client disconnected with query in progress"
		                         : "client disconnected in transaction");
		return;
	}
	reset =
	    pool_effective_mode(server->pool) == POOL_SESSION || G.cf->server_reset_query_always;
	if (reset && G.cf->server_reset_query[0]) {
		server_run_task(server, TASK_RESET, G.cf->server_reset_query);
		return;
	}
	pool_release_server(server);
}

void pool_server_login_ok(struct pv_socket *server)
{
	struct pv_pool *pool = server->pool;
	struct list_head *it, *tmp;

	free(pool->last_login_error);
	pool->last_login_error = NULL;
	pool->last_login_failed_at = 0;
	if (!pool->have_welcome) {
		pool->have_welcome = true;
		varcache_copy(&pool->server_defaults, &server->vars);
	}
	/* Clients that authenticated before any server existed get their welcome now. */
	list_for_each_safe(it, tmp, &pool->waiting_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		if (c->state == CL_WAITING_LOGIN && client_send_welcome(c))
			sbuf_wakeup(c);
	}
	pool_release_server(server);
}

void pool_server_login_failed(struct pv_socket *server, const char *sqlstate, const char *msg)
{
	struct pv_pool *pool = server->pool;
	struct list_head *it, *tmp;
	char *copy;

	/* A replication login failure is its own client's business: no pool back-off. */
	if (server->replication) {
		repl_server_login_failed(server, sqlstate, msg);
		return;
	}
	copy = strdup(msg);
	free(pool->last_login_error);
	pool->last_login_error = copy;
	strlcpy_pv(pool->last_login_sqlstate, sqlstate ? sqlstate : "08P01",
	           sizeof(pool->last_login_sqlstate));
	pool->last_login_failed_at = now_usec();

	list_for_each_safe(it, tmp, &pool->waiting_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		if (c->state == CL_WAITING_LOGIN || c->aq_home_pool)
			client_fatal(c, pool->last_login_sqlstate, "%s", msg);
	}
}
