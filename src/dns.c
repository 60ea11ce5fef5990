/*
 * dns.c - asynchronous host name resolution: c-ares driven by libevent.
 *
 * c-ares tells us which sockets to watch through its socket-state callback;
 * each gets a persistent libevent event that feeds ares_process_fd(), and a
 * single timer follows ares_timeout() so retries and timeouts fire.
 *
 * Every host name has one struct dns_name: the cache entry (addresses or the
 * failure, plus an expiry time) and, while a query runs, the list of requests
 * waiting for it. Concurrent lookups of a name therefore share one query.
 *
 * Answers never reach callers directly from c-ares: finished requests are
 * moved to ctx->ready and a zero-timeout event delivers them. That keeps
 * callbacks from running inside dns_resolve() (c-ares answers /etc/hosts and
 * errors synchronously) and inside ares_process_fd().
 *
 * With dns_zone_check_period set, a persistent timer asks for the SOA serial
 * of every zone the cached names belong to (a name's zone is the name minus
 * its first label) and expires the zone's names when the serial changes.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns.h"
#include "list.h"
#include "log.h"
#include "util.h"

#define DNS_DEFAULT_TTL (15 * USEC_PER_SEC)

/* One socket c-ares asked us to watch. */
struct dns_sock {
	struct list_head node; /* in ctx->socks */
	struct dns_ctx *ctx;
	ares_socket_t fd;
	struct event *ev;
};

/* Cache entry and in-flight query for one host name. */
struct dns_name {
	struct list_head node; /* in ctx->names */
	struct dns_ctx *ctx;
	char *host;
	bool in_flight;
	bool have_result;
	const char *err;          /* static string; NULL on success */
	usec_t expires;           /* mono_usec() */
	struct dns_result res;    /* ports are 0 */
	struct list_head waiters; /* struct dns_req */
};

struct dns_req {
	struct list_head node; /* in name->waiters or ctx->ready */
	struct dns_ctx *ctx;
	dns_callback cb;
	void *arg;
	int port;
	const char *err;
	struct dns_result res;
};

/* A DNS zone some cached name belongs to, with the last SOA serial seen. */
struct dns_zone {
	struct list_head node; /* in ctx->zones */
	char *name;
	long long serial; /* 0 until the first answer */
	bool in_flight;
};

/*
 * Argument of an SOA query. It names the zone rather than pointing at it:
 * the zone may be dropped (and even re-created) while the query runs.
 */
struct dns_soa_arg {
	struct dns_ctx *ctx;
	char zone[];
};

struct dns_ctx {
	struct event_base *base;
	ares_channel chan;
	bool chan_ok;
	bool destroying;
	struct event *timer;    /* drives ares timeouts */
	struct event *ready_ev; /* delivers ctx->ready */
	struct list_head socks;
	struct list_head names;
	struct list_head ready;
	struct list_head zones;   /* struct dns_zone */
	struct event *zone_timer; /* NULL until zone checks are first enabled */
	usec_t zone_period;       /* 0 = zone checks off */
	usec_t max_ttl;
	usec_t nxdomain_ttl;
	int pending; /* names with a query in flight */
	unsigned long queries;
};

static const char ERR_NOADDR[] = "no addresses";

static void dns_zones_drop_empty(struct dns_ctx *ctx);

/* --- event loop glue ------------------------------------------------------ */

/* Re-arm the timer to c-ares' next deadline (or stop it when idle). */
static void dns_rearm_timer(struct dns_ctx *ctx)
{
	struct timeval tv;

	if (ctx->destroying)
		return;
	if (ares_timeout(ctx->chan, NULL, &tv))
		evtimer_add(ctx->timer, &tv);
	else
		evtimer_del(ctx->timer);
}

static void dns_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_ctx *ctx = arg;

	ares_process_fd(ctx->chan, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_rearm_timer(ctx);
}

