/*
 * client.c - client connections: startup packet, login completion, and the
 * messages a logged-in client sends.
 */
#include "client.h"
#include "admin.h"
#include "pool.h"
#include "oidc.h"
#include "server.h"
#include "hooks.h"
#include "mask_catalog.h"
#include "approval.h"
#include "prepared.h"
#include "record_events.h"
#include "log.h"
#include "proto.h"
#include "tls.h"
#include "peer.h"
#include "replication.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct pv_hooks pv_hooks;

#define MAX_STARTUP_PARAMS 64

void client_accept(int fd, bool is_unix)
{
	struct pv_socket *c = socket_new(false);
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);

	if (!c) {
		close(fd);
		return;
	}
	c->is_unix = is_unix;
	/* The local address is not kept: SHOW asks the kernel (getsockname) when needed. */
	if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0)
		socket_set_remote(c, (const struct sockaddr *)&peer, len);
	else if (is_unix)
		c->remote.ss_family = AF_UNIX;
	if (is_unix) {
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
			c->peer_pid = cred.pid;
			c->peer_uid = (int)cred.uid;
		}
	}
	c->login_phase = LOGIN_STARTUP;
	/* Direct TLS (PostgreSQL 17 sslnegotiation=direct) shows in the first byte (sbuf.c). */
	if (!is_unix && tls_client_enabled())
		c->tls_state = PV_TLS_PEEK;
	socket_set_state(c, CL_LOGIN);
	if (!sbuf_attach(c, fd)) {
		c->fd = fd;
		sbuf_close(c);
	}
}

void client_close(struct pv_socket *c, const char *reason)
{
	if (c->closing)
		return;
	if (c->link) {
		struct pv_socket *s = c->link;
		pool_unlink(c, s);
	}
	approval_client_gone(c);
	record_session_end(c, reason);
	if (c->cancel_target) {
		c->cancel_target->cancel_target = NULL;
		c->cancel_target = NULL;
	}
	if (c->pool && c->login_phase == LOGIN_DONE) {
		c->pool->db->client_count--;
		c->pool->user->client_count--;
		if (!c->pool->db->is_admin) /* admin: not counted (admin.c) */
			G.client_count--;
	}
	if (G.cf->log_disconnections && c->state != CL_CANCEL)
		slog_info(c, "closing because: %s (age=%llds)", reason,
			  (long long)((now_usec() - c->connect_time) / USEC_PER_SEC));
	sbuf_close(c);
}

void client_fatal(struct pv_socket *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[1024];
	struct pv_buf out;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->closing)
		return;
	buf_init(&out);
	if (msg_error(&out, "FATAL", sqlstate, msg))
		sbuf_queue(c, out.data, out.len);
	buf_free(&out);
	client_close(c, msg);
}

void client_on_eof(struct pv_socket *c)
{
	client_close(c, "client unexpected eof");
}

/* --- startup ------------------------------------------------------------------- */

static bool send_byte(struct pv_socket *c, char b)
{
	return sbuf_queue(c, &b, 1);
}

/* Find the logged-in client a CancelRequest key belongs to. */
static struct pv_socket *find_client_by_key(const uint8_t key[8])
{
	struct list_head *pit, *it;
	list_for_each(pit, &G.pools)
	{
		struct pv_pool *pool = container_of(pit, struct pv_pool, node);
		list_for_each(it, &pool->active_clients)
		{
			struct pv_socket *c = container_of(it, struct pv_socket, node);
			if (mem_equal_ct(c->cancel_key, key, 8))
				return c;
		}
		list_for_each(it, &pool->waiting_clients)
		{
			struct pv_socket *c = container_of(it, struct pv_socket, node);
			if (mem_equal_ct(c->cancel_key, key, 8))
				return c;
		}
	}
	return NULL;
}

static enum pkt_action handle_cancel(struct pv_socket *c, struct pkt *p)
{
	struct pv_socket *target, *server;
	uint8_t key[8];
	if (pkt_body_len(p) != 12) {
		client_close(c, "bad cancel request");
		return PKT_STOP;
	}
	socket_set_state(c, CL_CANCEL);
	memcpy(key, pkt_body(p) + 4, sizeof(key));
	/* [peers]: another process's key is forwarded there (peer.c). */
	if (peer_handle_cancel(c, key))
		return c->closing ? PKT_STOP : PKT_CONSUMED;
	target = find_client_by_key(key);
	if (!target) {
		client_close(c, "cancel request for unknown client");
		return PKT_STOP;
	}
	/* A held statement (approval.h) runs nowhere: the cancel withdraws it. */
	if (target->approval && target->approval->state == APPROVAL_PENDING) {
		approval_decide(target->approval, APPROVAL_CANCELED, "client cancel request", NULL);
		client_close(c, "cancel request for held statement");
		return PKT_STOP;
	}
	server = target->link;
	if (!server || server->state != SV_ACTIVE || server->srv->task != TASK_NONE) {
		/* Nothing runs for it on a server: nothing to cancel. */
		slog_info(target, "cancel request for idle client");
		client_close(c, "cancel request for idle client");
		return PKT_STOP;
	}
	sbuf_pause(c);
	if (!server_launch_cancel(c, server)) {
		client_close(c, "cancel request failed");
		return PKT_STOP;
	}
	return PKT_CONSUMED;
}

