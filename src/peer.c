/*
 * peer.c - forwarding CancelRequests to the [peers] process that issued the
 * key (see peer.h).
 *
 * Sockets of peer pools live in the peer pool's own lists, not in any
 * database pool: a forwarded request is a CL_CANCEL client in `waiting` or
 * `active`, its forwarding connection an SV_CANCEL server with pool == NULL
 * in `servers`. Closing a socket unlinks it from its list (sbuf_close), so
 * the counts below are always the list lengths. The forwarding connection
 * reuses the ordinary cancel path of server.c: on connect it sends its
 * cancel_key, on EOF the requester is closed as served.
 */
#include "peer.h"
#include "client.h"
#include "server.h"
#include "sbuf.h"
#include "dns.h"
#include "pool.h"
#include "log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define PEER_TTL 3

struct peer_pool {
	struct list_head node;
	int peer_id;
	struct list_head waiting; /* CL_CANCEL clients not forwarded yet, FIFO */
	struct list_head active;  /* CL_CANCEL clients whose request is in flight */
	struct list_head servers; /* SV_CANCEL forwarding connections */
};

static struct list_head peer_pools = {&peer_pools, &peer_pools};

void peer_stamp_key(uint8_t key[8])
{
	int id = G.cf->peer_id;
	if (id <= 0)
		return;
	key[1] = (uint8_t)(id & 0xff);
	key[2] = (uint8_t)((id >> 8) & 0xff);
	key[7] = (uint8_t)((key[7] & ~3) | PEER_TTL);
}

static const struct peer_conf *find_peer_conf(int id)
{
	struct list_head *it;
	list_for_each(it, &G.cf->peers)
	{
		const struct peer_conf *pc = container_of(it, struct peer_conf, node);
		if (pc->peer_id == id)
			return pc;
	}
	return NULL;
}

static struct peer_pool *peer_pool_get(int id)
{
	struct list_head *it;
	struct peer_pool *pp;
	list_for_each(it, &peer_pools)
	{
		pp = container_of(it, struct peer_pool, node);
		if (pp->peer_id == id)
			return pp;
	}
	pp = calloc(1, sizeof(*pp));
	if (!pp)
		return NULL;
	pp->peer_id = id;
	list_init(&pp->waiting);
	list_init(&pp->active);
	list_init(&pp->servers);
	list_append(&peer_pools, &pp->node);
	return pp;
}

bool peer_handle_cancel(struct pv_socket *c, uint8_t key[8])
{
	int id = key[1] | (key[2] << 8);
	int ttl = key[7] & 3;
	struct peer_pool *pp;

	if (G.cf->peer_id <= 0)
		return false;
	if (id == G.cf->peer_id) {
		/* Our key: a forwarded copy has a lower TTL, the stored one PEER_TTL. */
		key[7] = (uint8_t)((key[7] & ~3) | PEER_TTL);
		return false;
	}
	if (!find_peer_conf(id)) {
		client_close(c, "cancel request for unknown peer");
		return true;
	}
	if (ttl == 0) {
		client_close(c, "cancel request TTL expired");
		return true;
	}
	pp = peer_pool_get(id);
	if (!pp) {
		client_close(c, "out of memory");
		return true;
	}
	key[7] = (uint8_t)((key[7] & ~3) | (ttl - 1));
	memcpy(c->cancel_key, key, 8);
	c->peer = pp;
	list_del(&c->node);
	list_append(&pp->waiting, &c->node);
	sbuf_pause(c);
	slog_debug(c, "forwarding cancel request to peer %d", id);
	peer_pool_activate(pp);
	return true;
}

/* --- forwarding connections ------------------------------------------------------ */

static bool peer_connect_addr(struct pv_socket *s, const struct sockaddr *sa, socklen_t len)
{
	socket_set_remote(s, sa, len);
	s->is_unix = sa->sa_family == AF_UNIX;
	if (!sbuf_connect(s, sa, len)) {
		server_close(s, "cancel connect to peer failed");
		return false;
	}
	return true;
}

static void on_peer_dns(void *arg, const char *err, const struct dns_result *res)
{
	struct pv_socket *s = arg;
	s->srv->dns = NULL;
	if (err || !res || res->count == 0) {
		server_close(s, "peer DNS lookup failed");
		return;
	}
	peer_connect_addr(s, (const struct sockaddr *)&res->addrs[0], res->lens[0]);
}

