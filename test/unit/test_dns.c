/*
 * test_dns.c - unit tests for the c-ares/libevent resolver (src/dns.c).
 *
 * The machine running the tests may have no network, so real name servers
 * are never asked: each test points c-ares at a tiny fake DNS server on
 * 127.0.0.1 that runs on the same event loop and answers from a fixed table:
 *   db.test     A 10.1.2.3 (TTL 300; the test may change it), AAAA: no data
 *   test        SOA with serial fake_dns.soa_serial (0 = no data)
 *   zero.test   A 10.9.9.9 (TTL 0),   AAAA: no data
 *   slow.test   never answered
 *   anything else: NXDOMAIN
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"

#define QTYPE_A 1
#define QTYPE_SOA 6

struct fake_dns {
	int fd;
	struct event *ev;
	int queries; /* every packet received */
	int a_queries;
	int soa_queries;
	uint8_t db_ip[4];    /* A record of db.test */
	uint32_t soa_serial; /* SOA serial of the zone "test" */
};

struct fixture {
	struct event_base *base;
	struct dns_ctx *ctx;
	struct fake_dns dns;
	char resolv_path[64];
};

struct answer {
	int calls;
	char err[128];
	struct dns_result res;
	struct event_base *base; /* loop to stop after `want` answers */
	int want;
	int *counter;
};

/* --- fake DNS server ------------------------------------------------------ */

/* Decode the question name into "a.b.c"; returns the offset after QNAME. */
static size_t parse_qname(const uint8_t *pkt, size_t len, char *name, size_t namelen)
{
	size_t off = 12, out = 0;

	while (off < len && pkt[off] != 0) {
		size_t lab = pkt[off++];
		if (off + lab > len || out + lab + 2 > namelen)
			return 0;
		if (out)
			name[out++] = '.';
		for (size_t i = 0; i < lab; i++)
			name[out++] = (char)tolower(pkt[off + i]);
		off += lab;
	}
	name[out] = '\0';
	return off + 1;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
}

/*
 * An SOA answer record for the question name; MNAME and RNAME point at the
 * question name too (only the serial matters here). Returns its length.
 */
static size_t fake_soa_rr(const struct fake_dns *f, uint8_t *a)
{
	put16(a, 0xC00C);
	put16(a + 2, QTYPE_SOA);
	put16(a + 4, 1);
	put32(a + 6, 60);
	put16(a + 10, 4 + 20);
	put16(a + 12, 0xC00C); /* MNAME */
	put16(a + 14, 0xC00C); /* RNAME */
	put32(a + 16, f->soa_serial);
	for (int i = 0; i < 4; i++) /* refresh, retry, expire, minimum */
		put32(a + 20 + 4 * i, 3600);
	return 12 + 24;
}

/* Build the reply for one query into out; returns its length or 0 to stay silent. */
static size_t fake_reply(struct fake_dns *f, const uint8_t *q, size_t qlen, uint8_t *out)
{
	char name[256];
	size_t qend = parse_qname(q, qlen, name, sizeof(name));
	unsigned qtype, rcode = 0, ttl = 0;
	uint8_t ip[4] = {0};
	bool answer = false, soa = false;

	if (qend == 0 || qend + 4 > qlen)
		return 0;
	qtype = (unsigned)(q[qend] << 8 | q[qend + 1]);
	f->a_queries += qtype == QTYPE_A;
	f->soa_queries += qtype == QTYPE_SOA;
	if (strcmp(name, "slow.test") == 0)
		return 0;
	if (strcmp(name, "db.test") == 0) {
		answer = qtype == QTYPE_A;
		ttl = 300;
		memcpy(ip, f->db_ip, 4);
	} else if (strcmp(name, "test") == 0) {
		soa = answer = qtype == QTYPE_SOA && f->soa_serial != 0;
	} else if (strcmp(name, "zero.test") == 0) {
		answer = qtype == QTYPE_A;
		memcpy(ip, (uint8_t[]){10, 9, 9, 9}, 4);
	} else {
		rcode = 3; /* NXDOMAIN */
	}
	memcpy(out, q, qend + 4); /* id + question */
	put16(out + 2, 0x8180 | rcode);
	put16(out + 4, 1);
	put16(out + 6, answer ? 1 : 0);
	put16(out + 8, 0);
	put16(out + 10, 0);
	if (!answer)
		return qend + 4;
	if (soa)
		return qend + 4 + fake_soa_rr(f, out + qend + 4);
	uint8_t *a = out + qend + 4;
	put16(a, 0xC00C); /* pointer to the question name */
	put16(a + 2, QTYPE_A);
	put16(a + 4, 1);
	put16(a + 6, ttl >> 16);
	put16(a + 8, ttl & 0xffff);
	put16(a + 10, 4);
	memcpy(a + 12, ip, 4);
	return qend + 4 + 16;
}