static void dns_on_sock(evutil_socket_t fd, short what, void *arg)
{
	struct dns_sock *s = arg;
	struct dns_ctx *ctx = s->ctx;

	/* s may be freed by the socket-state callback during processing. */
	ares_process_fd(ctx->chan, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	                (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_rearm_timer(ctx);
}

static struct dns_sock *dns_find_sock(struct dns_ctx *ctx, ares_socket_t fd)
{
	struct list_head *pos;

	list_for_each(pos, &ctx->socks)
	{
		struct dns_sock *s = container_of(pos, struct dns_sock, node);
		if (s->fd == fd)
			return s;
	}
	return NULL;
}

static void dns_free_sock(struct dns_sock *s)
{
	list_del(&s->node);
	if (s->ev)
		event_free(s->ev);
	free(s);
}

/*
 * c-ares socket-state callback. On allocation failure the socket goes
 * unwatched; the timer still makes the query time out instead of hanging.
 */
static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_ctx *ctx = data;
	struct dns_sock *s = dns_find_sock(ctx, fd);
	short what = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

	if (!readable && !writable) {
		if (s)
			dns_free_sock(s);
		return;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			log_warning("dns: out of memory watching socket %d", (int)fd);
			return;
		}
		s->ctx = ctx;
		s->fd = fd;
		list_append(&ctx->socks, &s->node);
	}
	if (s->ev)
		event_free(s->ev);
	s->ev = event_new(ctx->base, fd, what, dns_on_sock, s);
	if (!s->ev || event_add(s->ev, NULL) != 0) {
		log_warning("dns: cannot watch socket %d", (int)fd);
		dns_free_sock(s);
	}
}

/* --- delivery ------------------------------------------------------------- */

static void dns_on_ready(evutil_socket_t fd, short what, void *arg)
{
	struct dns_ctx *ctx = arg;
	struct list_head batch, *first;

	/*
	 * Take a snapshot: requests queued by callbacks wait for the next round,
	 * so a callback that keeps resolving cannot starve the loop.
	 */
	list_init(&batch);
	if (!list_empty(&ctx->ready)) {
		list_add_between(&batch, ctx->ready.prev, ctx->ready.next);
		list_init(&ctx->ready);
	}
	while ((first = list_first(&batch)) != NULL) {
		struct dns_req *req = container_of(first, struct dns_req, node);
		struct dns_result res = req->res;
		dns_callback cb = req->cb;
		void *cbarg = req->arg;
		const char *err = req->err;

		/* Freed first so the callback may start new lookups freely. */
		list_del(&req->node);
		free(req);
		cb(cbarg, err, err ? NULL : &res);
	}
}

/* Queue a finished request for delivery from the loop. */
static void dns_make_ready(struct dns_req *req)
{
	static const struct timeval zero = {0, 0};

	list_append(&req->ctx->ready, &req->node);
	evtimer_add(req->ctx->ready_ev, &zero);
}

