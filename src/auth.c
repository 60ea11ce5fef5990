/*
 * auth.c - client authentication: trust, any, plain, md5 and SCRAM-SHA-256,
 * with mock authentication for unknown users so that a probing client cannot
 * tell which user names exist.
 */
#include "client.h"
#include "admin.h"
#include "pool.h"
#include "authfile.h"
#include "log.h"
#include "proto.h"
#include "scram.h"
#include "tls.h"
#include "replication.h"
#include "auth_query.h"
#include "hba.h"
#include "governance.h"
#include "oidc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

/* Largest password message accepted: OIDC tokens can be several KB. */
#define MAX_PASSWORD_PKT 65536

static const struct auth_entry *lookup_user(const struct pv_socket *c)
{
	const struct auth_entry *e = G.auth ? authfile_find(G.auth, c->startup_user) : NULL;
	/* A user auth_query answered for during this login (auth_query.c). */
	if (!e && c->aq_done)
		e = auth_query_find(c->pool->db->name, c->startup_user);
	return e;
}

/* Authentication succeeded: welcome now, or wait for the pool's first server login. */
static void auth_ok(struct pv_socket *c)
{
	struct pv_pool *pool = c->pool;

	/* admin console: access rules and welcome in admin.c; max_client_conn not enforced */
	if (pool->db->is_admin) {
		admin_login_ok(c);
		return;
	}
	if (G.client_count >= G.cf->max_client_conn) {
		client_fatal(c, "08P01", "no more connections allowed (max_client_conn)");
		return;
	}
	if (pool_client_limit(pool)) {
		client_fatal(c, "08P01", "%s", pool_client_limit(pool));
		return;
	}
	/* replication=database|true: a dedicated server of its own (replication.c) */
	if (c->replication) {
		repl_client_authenticated(c);
		return;
	}
	if (pool->last_login_error && !pool->have_welcome &&
	    now_usec() - pool->last_login_failed_at < G.cf->server_login_retry) {
		client_fatal(c, pool->last_login_sqlstate, "%s", pool->last_login_error);
		return;
	}
	if (pool->have_welcome) {
		client_send_welcome(c);
		return;
	}
	socket_set_state(c, CL_WAITING_LOGIN);
	sbuf_pause(c);
	pool_activate(pool);
}

static bool send_auth_request(struct pv_socket *c, uint32_t code, const void *extra, size_t n)
{
	struct pv_buf out;
	bool ok;
	buf_init(&out);
	ok = msg_auth_request(&out, code, extra, n) && sbuf_queue(c, out.data, out.len);
	buf_free(&out);
	if (!ok)
		client_close(c, "out of memory");
	return ok;
}

static void start_scram(struct pv_socket *c, const struct auth_entry *e)
{
	static const char mechs[] = "SCRAM-SHA-256\0";
	struct scram_secret secret;
	bool mock = false;

	c->scram = calloc(1, sizeof(*c->scram));
	if (!c->scram) {
		client_close(c, "out of memory");
		return;
	}
	if (!e || !e->secret[0] || e->kind == SECRET_MD5) {
		/* Unknown user or a secret SCRAM cannot use: same exchange, certain failure. */
		scram_mock_secret(c->startup_user, G.mock_nonce, sizeof(G.mock_nonce),
				  G.cf->scram_iterations, &secret);
		mock = true;
	} else if (e->kind == SECRET_SCRAM) {
		if (!scram_parse_secret(e->secret, &secret)) {
			slog_warning(c, "invalid SCRAM secret in auth_file");
			scram_mock_secret(c->startup_user, G.mock_nonce, sizeof(G.mock_nonce),
					  G.cf->scram_iterations, &secret);
			mock = true;
		}
	} else {
		/*
		 * Use the salt a mock exchange shows for this name: a user with a
		 * plaintext password looks like any other, and the derived secret
		 * comes from the PBKDF2 cache on later logins.
		 */
		struct scram_secret shape;
		scram_mock_secret(c->startup_user, G.mock_nonce, sizeof(G.mock_nonce),
				  G.cf->scram_iterations, &shape);
		if (!scram_secret_from_password(e->secret, shape.salt, shape.salt_len,
						G.cf->scram_iterations, &secret)) {
			client_close(c, "out of memory");
			return;
		}
	}
	scram_server_init(c->scram, &secret, mock);
	send_auth_request(c, 10, mechs, sizeof(mechs));
}