static void fake_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct fake_dns *f = arg;
	uint8_t q[512], out[600];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
	size_t rlen;

	if (n < 12)
		return;
	f->queries++;
	rlen = fake_reply(f, q, (size_t)n, out);
	if (rlen)
		(void)sendto(fd, out, rlen, 0, (struct sockaddr *)&from, fromlen);
}

static int fake_start(struct fake_dns *f, struct event_base *base)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(f->fd >= 0);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sin, &len), 0);
	f->ev = event_new(base, f->fd, EV_READ | EV_PERSIST, fake_on_read, f);
	assert_non_null(f->ev);
	assert_int_equal(event_add(f->ev, NULL), 0);
	return ntohs(sin.sin_port);
}

/* --- fixture -------------------------------------------------------------- */

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char err[256] = "", servers[64];
	FILE *fp;
	int port;

	assert_non_null(fx);
	fx->base = event_base_new();
	assert_non_null(fx->base);
	port = fake_start(&fx->dns, fx->base);
	memcpy(fx->dns.db_ip, (uint8_t[]){10, 1, 2, 3}, 4);
	fx->dns.soa_serial = 1;
	/*
	 * Short timeout, one attempt: keeps the "slow" test bounded. c-ares 1.18
	 * understands retrans:<ms>/retry:<n>, not glibc's timeout:/attempts:.
	 */
	snprintf(fx->resolv_path, sizeof(fx->resolv_path), "/tmp/pv-test-dns-%d.conf",
	         (int)getpid());
	fp = fopen(fx->resolv_path, "w");
	assert_non_null(fp);
	fprintf(fp, "nameserver 127.0.0.1\noptions retrans:500 retry:1\n");
	fclose(fp);
	fx->ctx = dns_create(fx->base, fx->resolv_path, err, sizeof(err));
	assert_non_null(fx->ctx);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
	assert_true(dns_set_servers(fx->ctx, servers));
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	dns_destroy(fx->ctx);
	event_free(fx->dns.ev);
	close(fx->dns.fd);
	event_base_free(fx->base);
	unlink(fx->resolv_path);
	free(fx);
	return 0;
}

static void on_answer(void *arg, const char *err, const struct dns_result *res)
{
	struct answer *a = arg;

	a->calls++;
	snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
	if (!err) {
		assert_non_null(res);
		a->res = *res;
	}
	if (a->counter && ++*a->counter >= a->want)
		event_base_loopbreak(a->base);
	else if (!a->counter)
		event_base_loopbreak(a->base);
}

/* Run the loop until a callback breaks it or `ms` pass. */
static void run_loop(struct fixture *fx, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(fx->base, &tv);
	event_base_dispatch(fx->base);
}

static struct dns_req *resolve(struct fixture *fx, const char *host, int port, struct answer *a)
{
	struct dns_req *req;

	memset(a, 0, sizeof(*a));
	a->base = fx->base;
	req = dns_resolve(fx->ctx, host, port, on_answer, a);
	assert_non_null(req);
	/* Never re-entrant: the answer always comes from the loop. */
	assert_int_equal(a->calls, 0);
	return req;
}

static int port_of(const struct dns_result *res, int i)
{
	const struct sockaddr *sa = (const struct sockaddr *)&res->addrs[i];

	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

static void assert_ipv4(const struct dns_result *res, int i, const char *ip)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&res->addrs[i];
	char buf[INET_ADDRSTRLEN];

	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(res->lens[i], sizeof(*sin));
	assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)));
	assert_string_equal(buf, ip);
}

/* --- tests ---------------------------------------------------------------- */