static void dns_set_port(struct dns_result *res, int port)
{
	for (int i = 0; i < res->count; i++) {
		struct sockaddr *sa = (struct sockaddr *)&res->addrs[i];
		if (sa->sa_family == AF_INET)
			((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
		else if (sa->sa_family == AF_INET6)
			((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
	}
}

/* Fill req from a cache entry and queue it. */
static void dns_finish_req(struct dns_req *req, const struct dns_name *n)
{
	req->err = n->err;
	if (!n->err) {
		req->res = n->res;
		dns_set_port(&req->res, req->port);
	}
	dns_make_ready(req);
}

/* --- cache ---------------------------------------------------------------- */

static struct dns_name *dns_find_name(struct dns_ctx *ctx, const char *host)
{
	struct list_head *pos;

	list_for_each(pos, &ctx->names)
	{
		struct dns_name *n = container_of(pos, struct dns_name, node);
		if (strcasecmp(n->host, host) == 0)
			return n;
	}
	return NULL;
}

static void dns_free_name(struct dns_name *n)
{
	list_del(&n->node);
	free(n->host);
	free(n);
}

/* Drop expired entries nobody is waiting on, except `keep`. */
static void dns_prune(struct dns_ctx *ctx, const struct dns_name *keep)
{
	struct list_head *pos, *tmp;
	usec_t now = mono_usec();
	bool freed = false;

	list_for_each_safe(pos, tmp, &ctx->names)
	{
		struct dns_name *n = container_of(pos, struct dns_name, node);
		if (n != keep && !n->in_flight && n->expires <= now) {
			dns_free_name(n);
			freed = true;
		}
	}
	if (freed)
		dns_zones_drop_empty(ctx);
}

/* Copy up to DNS_MAX_ADDRS addresses and return the smallest TTL seen. */
static int dns_copy_nodes(struct dns_result *out, const struct ares_addrinfo *ai)
{
	int ttl = -1;

	out->count = 0;
	for (const struct ares_addrinfo_node *nd = ai->nodes; nd; nd = nd->ai_next) {
		if (nd->ai_addrlen > sizeof(out->addrs[0]))
			continue;
		if (out->count >= DNS_MAX_ADDRS)
			break;
		memset(&out->addrs[out->count], 0, sizeof(out->addrs[0]));
		memcpy(&out->addrs[out->count], nd->ai_addr, nd->ai_addrlen);
		out->lens[out->count++] = nd->ai_addrlen;
		if (ttl < 0 || nd->ai_ttl < ttl)
			ttl = nd->ai_ttl;
	}
	/* A CNAME chain is only as fresh as its shortest link. */
	for (const struct ares_addrinfo_cname *c = ai->cnames; c; c = c->next)
		if (c->ttl < ttl)
			ttl = c->ttl;
	return ttl < 0 ? 0 : ttl;
}

/* Store a c-ares answer in the cache entry and set its expiry. */
static void dns_store(struct dns_name *n, int status, const struct ares_addrinfo *ai)
{
	struct dns_ctx *ctx = n->ctx;
	usec_t life = ctx->nxdomain_ttl;

	n->have_result = true;
	n->err = NULL;
	if (status != ARES_SUCCESS) {
		n->err = ares_strerror(status);
	} else {
		usec_t ttl = (usec_t)dns_copy_nodes(&n->res, ai) * USEC_PER_SEC;
		if (n->res.count == 0)
			n->err = ERR_NOADDR;
		else
			life = ttl < ctx->max_ttl ? ttl : ctx->max_ttl;
	}
	/* Local trouble says nothing about the name: do not cache it. */
	if (status == ARES_ENOMEM || status == ARES_ECANCELLED)
		life = 0;
	n->expires = mono_usec() + life;
	if (n->err)
		log_debug("dns: %s: %s", n->host, n->err);
	else
		log_debug("dns: %s: %d address(es), cached %lld s", n->host, n->res.count,
		          (long long)(life / USEC_PER_SEC));
}

static void dns_on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct dns_name *n = arg;
	struct dns_ctx *ctx = n->ctx;
	struct list_head *pos, *tmp;

	/* During dns_destroy() the entry and its waiters are freed by the caller. */
	if (status == ARES_EDESTRUCTION || ctx->destroying) {
		ares_freeaddrinfo(ai);
		return;
	}
	dns_store(n, status, ai);
	ares_freeaddrinfo(ai);
	n->in_flight = false;
	ctx->pending--;
	list_for_each_safe(pos, tmp, &n->waiters)
	{
		struct dns_req *req = container_of(pos, struct dns_req, node);
		list_del(&req->node);
		dns_finish_req(req, n);
	}
}

/* Start a c-ares query for n (which has no query in flight). */
static void dns_start_query(struct dns_name *n)
{
	struct dns_ctx *ctx = n->ctx;
	struct ares_addrinfo_hints hints;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	n->in_flight = true;
	ctx->pending++;
	ctx->queries++;
	log_debug("dns: looking up %s", n->host);
	/* May call dns_on_answer() synchronously (hosts file, bad name). */
	ares_getaddrinfo(ctx->chan, n->host, NULL, &hints, dns_on_answer, n);
	dns_rearm_timer(ctx);
}

static struct dns_name *dns_new_name(struct dns_ctx *ctx, const char *host)
{
	struct dns_name *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->host = strdup(host);
	if (!n->host) {
		free(n);
		return NULL;
	}
	n->ctx = ctx;
	list_init(&n->waiters);
	list_append(&ctx->names, &n->node);
	return n;
}

/* --- zone serial checks ---------------------------------------------------- */

/* The zone of a host name: everything after its first label, or NULL. */
static const char *dns_zone_of(const char *host)
{
	const char *dot = strchr(host, '.');

	return dot && dot[1] ? dot + 1 : NULL;
}

static int dns_zone_names(struct dns_ctx *ctx, const char *zone)
{
	struct list_head *pos;
	int count = 0;

	list_for_each(pos, &ctx->names)
	{
		const char *z = dns_zone_of(container_of(pos, struct dns_name, node)->host);
		if (z && strcasecmp(z, zone) == 0)
			count++;
	}
	return count;
}

static struct dns_zone *dns_find_zone(struct dns_ctx *ctx, const char *zone)
{
	struct list_head *pos;

	list_for_each(pos, &ctx->zones)
	{
		struct dns_zone *z = container_of(pos, struct dns_zone, node);
		if (strcasecmp(z->name, zone) == 0)
			return z;
	}
	return NULL;
}

static void dns_free_zone(struct dns_zone *z)
{
	list_del(&z->node);
	free(z->name);
	free(z);
}

static void dns_free_zones(struct dns_ctx *ctx)
{
	while (!list_empty(&ctx->zones))
		dns_free_zone(container_of(ctx->zones.next, struct dns_zone, node));
}

/* A zone goes away with its last cached name (its serial is forgotten). */
static void dns_zones_drop_empty(struct dns_ctx *ctx)
{
	struct list_head *pos, *tmp;

	list_for_each_safe(pos, tmp, &ctx->zones)
	{
		struct dns_zone *z = container_of(pos, struct dns_zone, node);
		if (dns_zone_names(ctx, z->name) == 0)
			dns_free_zone(z);
	}
}

/* Make sure every zone of a cached name has an entry. false on out of memory. */
static bool dns_zones_add_missing(struct dns_ctx *ctx)
{
	struct list_head *pos;

	list_for_each(pos, &ctx->names)
	{
		const char *zone = dns_zone_of(container_of(pos, struct dns_name, node)->host);
		struct dns_zone *z;

		if (!zone || dns_find_zone(ctx, zone))
			continue;
		z = calloc(1, sizeof(*z));
		if (!z || !(z->name = strdup(zone))) {
			free(z);
			return false;
		}
		list_append(&ctx->zones, &z->node);
	}
	return true;
}

/*
 * Expire the zone's cached answers so the next dns_resolve() starts a query.
 * Names with a query in flight are left alone: that query is newer anyway.
 */
static void dns_zone_expire_names(struct dns_ctx *ctx, const char *zone)
{
	struct list_head *pos;
	usec_t now = mono_usec();

	list_for_each(pos, &ctx->names)
	{
		struct dns_name *n = container_of(pos, struct dns_name, node);
		const char *z = dns_zone_of(n->host);

		if (z && strcasecmp(z, zone) == 0 && !n->in_flight && n->expires > now)
			n->expires = now;
	}
}

/* Record a zone's serial; a change from a known serial expires its names. */
static void dns_zone_serial(struct dns_ctx *ctx, struct dns_zone *z, long long serial)
{
	if (z->serial != 0 && serial != z->serial) {
		log_info("dns: zone %s serial changed %lld -> %lld", z->name, z->serial, serial);
		dns_zone_expire_names(ctx, z->name);
	}
	z->serial = serial;
}

static void dns_on_soa(void *arg, int status, int timeouts, unsigned char *buf, int len)
{
	struct dns_soa_arg *qa = arg;
	struct dns_ctx *ctx = qa->ctx;
	struct ares_soa_reply *soa = NULL;
	struct dns_zone *z;

	if (status == ARES_EDESTRUCTION || ctx->destroying) {
		free(qa);
		return;
	}
	z = dns_find_zone(ctx, qa->zone);
	if (z)
		z->in_flight = false;
	if (status == ARES_SUCCESS)
		status = ares_parse_soa_reply(buf, len, &soa);
	if (status != ARES_SUCCESS)
		log_debug("dns: zone %s: SOA query failed: %s", qa->zone, ares_strerror(status));
	else if (z && soa->serial != 0)
		dns_zone_serial(ctx, z, (long long)soa->serial);
	if (soa)
		ares_free_data(soa);
	free(qa);
}

static void dns_zone_query(struct dns_ctx *ctx, struct dns_zone *z)
{
	size_t len = strlen(z->name) + 1;
	struct dns_soa_arg *qa = malloc(sizeof(*qa) + len);

	if (!qa) {
		log_debug("dns: zone %s: out of memory for SOA query", z->name);
		return;
	}
	qa->ctx = ctx;
	memcpy(qa->zone, z->name, len);
	z->in_flight = true;
	log_noise("dns: zone %s: asking for SOA", z->name);
	/* May call dns_on_soa() synchronously, which clears in_flight again. */
	ares_query(ctx->chan, z->name, C_IN, T_SOA, dns_on_soa, qa);
}

static void dns_on_zone_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_ctx *ctx = arg;
	struct list_head *pos;

	dns_zones_drop_empty(ctx);
	if (!dns_zones_add_missing(ctx))
		log_debug("dns: out of memory tracking zones");
	list_for_each(pos, &ctx->zones)
	{
		struct dns_zone *z = container_of(pos, struct dns_zone, node);
		if (!z->in_flight)
			dns_zone_query(ctx, z);
	}
	dns_rearm_timer(ctx);
}

/* --- public API ----------------------------------------------------------- */

static bool dns_init_channel(struct dns_ctx *ctx, const char *resolv_conf, char *err, size_t errlen)
{
	struct ares_options opts;
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS;
	int rc;

	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = dns_sock_state;
	opts.sock_state_cb_data = ctx;
	/* Hosts file first, so "localhost" works without any name server. */
	opts.lookups = (char *)"fb";
#ifdef ARES_OPT_RESOLVCONF
	if (resolv_conf && resolv_conf[0]) {
		opts.resolvconf_path = (char *)resolv_conf;
		mask |= ARES_OPT_RESOLVCONF;
	}
#else
	if (resolv_conf && resolv_conf[0])
		log_warning("dns: resolv_conf is not supported by this c-ares, ignored");
#endif
	rc = ares_init_options(&ctx->chan, &opts, mask);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares init failed: %s", ares_strerror(rc));
		return false;
	}
	ctx->chan_ok = true;
	return true;
}

struct dns_ctx *dns_create(struct event_base *base, const char *resolv_conf, char *err,
                           size_t errlen)
{
	struct dns_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ctx->base = base;
	ctx->max_ttl = DNS_DEFAULT_TTL;
	ctx->nxdomain_ttl = DNS_DEFAULT_TTL;
	list_init(&ctx->socks);
	list_init(&ctx->names);
	list_init(&ctx->ready);
	list_init(&ctx->zones);
	ctx->timer = evtimer_new(base, dns_on_timer, ctx);
	ctx->ready_ev = evtimer_new(base, dns_on_ready, ctx);
	if (!ctx->timer || !ctx->ready_ev) {
		snprintf(err, errlen, "out of memory");
		dns_destroy(ctx);
		return NULL;
	}
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares library init failed");
		dns_destroy(ctx);
		return NULL;
	}
	if (!dns_init_channel(ctx, resolv_conf, err, errlen)) {
		ares_library_cleanup();
		dns_destroy(ctx);
		return NULL;
	}
	return ctx;
}

