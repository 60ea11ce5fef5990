/*
 * server.c - server connections: connect, log in, track protocol state,
 * run internal queries, and decide when a server can be released.
 */
#include "server.h"
#include "client.h"
#include "authfile.h"
#include "auth_query.h"
#include "mask_catalog.h"
#include "dns.h"
#include "hooks.h"
#include "prepared.h"
#include "log.h"
#include "proto.h"
#include "tls.h"
#include "replication.h"
#include "peer.h"
#include "sockopt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <arpa/inet.h>

/* --- connecting ------------------------------------------------------------- */

static const char *db_host(const struct pv_pool *pool, char *buf, size_t len)
{
	const struct db_conf *dc = pool->db->conf;
	const char *hosts = dc ? dc->host : NULL;
	const char *p;
	int n = 0, want;

	if (!hosts || !*hosts)
		return NULL;
	if (!strchr(hosts, ','))
		return hosts;
	/* Host list: round robin per new connection. */
	for (p = hosts; *p; p++)
		if (*p == ',')
			n++;
	want = pool->host_rr % (n + 1);
	for (p = hosts; want > 0; p++)
		if (*p == ',')
			want--;
	while (*p == ' ')
		p++;
	snprintf(buf, len, "%.*s", (int)strcspn(p, ","), p);
	return buf;
}

static int db_port(const struct pv_pool *pool)
{
	const struct db_conf *dc = pool->db->conf;
	return dc && dc->port > 0 ? dc->port : 5432;
}

static void connect_failed(struct pv_socket *s, const char *why)
{
	const struct db_conf *dc = s->pool->db->conf;
	/* load_balance_hosts=disable sticks to one host until connecting to it fails. */
	if (dc && dc->load_balance_hosts == LB_DISABLE && s->pool->host_rr == s->srv->host_index)
		s->pool->host_rr++;
	slog_warning(s, "%s", why);
	if (s->state == SV_LOGIN) {
		char msg[256];
		snprintf(msg, sizeof(msg), "server login failed: %s", why);
		pool_server_login_failed(s, "08006", msg);
	}
	server_close(s, why);
}

static bool connect_sockaddr(struct pv_socket *s, const struct sockaddr *sa, socklen_t len)
{
	socket_set_remote(s, sa, len);
	if (!sbuf_connect(s, sa, len)) {
		char why[128];
		snprintf(why, sizeof(why), "connect failed: %s", strerror(errno));
		connect_failed(s, why);
		return false;
	}
	if (sa->sa_family != AF_UNIX)
		sockopt_tune_tcp(s->fd);
	return true;
}

static void on_dns(void *arg, const char *err, const struct dns_result *res)
{
	struct pv_socket *s = arg;
	s->srv->dns = NULL;
	if (err || !res || res->count == 0) {
		connect_failed(s, "server DNS lookup failed");
		return;
	}
	connect_sockaddr(s, (const struct sockaddr *)&res->addrs[0], res->lens[0]);
}

static bool connect_unix(struct pv_socket *s, const char *dir, int port)
{
	struct sockaddr_un sun;
	int n;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", dir, port);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		connect_failed(s, "unix socket path too long");
		return false;
	}
	/* "@name" is a Linux abstract socket: the name starts with a NUL byte. */
	if (dir[0] == '@')
		sun.sun_path[0] = '\0';
	s->is_unix = true;
	return connect_sockaddr(s, (struct sockaddr *)&sun, sizeof(sun));
}

static bool start_connect(struct pv_socket *s)
{
	char hbuf[256];
	const char *host = db_host(s->pool, hbuf, sizeof(hbuf));
	int port = db_port(s->pool);
	const struct db_conf *dc = s->pool->db->conf;

	s->srv->host_index = s->pool->host_rr;
	if (!dc || dc->load_balance_hosts != LB_DISABLE)
		s->pool->host_rr++;
	if (!host)
		return connect_unix(s, G.cf->unix_socket_dir[0] ? G.cf->unix_socket_dir : "/tmp",
				    port);
	if (host[0] == '/' || host[0] == '@')
		return connect_unix(s, host, port);
	/* verify-full checks the server certificate against the name we connect to. */
	free(s->srv->tls_host);
	s->srv->tls_host = strdup(host);
	s->srv->dns = dns_resolve(G.dns, host, port, on_dns, s);
	if (!s->srv->dns) {
		connect_failed(s, "server DNS lookup failed");
		return false;
	}
	return true;
}