static void test_numeric_ipv4(void **state)
{
	struct fixture *fx = *state;
	struct answer a;

	resolve(fx, "127.0.0.1", 5432, &a);
	run_loop(fx, 1000);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.err, "");
	assert_int_equal(a.res.count, 1);
	assert_ipv4(&a.res, 0, "127.0.0.1");
	assert_int_equal(port_of(&a.res, 0), 5432);
	assert_int_equal(dns_query_count(fx->ctx), 0);
	assert_int_equal(dns_names_count(fx->ctx), 0);
}

static void test_numeric_ipv6(void **state)
{
	struct fixture *fx = *state;
	struct answer a;
	const struct sockaddr_in6 *sin6;

	resolve(fx, "::1", 6543, &a);
	run_loop(fx, 1000);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.err, "");
	assert_int_equal(a.res.count, 1);
	sin6 = (const struct sockaddr_in6 *)&a.res.addrs[0];
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(port_of(&a.res, 0), 6543);
	assert_int_equal(dns_query_count(fx->ctx), 0);
}

static void test_localhost(void **state)
{
	struct fixture *fx = *state;
	struct answer a;
	bool found = false;

	resolve(fx, "localhost", 6432, &a);
	run_loop(fx, 2000);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.err, "");
	assert_true(a.res.count >= 1);
	for (int i = 0; i < a.res.count; i++) {
		assert_int_equal(port_of(&a.res, i), 6432);
		if (a.res.addrs[i].ss_family == AF_INET)
			found = true;
	}
	assert_true(found);
	assert_int_equal(fx->dns.queries, 0); /* hosts file, not DNS */
}

static void test_nxdomain_cached(void **state)
{
	struct fixture *fx = *state;
	struct answer a;
	unsigned long q;

	resolve(fx, "no-such-host.invalid", 5432, &a);
	run_loop(fx, 3000);
	assert_int_equal(a.calls, 1);
	assert_string_not_equal(a.err, "");
	assert_int_equal(dns_pending_count(fx->ctx), 0);
	q = dns_query_count(fx->ctx);
	assert_int_equal(q, 1);

	/* Failures are cached for dns_nxdomain_ttl. */
	resolve(fx, "NO-SUCH-HOST.invalid", 5432, &a);
	assert_int_equal(dns_pending_count(fx->ctx), 0);
	run_loop(fx, 1000);
	assert_int_equal(a.calls, 1);
	assert_string_not_equal(a.err, "");
	assert_int_equal(dns_query_count(fx->ctx), q);
}

static void test_cache_hit(void **state)
{
	struct fixture *fx = *state;
	struct answer a;
	char host[64], addrs[128];
	long long ttl = -1;

	resolve(fx, "db.test", 5432, &a);
	assert_int_equal(dns_pending_count(fx->ctx), 1);
	run_loop(fx, 3000);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.err, "");
	assert_int_equal(a.res.count, 1);
	assert_ipv4(&a.res, 0, "10.1.2.3");
	assert_int_equal(port_of(&a.res, 0), 5432);
	assert_int_equal(dns_pending_count(fx->ctx), 0);
	assert_int_equal(fx->dns.a_queries, 1);

	/* Second lookup: from the cache, with this request's port. */
	resolve(fx, "db.test", 7000, &a);
	assert_int_equal(dns_pending_count(fx->ctx), 0);
	run_loop(fx, 1000);
	assert_int_equal(a.calls, 1);
	assert_ipv4(&a.res, 0, "10.1.2.3");
	assert_int_equal(port_of(&a.res, 0), 7000);
	assert_int_equal(dns_query_count(fx->ctx), 1);
	assert_int_equal(fx->dns.a_queries, 1);

	/* SHOW DNS_HOSTS row; ttl is the time left, capped by dns_max_ttl (15 s default). */
	assert_int_equal(dns_names_count(fx->ctx), 1);
	assert_true(dns_cache_row(fx->ctx, 0, host, sizeof(host), &ttl, addrs, sizeof(addrs)));
	assert_string_equal(host, "db.test");
	assert_string_equal(addrs, "10.1.2.3");
	assert_true(ttl > 0 && ttl <= 15);
	assert_false(dns_cache_row(fx->ctx, 1, host, sizeof(host), &ttl, addrs, sizeof(addrs)));
}

