/*
 * pool.c - pooling decisions: linking clients to servers, releasing servers
 * at the end of a transaction, queueing, and launching new connections.
 */
#include "pool.h"
#include "client.h"
#include "server.h"
#include "sbuf.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Is the pool still in its server_login_retry back-off after a failed login? */
static bool in_login_backoff(const struct pv_pool *pool)
{
	return pool->last_login_failed_at &&
	       now_usec() - pool->last_login_failed_at < G.cf->server_login_retry;
}

static bool pool_has_room(const struct pv_pool *pool)
{
	int size = pool_effective_size(pool);
	return size == 0 || pool_server_count(pool) < size;
}

static bool pool_has_waiters(const struct pv_pool *pool)
{
	return !list_empty(&pool->waiting_clients);
}

static void launch_if_needed(struct pv_pool *pool)
{
	/* One connection attempt at a time per pool, as PgBouncer does. */
	if (!list_empty(&pool->login_servers) || in_login_backoff(pool) || G.shutting_down)
		return;
	if (!pool_has_waiters(pool))
		return;
	if (!pool->have_welcome || pool_has_room(pool))
		server_launch(pool);
}

/*
 * Link client and server. Returns true if the client's request can be
 * forwarded now, false if the server first runs a SET to match the client's
 * tracked parameters (the client is woken when that finishes).
 */
static bool link_pair(struct pv_socket *client, struct pv_socket *server)
{
	struct pv_buf sql;
	bool need_set;
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
	server = take_idle_server(pool);
	if (server)
		return link_pair(client, server);
	if (client->state != CL_WAITING) {
		client->wait_start = now_usec();
		socket_set_state(client, CL_WAITING);
	}
	check_used_servers(pool);
	launch_if_needed(pool);
	return false;
}

void pool_activate(struct pv_pool *pool)
{
	struct list_head *it, *tmp;

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

static bool server_too_old(const struct pv_socket *s)
{
	usec_t lifetime = G.cf->server_lifetime;
	struct db_conf *dc = s->pool->db->conf;
	if (dc && dc->server_lifetime >= 0)
		lifetime = dc->server_lifetime;
	return lifetime > 0 && now_usec() - s->connect_time >= lifetime;
}

void pool_release_server(struct pv_socket *server)
{
	struct pv_pool *pool = server->pool;

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
	if (server_too_old(server)) {
		server_close(server, "server lifetime over");
		return;
	}
	if (server->bp_paused)
		sbuf_resume_bp(server);
	server->idle_since = now_usec();
	socket_set_state(server, SV_IDLE);
	pool_activate(pool);
}

void pool_unlink(struct pv_socket *client, struct pv_socket *server)
{
	bool reset;

	client->link = NULL;
	server->link = NULL;
	if (!server_is_ready(server)) {
		server_close(server, server->expect_rfq > 0 || server->in_extended
					     ? "client disconnected with query in progress"
					     : "client disconnected in transaction");
		return;
	}
	reset = pool_effective_mode(server->pool) == POOL_SESSION || G.cf->server_reset_query_always;
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
	char *copy = strdup(msg);

	free(pool->last_login_error);
	pool->last_login_error = copy;
	strlcpy_pv(pool->last_login_sqlstate, sqlstate ? sqlstate : "08P01",
		   sizeof(pool->last_login_sqlstate));
	pool->last_login_failed_at = now_usec();

	list_for_each_safe(it, tmp, &pool->waiting_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		if (c->state == CL_WAITING_LOGIN)
			client_fatal(c, pool->last_login_sqlstate, "%s", msg);
	}
}