static bool launch_socket(struct pv_socket *s, struct pv_pool *pool)
{
	s->pool = pool;
	s->login_phase = LOGIN_STARTUP;
	socket_set_state(s, SV_LOGIN);
	pool->last_connect_at = now_usec();
	pool->db->server_count++;
	pool->user->server_count++;
	if (!pool->have_welcome && !s->replication)
		buf_reset(&pool->welcome_params);
	slog_debug(s, "launching new connection to server");
	return start_connect(s);
}

bool server_launch(struct pv_pool *pool)
{
	struct pv_socket *s = socket_new(true);
	if (!s)
		return false;
	return launch_socket(s, pool);
}

bool server_launch_replication(struct pv_socket *client)
{
	struct pv_socket *s = socket_new(true);
	if (!s)
		return false;
	s->replication = client->replication;
	s->link = client;
	client->link = s;
	return launch_socket(s, client->pool);
}

bool server_launch_cancel(struct pv_socket *requester, struct pv_socket *target)
{
	struct pv_socket *s = socket_new(true);
	if (!s)
		return false;
	s->pool = target->pool;
	s->link = NULL;
	s->cancel_target = requester;
	memcpy(s->cancel_key, target->cancel_key, sizeof(s->cancel_key));
	requester->cancel_target = s;
	socket_set_state(s, SV_CANCEL);
	/* The same address the target server connection was made to. */
	socket_set_remote(s, (const struct sockaddr *)&target->srv->addr, target->srv->addr_len);
	s->is_unix = target->is_unix;
	if (!sbuf_connect(s, (const struct sockaddr *)&s->srv->addr, s->srv->addr_len)) {
		server_close(s, "cancel connect failed");
		return false;
	}
	return true;
}

static void log_new_connection(struct pv_socket *s)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	char addr[INET6_ADDRSTRLEN] = "unix";
	int port = 0;

	if (getsockname(s->fd, (struct sockaddr *)&local, &len) == 0) {
		if (local.ss_family == AF_INET) {
			const struct sockaddr_in *in = (const void *)&local;
			inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
			port = ntohs(in->sin_port);
		} else if (local.ss_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const void *)&local;
			inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
			port = ntohs(in6->sin6_port);
		}
	}
	if (port)
		slog_info(s, "new connection to server (from %s:%d)", addr, port);
	else
		slog_info(s, "new connection to server (from %s)", addr);
}

static bool send_startup(struct pv_socket *s)
{
	const struct db_conf *dc = s->pool->db->conf;
	struct pv_buf out;
	struct pkt_builder b;
	bool ok;

	buf_init(&out);
	build_begin_startup(&b, &out);
	build_u32(&b, PROTO_V3);
	build_string(&b, "user");
	build_string(&b, s->pool->user->name);
	build_string(&b, "database");
	build_string(&b, dc && dc->dbname ? dc->dbname : s->pool->db->name);
	if (dc && dc->client_encoding) {
		build_string(&b, "client_encoding");
		build_string(&b, dc->client_encoding);
	}
	if (dc && dc->datestyle) {
		build_string(&b, "datestyle");
		build_string(&b, dc->datestyle);
	}
	if (dc && dc->timezone) {
		build_string(&b, "timezone");
		build_string(&b, dc->timezone);
	}
	if (dc && dc->application_name) {
		build_string(&b, "application_name");
		build_string(&b, dc->application_name);
	}
	if (s->replication)
		repl_add_startup_params(s, &b);
	build_u8(&b, 0);
	ok = build_end(&b) && sbuf_queue(s, out.data, out.len);
	buf_free(&out);
	return ok;
}