static bool param_ignored(const char *key)
{
	return config_list_contains(G.cf->ignore_startup_parameters, key);
}

/*
 * Split the next whitespace-separated word of an options string into out,
 * as PostgreSQL does: a backslash makes the next character literal (so
 * "\ " is a space inside a word). Returns false at the end of the string.
 */
static bool next_option_word(const char **pos, char *out, size_t outlen)
{
	const char *p = *pos;
	size_t n = 0;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (!*p)
		return false;
	while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
		if (*p == '\\' && p[1])
			p++;
		if (n + 1 < outlen)
			out[n++] = *p;
		p++;
	}
	out[n] = '\0';
	*pos = p;
	return true;
}

/* Apply "-c key=value" / "--key=value" words of the options parameter. */
static bool apply_options(struct pv_socket *c, const char *opts)
{
	char tok[1024], arg[1024];
	const char *pos = opts;

	if (strlen(opts) >= sizeof(tok)) {
		client_fatal(c, "08P01", "options startup parameter too long");
		return false;
	}
	while (next_option_word(&pos, tok, sizeof(tok))) {
		char *kv, *eq;
		if (strcmp(tok, "-c") == 0) {
			kv = next_option_word(&pos, arg, sizeof(arg)) ? arg : NULL;
		} else if (strncmp(tok, "--", 2) == 0) {
			kv = tok + 2;
		} else if (strncmp(tok, "-c", 2) == 0) {
			kv = tok + 2;
		} else {
			kv = NULL;
		}
		if (!kv || !(eq = strchr(kv, '='))) {
			if (param_ignored("options"))
				continue;
			client_fatal(c, "08P01",
				     "unsupported options startup parameter: only '-c config=val' and "
				     "'--config=val' are allowed");
			return false;
		}
		*eq = '\0';
		for (char *d = kv; *d; d++)
			if (*d == '-')
				*d = '_';
		if (varcache_index(kv) >= 0) {
			varcache_set(&c->vars, kv, eq + 1);
		} else if (!param_ignored(kv) && !param_ignored("options")) {
			client_fatal(c, "08P01", "unsupported startup parameter in options: %s", kv);
			return false;
		}
	}
	return true;
}

/*
 * application_name_add_host: "name - addr:port" of the client, so a server
 * side view (pg_stat_activity) tells clients behind the pooler apart.
 */
static char *app_name_with_host(const struct pv_socket *c, const char *val)
{
	char addr[INET6_ADDRSTRLEN] = "unix";
	int port = 0;
	char *out;

	if (c->remote.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)&c->remote;
		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
		port = ntohs(in->sin_port);
	} else if (c->remote.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)&c->remote;
		inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
		port = ntohs(in6->sin6_port);
	} else {
		port = G.cf->listen_port;
	}
	if (asprintf(&out, "%s - %s:%d", val, addr, port) < 0)
		return NULL;
	return out;
}

static bool take_replication(struct pv_socket *c, const char *val)
{
	if (!repl_parse(val, &c->replication)) {
		client_fatal(c, "08P01", "invalid value for parameter \"replication\": \"%s\"", val);
		return false;
	}
	free(c->repl_value);
	c->repl_value = strdup(val);
	return true;
}

