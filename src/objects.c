/*
 * objects.c - creating, finding and freeing databases, users, pools and
 * sockets, and moving sockets between their pool's state lists.
 */
#include "pool.h"
#include "log.h"
#include "mask.h"
#include "oidc.h"
#include "prepared.h"
#include "record_events.h"
#include "rules.h"
#include "approval.h"
#include "tls.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pv_globals G;

struct pv_database *database_find(const char *name)
{
	struct list_head *it;
	list_for_each(it, &G.databases)
	{
		struct pv_database *db = container_of(it, struct pv_database, node);
		if (!db->dead && strcmp(db->name, name) == 0)
			return db;
	}
	return NULL;
}

static struct pv_database *database_new(const char *name, struct db_conf *conf)
{
	struct pv_database *db = calloc(1, sizeof(*db));
	if (!db)
		return NULL;
	db->name = strdup(name);
	if (!db->name) {
		free(db);
		return NULL;
	}
	db->conf = conf;
	list_append(&G.databases, &db->node);
	return db;
}

struct pv_database *database_get(const char *name)
{
	struct pv_database *db = database_find(name);
	struct db_conf *conf;

	if (db)
		return db;
	conf = config_find_db(G.cf, name);
	if (conf)
		return database_new(name, conf);
	/* "*" makes an auto-database for any name. */
	conf = config_find_db(G.cf, "*");
	if (!conf)
		return NULL;
	db = database_new(name, conf);
	if (db) {
		db->is_auto = true;
		log_info("registered new auto-database: db=%s", name);
	}
	return db;
}

void databases_sync_with_config(void)
{
	struct list_head *it;
	list_for_each(it, &G.databases)
	{
		struct pv_database *db = container_of(it, struct pv_database, node);
		struct db_conf *conf;
		if (db->is_admin)
			continue;
		conf = config_find_db(G.cf, db->is_auto ? "*" : db->name);
		if (!conf) {
			db->dead = true;
			db->conf = NULL;
			continue;
		}
		db->conf = conf;
	}
}