static void dns_free_reqs(struct list_head *list)
{
	struct list_head *pos, *tmp;

	list_for_each_safe(pos, tmp, list)
	{
		list_del(pos);
		free(container_of(pos, struct dns_req, node));
	}
}

void dns_destroy(struct dns_ctx *ctx)
{
	if (!ctx)
		return;
	ctx->destroying = true;
	if (ctx->chan_ok) {
		/* Runs dns_on_answer(ARES_EDESTRUCTION) and closes the sockets. */
		ares_destroy(ctx->chan);
		ares_library_cleanup();
	}
	while (!list_empty(&ctx->socks))
		dns_free_sock(container_of(ctx->socks.next, struct dns_sock, node));
	while (!list_empty(&ctx->names)) {
		struct dns_name *n = container_of(ctx->names.next, struct dns_name, node);
		dns_free_reqs(&n->waiters);
		dns_free_name(n);
	}
	dns_free_reqs(&ctx->ready);
	dns_free_zones(ctx);
	if (ctx->zone_timer)
		event_free(ctx->zone_timer);
	if (ctx->timer)
		event_free(ctx->timer);
	if (ctx->ready_ev)
		event_free(ctx->ready_ev);
	free(ctx);
}

void dns_set_ttls(struct dns_ctx *ctx, usec_t max_ttl, usec_t nxdomain_ttl)
{
	ctx->max_ttl = max_ttl < 0 ? 0 : max_ttl;
	ctx->nxdomain_ttl = nxdomain_ttl < 0 ? 0 : nxdomain_ttl;
}