void server_connected(struct pv_socket *s, int err)
{
	if (err) {
		char why[128];
		snprintf(why, sizeof(why), "connect failed: %s", strerror(err));
		if (s->state == SV_CANCEL) {
			server_close(s, why);
			return;
		}
		connect_failed(s, why);
		return;
	}
	if (s->state == SV_CANCEL) {
		struct pv_buf out;
		buf_init(&out);
		if (!msg_cancel_request(&out, s->cancel_key) || !sbuf_queue(s, out.data, out.len))
			server_close(s, "out of memory");
		buf_free(&out);
		return;
	}
	if (G.cf->log_connections)
		log_new_connection(s);
	s->login_phase = LOGIN_AUTH;
	if (tls_server_wanted(s)) {
		/* SSLRequest (80877103); sbuf.c reads the answer and calls server_tls_*(). */
		static const uint8_t req[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
		s->tls_state = PV_TLS_SSLREQ;
		if (!sbuf_queue(s, req, sizeof(req)))
			server_close(s, "out of memory");
		return;
	}
	if (!send_startup(s))
		server_close(s, "out of memory");
}

void server_tls_ready(struct pv_socket *s)
{
	if (!send_startup(s))
		server_close(s, "out of memory");
}

void server_tls_refused(struct pv_socket *s)
{
	if (G.cf->server_tls_sslmode >= SSLMODE_REQUIRE) {
		connect_failed(s, "server refused SSL");
		return;
	}
	server_tls_ready(s);
}

void server_tls_failed(struct pv_socket *s, const char *why)
{
	connect_failed(s, why);
}

/* --- login -------------------------------------------------------------------- */

/* The secret pgvigil logs in with: db password= for a forced user, else auth_file. */
static const char *server_secret(const struct pv_socket *s)
{
	const struct db_conf *dc = s->pool->db->conf;
	const struct auth_entry *e;
	if (dc && dc->user && dc->password && strcmp(dc->user, s->pool->user->name) == 0)
		return dc->password;
	e = G.auth ? authfile_find(G.auth, s->pool->user->name) : NULL;
	if (!e) /* a dynamic user: what auth_query last returned */
		e = auth_query_find(s->pool->db->name, s->pool->user->name);
	return e ? e->secret : NULL;
}

static bool login_fail(struct pv_socket *s, const char *msg)
{
	pool_server_login_failed(s, "08P01", msg);
	server_close(s, msg);
	return false;
}

static bool send_password_msg(struct pv_socket *s, const char *text)
{
	struct pv_buf out;
	bool ok;
	buf_init(&out);
	ok = msg_password(&out, text, strlen(text) + 1) && sbuf_queue(s, out.data, out.len);
	buf_free(&out);
	return ok || login_fail(s, "out of memory");
}

static bool answer_md5(struct pv_socket *s, const uint8_t salt[4])
{
	const char *secret = server_secret(s);
	char md5secret[36], resp[36];
	if (!secret || secret_kind_of(secret) == SECRET_SCRAM)
		return login_fail(s, "server login failed: wrong password type");
	if (secret_kind_of(secret) == SECRET_PLAIN) {
		md5_password_secret(secret, s->pool->user->name, md5secret);
		secret = md5secret;
	}
	md5_salted_response(secret, salt, resp);
	return send_password_msg(s, resp);
}

static bool answer_cleartext(struct pv_socket *s)
{
	const char *secret = server_secret(s);
	if (!secret || secret_kind_of(secret) != SECRET_PLAIN)
		return login_fail(s, "server login failed: wrong password type");
	return send_password_msg(s, secret);
}

static bool sasl_start(struct pv_socket *s, struct pkt_reader *r)
{
	const char *secret = server_secret(s);
	bool found = false;
	const char *mech;
	char *first;
	struct pv_buf out;
	bool ok;

	while ((mech = read_string(r)) && *mech)
		if (strcmp(mech, "SCRAM-SHA-256") == 0)
			found = true;
	if (!found)
		return login_fail(s, "server login failed: no supported SASL mechanism");
	s->srv->scram_cl = calloc(1, sizeof(*s->srv->scram_cl));
	if (!s->srv->scram_cl)
		return login_fail(s, "out of memory");
	if (secret && secret_kind_of(secret) != SECRET_SCRAM) {
		if (secret_kind_of(secret) == SECRET_MD5)
			return login_fail(s, "server login failed: wrong password type");
		if (!scram_client_init_password(s->srv->scram_cl, secret))
			return login_fail(s, "out of memory");
	} else if (secret && s->pool->have_scram_keys) {
		scram_client_init_keys(s->srv->scram_cl, s->pool->scram_client_key,
				       s->pool->scram_server_key);
	} else {
		slog_error(s, "cannot do SCRAM authentication: password is SCRAM secret but client "
			      "authentication did not provide SCRAM keys");
		return login_fail(s, "server login failed: wrong password type");
	}
	first = scram_client_first(s->srv->scram_cl);
	if (!first)
		return login_fail(s, "out of memory");
	buf_init(&out);
	ok = msg_sasl_initial(&out, "SCRAM-SHA-256", first, strlen(first)) &&
	     sbuf_queue(s, out.data, out.len);
	buf_free(&out);
	free(first);
	return ok || login_fail(s, "out of memory");
}

static bool sasl_continue(struct pv_socket *s, struct pkt_reader *r)
{
	char err[128];
	char *final;
	struct pv_buf out;
	bool ok;
	size_t n = reader_left(r);
	const uint8_t *data = read_bytes(r, n);

	if (!s->srv->scram_cl)
		return login_fail(s, "server login failed: unexpected SASL message");
	final = scram_client_final(s->srv->scram_cl, (const char *)data, n, err, sizeof(err));
	if (!final) {
		slog_error(s, "SCRAM: %s", err);
		return login_fail(s, "server login failed: SASL exchange failed");
	}
	buf_init(&out);
	ok = msg_password(&out, final, strlen(final)) && sbuf_queue(s, out.data, out.len);
	buf_free(&out);
	free(final);
	return ok || login_fail(s, "out of memory");
}

static bool sasl_final(struct pv_socket *s, struct pkt_reader *r)
{
	size_t n = reader_left(r);
	const uint8_t *data = read_bytes(r, n);
	if (!s->srv->scram_cl || !scram_client_verify_final(s->srv->scram_cl, (const char *)data, n))
		return login_fail(s, "server login failed: invalid SCRAM server signature");
	return true;
}

static bool handle_auth(struct pv_socket *s, struct pkt *p)
{
	struct pkt_reader r;
	uint32_t code;

	reader_init_pkt(&r, p);
	code = read_u32(&r);
	if (r.bad)
		return login_fail(s, "server login failed: bad authentication message");
	switch (code) {
	case 0:
		return true;
	case 3:
		return answer_cleartext(s);
	case 5: {
		const uint8_t *salt = read_bytes(&r, 4);
		if (!salt)
			return login_fail(s, "server login failed: bad authentication message");
		return answer_md5(s, salt);
	}
	case 10:
		return sasl_start(s, &r);
	case 11:
		return sasl_continue(s, &r);
	case 12:
		return sasl_final(s, &r);
	default:
		slog_error(s, "unsupported server authentication method %u", code);
		return login_fail(s, "server login failed: unsupported authentication method");
	}
}

/* Remember a ParameterStatus value; while logging in, it also becomes part of the welcome. */
static void note_param(struct pv_socket *s, struct pkt *p)
{
	struct pkt_reader r;
	const char *key, *val;
	reader_init_pkt(&r, p);
	key = read_string(&r);
	val = read_string(&r);
	if (!key || !val)
		return;
	if (varcache_index(key) >= 0) {
		varcache_set(&s->vars, key, val);
		/* The client sees what the server reports, e.g. after its own SET. */
		if (s->link && s->state == SV_ACTIVE && s->srv->task == TASK_NONE)
			varcache_set(&s->link->vars, key, val);
	}
	/* A replication server's own parameters become its client's welcome. */
	if (s->state == SV_LOGIN && s->replication)
		buf_append(&s->srv->repl_params, p->hdr, p->len);
	else if (s->state == SV_LOGIN && !s->pool->have_welcome)
		buf_append(&s->pool->welcome_params, p->hdr, p->len);
}

static enum pkt_action login_error(struct pv_socket *s, struct pkt *p)
{
	struct error_fields ef;
	char msg[512];
	if (!proto_parse_error(pkt_body(p), pkt_body_len(p), &ef) || !ef.message) {
		login_fail(s, "server login failed");
		return PKT_STOP;
	}
	snprintf(msg, sizeof(msg), "%s", ef.message);
	slog_warning(s, "server login failed: %s", ef.message);
	pool_server_login_failed(s, ef.sqlstate ? ef.sqlstate : "08P01", msg);
	server_close(s, "login failed");
	return PKT_STOP;
}

/*
 * connect_query runs once on a fresh server, before it joins the pool; the
 * server stays in SV_LOGIN meanwhile, so the pool still opens one at a time.
 */
static bool run_connect_query(struct pv_socket *s)
{
	const struct db_conf *dc = s->pool->db->conf;
	if (!dc || !dc->connect_query || !dc->connect_query[0])
		return false;
	server_run_task(s, TASK_CONNECT_QUERY, dc->connect_query);
	return true;
}

static enum pkt_action handle_login_pkt(struct pv_socket *s, struct pkt *p)
{
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	switch (p->type) {
	case 'R':
		return handle_auth(s, p) ? PKT_CONSUMED : PKT_STOP;
	case 'S':
		note_param(s, p);
		return PKT_CONSUMED;
	case 'K':
		if (pkt_body_len(p) != 8) {
			login_fail(s, "server login failed: bad BackendKeyData");
			return PKT_STOP;
		}
		memcpy(s->cancel_key, pkt_body(p), 8);
		return PKT_CONSUMED;
	case 'E':
		return login_error(s, p);
	case 'N':
		return PKT_CONSUMED;
	case 'Z':
		s->tx_status = 'I';
		s->login_phase = LOGIN_DONE;
		if (s->srv->scram_cl) {
			scram_client_free(s->srv->scram_cl);
			free(s->srv->scram_cl);
			s->srv->scram_cl = NULL;
		}
		s->ps_track = !s->replication && ps_server_wants_tracking(s);
		if (G.cf->log_connections)
			slog_info(s, "login to server done");
		if (s->replication) {
			repl_server_login_done(s);
			return s->closing ? PKT_STOP : PKT_CONSUMED;
		}
		if (run_connect_query(s))
			return s->closing ? PKT_STOP : PKT_CONSUMED;
		pool_server_login_ok(s);
		return PKT_CONSUMED;
	default:
		login_fail(s, "server login failed: unexpected message");
		return PKT_STOP;
	}
}

/* --- internal queries ----------------------------------------------------------- */

bool server_run_task(struct pv_socket *s, enum server_task task, const char *sql)
{
	struct pv_buf out;
	bool ok;

	s->srv->task = task;
	s->srv->task_failed = false;
	buf_reset(&s->srv->task_err);
	if (task == TASK_RESET || task == TASK_CHECK)
		socket_set_state(s, SV_TESTED);
	buf_init(&out);
	ok = msg_query(&out, sql) && sbuf_queue(s, out.data, out.len);
	buf_free(&out);
	if (!ok) {
		server_close(s, "out of memory");
		return false;
	}
	s->expect_rfq++;
	return true;
}

/* After a successful SET, adopt the server's canonical spelling (ISO -> ISO, MDY). */
static void canonicalize_client_vars(struct pv_socket *s)
{
	struct pv_socket *c = s->link;
	for (int i = 0; c && i < varcache_count(); i++) {
		const char *cv = varcache_get(&c->vars, i), *sv = varcache_get(&s->vars, i);
		if (cv && sv && strcmp(cv, sv) != 0) {
			if (log_verbose >= 2)
				slog(LG_NOISE, c,
				     "varcache_set_canonical: setting %s to its canonical version "
				     "%s -> %s",
				     varcache_name(i), cv, sv);
			varcache_set_at(&c->vars, i, sv);
		}
	}
}

static void task_done(struct pv_socket *s)
{
	enum server_task task = s->srv->task;
	struct pv_socket *c = s->link;

	s->srv->task = TASK_NONE;
	if (task == TASK_SET_VARS) {
		if (s->srv->task_failed) {
			server_close(s, "invalid server parameter");
			return;
		}
		canonicalize_client_vars(s);
		if (c)
			client_server_ready(c);
		return;
	}
	/* connect_query errors are logged (handle_task_pkt) and otherwise ignored. */
	if (task == TASK_CONNECT_QUERY) {
		pool_server_login_ok(s);
		return;
	}
	if (s->srv->task_failed) {
		server_close(s, task == TASK_RESET ? "reset query failed" : "check query failed");
		return;
	}
	pool_release_server(s);
}

static enum pkt_action handle_task_pkt(struct pv_socket *s, struct pkt *p)
{
	if (s->srv->task == TASK_AUTH_QUERY)
		return auth_query_server_pkt(s, p);
	if (s->srv->task == TASK_MASK_CATALOG)
		return mask_catalog_server_pkt(s, p);
	if (!pkt_complete(p) && p->type != 'D')
		return PKT_NEED_FULL;
	switch (p->type) {
	case 'E': {
		struct error_fields ef;
		if (proto_parse_error(pkt_body(p), pkt_body_len(p), &ef) && ef.message)
			slog_warning(s, "internal query failed: %s", ef.message);
		s->srv->task_failed = true;
		return PKT_CONSUMED;
	}
	case 'S':
		note_param(s, p);
		return PKT_CONSUMED;
	case 'C':
		/* A reset query such as DISCARD ALL drops the server's prepared statements. */
		if (memmem(pkt_body(p), pkt_body_len(p), "DISCARD ALL", 11) ||
		    memmem(pkt_body(p), pkt_body_len(p), "DEALLOCATE ALL", 14))
			ps_server_forget_all(s);
		return PKT_CONSUMED;
	case 'Z':
		if (!server_take_ready(s, p))
			return PKT_STOP;
		if (s->tx_status != 'I')
			s->srv->task_failed = true;
		task_done(s);
		return s->closing ? PKT_STOP : PKT_CONSUMED;
	default:
		return PKT_DROP;
	}
}

/* --- a logged-in server's messages -------------------------------------------------- */

bool server_take_ready(struct pv_socket *s, const struct pkt *p)
{
	if (pkt_body_len(p) != 1) {
		server_close(s, "invalid ReadyForQuery");
		return false;
	}
	if (s->expect_rfq > 0)
		s->expect_rfq--;
	s->tx_status = (char)pkt_body(p)[0];
	return true;
}

bool server_is_ready(const struct pv_socket *s)
{
	return s->tx_status == 'I' && s->expect_rfq == 0 && !s->in_extended &&
	       s->srv->task == TASK_NONE && !s->copy_in;
}

void server_note_client_msg(struct pv_socket *s, char type)
{
	switch (type) {
	case 'Q':
	case 'F':
		s->expect_rfq++;
		break;
	case 'S':
		s->expect_rfq++;
		s->in_extended = false;
		break;
	case 'P':
	case 'B':
	case 'E':
	case 'D':
	case 'C':
		s->in_extended = true;
		break;
	case 'c':
	case 'f':
		s->copy_in = false;
		break;
	default:
		break;
	}
}

static void account_request_end(struct pv_socket *s)
{
	struct pv_socket *c = s->link;
	usec_t now;
	if (!c)
		return;
	now = now_usec();
	if (c->query_start) {
		s->pool->stats.query_time += (uint64_t)(now - c->query_start);
		c->query_start = 0;
	}
	if (s->tx_status == 'I' && c->xact_start) {
		s->pool->stats.xact_time += (uint64_t)(now - c->xact_start);
		c->xact_start = 0;
	}
}

static enum pkt_action statement_mode_violation(struct pv_socket *s)
{
	struct pv_socket *c = s->link;
	if (c) {
		c->link = NULL;
		s->link = NULL;
	}
	if (c)
		client_fatal(c, "08P01", "transaction blocks not allowed in statement pooling mode");
	server_close(s, "transaction blocks not allowed in statement pooling mode");
	return PKT_STOP;
}

static enum pkt_action handle_ready(struct pv_socket *s, struct pkt *p)
{
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (!server_take_ready(s, p))
		return PKT_STOP;
	s->srv->idle_since = now_usec(); /* idle_transaction_timeout counts from here */
	account_request_end(s);
	if (s->tx_status != 'I' && s->link && !s->replication &&
	    pool_effective_mode(s->pool) == POOL_STATEMENT)
		return statement_mode_violation(s);
	return PKT_FORWARD_THEN_DONE;
}

void server_after_forward(struct pv_socket *s)
{
	enum pool_mode mode;
	if (s->ps_track && !s->closing)
		ps_after_forward(s);
	if (s->closing || !s->link || !server_is_ready(s) || s->replication)
		return;
	mode = pool_effective_mode(s->pool);
	if (mode == POOL_SESSION) {
		server_fast_close_check(s);
		return;
	}
	if (G.cf->server_reset_query_always && G.cf->server_reset_query[0]) {
		struct pv_socket *c = s->link;
		c->link = NULL;
		s->link = NULL;
		server_run_task(s, TASK_RESET, G.cf->server_reset_query);
		return;
	}
	pool_release_server(s);
}

/* Messages from a server no client is linked to: notices, parameter changes, FATAL. */
static enum pkt_action handle_unlinked_pkt(struct pv_socket *s, struct pkt *p)
{
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	switch (p->type) {
	case 'S':
		note_param(s, p);
		return PKT_CONSUMED;
	case 'N':
	case 'A':
		return PKT_CONSUMED;
	case 'E': {
		struct error_fields ef;
		if (proto_parse_error(pkt_body(p), pkt_body_len(p), &ef) && ef.message)
			slog_warning(s, "server error while idle: %s", ef.message);
		server_close(s, "server sent error while idle");
		return PKT_STOP;
	}
	default:
		server_close(s, "unexpected message from idle server");
		return PKT_STOP;
	}
}

enum pkt_action server_handle_pkt(struct pv_socket *s, struct pkt *p)
{
	/* Before the login check: connect_query runs while the server is SV_LOGIN. */
	if (s->srv->task != TASK_NONE)
		return handle_task_pkt(s, p);
	if (s->state == SV_LOGIN)
		return handle_login_pkt(s, p);
	if (s->state == SV_CANCEL)
		return PKT_DROP;
	if (!s->link)
		return handle_unlinked_pkt(s, p);
	/*
	 * The pipeline must learn of every error, also one a hook rewrites and
	 * sends itself (masking scrubs values from errors): PostgreSQL skips the
	 * requests up to Sync all the same, and a queue left out of step would
	 * pair later responses with the wrong requests.
	 */
	if (s->ps_track && p->type == 'E') {
		if (!pkt_complete(p))
			return PKT_NEED_FULL;
		ps_server_error(s);
	}
	if (pv_hooks.server_msg) {
		enum pkt_action a = pv_hooks.server_msg(s, p);
		if (a != PKT_FORWARD)
			return a;
	}
	if (pv_hooks.record_server) {
		enum pkt_action a = pv_hooks.record_server(s, p);
		if (a != PKT_FORWARD)
			return a;
	}
	if (s->ps_track) {
		enum pkt_action a = ps_server_msg(s, p);
		if (a != PKT_FORWARD)
			return a;
	}
	switch (p->type) {
	case 'Z':
		return handle_ready(s, p);
	case 'S':
		if (!pkt_complete(p))
			return PKT_NEED_FULL;
		note_param(s, p);
		return PKT_FORWARD;
	case 'G':
		s->copy_in = true;
		return PKT_FORWARD;
	default:
		return PKT_FORWARD;
	}
}

void server_on_eof(struct pv_socket *s)
{
	if (s->state == SV_CANCEL) {
		struct pv_socket *req = s->cancel_target;
		s->cancel_target = NULL;
		if (req && !req->closing) {
			req->cancel_target = NULL;
			client_close(req, "successfully sent cancel request");
		}
		server_close(s, "cancel request done");
		return;
	}
	if (s->state == SV_LOGIN) {
		pool_server_login_failed(s, "08006", "server login failed: server closed the connection");
		server_close(s, "server closed the connection during login");
		return;
	}
	server_close(s, "server conn crashed?");
}

/*
 * server_fast_close: in session mode a server tagged close_needed (RELOAD,
 * RECONNECT) is closed as soon as it is between transactions, together with
 * its client, so the client notices that its session ended.
 */
bool server_fast_close_check(struct pv_socket *s)
{
	struct pv_socket *c = s->link;
	if (!s->close_needed || s->closing)
		return false;
	/* Replication servers never come back to the pool: they go at once. */
	if (!s->replication && !(G.cf->server_fast_close && server_is_ready(s)))
		return false;
	if (c) {
		c->link = NULL;
		s->link = NULL;
		client_fatal(c, "08P01", "database configuration changed");
	}
	server_close(s, "database configuration changed");
	return true;
}

void server_close(struct pv_socket *s, const char *reason)
{
	struct pv_socket *c;
	struct peer_pool *peer = s->peer;
	if (s->closing)
		return;
	c = s->link;
	if (c) {
		c->link = NULL;
		s->link = NULL;
		client_fatal(c, "08P01", "server conn crashed?");
	}
	if (s->cancel_target) {
		struct pv_socket *req = s->cancel_target;
		s->cancel_target = NULL;
		req->cancel_target = NULL;
		if (!req->closing)
			client_close(req, "cancel request failed");
	}
	if (s->srv->dns) {
		dns_cancel(s->srv->dns);
		s->srv->dns = NULL;
	}
	if (s->state != SV_CANCEL) {
		s->pool->db->server_count--;
		s->pool->user->server_count--;
		if (G.cf->log_disconnections)
			slog_info(s, "closing because: %s (age=%llds)", reason,
				  (long long)((now_usec() - s->connect_time) / USEC_PER_SEC));
	}
	sbuf_close(s);
	/* A forwarded cancel finished: the peer pool may start a waiting one. */
	if (peer)
		peer_pool_activate(peer);
}
