/*
 * tls.c - OpenSSL contexts from the config, and the per-socket SSL calls.
 *
 * Two contexts: client_ctx (pgvigil is the TLS server for its clients) and
 * server_ctx (pgvigil is the TLS client of PostgreSQL). They are rebuilt on
 * RELOAD / admin SET only when a TLS key or one of the files changed; a new
 * configuration that fails keeps the running contexts. SSL objects hold a
 * reference to their context, so live connections survive a swap.
 */
#include "tls.h"
#include "admin.h"
#include "config.h"
#include "log.h"
#include "pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static SSL_CTX *client_ctx, *server_ctx;
/* What the running contexts were built from (keys + file identities). */
static char *client_fp, *server_fp;

/* ALPN protocol of PostgreSQL 17 (wire format: length-prefixed). */
static const unsigned char alpn_pg[] = "\x0apostgresql";
#define ALPN_PG_LEN 11

/* One side's keys (the server side has no curve / DH settings). */
struct side_conf {
	bool accept; /* true: context for clients (TLS server role) */
	enum ssl_mode mode;
	const char *ca, *cert, *key, *protocols, *ciphers, *tls13, *ecdh, *dh;
};

static void side_from_config(const struct pv_config *cf, bool accept, struct side_conf *sc)
{
	memset(sc, 0, sizeof(*sc));
	sc->accept = accept;
	if (accept) {
		sc->mode = cf->client_tls_sslmode;
		sc->ca = cf->client_tls_ca_file;
		sc->cert = cf->client_tls_cert_file;
		sc->key = cf->client_tls_key_file;
		sc->protocols = cf->client_tls_protocols;
		sc->ciphers = cf->client_tls_ciphers;
		sc->tls13 = cf->client_tls13_ciphers;
		sc->ecdh = cf->client_tls_ecdhcurve;
		sc->dh = cf->client_tls_dheparams;
	} else {
		sc->mode = cf->server_tls_sslmode;
		sc->ca = cf->server_tls_ca_file;
		sc->cert = cf->server_tls_cert_file;
		sc->key = cf->server_tls_key_file;
		sc->protocols = cf->server_tls_protocols;
		sc->ciphers = cf->server_tls_ciphers;
		sc->tls13 = cf->server_tls13_ciphers;
	}
}

static bool set(const char *s)
{
	return s && *s;
}

static void ssl_err(char *err, size_t errlen, const char *what, const char *arg)
{
	char ebuf[256] = "";
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
	snprintf(err, errlen, "%s%s%s%s%s", what, arg ? " " : "", arg ? arg : "", e ? ": " : "",
	         ebuf);
	ERR_clear_error();
}

/* --- fingerprints: did anything TLS-related change? ------------------------------ */

static bool fp_add(char **fp, size_t *len, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	char *p = realloc(*fp, *len + n + 2);
	if (!p)
		return false;
	memcpy(p + *len, s ? s : "", n);
	p[*len + n] = '\x1f';
	p[*len + n + 1] = '\0';
	*fp = p;
	*len += n + 1;
	return true;
}

