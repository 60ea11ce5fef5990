/*
 * dns.h - asynchronous host name resolution with c-ares on the event loop.
 *
 * Nothing here blocks: queries run through c-ares sockets registered with
 * libevent. Answers are cached per host name for min(TTL, dns_max_ttl), and
 * failures for dns_nxdomain_ttl. Numeric addresses resolve immediately
 * (the callback still runs from the loop, never re-entrantly from dns_resolve).
 */
#ifndef PV_DNS_H
#define PV_DNS_H

#include <stdbool.h>
#include <sys/socket.h>
#include "config.h"

struct event_base;
struct dns_ctx;
struct dns_req;

#define DNS_MAX_ADDRS 8

struct dns_result {
	int count;
	struct sockaddr_storage addrs[DNS_MAX_ADDRS]; /* port already set */
	socklen_t lens[DNS_MAX_ADDRS];
};

/*
 * err is NULL on success; res is valid only during the call. The request
 * handle is freed before the callback runs: never dns_cancel() it from inside
 * or after its callback. Do not call dns_destroy() from a callback.
 */
typedef void (*dns_callback)(void *arg, const char *err, const struct dns_result *res);

/*
 * resolv_conf: NULL or "" for the system default (/etc/resolv.conf).
 * Host names are looked up in /etc/hosts first, then DNS.
 */
struct dns_ctx *dns_create(struct event_base *base, const char *resolv_conf, char *err,
			   size_t errlen);
/*
 * Frees everything, including requests still pending: their callbacks are
 * NOT called and their handles become invalid (the caller is shutting down).
 */
void dns_destroy(struct dns_ctx *ctx);
/* Apply dns_max_ttl / dns_nxdomain_ttl (on load and RELOAD). */
void dns_set_ttls(struct dns_ctx *ctx, usec_t max_ttl, usec_t nxdomain_ttl);

/*
 * dns_zone_check_period (on load and RELOAD; 0 = off): every period, ask for
 * the SOA serial of each zone the cached names belong to (a name minus its
 * first label; dotless names have none) and expire the cached names of a zone
 * whose serial changed, so the next lookup queries again.
 */
void dns_set_zone_check_period(struct dns_ctx *ctx, usec_t period);

/* Start a lookup. Returns a handle usable with dns_cancel, or NULL on immediate failure. */
struct dns_req *dns_resolve(struct dns_ctx *ctx, const char *host, int port, dns_callback cb,
			    void *arg);
/* The callback of a cancelled request is never called. */
void dns_cancel(struct dns_req *req);

/* For SHOW DNS_HOSTS: iterate cache entries. false past the end. */
bool dns_cache_row(struct dns_ctx *ctx, size_t index, char *host, size_t hostlen, long long *ttl,
		   char *addrs, size_t addrslen);
/*
 * For SHOW DNS_ZONES: zones being checked, the last serial seen (0 = none
 * yet) and how many cached names belong to each. false past the end.
 */
bool dns_zone_row(struct dns_ctx *ctx, size_t index, char *zone, size_t zonelen, long long *serial,
                  int *count);
/* Counters for SHOW LISTS. */
int dns_names_count(struct dns_ctx *ctx);
int dns_zones_count(struct dns_ctx *ctx);
int dns_pending_count(struct dns_ctx *ctx);

/* Number of DNS queries started so far (cache misses); for tests and stats. */
unsigned long dns_query_count(struct dns_ctx *ctx);
/*
 * Override the name servers: "ip[:port],..." as in ares_set_servers_ports_csv
 * ("[::1]:53" for IPv6 with a port). Call it before any lookup is in
 * flight (c-ares refuses otherwise). Returns false on a malformed list.
 */
bool dns_set_servers(struct dns_ctx *ctx, const char *csv);

#endif