/* Store one startup parameter; false (client closed) when it is not allowed. */
static bool take_param(struct pv_socket *c, const char *key, const char *val, const char **unsup,
		       int *n_unsup)
{
	if (strcmp(key, "user") == 0) {
		pv_strrelease(c->startup_user);
		c->startup_user = pv_strintern(val);
	} else if (strcmp(key, "database") == 0) {
		pv_strrelease(c->startup_db);
		c->startup_db = pv_strintern(val);
	} else if (strcmp(key, "options") == 0) {
		/* Applied after all parameters: replication connections send it verbatim. */
		free(c->repl_options);
		c->repl_options = strdup(val);
	} else if (strncmp(key, "_pq_.", 5) == 0) {
		if (*n_unsup < MAX_STARTUP_PARAMS)
			unsup[(*n_unsup)++] = key;
	} else if (varcache_index(key) >= 0) {
		char *with_host = NULL;
		if (strcasecmp(key, "application_name") == 0) {
			if (G.cf->application_name_add_host)
				val = with_host = app_name_with_host(c, val);
			pv_strrelease(c->app_name);
			c->app_name = pv_strintern(val);
		}
		if (val)
			varcache_set(&c->vars, key, val);
		free(with_host);
	} else if (strcmp(key, "replication") == 0) {
		return take_replication(c, val);
	} else if (!param_ignored(key)) {
		client_fatal(c, "08P01", "unsupported startup parameter: %s", key);
		return false;
	}
	return true;
}

static bool negotiate_version(struct pv_socket *c, uint32_t version, const char **unsup,
			      int n_unsup)
{
	struct pv_buf out;
	bool ok;
	if (PROTO_MINOR(version) == 0 && n_unsup == 0)
		return true;
	buf_init(&out);
	ok = msg_negotiate_version(&out, 0, unsup, n_unsup) && sbuf_queue(c, out.data, out.len);
	buf_free(&out);
	return ok;
}

/* Pick the database and pool for a client whose startup packet was valid. */
static bool choose_pool(struct pv_socket *c)
{
	struct pv_database *db;
	struct pv_user *user;
	const char *pool_user;

	/* admin console (admin.c): its own db and pool, never a server */
	if (admin_is_admin_db_name(c->startup_db)) {
		c->wants_admin = true;
		c->pool = admin_pool_get();
		if (!c->pool)
			client_fatal(c, "53200", "out of memory");
		return c->pool != NULL;
	}
	if (G.shutdown_mode != SHUTDOWN_NONE) {
		client_fatal(c, "08P01", "pooler is shutting down");
		return false;
	}
	db = database_get(c->startup_db);
	if (!db) {
		client_fatal(c, "08P01", "no such database: %s", c->startup_db);
		return false;
	}
	if (db->disabled) {
		client_fatal(c, "08P01", "database \"%s\" is disabled", db->name);
		return false;
	}
	pool_user = db->conf && db->conf->user ? db->conf->user : c->startup_user;
	if (G.cf->auth_type == AUTH_ANY && !(db->conf && db->conf->user)) {
		client_fatal(c, "08P01", "bouncer config error");
		return false;
	}
	user = user_get(pool_user);
	if (!user || !(c->pool = pool_get(db, user))) {
		client_fatal(c, "53200", "out of memory");
		return false;
	}
	return true;
}

/*
 * SSLRequest: 'S' and the handshake when client TLS is on and the socket is
 * TCP, else 'N' (the client may go on in plain text). GSSENCRequest: 'N'.
 */
static enum pkt_action handle_encryption_request(struct pv_socket *c, struct pkt *p,
						 uint32_t code)
{
	bool tls = code == PROTO_SSL && !c->is_unix && tls_client_enabled();

	if (p->len != 8 || c->tls) {
		client_close(c, "bad SSL request");
		return PKT_STOP;
	}
	/* Bytes behind the request were sent before any handshake: unencrypted, refused. */
	if (tls && buf_pending(&c->in) > p->len) {
		client_fatal(c, "08P01", "received unencrypted data after SSL request");
		return PKT_STOP;
	}
	if (!send_byte(c, tls ? 'S' : 'N')) {
		client_close(c, "out of memory");
		return PKT_STOP;
	}
	if (!tls)
		return PKT_CONSUMED;
	/* The 'S' must be on the wire in plain text before TLS owns the socket. */
	if (buf_pending(&c->out) > 0) {
		client_close(c, "could not send SSL answer");
		return PKT_STOP;
	}
	return sbuf_tls_start(c) ? PKT_CONSUMED : PKT_STOP;
}

static const char *tls_desc(const struct pv_socket *c, char *buf, size_t len)
{
	return tls_info(c, buf, len) ? buf : "no";
}

