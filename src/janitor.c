/*
 * janitor.c - periodic maintenance of pools and sockets.
 */
#include "janitor.h"
#include "client.h"
#include "server.h"
#include "pool.h"
#include "log.h"

#include <event2/event.h>

static struct event *janitor_ev;

static void check_login_clients(usec_t now)
{
	struct list_head *it, *tmp;
	if (G.cf->client_login_timeout <= 0)
		return;
	list_for_each_safe(it, tmp, &G.login_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		if (c->state == CL_LOGIN && now - c->connect_time > G.cf->client_login_timeout)
			client_fatal(c, "08P01", "client_login_timeout");
	}
}

static usec_t query_wait_timeout(const struct pv_pool *pool)
{
	const struct user_conf *uc = config_find_user(G.cf, pool->user->name);
	if (uc && uc->query_wait_timeout >= 0)
		return uc->query_wait_timeout;
	if (pool->db->conf && pool->db->conf->query_wait_timeout >= 0)
		return pool->db->conf->query_wait_timeout;
	return G.cf->query_wait_timeout;
}

static void check_waiting_clients(struct pv_pool *pool, usec_t now)
{
	struct list_head *it, *tmp;
	usec_t limit = query_wait_timeout(pool);
	list_for_each_safe(it, tmp, &pool->waiting_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		usec_t since = c->wait_start ? c->wait_start : c->connect_time;
		if (limit > 0 && now - since > limit)
			client_fatal(c, "08P01", "query_wait_timeout");
	}
}

static void check_servers(struct pv_pool *pool, usec_t now)
{
	struct list_head *it, *tmp;
	list_for_each_safe(it, tmp, &pool->login_servers)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		if (G.cf->server_connect_timeout > 0 &&
		    now - s->connect_time > G.cf->server_connect_timeout) {
			pool_server_login_failed(s, "08006", "server login failed: connect timeout");
			server_close(s, "connect timeout");
		}
	}
	list_for_each_safe(it, tmp, &pool->idle_servers)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		usec_t idle = now - s->idle_since;
		if (s->close_needed || pool->db->dead)
			server_close(s, "database configuration changed");
		else if (G.cf->server_idle_timeout > 0 && idle > G.cf->server_idle_timeout)
			server_close(s, "server idle timeout");
		else if (G.cf->server_lifetime > 0 && now - s->connect_time > G.cf->server_lifetime)
			server_close(s, "server lifetime over");
		else if (G.cf->server_check_delay > 0 && idle > G.cf->server_check_delay)
			socket_set_state(s, SV_USED);
	}
}

static void check_used_servers(struct pv_pool *pool, usec_t now)
{
	struct list_head *it, *tmp;
	list_for_each_safe(it, tmp, &pool->used_servers)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		if (s->close_needed || pool->db->dead)
			server_close(s, "database configuration changed");
		else if (G.cf->server_idle_timeout > 0 && now - s->idle_since > G.cf->server_idle_timeout)
			server_close(s, "server idle timeout");
	}
}

static void janitor_run(evutil_socket_t fd, short what, void *arg)
{
	usec_t now = now_usec();
	struct list_head *it;

	check_login_clients(now);
	list_for_each(it, &G.pools)
	{
		struct pv_pool *pool = container_of(it, struct pv_pool, node);
		check_waiting_clients(pool, now);
		check_servers(pool, now);
		check_used_servers(pool, now);
	}
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