/* Resolve a numeric address without c-ares. false if host is not numeric. */
static bool dns_numeric(const char *host, struct dns_result *res)
{
	struct addrinfo hints, *ai = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* AI_NUMERICHOST never touches the network, so this cannot block. */
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
		return false;
	res->count = 0;
	if (ai->ai_addrlen <= sizeof(res->addrs[0])) {
		memset(&res->addrs[0], 0, sizeof(res->addrs[0]));
		memcpy(&res->addrs[0], ai->ai_addr, ai->ai_addrlen);
		res->lens[0] = ai->ai_addrlen;
		res->count = 1;
	}
	freeaddrinfo(ai);
	return res->count == 1;
}

/* Attach req to the cache entry for host, starting a query if needed. */
static bool dns_lookup_name(struct dns_ctx *ctx, struct dns_req *req, const char *host)
{
	struct dns_name *n = dns_find_name(ctx, host);

	dns_prune(ctx, n);
	if (!n) {
		n = dns_new_name(ctx, host);
		if (!n)
			return false;
	}
	if (n->have_result && !n->in_flight && n->expires > mono_usec()) {
		dns_finish_req(req, n);
		return true;
	}
	list_append(&n->waiters, &req->node);
	if (!n->in_flight)
		dns_start_query(n);
	return true;
}