static enum pkt_action handle_startup(struct pv_socket *c, struct pkt *p)
{
	char tlsbuf[128];
	struct startup_param params[MAX_STARTUP_PARAMS];
	const char *unsup[MAX_STARTUP_PARAMS];
	int n, n_unsup = 0;
	struct pkt_reader r;
	uint32_t code;

	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	reader_init_pkt(&r, p);
	code = read_u32(&r);
	if (code == PROTO_SSL || code == PROTO_GSSENC)
		return handle_encryption_request(c, p, code);
	if (code == PROTO_CANCEL)
		return handle_cancel(c, p);
	if (PROTO_MAJOR(code) != 3) {
		client_fatal(c, "08P01",
			     PROTO_MAJOR(code) == 2 ? "old V2 protocol not supported"
						    : "unsupported protocol version");
		return PKT_STOP;
	}
	if (!c->tls && !c->is_unix && G.cf->client_tls_sslmode >= SSLMODE_REQUIRE) {
		client_fatal(c, "08P01", "SSL required");
		return PKT_STOP;
	}
	n = proto_parse_startup_params(pkt_body(p) + 4, pkt_body_len(p) - 4, params,
				       MAX_STARTUP_PARAMS);
	if (n < 0) {
		client_fatal(c, "08P01", "invalid startup packet layout: expected terminator as last byte");
		return PKT_STOP;
	}
	for (int i = 0; i < n; i++)
		if (!take_param(c, params[i].key, params[i].value, unsup, &n_unsup))
			return PKT_STOP;
	record_startup_params(c, params, n);
	if (c->repl_options && !c->replication && !apply_options(c, c->repl_options))
		return PKT_STOP;
	if (!c->startup_user || !*c->startup_user) {
		client_fatal(c, "08P01", "no username supplied");
		return PKT_STOP;
	}
	if (!c->startup_db || !*c->startup_db) {
		pv_strrelease(c->startup_db);
		c->startup_db = pv_strintern(c->startup_user);
		if (!c->startup_db) {
			client_fatal(c, "53200", "out of memory");
			return PKT_STOP;
		}
	}
	if (!negotiate_version(c, code, unsup, n_unsup)) {
		client_close(c, "out of memory");
		return PKT_STOP;
	}
	if (G.cf->log_connections)
		slog_info(c, "login attempt: db=%s user=%s tls=%s replication=%s", c->startup_db,
			  c->startup_user, tls_desc(c, tlsbuf, sizeof(tlsbuf)),
			  c->replication ? "yes" : "no");
	if (!choose_pool(c))
		return PKT_STOP;
	c->login_phase = LOGIN_AUTH;
	/* admin console: same-UID unix user "pgbouncer" needs no password (admin.c) */
	if (c->wants_admin && admin_is_own_user(c))
		admin_login_ok(c);
	else
		auth_start(c);
	return c->closing ? PKT_STOP : PKT_CONSUMED;
}

/* --- welcome -------------------------------------------------------------------- */

/* A replication client is welcomed with its own server's parameters (replication.c). */
static bool queue_welcome_params(struct pv_socket *c, struct pv_buf *out)
{
	const struct pv_buf *wp =
	    c->replication && c->link ? &c->link->srv->repl_params : &c->pool->welcome_params;
	size_t pos = 0;
	while (pos < wp->len) {
		struct pkt p;
		struct pkt_reader r;
		const char *key, *val;
		int idx;
		if (proto_frame(wp->data + pos, wp->len - pos, &p) != FRAME_OK || !pkt_complete(&p))
			break;
		reader_init_pkt(&r, &p);
		key = read_string(&r);
		val = read_string(&r);
		idx = key ? varcache_index(key) : -1;
		if (idx >= 0 && varcache_get(&c->vars, idx))
			val = varcache_get(&c->vars, idx);
		if (key && val && !msg_param_status(out, key, val))
			return false;
		pos += p.len;
	}
	return true;
}

bool client_send_welcome(struct pv_socket *c)
{
	struct pv_buf out;
	bool ok;

	const struct varcache *defaults =
	    c->replication && c->link ? &c->link->vars : &c->pool->server_defaults;

	/* Values the client did not choose are the server defaults: sync them too. */
	if (!varcache_fill_missing(&c->vars, defaults)) {
		client_fatal(c, "53200", "out of memory");
		return false;
	}
	if (!random_bytes(c->cancel_key, sizeof(c->cancel_key))) {
		client_fatal(c, "08P01", "could not generate cancel key");
		return false;
	}
	c->cancel_key[0] &= 0x7f;
	peer_stamp_key(c->cancel_key);
	buf_init(&out);
	ok = msg_auth_request(&out, 0, NULL, 0) && queue_welcome_params(c, &out) &&
	     msg_backend_key(&out, c->cancel_key);
	if (ok && G.cf->login_notify_message[0])
		ok = msg_notice(&out, "00000", G.cf->login_notify_message);
	ok = ok && msg_ready(&out, 'I') && sbuf_queue(c, out.data, out.len);
	buf_free(&out);
	if (!ok) {
		client_close(c, "out of memory");
		return false;
	}
	client_mark_logged_in(c, true);
	return true;
}