static void test_ttl_zero_not_cached(void **state)
{
	struct fixture *fx = *state;
	struct answer a;

	resolve(fx, "zero.test", 5432, &a);
	run_loop(fx, 3000);
	assert_int_equal(a.calls, 1);
	assert_ipv4(&a.res, 0, "10.9.9.9");
	resolve(fx, "zero.test", 5432, &a);
	assert_int_equal(dns_pending_count(fx->ctx), 1);
	run_loop(fx, 3000);
	assert_int_equal(a.calls, 1);
	assert_int_equal(dns_query_count(fx->ctx), 2);

	/* dns_max_ttl = 0 disables caching of long TTLs too. */
	dns_set_ttls(fx->ctx, 0, 0);
	resolve(fx, "db.test", 5432, &a);
	run_loop(fx, 3000);
	resolve(fx, "db.test", 5432, &a);
	assert_int_equal(dns_pending_count(fx->ctx), 1);
	run_loop(fx, 3000);
	assert_int_equal(a.calls, 1);
	assert_int_equal(dns_query_count(fx->ctx), 4);
}

static void test_concurrent_shared(void **state)
{
	struct fixture *fx = *state;
	struct answer a, b;
	int done = 0;

	resolve(fx, "db.test", 1111, &a);
	resolve(fx, "db.test", 2222, &b);
	a.counter = b.counter = &done;
	a.want = b.want = 2;
	assert_int_equal(dns_pending_count(fx->ctx), 1);
	run_loop(fx, 3000);
	assert_int_equal(done, 2);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(port_of(&a.res, 0), 1111);
	assert_int_equal(port_of(&b.res, 0), 2222);
	assert_int_equal(dns_query_count(fx->ctx), 1);
	assert_int_equal(fx->dns.a_queries, 1);
}

static void test_cancel(void **state)
{
	struct fixture *fx = *state;
	struct answer a, b, c;
	struct dns_req *ra, *rb;

	/* Cancel one of two waiters on a shared query: the other still answers. */
	ra = resolve(fx, "db.test", 1, &a);
	resolve(fx, "db.test", 2, &b);
	dns_cancel(ra);
	/* Cancel a numeric lookup before the loop delivers it. */
	rb = resolve(fx, "10.0.0.1", 3, &c);
	dns_cancel(rb);
	run_loop(fx, 3000);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 1);
	assert_int_equal(c.calls, 0);

	/* Cancel a query that is never answered; destroy frees it (ASan checks). */
	ra = resolve(fx, "slow.test", 4, &a);
	run_loop(fx, 100);
	dns_cancel(ra);
	assert_int_equal(dns_pending_count(fx->ctx), 1);
	run_loop(fx, 100);
	assert_int_equal(a.calls, 0);
}

static void test_timeout(void **state)
{
	struct fixture *fx = *state;
	struct answer a;

	resolve(fx, "slow.test", 5432, &a);
	run_loop(fx, 4000);
	assert_int_equal(a.calls, 1);
	assert_string_not_equal(a.err, "");
	assert_int_equal(dns_pending_count(fx->ctx), 0);
}

static void test_destroy_pending(void **state)
{
	struct fixture *fx = *state;
	struct answer a, b;

	/* Callbacks of requests still pending at destroy time are not called. */
	resolve(fx, "slow.test", 5432, &a);
	resolve(fx, "127.0.0.1", 5432, &b);
	dns_destroy(fx->ctx);
	fx->ctx = NULL;
	run_loop(fx, 100);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 0);
}

static void test_bad_args(void **state)
{
	struct fixture *fx = *state;
	struct answer a;

	memset(&a, 0, sizeof(a));
	assert_null(dns_resolve(fx->ctx, "", 5432, on_answer, &a));
	assert_null(dns_resolve(fx->ctx, NULL, 5432, on_answer, &a));
	assert_null(dns_resolve(fx->ctx, "db.test", 70000, on_answer, &a));
	assert_false(dns_set_servers(fx->ctx, "not an address"));
	dns_cancel(NULL);
}

/* --- zone serial checks --------------------------------------------------- */

#define ZONE_PERIOD (100 * 1000) /* usec */

/* Run the loop in short slices until zone row 0 shows `serial`; bounded by ms. */
static bool wait_zone_serial(struct fixture *fx, long long serial, int ms)
{
	char zone[64];
	long long seen = -1;
	int count;

	for (int waited = 0; waited < ms; waited += 20) {
		run_loop(fx, 20);
		if (dns_zone_row(fx->ctx, 0, zone, sizeof(zone), &seen, &count) && seen == serial)
			return true;
	}
	return false;
}