struct dns_req *dns_resolve(struct dns_ctx *ctx, const char *host, int port, dns_callback cb,
                            void *arg)
{
	struct dns_req *req;

	if (!ctx || !host || !host[0] || !cb || port < 0 || port > 65535)
		return NULL;
	req = calloc(1, sizeof(*req));
	if (!req) {
		log_warning("dns: out of memory resolving %s", host);
		return NULL;
	}
	req->ctx = ctx;
	req->cb = cb;
	req->arg = arg;
	req->port = port;
	list_init(&req->node);
	if (dns_numeric(host, &req->res)) {
		dns_set_port(&req->res, port);
		dns_make_ready(req);
		return req;
	}
	if (!dns_lookup_name(ctx, req, host)) {
		log_warning("dns: out of memory resolving %s", host);
		free(req);
		return NULL;
	}
	return req;
}

/*
 * The request is only unlinked: a shared query keeps running (its answer
 * still fills the cache) and the other waiters are unaffected.
 */
void dns_cancel(struct dns_req *req)
{
	if (!req)
		return;
	list_del(&req->node);
	free(req);
}

static void dns_format_addrs(const struct dns_name *n, char *out, size_t outlen)
{
	size_t used = 0;

	out[0] = '\0';
	for (int i = 0; !n->err && i < n->res.count && used < outlen; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&n->res.addrs[i];
		const void *src = sa->sa_family == AF_INET
		                      ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
		                      : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		char ip[INET6_ADDRSTRLEN];

		if (!inet_ntop(sa->sa_family, src, ip, sizeof(ip)))
			continue;
		int w = snprintf(out + used, outlen - used, "%s%s", used ? "," : "", ip);
		if (w < 0 || (size_t)w >= outlen - used)
			break;
		used += (size_t)w;
	}
}