void client_mark_logged_in(struct pv_socket *c, bool counts_toward_max)
{
	c->login_phase = LOGIN_DONE;
	c->pool->db->client_count++;
	c->pool->user->client_count++;
	if (counts_toward_max)
		G.client_count++;
	c->pool->stats.client_login_count++;
	socket_set_state(c, CL_ACTIVE);
	record_session_start(c);
}

/* --- logged-in traffic -------------------------------------------------------------- */

void client_server_ready(struct pv_socket *c)
{
	sbuf_wakeup(c);
}

/*
 * Any message of a logged-in client that arrives while no request is open
 * starts one (PgBouncer counts before looking for a server, so query_time
 * includes the wait and a Describe/Close + Sync counts as a query too).
 */
static void account_request_start(struct pv_socket *c)
{
	usec_t now;
	if (c->query_start)
		return;
	now = now_usec();
	c->query_start = now;
	c->request_time = now;
	c->pool->stats.query_count++;
	c->stmt_count++;
	if (!c->xact_start) {
		c->xact_start = now;
		c->pool->stats.xact_count++;
	}
}

/*
 * A token login lasts until the token's exp. Checked when a request starts
 * outside a transaction (unlinked, or linked to a session server that is
 * idle), so a running transaction is never cut in half; the janitor also
 * checks idle unlinked clients (janitor.c).
 */
bool client_token_expired(const struct pv_socket *c)
{
	if (!c->identity || c->query_start)
		return false;
	if (c->link && c->link->tx_status != 'I')
		return false;
	return (int64_t)time(NULL) >= c->identity->exp;
}

static enum pkt_action handle_client_msg(struct pv_socket *c, struct pkt *p)
{
	struct pv_socket *s;

	/* admin console: answered by admin.c, never forwarded */
	if (c->pool->db->is_admin)
		return admin_handle_pkt(c, p);
	if (p->type == 'X') {
		client_close(c, "client close request");
		return PKT_STOP;
	}
	if (p->type == 'Q' && G.cf->disable_pqexec) {
		client_fatal(c, "08P01", "PQexec disallowed");
		return PKT_STOP;
	}
	if (client_token_expired(c)) {
		client_fatal(c, "28000", "token expired");
		return PKT_STOP;
	}
	account_request_start(c);
	/* Before the server request: a held statement must not occupy a server (rules.c). */
	if (pv_hooks.client_gate) {
		enum pkt_action a = pv_hooks.client_gate(c, p);
		if (a != PKT_FORWARD)
			return a;
	}
	if (!c->link && !pool_request_server(c))
		return PKT_PAUSE;
	s = c->link;
	if (!s)
		return PKT_PAUSE;
	/* The server still runs the SET that syncs this client's parameters. */
	if (s->srv->task != TASK_NONE)
		return PKT_PAUSE;
	/*
	 * Session pooling keeps its server, so the link-time catalog check of
	 * masking (mask_catalog.h) is repeated between transactions: DDL and
	 * mask_refresh take effect for such clients too.
	 */
	if (pv_hooks.server_msg && s->tx_status == 'I' && s->expect_rfq == 0 && !s->in_extended &&
	    mask_catalog_link(c, s))
		return PKT_PAUSE;
	/* Prepared-statement bookkeeping reads the whole message: wait for it first. */
	if (s->ps_track && ps_client_needs_full(p) && !pkt_complete(p))
		return PKT_NEED_FULL;
	if (pv_hooks.client_msg) {
		enum pkt_action a = pv_hooks.client_msg(c, p);
		if (a != PKT_FORWARD)
			return a;
	}
	/* after the rules: what they rewrote or held is recorded as their decision */
	if (pv_hooks.record_client) {
		enum pkt_action a = pv_hooks.record_client(c, p);
		if (a != PKT_FORWARD)
			return a;
	}
	server_note_client_msg(s, (char)p->type);
	if (s->ps_track)
		return ps_client_msg(c, s, p);
	return PKT_FORWARD;
}

enum pkt_action client_handle_pkt(struct pv_socket *c, struct pkt *p)
{
	switch (c->login_phase) {
	case LOGIN_STARTUP:
		return handle_startup(c, p);
	case LOGIN_AUTH:
		if (c->state == CL_WAITING_LOGIN)
			return PKT_PAUSE;
		return auth_handle_pkt(c, p);
	case LOGIN_DONE:
	default:
		return handle_client_msg(c, p);
	}
}
