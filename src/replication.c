/*
 * replication.c - replication connections: a dedicated, eagerly launched
 * server per client (see replication.h).
 */
#include "replication.h"
#include "client.h"
#include "server.h"
#include "sbuf.h"
#include "log.h"
#include "proto.h"

#include <string.h>
#include <strings.h>

bool repl_parse(const char *value, enum repl_kind *out)
{
	static const char *const yes[] = {"true", "on", "yes", "1", "t", "y"};
	static const char *const no[] = {"false", "off", "no", "0", "f", "n"};

	if (strcasecmp(value, "database") == 0) {
		*out = REPL_LOGICAL;
		return true;
	}
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*out = REPL_PHYSICAL;
			return true;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*out = REPL_NONE;
			return true;
		}
	}
	return false;
}

const char *repl_kind_name(enum repl_kind k)
{
	switch (k) {
	case REPL_PHYSICAL:
		return "physical";
	case REPL_LOGICAL:
		return "logical";
	default:
		return "none";
	}
}

/*
 * A replication connection never waits for pool room; when the pool is full
 * it makes room by closing the oldest idle server of the pool, if any.
 */
static void make_room(struct pv_pool *pool)
{
	int size = pool_effective_size(pool);
	struct list_head *first;

	if (size <= 0 || pool_server_count(pool) < size)
		return;
	first = list_first(&pool->used_servers);
	/* idle_servers is LIFO: the oldest is at the tail */
	if (!first && !list_empty(&pool->idle_servers))
		first = pool->idle_servers.prev;
	if (first)
		server_close(container_of(first, struct pv_socket, node), "evicted");
}

void repl_client_authenticated(struct pv_socket *c)
{
	make_room(c->pool);
	/* The client says nothing before its welcome; keep its input for later. */
	sbuf_pause(c);
	if (!server_launch_replication(c) && !c->closing)
		client_fatal(c, "08P01", "could not start replication connection");
}

void repl_server_login_done(struct pv_socket *s)
{
	struct pv_socket *c = s->link;
	if (!c || c->closing) {
		server_close(s, "replication client gone");
		return;
	}
	socket_set_state(s, SV_ACTIVE);
	s->srv->idle_since = now_usec();
	/* On failure the client is closed, and its server with it (pool_unlink). */
	if (client_send_welcome(c))
		sbuf_wakeup(c);
}

void repl_server_login_failed(struct pv_socket *s, const char *sqlstate, const char *msg)
{
	struct pv_socket *c = s->link;
	if (!c)
		return;
	c->link = NULL;
	s->link = NULL;
	client_fatal(c, sqlstate ? sqlstate : "08P01", "%s", msg);
}

void repl_add_startup_params(const struct pv_socket *s, struct pkt_builder *b)
{
	const struct pv_socket *c = s->link;
	if (!c)
		return;
	build_string(b, "replication");
	build_string(b, c->repl_value ? c->repl_value : "true");
	if (c->repl_options) {
		build_string(b, "options");
		build_string(b, c->repl_options);
	}
	/* No SET can sync a physical walsender: its parameters go in the startup. */
	for (int i = 0; i < varcache_count(); i++) {
		const char *v = varcache_get(&c->vars, i);
		if (v) {
			build_string(b, varcache_name(i));
			build_string(b, v);
		}
	}
}