static void resolve_db(struct fixture *fx, const char *ip)
{
	struct answer a;

	resolve(fx, "db.test", 5432, &a);
	run_loop(fx, 1500);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.err, "");
	assert_ipv4(&a.res, 0, ip);
}

static void test_zone_serial_change(void **state)
{
	struct fixture *fx = *state;
	char zone[64], host[64], addrs[64];
	long long serial, ttl;
	int count, soa;

	resolve_db(fx, "10.1.2.3");
	assert_int_equal(dns_zones_count(fx->ctx), 0); /* checks are off */
	dns_set_zone_check_period(fx->ctx, ZONE_PERIOD);
	assert_true(wait_zone_serial(fx, 1, 600));
	assert_int_equal(dns_zones_count(fx->ctx), 1);
	assert_true(dns_zone_row(fx->ctx, 0, zone, sizeof(zone), &serial, &count));
	assert_string_equal(zone, "test");
	assert_int_equal(count, 1);
	assert_false(dns_zone_row(fx->ctx, 1, zone, sizeof(zone), &serial, &count));

	/* An unchanged serial keeps the cache: more SOA queries, no new lookup. */
	soa = fx->dns.soa_queries;
	run_loop(fx, 250);
	assert_true(fx->dns.soa_queries > soa);
	assert_int_equal(dns_query_count(fx->ctx), 1);

	/* The zone changes: its names are expired and looked up again. */
	memcpy(fx->dns.db_ip, (uint8_t[]){10, 1, 2, 4}, 4);
	fx->dns.soa_serial = 2;
	assert_true(wait_zone_serial(fx, 2, 600));
	assert_true(dns_cache_row(fx->ctx, 0, host, sizeof(host), &ttl, addrs, sizeof(addrs)));
	assert_int_equal(ttl, 0);
	resolve_db(fx, "10.1.2.4");
	assert_int_equal(dns_query_count(fx->ctx), 2);
	assert_true(dns_zone_row(fx->ctx, 0, zone, sizeof(zone), &serial, &count));
	assert_int_equal(serial, 2);
	assert_int_equal(count, 1);
}

static void test_zone_period_off(void **state)
{
	struct fixture *fx = *state;
	int soa;

	resolve_db(fx, "10.1.2.3");
	dns_set_zone_check_period(fx->ctx, ZONE_PERIOD);
	assert_true(wait_zone_serial(fx, 1, 600));

	/* Period 0 stops the checks and forgets the zones. */
	dns_set_zone_check_period(fx->ctx, 0);
	assert_int_equal(dns_zones_count(fx->ctx), 0);
	soa = fx->dns.soa_queries;
	run_loop(fx, 300);
	assert_int_equal(fx->dns.soa_queries, soa);
	assert_int_equal(dns_zones_count(fx->ctx), 0);
}

static void test_zone_needs_dot(void **state)
{
	struct fixture *fx = *state;
	struct answer a;

	resolve(fx, "localhost", 5432, &a);
	run_loop(fx, 1000);
	assert_int_equal(a.calls, 1);
	assert_int_equal(dns_names_count(fx->ctx), 1);
	dns_set_zone_check_period(fx->ctx, ZONE_PERIOD);
	run_loop(fx, 300);
	assert_int_equal(dns_zones_count(fx->ctx), 0);
	assert_int_equal(fx->dns.soa_queries, 0);
}

static void test_zone_dropped_with_names(void **state)
{
	struct fixture *fx = *state;
	struct answer a;

	/* Nothing is cached for long, so the next lookup prunes db.test. */
	dns_set_ttls(fx->ctx, 0, 0);
	resolve_db(fx, "10.1.2.3");
	dns_set_zone_check_period(fx->ctx, ZONE_PERIOD);
	assert_true(wait_zone_serial(fx, 1, 600));
	resolve(fx, "localhost", 5432, &a);
	assert_int_equal(dns_zones_count(fx->ctx), 0);
	run_loop(fx, 1000);
	assert_int_equal(a.calls, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_numeric_ipv4, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_numeric_ipv6, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_localhost, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nxdomain_cached, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache_hit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ttl_zero_not_cached, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_shared, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_pending, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zone_serial_change, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zone_period_off, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zone_needs_dot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zone_dropped_with_names, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