struct pv_user *user_get(const char *name)
{
	struct list_head *it;
	struct pv_user *u;
	list_for_each(it, &G.users)
	{
		u = container_of(it, struct pv_user, node);
		if (strcmp(u->name, name) == 0)
			return u;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->name = strdup(name);
	if (!u->name) {
		free(u);
		return NULL;
	}
	list_append(&G.users, &u->node);
	return u;
}

struct pv_pool *pool_get(struct pv_database *db, struct pv_user *user)
{
	struct list_head *it;
	struct pv_pool *p;
	list_for_each(it, &G.pools)
	{
		p = container_of(it, struct pv_pool, node);
		if (p->db == db && p->user == user)
			return p;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->db = db;
	p->user = user;
	list_init(&p->active_clients);
	list_init(&p->waiting_clients);
	list_init(&p->login_servers);
	list_init(&p->idle_servers);
	list_init(&p->used_servers);
	list_init(&p->tested_servers);
	list_init(&p->active_servers);
	list_init(&p->cancel_servers);
	buf_init(&p->welcome_params);
	list_append(&G.pools, &p->node);
	return p;
}

void pool_free(struct pv_pool *pool)
{
	list_del(&pool->node);
	buf_free(&pool->welcome_params);
	varcache_clear(&pool->server_defaults);
	free(pool->last_login_error);
	free(pool);
}

void database_free(struct pv_database *db)
{
	list_del(&db->node);
	free(db->name);
	free(db);
}

/*
 * One allocation per socket: the struct, its read event (libevent's size is
 * only known at run time) and, for servers, the server-only state. Offsets
 * keep each part aligned for any type.
 */
static size_t align_up(size_t n)
{
	size_t a = _Alignof(max_align_t);
	return (n + a - 1) / a * a;
}

static size_t event_offset(void)
{
	return align_up(sizeof(struct pv_socket));
}

static size_t server_side_offset(void)
{
	return align_up(event_offset() + event_get_struct_event_size());
}

struct event *socket_event_mem(struct pv_socket *s)
{
	return (struct event *)(void *)((char *)s + event_offset());
}

void socket_set_remote(struct pv_socket *s, const struct sockaddr *sa, socklen_t len)
{
	memset(&s->remote, 0, sizeof(s->remote));
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		memcpy(&s->remote, sa, len < sizeof(s->remote) ? len : sizeof(s->remote));
	else
		s->remote.ss_family = sa->sa_family;
	if (s->srv) {
		if (len > sizeof(s->srv->addr))
			len = sizeof(s->srv->addr);
		memcpy(&s->srv->addr, sa, len);
		s->srv->addr_len = len;
	}
}

size_t socket_alloc_size(bool is_server)
{
	return is_server ? server_side_offset() + sizeof(struct pv_server_side)
			 : event_offset() + event_get_struct_event_size();
}

struct pv_socket *socket_new(bool is_server)
{
	struct pv_socket *s = calloc(1, socket_alloc_size(is_server));
	if (!s)
		return NULL;
	if (is_server) {
		s->srv = (struct pv_server_side *)(void *)((char *)s + server_side_offset());
		buf_init(&s->srv->task_err);
		buf_init(&s->srv->repl_params);
	}
	s->is_server = is_server;
	s->id = ++G.next_socket_id;
	s->fd = -1;
	s->tx_status = 'I';
	s->connect_time = now_usec();
	buf_init(&s->in);
	buf_init(&s->out);
	list_init(&s->node);
	return s;
}

/* Which list of its pool a socket in state st belongs to. */
static struct list_head *state_list(struct pv_socket *s, enum sock_state st)
{
	struct pv_pool *p = s->pool;
	if (st == CL_LOGIN || !p)
		return &G.login_clients;
	switch (st) {
	case CL_WAITING_LOGIN:
	case CL_WAITING:
		return &p->waiting_clients;
	case CL_ACTIVE:
		return &p->active_clients;
	case CL_CANCEL:
		return &G.login_clients;
	case SV_LOGIN:
		return &p->login_servers;
	case SV_IDLE:
		return &p->idle_servers;
	case SV_USED:
		return &p->used_servers;
	case SV_TESTED:
		return &p->tested_servers;
	case SV_ACTIVE:
		return &p->active_servers;
	case SV_CANCEL:
		return &p->cancel_servers;
	default:
		return &G.login_clients;
	}
}

void socket_set_state(struct pv_socket *s, enum sock_state st)
{
	struct list_head *l = state_list(s, st);
	list_del(&s->node);
	/* Idle servers are reused LIFO (warm caches) unless round robin is asked for. */
	if (st == SV_IDLE && !G.cf->server_round_robin && !s->close_needed)
		list_prepend(l, &s->node);
	else
		list_append(l, &s->node);
	s->state = st;
}

static void socket_destroy(struct pv_socket *s)
{
	tls_free(s);
	ps_client_free(s);
	ps_server_free(s);
	buf_free(&s->in);
	buf_free(&s->out);
	varcache_clear(&s->vars);
	if (s->scram) {
		scram_server_free(s->scram);
		free(s->scram);
	}
	if (s->srv) {
		buf_free(&s->srv->task_err);
		buf_free(&s->srv->repl_params);
		if (s->srv->scram_cl) {
			scram_client_free(s->srv->scram_cl);
			free(s->srv->scram_cl);
		}
	}
	identity_free(s->identity);
	rules_client_free(s);
	mask_client_free(s);
	record_client_free(s);
	approval_client_gone(s);
	pv_strrelease(s->startup_user);
	pv_strrelease(s->startup_db);
	pv_strrelease(s->app_name);
	free(s->repl_value);
	free(s->repl_options);
	free(s);
}

void socket_free_justfree(void)
{
	struct list_head *it, *tmp;
	list_for_each_safe(it, tmp, &G.justfree)
	{
		struct pv_socket *s = container_of(it, struct pv_socket, node);
		list_del(&s->node);
		socket_destroy(s);
	}
}

const char *socket_state_name(const struct pv_socket *s)
{
	switch (s->state) {
	case CL_LOGIN:
		return "login";
	case CL_WAITING_LOGIN:
	case CL_WAITING:
		return "waiting";
	case CL_ACTIVE:
		return s->link ? "active" : "idle";
	case CL_CANCEL:
		return "active_cancel_req";
	case SV_LOGIN:
		return "new";
	case SV_IDLE:
		return "idle";
	case SV_USED:
		return "used";
	case SV_TESTED:
		return "tested";
	case SV_ACTIVE:
		return "active";
	case SV_CANCEL:
		return "active_cancel";
	default:
		return "free";
	}
}

void socket_log_prefix(const struct pv_socket *s, char *buf, size_t len)
{
	char addr[INET6_ADDRSTRLEN + 2] = "";
	int port = 0;
	const char *db = "(nodb)", *user = "(nouser)";

	if (s->pool) {
		db = s->pool->db->name;
		user = s->pool->user->name;
	} else {
		if (s->startup_db)
			db = s->startup_db;
		if (s->startup_user)
			user = s->startup_user;
	}
	if (s->is_unix || s->remote.ss_family == AF_UNIX) {
		snprintf(addr, sizeof(addr), "unix(%d)", s->peer_pid);
	} else if (s->remote.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)&s->remote;
		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
		port = ntohs(in->sin_port);
	} else if (s->remote.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)&s->remote;
		char tmp[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &in6->sin6_addr, tmp, sizeof(tmp));
		snprintf(addr, sizeof(addr), "[%s]", tmp);
		port = ntohs(in6->sin6_port);
	}
	if (port)
		snprintf(buf, len, "%c-%p: %s/%s@%s:%d", s->is_server ? 'S' : 'C', (const void *)s, db,
			 user, addr, port);
	else
		snprintf(buf, len, "%c-%p: %s/%s@%s", s->is_server ? 'S' : 'C', (const void *)s, db,
			 user, addr);
}

void slog(int level, const struct pv_socket *s, const char *fmt, ...)
{
	char prefix[256], msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	socket_log_prefix(s, prefix, sizeof(prefix));
	log_msg((enum log_level)level, "%s %s", prefix, msg);
}

static struct user_conf *pool_user_conf(const struct pv_pool *pool)
{
	return config_find_user(G.cf, pool->user->name);
}

enum pool_mode pool_effective_mode(const struct pv_pool *pool)
{
	struct user_conf *uc;
	if (pool->db->is_admin)
		return POOL_STATEMENT;
	uc = pool_user_conf(pool);
	if (uc && uc->pool_mode != POOL_INHERIT)
		return uc->pool_mode;
	if (pool->db->conf && pool->db->conf->pool_mode != POOL_INHERIT)
		return pool->db->conf->pool_mode;
	return G.cf->pool_mode;
}

int pool_effective_size(const struct pv_pool *pool)
{
	struct user_conf *uc = pool_user_conf(pool);
	if (uc && uc->pool_size >= 0)
		return uc->pool_size;
	if (pool->db->conf && pool->db->conf->pool_size >= 0)
		return pool->db->conf->pool_size;
	return G.cf->default_pool_size;
}

int pool_server_count(const struct pv_pool *pool)
{
	return (int)(list_count(&pool->login_servers) + list_count(&pool->idle_servers) +
		     list_count(&pool->used_servers) + list_count(&pool->tested_servers) +
		     list_count(&pool->active_servers));
}