/* cert: the verified client certificate's CN must be the user name (no password asked). */
static void check_cert(struct pv_socket *c)
{
	char cn[256];

	if (!c->tls) {
		client_fatal(c, "08P01", "TLS connection required for certificate authentication");
		return;
	}
	if (!tls_peer_cn(c, cn, sizeof(cn))) {
		client_fatal(c, "08P01", "no valid client certificate");
		return;
	}
	if (strcmp(cn, c->startup_user) != 0) {
		slog_info(c, "certificate CN \"%s\" does not match user", cn);
		client_fatal(c, "08P01", "certificate authentication failed");
		return;
	}
	auth_ok(c);
}

/* auth_type = hba: the first matching rule of auth_hba_file picks the method. */
static bool hba_choose(struct pv_socket *c, enum auth_type *method, const char **map)
{
	const struct hba_rule *r =
		hba_match(hba_active(), c->is_unix, hba_sock_is_tls(c),
			  (const struct sockaddr *)&c->remote, c->startup_db, c->startup_user,
			  c->replication != REPL_NONE);
	if (!r) {
		client_fatal(c, "08P01", "no authentication method is found");
		return false;
	}
	if (r->method == AUTH_REJECT) {
		slog_debug(c, "rejected by auth_hba_file line %d", r->line);
		client_fatal(c, "08P01", "pg_hba.conf rejected connection");
		return false;
	}
	*method = r->method;
	*map = r->map;
	return true;
}

/*
 * peer (HBA, unix sockets only): the OS user owning the connecting process
 * must be the database user, or map to it in auth_ident_file. getpwuid_r()
 * reads the local user database; with a network NSS source it could block,
 * which is the same trade-off PostgreSQL and PgBouncer make.
 */
static void auth_peer(struct pv_socket *c, const char *map)
{
	char buf[4096];
	struct passwd pw, *res = NULL;

	if (!c->is_unix || c->peer_pid <= 0) {
		client_fatal(c, "08P01", "peer authentication is only supported on unix sockets");
		return;
	}
	if (getpwuid_r((uid_t)c->peer_uid, &pw, buf, sizeof(buf), &res) != 0 || !res) {
		slog_warning(c, "peer: no user name for uid %d", c->peer_uid);
		client_fatal(c, "08P01", "peer authentication failed");
		return;
	}
	if (!ident_allows(ident_active(), map, res->pw_name, c->startup_user)) {
		slog_info(c, "peer: OS user \"%s\" may not log in as \"%s\"", res->pw_name,
			  c->startup_user);
		client_fatal(c, "08P01", "peer authentication failed");
		return;
	}
	auth_ok(c);
}

/* HBA cert with map=: the verified certificate's CN must map to the user. */
static void check_cert_mapped(struct pv_socket *c, const char *map)
{
	char cn[256];

	if (!hba_sock_cert_name(c, cn, sizeof(cn))) {
		client_fatal(c, "08P01", "no valid client certificate");
		return;
	}
	if (!ident_allows(ident_active(), map, cn, c->startup_user)) {
		slog_info(c, "cert: CN \"%s\" may not log in as \"%s\"", cn, c->startup_user);
		client_fatal(c, "08P01", "certificate authentication failed");
		return;
	}
	auth_ok(c);
}