/* Files count by identity and mtime, so a rotated certificate is picked up by RELOAD. */
static bool fp_add_file(char **fp, size_t *len, const char *path)
{
	struct stat st;
	char buf[128] = "";
	if (set(path) && stat(path, &st) == 0)
		snprintf(buf, sizeof(buf), "%llu:%llu:%lld.%09ld:%lld",
		         (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
		         (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_size);
	return fp_add(fp, len, path) && fp_add(fp, len, buf);
}

static char *side_fingerprint(const struct side_conf *sc, enum auth_type at)
{
	char *fp = NULL, mode[16];
	size_t len = 0;
	snprintf(mode, sizeof(mode), "%d:%d", (int)sc->mode, (int)at);
	if (fp_add(&fp, &len, mode) && fp_add_file(&fp, &len, sc->ca) &&
	    fp_add_file(&fp, &len, sc->cert) && fp_add_file(&fp, &len, sc->key) &&
	    fp_add(&fp, &len, sc->protocols) && fp_add(&fp, &len, sc->ciphers) &&
	    fp_add(&fp, &len, sc->tls13) && fp_add(&fp, &len, sc->ecdh) &&
	    fp_add(&fp, &len, sc->dh))
		return fp;
	free(fp);
	return NULL;
}

/* --- context set-up -------------------------------------------------------------- */

struct proto_name {
	const char *name;
	int lo, hi;
};

static const struct proto_name proto_names[] = {
    {"tlsv1.0", TLS1_VERSION, TLS1_VERSION},     {"tlsv1", TLS1_VERSION, TLS1_VERSION},
    {"tlsv1.1", TLS1_1_VERSION, TLS1_1_VERSION}, {"tlsv1.2", TLS1_2_VERSION, TLS1_2_VERSION},
    {"tlsv1.3", TLS1_3_VERSION, TLS1_3_VERSION}, {"all", TLS1_VERSION, TLS1_3_VERSION},
    {"legacy", TLS1_VERSION, TLS1_3_VERSION},    {"secure", TLS1_2_VERSION, TLS1_3_VERSION},
    {"default", TLS1_2_VERSION, TLS1_3_VERSION}, {NULL, 0, 0},
};

/*
 * "tlsv1.2,tlsv1.3", "secure", "all"...: OpenSSL only has a min and a max
 * version, so a list means the range from its lowest to its highest entry.
 */
static bool set_protocols(SSL_CTX *ctx, const char *list, char *err, size_t errlen)
{
	char buf[256], *save = NULL, *tok;
	int lo = 0, hi = 0;

	snprintf(buf, sizeof(buf), "%s", set(list) ? list : "secure");
	for (tok = strtok_r(buf, " ,:", &save); tok; tok = strtok_r(NULL, " ,:", &save)) {
		const struct proto_name *p = proto_names;
		while (p->name && strcasecmp(p->name, tok) != 0)
			p++;
		if (!p->name) {
			snprintf(err, errlen, "unknown TLS protocol: %s", tok);
			return false;
		}
		if (!lo || p->lo < lo)
			lo = p->lo;
		if (p->hi > hi)
			hi = p->hi;
	}
	if (!lo) {
		snprintf(err, errlen, "no TLS protocol enabled");
		return false;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, lo) || !SSL_CTX_set_max_proto_version(ctx, hi)) {
		ssl_err(err, errlen, "cannot set TLS protocol range", list);
		return false;
	}
	return true;
}

/* The TLS <= 1.2 cipher keywords; anything else is an OpenSSL cipher list. */
static const char *cipher_list(const char *v)
{
	if (!set(v) || strcasecmp(v, "default") == 0 || strcasecmp(v, "normal") == 0)
		return "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES";
	if (strcasecmp(v, "secure") == 0)
		return "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL";
	if (strcasecmp(v, "fast") == 0)
		return "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:DHE+AESGCM:!aNULL:!eNULL:!SHA1";
	if (strcasecmp(v, "all") == 0 || strcasecmp(v, "compat") == 0 ||
	    strcasecmp(v, "legacy") == 0)
		return "ALL:!aNULL:!eNULL";
	return v;
}

static bool set_ciphers(SSL_CTX *ctx, const struct side_conf *sc, char *err, size_t errlen)
{
	if (!SSL_CTX_set_cipher_list(ctx, cipher_list(sc->ciphers))) {
		ssl_err(err, errlen, "invalid TLS cipher list", sc->ciphers);
		return false;
	}
	if (set(sc->tls13) && !SSL_CTX_set_ciphersuites(ctx, sc->tls13)) {
		ssl_err(err, errlen, "invalid TLS 1.3 cipher suites", sc->tls13);
		return false;
	}
	return true;
}

/* client_tls_ecdhcurve (auto / none / a groups list) and client_tls_dheparams. */
static bool set_kex(SSL_CTX *ctx, const struct side_conf *sc, char *err, size_t errlen)
{
	if (set(sc->ecdh) && strcasecmp(sc->ecdh, "auto") != 0 &&
	    strcasecmp(sc->ecdh, "none") != 0 && !SSL_CTX_set1_groups_list(ctx, sc->ecdh)) {
		ssl_err(err, errlen, "invalid client_tls_ecdhcurve", sc->ecdh);
		return false;
	}
	if (!set(sc->dh) || strcasecmp(sc->dh, "auto") == 0 || strcasecmp(sc->dh, "legacy") == 0) {
		/* legacy: same as auto; OpenSSL 3 no longer offers sub-2048-bit groups. */
		SSL_CTX_set_dh_auto(ctx, 1);
	} else if (strcasecmp(sc->dh, "none") == 0) {
		SSL_CTX_set_dh_auto(ctx, 0);
	} else {
		snprintf(err, errlen, "invalid client_tls_dheparams: %s", sc->dh);
		return false;
	}
	return true;
}

static bool load_keypair(SSL_CTX *ctx, const struct side_conf *sc, char *err, size_t errlen)
{
	if (!set(sc->cert) && !set(sc->key))
		return true;
	if (!SSL_CTX_use_certificate_chain_file(ctx, sc->cert)) {
		ssl_err(err, errlen, "cannot load certificate", sc->cert);
		return false;
	}
	if (!SSL_CTX_use_PrivateKey_file(ctx, sc->key, SSL_FILETYPE_PEM)) {
		ssl_err(err, errlen, "cannot load private key", sc->key);
		return false;
	}
	if (!SSL_CTX_check_private_key(ctx)) {
		ssl_err(err, errlen, "private key does not match certificate", sc->cert);
		return false;
	}
	return true;
}

/* allow / prefer / require: a client certificate is asked for but never checked. */
static int accept_any_cert(int ok, X509_STORE_CTX *x)
{
	return 1;
}

/* PostgreSQL 17 clients offer ALPN "postgresql"; a client offering only others is refused. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int i = 0;
	while (i < inlen) {
		unsigned int n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == ALPN_PG_LEN - 1 && memcmp(in + i + 1, alpn_pg + 1, n) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)n;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static bool setup_verify(SSL_CTX *ctx, const struct side_conf *sc, char *err, size_t errlen)
{
	bool verify = sc->mode >= SSLMODE_VERIFY_CA;

	if (set(sc->ca) && !SSL_CTX_load_verify_locations(ctx, sc->ca, NULL)) {
		ssl_err(err, errlen, "cannot load CA file", sc->ca);
		return false;
	}
	if (!sc->accept) {
		if (verify && !set(sc->ca) && !SSL_CTX_set_default_verify_paths(ctx)) {
			ssl_err(err, errlen, "cannot load the system CA store", NULL);
			return false;
		}
		SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
		return true;
	}
	if (set(sc->ca)) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(sc->ca);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		ERR_clear_error();
	}
	if (verify)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else if (set(sc->ca))
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_cert);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return true;
}

/* The per-spec checks that make a configuration unusable. */
static bool check_side(const struct side_conf *sc, enum auth_type at, char *err, size_t errlen)
{
	if (!sc->accept)
		return true;
	if (at == AUTH_CERT && (sc->mode != SSLMODE_VERIFY_FULL || !set(sc->ca))) {
		snprintf(err, errlen,
		         "auth_type=cert requires client_tls_sslmode=verify-full "
		         "and client_tls_ca_file");
		return false;
	}
	if (sc->mode == SSLMODE_DISABLE)
		return true;
	if (!set(sc->key) || !set(sc->cert)) {
		snprintf(err, errlen,
		         "client_tls_sslmode=%s requires client_tls_key_file and "
		         "client_tls_cert_file",
		         ssl_mode_name(sc->mode));
		return false;
	}
	if (sc->mode == SSLMODE_VERIFY_FULL && !set(sc->ca)) {
		snprintf(err, errlen, "client_tls_sslmode=verify-full requires client_tls_ca_file");
		return false;
	}
	return true;
}

static SSL_CTX *build_ctx(const struct side_conf *sc, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(sc->accept ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		ssl_err(err, errlen, "cannot create TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                             SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* sbuf.c retries a write from its output queue, which may have moved or grown. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                          SSL_MODE_RELEASE_BUFFERS);
	if (sc->accept) {
		/* No resumption: no tickets to write after the handshake, no session cache. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	}
	if (!set_protocols(ctx, sc->protocols, err, errlen) || !set_ciphers(ctx, sc, err, errlen) ||
	    (sc->accept && !set_kex(ctx, sc, err, errlen)) || !load_keypair(ctx, sc, err, errlen) ||
	    !setup_verify(ctx, sc, err, errlen)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Build one side if enabled: *out NULL when the side is disabled. */
static bool build_side(const struct side_conf *sc, enum auth_type at, SSL_CTX **out, char *err,
                       size_t errlen)
{
	*out = NULL;
	if (!check_side(sc, at, err, errlen))
		return false;
	if (sc->mode == SSLMODE_DISABLE)
		return true;
	*out = build_ctx(sc, err, errlen);
	return *out != NULL;
}

static void tag_close_needed(struct pv_socket *s, void *arg)
{
	s->close_needed = true;
}

/* Build from G.cf; on success swap in; *server_changed says servers must be recycled. */
static bool apply(bool *server_changed, bool *unchanged, char *err, size_t errlen)
{
	struct side_conf cs, ss;
	SSL_CTX *nc = NULL, *ns = NULL;
	char *cfp, *sfp;
	bool same_c, same_s;

	side_from_config(G.cf, true, &cs);
	side_from_config(G.cf, false, &ss);
	cfp = side_fingerprint(&cs, G.cf->auth_type);
	sfp = side_fingerprint(&ss, AUTH_ANY);
	if (!cfp || !sfp) {
		free(cfp);
		free(sfp);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	same_c = client_fp && strcmp(cfp, client_fp) == 0;
	same_s = server_fp && strcmp(sfp, server_fp) == 0;
	*unchanged = same_c && same_s;
	*server_changed = !same_s;
	if (*unchanged || (!same_c && !build_side(&cs, G.cf->auth_type, &nc, err, errlen)) ||
	    (!same_s && !build_side(&ss, AUTH_ANY, &ns, err, errlen))) {
		SSL_CTX_free(nc);
		free(cfp);
		free(sfp);
		return *unchanged;
	}
	if (!same_c) {
		SSL_CTX_free(client_ctx);
		client_ctx = nc;
	}
	if (!same_s) {
		SSL_CTX_free(server_ctx);
		server_ctx = ns;
	}
	free(client_fp);
	free(server_fp);
	client_fp = cfp;
	server_fp = sfp;
	return true;
}

bool tls_setup(char *err, size_t errlen)
{
	bool changed, unchanged;
	return apply(&changed, &unchanged, err, errlen);
}

void tls_reload(void)
{
	char err[512];
	bool server_changed, unchanged;
	if (!apply(&server_changed, &unchanged, err, sizeof(err))) {
		log_error("TLS setup failed: %s", err);
		return;
	}
	if (unchanged)
		return;
	log_info("TLS configuration reloaded");
	if (server_changed)
		admin_for_each_server(tag_close_needed, NULL);
}

void tls_cleanup(void)
{
	SSL_CTX_free(client_ctx);
	SSL_CTX_free(server_ctx);
	client_ctx = server_ctx = NULL;
	free(client_fp);
	free(server_fp);
	client_fp = server_fp = NULL;
}

bool tls_client_enabled(void)
{
	return client_ctx && G.cf->client_tls_sslmode != SSLMODE_DISABLE;
}

bool tls_server_wanted(const struct pv_socket *s)
{
	return G.cf->server_tls_sslmode != SSLMODE_DISABLE && !s->is_unix;
}

/* --- per socket ---------------------------------------------------------------------- */

static bool is_ip_literal(const char *host)
{
	unsigned char tmp[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

/* verify-full: the server certificate must name the host; SNI only for DNS names. */
static bool set_peer_host(SSL *ssl, const char *host)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	if (is_ip_literal(host))
		return X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1;
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return X509_VERIFY_PARAM_set1_host(vp, host, 0) == 1 &&
	       SSL_set_tlsext_host_name(ssl, host) == 1;
}

bool tls_start(struct pv_socket *s, char *err, size_t errlen)
{
	SSL_CTX *ctx = s->is_server ? server_ctx : client_ctx;
	SSL *ssl;

	ERR_clear_error();
	if (!ctx) {
		snprintf(err, errlen, "TLS is not set up");
		return false;
	}
	ssl = SSL_new(ctx);
	if (!ssl || !SSL_set_fd(ssl, s->fd)) {
		SSL_free(ssl);
		ssl_err(err, errlen, "cannot create TLS connection", NULL);
		return false;
	}
	if (s->is_server && G.cf->server_tls_sslmode == SSLMODE_VERIFY_FULL &&
	    (!s->srv->tls_host || !set_peer_host(ssl, s->srv->tls_host))) {
		SSL_free(ssl);
		ssl_err(err, errlen, "cannot set TLS host name", s->srv->tls_host);
		return false;
	}
	if (s->is_server)
		SSL_set_connect_state(ssl);
	else
		SSL_set_accept_state(ssl);
	s->tls = ssl;
	s->tls_state = PV_TLS_HANDSHAKE;
	return true;
}

static void handshake_error(struct pv_socket *s, char *err, size_t errlen, int e)
{
	long vr = SSL_get_verify_result(s->tls);
	s->tls_broken = true;
	if (vr != X509_V_OK && (s->is_server || SSL_get0_peer_certificate(s->tls))) {
		snprintf(err, errlen, "certificate verify failed: %s",
		         X509_verify_cert_error_string(vr));
		ERR_clear_error();
	} else if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
		snprintf(err, errlen, "connection closed during TLS handshake");
	} else {
		ssl_err(err, errlen, "TLS handshake failed", NULL);
	}
}

enum tls_hs_result tls_handshake(struct pv_socket *s, char *err, size_t errlen)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(s->tls);
	if (r == 1) {
		const unsigned char *alpn = NULL;
		unsigned int alen = 0;
		SSL_get0_alpn_selected(s->tls, &alpn, &alen);
		/* PostgreSQL 17 refuses direct TLS without ALPN: a pre-17 client cannot mean it. */
		if (s->tls_direct && !alen) {
			snprintf(err, errlen, "direct TLS connection without ALPN \"postgresql\"");
			return TLS_HS_FAILED;
		}
		s->tls_state = PV_TLS_OPEN;
		return TLS_HS_DONE;
	}
	e = SSL_get_error(s->tls, r);
	if (e == SSL_ERROR_WANT_READ)
		return TLS_HS_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TLS_HS_WANT_WRITE;
	handshake_error(s, err, errlen, e);
	return TLS_HS_FAILED;
}

/* Map SSL_get_error() to recv()/send() conventions. */
static ssize_t io_result(struct pv_socket *s, int r, bool writing)
{
	int e = SSL_get_error(s->tls, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		if (writing)
			s->tls_write_wants_read = true;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		if (!writing)
			s->tls_read_wants_write = true;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN: /* close_notify: a clean end */
		if (!writing)
			return 0;
		errno = EPIPE;
		return -1;
	case SSL_ERROR_SYSCALL:
		s->tls_broken = true;
		if (!errno || errno == EAGAIN)
			errno = ECONNRESET;
		return -1;
	default:
		s->tls_broken = true;
		errno = EPROTO;
		return -1;
	}
}

ssize_t tls_recv(struct pv_socket *s, void *buf, size_t len)
{
	int r;
	if (s->tls_state != PV_TLS_OPEN || s->tls_broken) {
		errno = s->tls_broken ? EPROTO : EAGAIN;
		return -1;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_read(s->tls, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (r > 0)
		return r;
	return io_result(s, r, false);
}

ssize_t tls_send(struct pv_socket *s, const void *buf, size_t len)
{
	int r;
	if (s->tls_state != PV_TLS_OPEN || s->tls_broken) {
		errno = s->tls_broken ? EPIPE : EAGAIN;
		return -1;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_write(s->tls, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (r > 0)
		return r;
	return io_result(s, r, true);
}

bool tls_pending(const struct pv_socket *s)
{
	return s->tls && s->tls_state == PV_TLS_OPEN && SSL_pending(s->tls) > 0;
}

bool tls_has_input(const struct pv_socket *s)
{
	return s->tls && s->tls_state == PV_TLS_OPEN && SSL_has_pending(s->tls);
}

void tls_shutdown(struct pv_socket *s)
{
	if (!s->tls || s->tls_state != PV_TLS_OPEN || s->tls_broken)
		return;
	ERR_clear_error();
	(void)SSL_shutdown(s->tls);
	ERR_clear_error();
}

void tls_free(struct pv_socket *s)
{
	SSL_free(s->tls);
	s->tls = NULL;
	if (s->srv) {
		free(s->srv->tls_host);
		s->srv->tls_host = NULL;
	}
}

bool tls_info(const struct pv_socket *s, char *buf, size_t len)
{
	int nid;
	const char *curve = NULL;

	if (len)
		buf[0] = '\0';
	if (!s->tls || s->tls_state != PV_TLS_OPEN)
		return false;
	nid = SSL_get_negotiated_group(s->tls);
	if (nid > 0 && !(nid & TLSEXT_nid_unknown))
		curve = OBJ_nid2sn(nid);
	snprintf(buf, len, "%s/%s%s%s", SSL_get_version(s->tls), SSL_get_cipher_name(s->tls),
	         curve ? "/ECDH=" : "", curve ? curve : "");
	return true;
}

bool tls_peer_cn(struct pv_socket *s, char *buf, size_t len)
{
	X509 *cert;
	X509_NAME *name;
	X509_NAME_ENTRY *ent;
	unsigned char *utf8 = NULL;
	int idx, n;
	bool ok;

	if (!s->tls || s->tls_state != PV_TLS_OPEN || SSL_get_verify_result(s->tls) != X509_V_OK)
		return false;
	cert = SSL_get0_peer_certificate(s->tls);
	name = cert ? X509_get_subject_name(cert) : NULL;
	idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	ent = idx >= 0 ? X509_NAME_get_entry(name, idx) : NULL;
	if (!ent)
		return false;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(ent));
	/* An embedded NUL could make "admin\0.evil" look like "admin". */
	ok = n >= 0 && (size_t)n < len && memchr(utf8, '\0', (size_t)n) == NULL;
	if (ok) {
		memcpy(buf, utf8, (size_t)n);
		buf[n] = '\0';
	}
	OPENSSL_free(utf8);
	return ok;
}