bool dns_cache_row(struct dns_ctx *ctx, size_t index, char *host, size_t hostlen, long long *ttl,
                   char *addrs, size_t addrslen)
{
	struct list_head *pos;
	size_t i = 0;

	list_for_each(pos, &ctx->names)
	{
		const struct dns_name *n = container_of(pos, struct dns_name, node);
		usec_t left;

		if (i++ != index)
			continue;
		left = n->have_result ? n->expires - mono_usec() : 0;
		if (host && hostlen)
			strlcpy_pv(host, n->host, hostlen);
		if (ttl)
			*ttl = left > 0 ? (long long)((left + USEC_PER_SEC - 1) / USEC_PER_SEC) : 0;
		if (addrs && addrslen)
			dns_format_addrs(n, addrs, addrslen);
		return true;
	}
	return false;
}

int dns_names_count(struct dns_ctx *ctx)
{
	return (int)list_count(&ctx->names);
}

int dns_pending_count(struct dns_ctx *ctx)
{
	return ctx->pending;
}

unsigned long dns_query_count(struct dns_ctx *ctx)
{
	return ctx->queries;
}

bool dns_set_servers(struct dns_ctx *ctx, const char *csv)
{
	int rc = ares_set_servers_ports_csv(ctx->chan, csv);

	if (rc != ARES_SUCCESS) {
		log_warning("dns: bad server list \"%s\": %s", csv, ares_strerror(rc));
		return false;
	}
	return true;
}

/*
 * A reload with an unchanged period keeps the running schedule; turning the
 * checks off forgets the zones (and their serials) altogether.
 */
void dns_set_zone_check_period(struct dns_ctx *ctx, usec_t period)
{
	struct timeval tv;

	if (period < 0)
		period = 0;
	if (period == ctx->zone_period)
		return;
	ctx->zone_period = 0;
	if (period == 0) {
		if (ctx->zone_timer)
			evtimer_del(ctx->zone_timer);
		dns_free_zones(ctx);
		return;
	}
	if (!ctx->zone_timer)
		ctx->zone_timer = event_new(ctx->base, -1, EV_PERSIST, dns_on_zone_timer, ctx);
	tv.tv_sec = (time_t)(period / USEC_PER_SEC);
	tv.tv_usec = (suseconds_t)(period % USEC_PER_SEC);
	if (!ctx->zone_timer || event_add(ctx->zone_timer, &tv) != 0) {
		log_warning("dns: cannot start DNS zone checks");
		return;
	}
	ctx->zone_period = period;
}

/* Zones come from the cache on each check, so a row may lag it by one period. */
bool dns_zone_row(struct dns_ctx *ctx, size_t index, char *zone, size_t zonelen, long long *serial,
                  int *count)
{
	struct list_head *pos;
	size_t i = 0;

	list_for_each(pos, &ctx->zones)
	{
		const struct dns_zone *z = container_of(pos, struct dns_zone, node);

		if (i++ != index)
			continue;
		if (zone && zonelen)
			strlcpy_pv(zone, z->name, zonelen);
		if (serial)
			*serial = z->serial;
		if (count)
			*count = dns_zone_names(ctx, z->name);
		return true;
	}
	return false;
}

int dns_zones_count(struct dns_ctx *ctx)
{
	return (int)list_count(&ctx->zones);
}