/* 127.0.0.0/8, ::1, or ::ffff:127.x.y.z */
static bool peer_is_loopback(const struct pv_socket *c)
{
	if (c->remote.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&c->remote;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (c->remote.ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)&c->remote)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/*
 * oidc: the token travels as a cleartext password and is a bearer credential
 * until it expires, so it must not cross an unencrypted network: TLS, a unix
 * socket, or loopback when the policy allows it explicitly.
 */
static void start_oidc(struct pv_socket *c)
{
	const struct gov_policy *pol = gov_active();
	bool tls = c->tls && c->tls_state == PV_TLS_OPEN;

	if (!tls && !c->is_unix && !(pol && pol->allow_plaintext_loopback && peer_is_loopback(c))) {
		slog_info(c, "oidc login refused: token over plain TCP");
		client_fatal(c, "28000", "TLS required for token login");
		return;
	}
	c->auth_oidc = true;
	send_auth_request(c, 3, NULL, 0);
}

/* The password is a JWT: validate it, then the grant decides whether it may be this role. */
static bool handle_oidc(struct pv_socket *c, const char *token)
{
	const struct gov_policy *pol = gov_active();
	struct pv_identity *id = NULL;
	char detail[512], groups[512], groups_esc[1024], subject_esc[1024];
	enum oidc_status st = oidc_validate(pol, token, (int64_t)time(NULL), &id, detail,
					    sizeof(detail));

	if (st == OIDC_NO_MEMORY) {
		client_close(c, "out of memory");
		return false;
	}
	if (st != OIDC_OK) {
		slog_info(c, "oidc login refused: %s: %s", oidc_status_reason(st), detail);
		client_fatal(c, "28000", "%s", oidc_status_reason(st));
		return false;
	}
	identity_groups_str(id, groups, sizeof(groups));
	oidc_log_escape(groups, groups_esc, sizeof(groups_esc));
	oidc_log_escape(id->subject, subject_esc, sizeof(subject_esc));
	/* Unknown and not-granted roles get the same reply: grants never look at auth_file.
	 * Replication (whole-database copies) needs a grant that says replication: true.
	 * The admin console is no database role: approver groups decide (admin_login_ok). */
	if (!c->pool->db->is_admin &&
	    !gov_grant_allows(pol, id, c->startup_user, c->replication != REPL_NONE)) {
		slog_info(c,
			  "oidc login refused: role not granted: subject=%s provider=%s groups=%s%s",
			  subject_esc, id->provider, groups_esc,
			  c->replication != REPL_NONE ? " (replication)" : "");
		identity_free(id);
		client_fatal(c, "28000", "role not granted");
		return false;
	}
	c->identity = id;
	slog_info(c, "oidc login: subject=%s provider=%s groups=%s role=%s%s", subject_esc,
		  id->provider, groups_esc, c->startup_user,
		  c->replication != REPL_NONE ? " replication" : "");
	auth_ok(c);
	return true;
}

void auth_start(struct pv_socket *c)
{
	enum auth_type method = G.cf->auth_type;
	const char *map = NULL;
	const struct auth_entry *e;

	if (method == AUTH_HBA && !hba_choose(c, &method, &map))
		return;
	/* Not in auth_file, auth_user set: fetch credentials first; we come back here. */
	if (method != AUTH_ANY && auth_query_needed(c)) {
		auth_query_start(c);
		return;
	}
	e = lookup_user(c);
	switch (method) {
	case AUTH_ANY:
		auth_ok(c);
		return;
	case AUTH_TRUST:
		if (!e) {
			client_fatal(c, "08P01", "\"trust\" authentication failed");
			return;
		}
		auth_ok(c);
		return;
	case AUTH_PLAIN:
		c->auth_cleartext = true;
		send_auth_request(c, 3, NULL, 0);
		return;
	case AUTH_MD5:
		if (e && e->kind == SECRET_SCRAM) {
			/* An md5 challenge cannot be checked against a SCRAM secret. */
			start_scram(c, e);
			return;
		}
		if (!random_bytes(c->md5_salt, sizeof(c->md5_salt))) {
			client_close(c, "random failure");
			return;
		}
		send_auth_request(c, 5, c->md5_salt, sizeof(c->md5_salt));
		return;
	case AUTH_SCRAM_SHA_256:
		start_scram(c, e);
		return;
	case AUTH_CERT:
		if (map)
			check_cert_mapped(c, map);
		else
			check_cert(c);
		return;
	case AUTH_PEER:
		auth_peer(c, map);
		return;
	case AUTH_OIDC:
		start_oidc(c);
		return;
	default:
		client_fatal(c, "08P01", "authentication method %s is not supported yet",
			     auth_type_name(method));
		return;
	}
}

static void auth_failed(struct pv_socket *c, const char *msg)
{
	client_fatal(c, "08P01", "%s", msg);
}

/* Check a cleartext password against whatever form the auth_file stores. */
static bool check_cleartext(const struct auth_entry *e, const char *user, const char *pw)
{
	char md5[36];
	struct scram_secret stored, derived;

	if (!e || !e->secret[0] || !pw[0])
		return false;
	switch (e->kind) {
	case SECRET_PLAIN:
		return strlen(e->secret) == strlen(pw) && mem_equal_ct(e->secret, pw, strlen(pw));
	case SECRET_MD5:
		md5_password_secret(pw, user, md5);
		return strlen(e->secret) == 35 && mem_equal_ct(e->secret, md5, 35);
	case SECRET_SCRAM:
		if (!scram_parse_secret(e->secret, &stored) ||
		    !scram_secret_from_password(pw, stored.salt, stored.salt_len, stored.iterations,
						&derived))
			return false;
		return mem_equal_ct(stored.stored_key, derived.stored_key, SCRAM_KEY_LEN) &&
		       mem_equal_ct(stored.server_key, derived.server_key, SCRAM_KEY_LEN);
	}
	return false;
}

static bool check_md5(const struct pv_socket *c, const struct auth_entry *e, const char *resp)
{
	char md5[36], expect[36];
	const char *secret;

	if (!e || !e->secret[0] || e->kind == SECRET_SCRAM)
		return false;
	secret = e->secret;
	if (e->kind == SECRET_PLAIN) {
		md5_password_secret(e->secret, c->startup_user, md5);
		secret = md5;
	}
	md5_salted_response(secret, c->md5_salt, expect);
	return strlen(resp) == 35 && mem_equal_ct(resp, expect, 35);
}

/* Remember the ClientKey of a proof so servers can be logged into with the same secret. */
static void keep_scram_keys(struct pv_socket *c, const struct auth_entry *e)
{
	struct pv_pool *pool = c->pool;
	if (!e || e->kind != SECRET_SCRAM || !c->scram->have_client_key)
		return;
	if (strcmp(pool->user->name, c->startup_user) != 0)
		return;
	memcpy(pool->scram_client_key, c->scram->client_key, SCRAM_KEY_LEN);
	memcpy(pool->scram_server_key, c->scram->secret.server_key, SCRAM_KEY_LEN);
	pool->have_scram_keys = true;
}

static enum pkt_action handle_scram(struct pv_socket *c, struct pkt *p)
{
	struct pkt_reader r;
	char err[128];
	char *reply = NULL;
	bool ok;

	reader_init_pkt(&r, p);
	if (!c->scram->client_first_bare) {
		const char *mech = read_string(&r);
		uint32_t n = read_u32(&r);
		const uint8_t *data;
		if (r.bad || strcmp(mech, "SCRAM-SHA-256") != 0 || n != reader_left(&r)) {
			auth_failed(c, "SASL authentication failed");
			return PKT_STOP;
		}
		data = read_bytes(&r, n);
		ok = scram_server_handle_first(c->scram, (const char *)data, n, &reply, err,
					       sizeof(err));
		if (!ok || !send_auth_request(c, 11, reply, strlen(reply))) {
			free(reply);
			if (!c->closing) {
				slog_info(c, "SCRAM: %s", err);
				auth_failed(c, "SASL authentication failed");
			}
			return PKT_STOP;
		}
		free(reply);
		return PKT_CONSUMED;
	}
	ok = scram_server_handle_final(c->scram, (const char *)pkt_body(p), pkt_body_len(p), &reply,
				       err, sizeof(err));
	if (!ok) {
		free(reply);
		auth_failed(c, "SASL authentication failed");
		return PKT_STOP;
	}
	ok = send_auth_request(c, 12, reply, strlen(reply));
	free(reply);
	if (!ok)
		return PKT_STOP;
	keep_scram_keys(c, lookup_user(c));
	scram_server_free(c->scram);
	free(c->scram);
	c->scram = NULL;
	auth_ok(c);
	return c->closing ? PKT_STOP : PKT_CONSUMED;
}

enum pkt_action auth_handle_pkt(struct pv_socket *c, struct pkt *p)
{
	const struct auth_entry *e;
	struct pkt_reader r;
	const char *pw;

	/* Parked while auth_query runs: nothing was asked of the client yet. */
	if (c->aq_home_pool)
		return PKT_PAUSE;
	if (p->type != 'p') {
		auth_failed(c, "expected password response");
		return PKT_STOP;
	}
	if (p->len > MAX_PASSWORD_PKT) {
		auth_failed(c, "password packet too large");
		return PKT_STOP;
	}
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (c->scram)
		return handle_scram(c, p);
	reader_init_pkt(&r, p);
	pw = read_string(&r);
	if (!pw || reader_left(&r) != 0) {
		auth_failed(c, "invalid password packet");
		return PKT_STOP;
	}
	if (!pw[0]) {
		auth_failed(c, "empty password returned by client");
		return PKT_STOP;
	}
	if (c->auth_oidc) {
		handle_oidc(c, pw);
		return c->closing ? PKT_STOP : PKT_CONSUMED;
	}
	e = lookup_user(c);
	if (c->auth_cleartext ? !check_cleartext(e, c->startup_user, pw) : !check_md5(c, e, pw)) {
		auth_failed(c, "password authentication failed");
		return PKT_STOP;
	}
	auth_ok(c);
	return c->closing ? PKT_STOP : PKT_CONSUMED;
}