/* host is a unix socket directory, a numeric address, or a name resolved on the loop. */
static bool peer_connect(struct pv_socket *s, const struct peer_conf *pc)
{
	int port = pc->port > 0 ? pc->port : 6432;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};

	if (pc->host[0] == '/' || pc->host[0] == '@') {
		int n =
		    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", pc->host, port);
		if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
			server_close(s, "peer unix socket path too long");
			return false;
		}
		if (pc->host[0] == '@')
			sun.sun_path[0] = '\0';
		return peer_connect_addr(s, (struct sockaddr *)&sun, sizeof(sun));
	}
	if (inet_pton(AF_INET, pc->host, &in4.sin_addr) == 1)
		return peer_connect_addr(s, (struct sockaddr *)&in4, sizeof(in4));
	if (inet_pton(AF_INET6, pc->host, &in6.sin6_addr) == 1)
		return peer_connect_addr(s, (struct sockaddr *)&in6, sizeof(in6));
	s->srv->dns = dns_resolve(G.dns, pc->host, port, on_peer_dns, s);
	if (!s->srv->dns) {
		server_close(s, "peer DNS lookup failed");
		return false;
	}
	return true;
}

static void forward_one(struct peer_pool *pp, const struct peer_conf *pc, struct pv_socket *c)
{
	struct pv_socket *s = socket_new(true);
	char name[32];

	list_del(&c->node);
	list_append(&pp->active, &c->node);
	if (!s) {
		client_close(c, "out of memory");
		return;
	}
	/* Log lines name the peer where a server names its database. */
	snprintf(name, sizeof(name), "peer-%d", pp->peer_id);
	s->startup_db = pv_strintern(name);
	s->peer = pp;
	s->state = SV_CANCEL;
	list_append(&pp->servers, &s->node);
	memcpy(s->cancel_key, c->cancel_key, sizeof(s->cancel_key));
	s->cancel_target = c;
	c->cancel_target = s;
	peer_connect(s, pc);
}

static int peer_pool_size(const struct peer_conf *pc)
{
	return pc->pool_size >= 0 ? pc->pool_size : G.cf->default_pool_size;
}

void peer_pool_activate(struct peer_pool *pp)
{
	const struct peer_conf *pc = find_peer_conf(pp->peer_id);
	struct list_head *first;
	/* A forward that fails at once closes its server, which activates again. */
	static bool running;

	if (running)
		return;
	running = true;
	while ((first = list_first(&pp->waiting)) != NULL) {
		struct pv_socket *c = container_of(first, struct pv_socket, node);
		int size;
		/* The peer left [peers] on RELOAD: its waiting requests go. */
		if (!pc) {
			client_close(c, "cancel request for unknown peer");
			continue;
		}
		size = peer_pool_size(pc);
		if (size > 0 && (int)list_count(&pp->servers) >= size)
			break;
		forward_one(pp, pc, c);
	}
	running = false;
}

static void expire_list(struct list_head *list, usec_t now)
{
	struct list_head *it, *tmp;
	list_for_each_safe(it, tmp, list)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		struct pv_socket *s = c->cancel_target;
		if (now - c->connect_time <= G.cf->cancel_wait_timeout)
			continue;
		client_close(c, "cancel_wait_timeout");
		if (s && !s->closing)
			server_close(s, "cancel_wait_timeout");
	}
}

void peers_janitor(usec_t now)
{
	struct list_head *it;
	if (G.cf->cancel_wait_timeout <= 0)
		return;
	list_for_each(it, &peer_pools)
	{
		struct peer_pool *pp = container_of(it, struct peer_pool, node);
		expire_list(&pp->waiting, now);
		expire_list(&pp->active, now);
		peer_pool_activate(pp);
	}
}

/* --- SHOW PEER_POOLS ---------------------------------------------------------------- */

size_t peer_pool_count(void)
{
	return list_count(&peer_pools);
}

bool peer_pool_row_at(size_t index, struct peer_pool_row *row)
{
	struct list_head *it;
	size_t i = 0;
	list_for_each(it, &peer_pools)
	{
		struct peer_pool *pp = container_of(it, struct peer_pool, node);
		struct list_head *sit;
		if (i++ != index)
			continue;
		memset(row, 0, sizeof(*row));
		row->peer_id = pp->peer_id;
		row->cl_active_cancel_req = (int)list_count(&pp->active);
		row->cl_waiting_cancel_req = (int)list_count(&pp->waiting);
		list_for_each(sit, &pp->servers)
		{
			const struct pv_socket *s = container_of(sit, struct pv_socket, node);
			if (s->connecting || s->srv->dns)
				row->sv_login++;
			else
				row->sv_active_cancel++;
		}
		return true;
	}
	return false;
}
