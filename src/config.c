/*
 * config.c - the pgbouncer.ini loader.
 *
 * One sorted table describes every [pgbouncer] key (type, struct offset,
 * default text, reloadable). The same table drives loading, defaults, admin
 * SET, SHOW CONFIG and RELOAD's "keep non-reloadable keys", so a key exists in
 * exactly one place. [databases], [users] and [peers] entries are libpq-style
 * "key=value ..." strings described by smaller tables of the same shape.
 *
 * The whole file is parsed into a fresh struct pv_config; any error discards
 * it, so callers never see a half-loaded configuration.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_INCLUDE_DEPTH 10
/* Config files are small; the cap only stops %include of a huge file. */
#define MAX_FILE_SIZE (64 * 1024 * 1024)

/* --- Value types and enum name tables ------------------------------------- */

enum cf_type {
	CF_INT,    /* int, base auto-detected */
	CF_BOOL,   /* int 0/1 */
	CF_OCTAL,  /* int, shown in octal (unix_socket_mode) */
	CF_INT64,  /* int64_t */
	CF_TIME,   /* usec_t, file gives float seconds */
	CF_STR,    /* char *, never NULL */
	CF_STRN,   /* char *, NULL when unset or empty */
	CF_ENUM,   /* an enum, by case-insensitive name */
	CF_CHECKQ, /* server_check_query (see config.h) */
};

struct cf_enum {
	const char *name;
	int value;
};

/* Lookup tables end with a NULL name. Only accepted spellings are listed. */
static const struct cf_enum auth_type_names[] = {
	{"any", AUTH_ANY}, {"trust", AUTH_TRUST}, {"plain", AUTH_PLAIN}, {"md5", AUTH_MD5},
	{"scram-sha-256", AUTH_SCRAM_SHA_256}, {"cert", AUTH_CERT}, {"hba", AUTH_HBA},
	{"oidc", AUTH_OIDC}, {NULL, 0},
};

static const struct cf_enum pool_mode_names[] = {
	{"session", POOL_SESSION}, {"transaction", POOL_TRANSACTION},
	{"statement", POOL_STATEMENT}, {NULL, 0},
};

static const struct cf_enum ssl_mode_names[] = {
	{"disable", SSLMODE_DISABLE}, {"allow", SSLMODE_ALLOW}, {"prefer", SSLMODE_PREFER},
	{"require", SSLMODE_REQUIRE}, {"verify-ca", SSLMODE_VERIFY_CA},
	{"verify-full", SSLMODE_VERIFY_FULL}, {NULL, 0},
};

static const struct cf_enum lb_hosts_names[] = {
	{"round-robin", LB_ROUND_ROBIN}, {"disable", LB_DISABLE}, {NULL, 0},
};

/* Enum fields are stored through an int pointer by the generic code. */
_Static_assert(sizeof(enum auth_type) == sizeof(int), "enum size");
_Static_assert(sizeof(enum pool_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum ssl_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum lb_hosts) == sizeof(int), "enum size");

/* --- The [pgbouncer] key table (alphabetical: SHOW CONFIG prints it in order) --- */

struct cf_key {
	const char *name;
	enum cf_type type;
	size_t off;
	const char *def; /* default as file text; NULL = unset */
	bool reload;
	const struct cf_enum *enums;
};

/*
 * offsetof plus a compile-time check that the field has C type T, so a table
 * row can never write an int into a char * or the like.
 */
#define FIELD(S, f, T)                                                                             \
	(offsetof(S, f) + 0 * sizeof(char[_Generic(((S *)0)->f, T: 1, default: -1)]))
#define PF(f, T) FIELD(struct pv_config, f, T)

#define K_INT(f, d, r) {#f, CF_INT, PF(f, int), d, r, NULL}
#define K_BOOL(f, d, r) {#f, CF_BOOL, PF(f, int), d, r, NULL}
#define K_OCT(f, d, r) {#f, CF_OCTAL, PF(f, int), d, r, NULL}
#define K_I64(f, d, r) {#f, CF_INT64, PF(f, int64_t), d, r, NULL}
#define K_TIME(f, d, r) {#f, CF_TIME, PF(f, usec_t), d, r, NULL}
#define K_STR(f, d, r) {#f, CF_STR, PF(f, char *), d, r, NULL}
#define K_STRN(f, r) {#f, CF_STRN, PF(f, char *), NULL, r, NULL}
#define K_ENUM(f, T, tab, d, r) {#f, CF_ENUM, PF(f, T), d, r, tab}

#ifdef __linux__
#define DEFER_ACCEPT_DEFAULT "1"
#else
#define DEFER_ACCEPT_DEFAULT "0"
#endif

#define AUTH_QUERY_DEFAULT                                                                         \
	"SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END "          \
	"FROM pg_authid WHERE rolname=$1 AND rolcanlogin"

static const struct cf_key keys[] = {
	K_STR(admin_users, "", true),
	K_BOOL(application_name_add_host, "0", true),
	K_STRN(auth_dbname, true),
	K_STRN(auth_file, true),
	K_STR(auth_hba_file, "", true),
	K_STRN(auth_ident_file, true),
	K_STR(auth_ldap_options, "", true),
	K_STR(auth_query, AUTH_QUERY_DEFAULT, true),
	K_ENUM(auth_type, enum auth_type, auth_type_names, "md5", true),
	K_STRN(auth_user, true),
	K_TIME(autodb_idle_timeout, "3600", true),
	K_TIME(cancel_wait_timeout, "10", true),
	K_TIME(client_idle_timeout, "0", true),
	K_TIME(client_login_timeout, "60", true),
	K_STR(client_tls13_ciphers, "", true),
	K_STR(client_tls_ca_file, "", true),
	K_STR(client_tls_cert_file, "", true),
	K_STR(client_tls_ciphers, "default", true),
	K_STR(client_tls_dheparams, "auto", true),
	K_STR(client_tls_ecdhcurve, "auto", true),
	K_STR(client_tls_key_file, "", true),
	K_STR(client_tls_protocols, "secure", true),
	K_ENUM(client_tls_sslmode, enum ssl_mode, ssl_mode_names, "disable", true),
	/* conffile has no default of its own: the loader sets the path. */
	{"conffile", CF_STR, PF(conffile, char *), NULL, true, NULL},
	K_INT(default_pool_size, "20", true),
	K_BOOL(disable_pqexec, "0", false),
	K_TIME(dns_max_ttl, "15", true),
	K_TIME(dns_nxdomain_ttl, "15", true),
	K_TIME(dns_zone_check_period, "0", true),
	K_STR(governance_file, "", true),
	K_TIME(idle_transaction_timeout, "0", true),
	K_STR(ignore_startup_parameters, "", true),
	K_STR(job_name, "pgbouncer", false),
	K_STR(listen_addr, "", false),
	K_INT(listen_backlog, "128", false),
	K_INT(listen_port, "6432", false),
	K_BOOL(log_connections, "1", true),
	K_BOOL(log_disconnections, "1", true),
	K_BOOL(log_pooler_errors, "1", true),
	K_BOOL(log_stats, "1", true),
	K_STR(logfile, "", true),
	K_STR(login_notify_message, "", true),
	K_INT(max_client_conn, "100", true),
	K_INT(max_db_client_connections, "0", true),
	K_INT(max_db_connections, "0", true),
	K_I64(max_packet_size, "2147483647", true),
	K_INT(max_prepared_statements, "200", true),
	K_INT(max_user_client_connections, "0", true),
	K_INT(max_user_connections, "0", true),
	K_STR(metrics_listen_addr, "", false), /* pgvigil: Prometheus endpoint, "" = off */
	K_INT(metrics_listen_port, "9127", false),
	K_INT(min_pool_size, "0", true),
	K_INT(peer_id, "0", true),
	K_STR(pidfile, "", false),
	K_INT(pkt_buf, "4096", false),
	K_TIME(pool_idle_timeout, "0", true),
	K_ENUM(pool_mode, enum pool_mode, pool_mode_names, "session", true),
	K_TIME(query_timeout, "0", true),
	K_INT(query_wait_notify, "5", true),
	K_TIME(query_wait_timeout, "120", true),
	K_INT(reserve_pool_size, "0", true),
	K_TIME(reserve_pool_timeout, "5", true),
	K_STR(resolv_conf, "", false),
	K_INT(sbuf_loopcnt, "5", true),
	K_INT(scram_iterations, "4096", true),
	K_TIME(server_check_delay, "30", true),
	{"server_check_query", CF_CHECKQ, PF(server_check_query, char *), "<empty>", true, NULL},
	K_TIME(server_connect_timeout, "15", true),
	K_BOOL(server_fast_close, "0", true),
	K_TIME(server_idle_timeout, "600", true),
	K_TIME(server_lifetime, "3600", true),
	K_TIME(server_login_retry, "15", true),
	K_STR(server_reset_query, "DISCARD ALL", true),
	K_BOOL(server_reset_query_always, "0", true),
	K_BOOL(server_round_robin, "0", true),
	K_STR(server_tls13_ciphers, "", true),
	K_STR(server_tls_ca_file, "", true),
	K_STR(server_tls_cert_file, "", true),
	K_STR(server_tls_ciphers, "default", true),
	K_STR(server_tls_key_file, "", true),
	K_STR(server_tls_protocols, "secure", true),
	K_ENUM(server_tls_sslmode, enum ssl_mode, ssl_mode_names, "prefer", true),
	K_BOOL(so_reuseport, "0", false),
	K_INT(stats_period, "60", true),
	K_STR(stats_users, "", true),
	K_TIME(suspend_timeout, "10", true),
	K_BOOL(syslog, "0", true),
	K_STR(syslog_facility, "daemon", true),
	K_STR(syslog_ident, "pgbouncer", true),
	/* An int, not a bool: PgBouncer accepts any number (non-zero = 45 s). */
	K_INT(tcp_defer_accept, DEFER_ACCEPT_DEFAULT, true),
	K_BOOL(tcp_keepalive, "1", true),
	K_INT(tcp_keepcnt, "0", true),
	K_INT(tcp_keepidle, "0", true),
	K_INT(tcp_keepintvl, "0", true),
	K_INT(tcp_socket_buffer, "0", true),
	K_INT(tcp_user_timeout, "0", true),
	K_STR(track_extra_parameters, "IntervalStyle", false),
	K_TIME(transaction_timeout, "0", true),
	K_STR(unix_socket_dir, "/tmp", false),
	K_STR(unix_socket_group, "", false),
	K_OCT(unix_socket_mode, "0777", false),
	K_STRN(user, false),
	K_INT(verbose, "0", true),
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

size_t config_key_count(void)
{
	return NKEYS;
}

/* --- Entry key tables: [databases], [users], [peers] ---------------------- */

enum cs_type {
	CS_STR,	 /* char *, NULL when unset */
	CS_INT,	 /* int */
	CS_PORT, /* int 1..65535 */
	CS_TIME, /* usec_t */
	CS_POOL, /* enum pool_mode */
	CS_LB,	 /* enum lb_hosts, also sets load_balance_hosts_set */
};

struct cs_key {
	const char *name;
	enum cs_type type;
	size_t off;
};

#define DF(f, T) FIELD(struct db_conf, f, T)
#define UF(f, T) FIELD(struct user_conf, f, T)
#define EF(f, T) FIELD(struct peer_conf, f, T)

static const struct cs_key db_keys[] = {
	{"dbname", CS_STR, DF(dbname, char *)},
	{"host", CS_STR, DF(host, char *)},
	{"port", CS_PORT, DF(port, int)},
	{"user", CS_STR, DF(user, char *)},
	{"password", CS_STR, DF(password, char *)},
	{"auth_user", CS_STR, DF(auth_user, char *)},
	{"auth_query", CS_STR, DF(auth_query, char *)},
	{"auth_dbname", CS_STR, DF(auth_dbname, char *)},
	{"client_encoding", CS_STR, DF(client_encoding, char *)},
	{"datestyle", CS_STR, DF(datestyle, char *)},
	{"timezone", CS_STR, DF(timezone, char *)},
	{"application_name", CS_STR, DF(application_name, char *)},
	{"connect_query", CS_STR, DF(connect_query, char *)},
	{"pool_size", CS_INT, DF(pool_size, int)},
	{"min_pool_size", CS_INT, DF(min_pool_size, int)},
	{"reserve_pool_size", CS_INT, DF(reserve_pool_size, int)},
	{"reserve_pool", CS_INT, DF(reserve_pool_size, int)}, /* old alias */
	{"max_db_connections", CS_INT, DF(max_db_connections, int)},
	{"max_db_client_connections", CS_INT, DF(max_db_client_connections, int)},
	{"query_wait_timeout", CS_TIME, DF(query_wait_timeout, usec_t)},
	{"server_lifetime", CS_TIME, DF(server_lifetime, usec_t)},
	{"pool_mode", CS_POOL, DF(pool_mode, enum pool_mode)},
	{"load_balance_hosts", CS_LB, DF(load_balance_hosts, enum lb_hosts)},
	{NULL, CS_STR, 0},
};

static const struct cs_key user_keys[] = {
	{"pool_mode", CS_POOL, UF(pool_mode, enum pool_mode)},
	{"pool_size", CS_INT, UF(pool_size, int)},
	{"reserve_pool_size", CS_INT, UF(reserve_pool_size, int)},
	{"max_user_connections", CS_INT, UF(max_user_connections, int)},
	{"max_user_client_connections", CS_INT, UF(max_user_client_connections, int)},
	{"query_timeout", CS_TIME, UF(query_timeout, usec_t)},
	{"query_wait_timeout", CS_TIME, UF(query_wait_timeout, usec_t)},
	{"idle_transaction_timeout", CS_TIME, UF(idle_transaction_timeout, usec_t)},
	{"transaction_timeout", CS_TIME, UF(transaction_timeout, usec_t)},
	{"client_idle_timeout", CS_TIME, UF(client_idle_timeout, usec_t)},
	{NULL, CS_STR, 0},
};

static const struct cs_key peer_keys[] = {
	{"host", CS_STR, EF(host, char *)},
	{"port", CS_PORT, EF(port, int)},
	{"pool_size", CS_INT, EF(pool_size, int)},
	{NULL, CS_STR, 0},
};

/* --- Scalar parsing (shared by all sections and admin SET) ---------------- */

static bool parse_int64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

static bool parse_int(const char *s, int *out)
{
	int64_t v;

	if (!parse_int64(s, &v) || v < INT_MIN || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

static bool parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"1", "on", "true", "yes"};
	static const char *const no[] = {"0", "off", "false", "no"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return true;
		}
	}
	return false;
}

/* Seconds as a float ("0.5") to microseconds. */
static bool parse_time(const char *s, usec_t *out)
{
	char *end;
	double d;

	if (*s == '\0')
		return false;
	errno = 0;
	d = strtod(s, &end);
	/*
	 * Past ~292000 years microseconds no longer fit in 64 bits; the range test
	 * also rejects inf and (d != d) NaN. Rounding by hand avoids needing libm.
	 */
	if (errno != 0 || *end != '\0' || d != d || d > 9.0e12 || d < -9.0e12)
		return false;
	d *= (double)USEC_PER_SEC;
	*out = (usec_t)(d < 0 ? d - 0.5 : d + 0.5);
	return true;
}

static bool parse_enum(const struct cf_enum *tab, const char *s, int *out)
{
	for (; tab->name; tab++) {
		if (strcasecmp(tab->name, s) == 0) {
			*out = tab->value;
			return true;
		}
	}
	return false;
}

static const char *enum_name(const struct cf_enum *tab, int v)
{
	for (; tab->name; tab++)
		if (tab->value == v)
			return tab->name;
	return "unknown";
}

const char *pool_mode_name(enum pool_mode m)
{
	return enum_name(pool_mode_names, (int)m);
}

const char *auth_type_name(enum auth_type t)
{
	/* HBA-only methods are not in the [pgbouncer] lookup table. */
	if (t == AUTH_PEER)
		return "peer";
	if (t == AUTH_REJECT)
		return "reject";
	return enum_name(auth_type_names, (int)t);
}

const char *ssl_mode_name(enum ssl_mode m)
{
	return enum_name(ssl_mode_names, (int)m);
}

const char *lb_hosts_name(enum lb_hosts l)
{
	return enum_name(lb_hosts_names, (int)l);
}

/* ---------------------------------------------------------------------------
 * Setting one [pgbouncer] key: parse fully first, then store, so a bad value
 * never leaves the field half-changed.
 */

#define FIELD_PTR(base, k, T) ((T *)(void *)((char *)(base) + (k)->off))

/* Replace a string field; NULL value stores NULL. false on ENOMEM. */
static bool store_str(char **slot, const char *value)
{
	char *copy = NULL;

	if (value) {
		copy = strdup(value);
		if (!copy)
			return false;
	}
	free(*slot);
	*slot = copy;
	return true;
}

static bool set_enum(const struct cf_key *k, struct pv_config *cf, const char *v, char *msg,
		     size_t len)
{
	int e;

	if (k->enums == auth_type_names &&
	    (strcasecmp(v, "ldap") == 0 || strcasecmp(v, "pam") == 0)) {
		snprintf(msg, len, "auth_type %s is not supported by this build", v);
		return false;
	}
	if (!parse_enum(k->enums, v, &e)) {
		snprintf(msg, len, "invalid value '%s' for %s", v, k->name);
		return false;
	}
	*FIELD_PTR(cf, k, int) = e;
	return true;
}

static bool set_check_query(struct pv_config *cf, const char *v, char *msg, size_t len)
{
	bool disabled = (*v == '\0');

	if (strcmp(v, "<empty>") == 0)
		v = "";
	if (!store_str(&cf->server_check_query, v)) {
		snprintf(msg, len, "out of memory");
		return false;
	}
	cf->server_check_query_disabled = disabled;
	return true;
}

static bool set_string(const struct cf_key *k, struct pv_config *cf, const char *v, char *msg,
		       size_t len)
{
	if (k->type == CF_STRN && *v == '\0')
		v = NULL;
	if (!store_str(FIELD_PTR(cf, k, char *), v)) {
		snprintf(msg, len, "out of memory");
		return false;
	}
	return true;
}

static bool set_number(const struct cf_key *k, struct pv_config *cf, const char *v, char *msg,
		       size_t len)
{
	int i = 0;
	int64_t l = 0;
	bool ok;

	switch (k->type) {
	case CF_BOOL:
		ok = parse_bool(v, &i);
		break;
	case CF_INT64:
		ok = parse_int64(v, &l);
		break;
	case CF_TIME:
		ok = parse_time(v, &l);
		break;
	default:
		ok = parse_int(v, &i);
		break;
	}
	if (!ok) {
		snprintf(msg, len, "invalid value '%s' for %s", v, k->name);
		return false;
	}
	if (k->type == CF_INT64 || k->type == CF_TIME)
		*FIELD_PTR(cf, k, int64_t) = l;
	else
		*FIELD_PTR(cf, k, int) = i;
	return true;
}

static bool set_value(const struct cf_key *k, struct pv_config *cf, const char *v, char *msg,
		      size_t len)
{
	switch (k->type) {
	case CF_STR:
	case CF_STRN:
		return set_string(k, cf, v, msg, len);
	case CF_CHECKQ:
		return set_check_query(cf, v, msg, len);
	case CF_ENUM:
		return set_enum(k, cf, v, msg, len);
	default:
		return set_number(k, cf, v, msg, len);
	}
}

static const struct cf_key *find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* (Re)apply every default. conffile (no default) is left alone. */
static bool apply_defaults(struct pv_config *cf, char *msg, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct cf_key *k = &keys[i];

		if (k->def == NULL && k->type != CF_STRN)
			continue;
		if (!set_value(k, cf, k->def ? k->def : "", msg, len))
			return false;
	}
	return true;
}

/* --- SHOW CONFIG formatting ----------------------------------------------- */

static void format_value(const struct cf_key *k, const struct pv_config *cf, char *out,
			 size_t len)
{
	const char *s;

	switch (k->type) {
	case CF_STR:
	case CF_STRN:
		s = *FIELD_PTR(cf, k, char *const);
		snprintf(out, len, "%s", s ? s : "");
		break;
	case CF_CHECKQ:
		s = cf->server_check_query ? cf->server_check_query : "";
		if (!cf->server_check_query_disabled && *s == '\0')
			s = "<empty>";
		snprintf(out, len, "%s", s);
		break;
	case CF_ENUM:
		snprintf(out, len, "%s", enum_name(k->enums, *FIELD_PTR(cf, k, const int)));
		break;
	case CF_OCTAL:
		snprintf(out, len, "%#o", (unsigned)*FIELD_PTR(cf, k, const int));
		break;
	case CF_INT64:
		snprintf(out, len, "%lld", (long long)*FIELD_PTR(cf, k, const int64_t));
		break;
	case CF_TIME:
		snprintf(out, len, "%g", (double)*FIELD_PTR(cf, k, const usec_t) / USEC_PER_SEC);
		break;
	default:
		snprintf(out, len, "%d", *FIELD_PTR(cf, k, const int));
		break;
	}
}

/*
 * The default column goes through the same parse + format path as the value,
 * so "0777" and "3600" print exactly like a current value would.
 */
static void format_default(const struct cf_key *k, const struct pv_config *cf, char *out,
			   size_t len)
{
	struct pv_config tmp;
	char msg[8];

	if (k->def == NULL) {
		/* conffile: its default is the path from the command line. */
		format_value(k, cf, out, len);
		return;
	}
	if (k->type == CF_STR || k->type == CF_STRN || k->type == CF_CHECKQ) {
		snprintf(out, len, "%s", k->def);
		return;
	}
	/* Numbers and enums allocate nothing, so a zeroed scratch struct will do. */
	memset(&tmp, 0, sizeof(tmp));
	set_value(k, &tmp, k->def, msg, sizeof(msg));
	format_value(k, &tmp, out, len);
}

bool config_row_at(const struct pv_config *cf, size_t index, struct config_row *row)
{
	const struct cf_key *k;

	if (index >= NKEYS)
		return false;
	k = &keys[index];
	row->key = k->name;
	row->changeable = k->reload;
	format_value(k, cf, row->value, sizeof(row->value));
	format_default(k, cf, row->default_value, sizeof(row->default_value));
	return true;
}

bool config_set_key(struct pv_config *cf, const char *key, const char *value, char *err,
		    size_t errlen)
{
	const struct cf_key *k = find_key(key);
	char dummy[1];

	if (!err || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	if (!k) {
		snprintf(err, errlen, "unknown config parameter: %s", key);
		return false;
	}
	/* PgBouncer ignores non-reloadable keys after startup yet reports success. */
	if (!k->reload)
		return true;
	return set_value(k, cf, value, err, errlen);
}

/* --- Object lifetime ------------------------------------------------------ */

static void db_free(struct db_conf *db)
{
	for (const struct cs_key *k = db_keys; k->name; k++)
		if (k->type == CS_STR)
			free(*FIELD_PTR(db, k, char *));
	free(db->name);
	free(db);
}

static void user_free(struct user_conf *u)
{
	free(u->name);
	free(u);
}

static void peer_free(struct peer_conf *p)
{
	free(p->host);
	free(p);
}

void config_free(struct pv_config *cf)
{
	struct list_head *pos, *tmp;

	if (!cf)
		return;
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].type == CF_STR || keys[i].type == CF_STRN ||
		    keys[i].type == CF_CHECKQ)
			free(*FIELD_PTR(cf, &keys[i], char *));
	list_for_each_safe(pos, tmp, &cf->databases)
		db_free(container_of(pos, struct db_conf, node));
	list_for_each_safe(pos, tmp, &cf->users)
		user_free(container_of(pos, struct user_conf, node));
	list_for_each_safe(pos, tmp, &cf->peers)
		peer_free(container_of(pos, struct peer_conf, node));
	free(cf);
}

static struct pv_config *config_new(const char *conffile, char *msg, size_t len)
{
	struct pv_config *cf = calloc(1, sizeof(*cf));

	if (!cf) {
		snprintf(msg, len, "out of memory");
		return NULL;
	}
	list_init(&cf->databases);
	list_init(&cf->users);
	list_init(&cf->peers);
	/* Defaults first, so even a rejected file yields a freeable struct. */
	if (!store_str(&cf->conffile, conffile) || !apply_defaults(cf, msg, len)) {
		snprintf(msg, len, "out of memory");
		config_free(cf);
		return NULL;
	}
	return cf;
}

/* --- The ini parser ------------------------------------------------------- */

enum section { SEC_NONE, SEC_MAIN, SEC_DATABASES, SEC_USERS, SEC_PEERS };

struct parser {
	struct pv_config *cf;
	enum section sec;
	bool seen_main;
	int depth; /* %include nesting */
	const char *origin;
	int line;
	char *err;
	size_t errlen;
};

static bool fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record "origin:line: message"; always returns false. */
static bool fail(struct parser *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%d: %s", p->origin, p->line, msg);
	return false;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static char *skip_space(char *s)
{
	while (is_space(*s))
		s++;
	return s;
}

static void trim_end(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && is_space(s[n - 1]))
		s[--n] = '\0';
}

static bool is_key_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '*' || c == '-';
}

/*
 * Unquote in place: *s points at the opening quote q; a doubled quote (and,
 * for single quotes, a backslash) escapes. Returns the byte after the closing
 * quote, or NULL when it is missing.
 */
static char *unquote(char *s, char q, char **value)
{
	char *r = s + 1, *w = s + 1;

	*value = w;
	for (;;) {
		if (*r == '\0')
			return NULL;
		if (*r == q && r[1] == q) {
			*w++ = q;
			r += 2;
		} else if (*r == q) {
			*w = '\0';
			return r + 1;
		} else if (q == '\'' && *r == '\\' && r[1] != '\0') {
			*w++ = r[1];
			r += 2;
		} else {
			*w++ = *r++;
		}
	}
}

/* Split "key = value" in place. */
static bool split_key_value(struct parser *p, char *line, char **key, char **value)
{
	char *s = line, *key_end = NULL;

	if (*s == '\'' || *s == '"') {
		s = unquote(s, *s, key);
		if (!s)
			return fail(p, "unterminated quoted key");
	} else {
		*key = s;
		while (is_key_char(*s))
			s++;
		if (s == *key)
			return fail(p, "syntax error: invalid character in key");
		key_end = s;
	}
	if (**key == '\0')
		return fail(p, "empty key");
	s = skip_space(s);
	if (*s != '=')
		return fail(p, "syntax error: expected '=' after key '%.*s'",
			    key_end ? (int)(key_end - *key) : (int)strlen(*key), *key);
	/* Terminate only after the '=' check: key_end may be the '=' itself. */
	if (key_end)
		*key_end = '\0';
	*value = skip_space(s + 1);
	trim_end(*value);
	return true;
}

/* --- libpq-style "key=value key='quoted value'" strings ------------------- */

/*
 * Take the next pair from *cur (modified in place). Returns 1 with key/value
 * set, 0 at the end, -1 on a syntax error.
 */
static int next_pair(char **cur, char **key, char **value)
{
	char *s = skip_space(*cur), *key_end;

	if (*s == '\0')
		return 0;
	*key = s;
	while (isalnum((unsigned char)*s) || *s == '_')
		s++;
	key_end = s;
	s = skip_space(s);
	if (key_end == *key || *s != '=')
		return -1;
	*key_end = '\0';
	s = skip_space(s + 1);
	if (*s == '\'') {
		s = unquote(s, '\'', value);
		if (!s || (*s != '\0' && !is_space(*s)))
			return -1;
	} else {
		*value = s;
		while (*s != '\0' && !is_space(*s))
			s++;
	}
	if (*s != '\0')
		*s++ = '\0';
	*cur = s;
	return 1;
}

static const struct cs_key *find_cs_key(const struct cs_key *tab, const char *name)
{
	for (; tab->name; tab++)
		if (strcmp(tab->name, name) == 0)
			return tab;
	return NULL;
}

/* Store one entry value into the struct at `obj`. */
static bool set_cs_value(struct parser *p, const struct cs_key *k, void *obj, const char *v)
{
	int i;
	usec_t t;

	switch (k->type) {
	case CS_STR:
		if (!store_str(FIELD_PTR(obj, k, char *), v))
			return fail(p, "out of memory");
		return true;
	case CS_INT:
		if (!parse_int(v, &i))
			return fail(p, "invalid value '%s' for %s", v, k->name);
		*FIELD_PTR(obj, k, int) = i;
		return true;
	case CS_PORT:
		if (!parse_int(v, &i) || i < 1 || i > 65535)
			return fail(p, "invalid port '%s'", v);
		*FIELD_PTR(obj, k, int) = i;
		return true;
	case CS_TIME:
		if (!parse_time(v, &t))
			return fail(p, "invalid value '%s' for %s", v, k->name);
		*FIELD_PTR(obj, k, usec_t) = t;
		return true;
	case CS_POOL:
		if (!parse_enum(pool_mode_names, v, &i))
			return fail(p, "invalid pool_mode '%s'", v);
		*FIELD_PTR(obj, k, int) = i;
		return true;
	case CS_LB:
		if (!parse_enum(lb_hosts_names, v, &i))
			return fail(p, "invalid load_balance_hosts '%s'", v);
		*FIELD_PTR(obj, k, int) = i;
		((struct db_conf *)obj)->load_balance_hosts_set = true;
		return true;
	}
	return fail(p, "internal error: bad key type");
}

/* Apply every pair of `text` to `obj` using key table `tab`. */
static bool parse_pairs(struct parser *p, const struct cs_key *tab, void *obj, char *text,
			const char *what, const char *name)
{
	char *cur = text, *key, *value;
	const struct cs_key *k;
	int r;

	while ((r = next_pair(&cur, &key, &value)) == 1) {
		k = find_cs_key(tab, key);
		if (!k)
			return fail(p, "unknown parameter '%s' in %s entry '%s'", key, what, name);
		if (!set_cs_value(p, k, obj, value))
			return false;
	}
	if (r < 0)
		return fail(p, "syntax error in %s entry '%s'", what, name);
	return true;
}

/* --- [databases], [users], [peers] ---------------------------------------- */

static struct db_conf *db_new(const char *name)
{
	struct db_conf *db = calloc(1, sizeof(*db));

	if (!db)
		return NULL;
	list_init(&db->node);
	db->name = strdup(name);
	if (!db->name) {
		free(db);
		return NULL;
	}
	db->port = 5432;
	db->pool_size = db->min_pool_size = db->reserve_pool_size = -1;
	db->max_db_connections = db->max_db_client_connections = -1;
	db->query_wait_timeout = db->server_lifetime = -1;
	db->pool_mode = POOL_INHERIT;
	db->load_balance_hosts = LB_ROUND_ROBIN;
	return db;
}

/* A later entry of the same name replaces the earlier one in place. */
static void replace_or_append(struct list_head *head, struct list_head *old, struct list_head *n)
{
	if (old) {
		list_add_between(n, old->prev, old->next);
		list_init(old);
	} else {
		list_append(head, n);
	}
}

static bool add_database(struct parser *p, const char *name, char *value)
{
	struct db_conf *db, *old;

	if (strcmp(name, "pgbouncer") == 0 || strcmp(name, "pgvigil") == 0)
		return fail(p, "database name '%s' is reserved", name);
	db = db_new(name);
	if (!db)
		return fail(p, "out of memory");
	if (!parse_pairs(p, db_keys, db, value, "database", name)) {
		db_free(db);
		return false;
	}
	/* "host=" with nothing means the default unix socket, like no host. */
	if (db->host && db->host[0] == '\0') {
		free(db->host);
		db->host = NULL;
	}
	old = config_find_db(p->cf, name);
	replace_or_append(&p->cf->databases, old ? &old->node : NULL, &db->node);
	if (old)
		db_free(old);
	return true;
}

static bool add_user(struct parser *p, const char *name, char *value)
{
	struct user_conf *u = calloc(1, sizeof(*u)), *old;

	if (!u || !(u->name = strdup(name))) {
		free(u);
		return fail(p, "out of memory");
	}
	list_init(&u->node);
	u->pool_mode = POOL_INHERIT;
	u->pool_size = u->reserve_pool_size = -1;
	u->max_user_connections = u->max_user_client_connections = -1;
	u->query_timeout = u->query_wait_timeout = u->idle_transaction_timeout = -1;
	u->transaction_timeout = u->client_idle_timeout = -1;
	if (!parse_pairs(p, user_keys, u, value, "user", name)) {
		user_free(u);
		return false;
	}
	old = config_find_user(p->cf, name);
	replace_or_append(&p->cf->users, old ? &old->node : NULL, &u->node);
	if (old)
		user_free(old);
	return true;
}

static struct peer_conf *find_peer(const struct pv_config *cf, int id)
{
	struct list_head *pos;

	list_for_each(pos, &cf->peers)
	{
		struct peer_conf *pc = container_of(pos, struct peer_conf, node);
		if (pc->peer_id == id)
			return pc;
	}
	return NULL;
}

static bool add_peer(struct parser *p, const char *name, char *value)
{
	struct peer_conf *pc, *old;
	int id;

	if (!parse_int(name, &id) || id < 1 || id > 65535)
		return fail(p, "invalid peer id '%s' (must be 1..65535)", name);
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return fail(p, "out of memory");
	list_init(&pc->node);
	pc->peer_id = id;
	pc->port = 6432;
	pc->pool_size = -1;
	if (!parse_pairs(p, peer_keys, pc, value, "peer", name)) {
		peer_free(pc);
		return false;
	}
	if (!pc->host || pc->host[0] == '\0') {
		peer_free(pc);
		return fail(p, "peer %d: host is required", id);
	}
	old = find_peer(p->cf, id);
	replace_or_append(&p->cf->peers, old ? &old->node : NULL, &pc->node);
	if (old)
		peer_free(old);
	return true;
}

static bool set_main_key(struct parser *p, const char *key, const char *value)
{
	const struct cf_key *k = find_key(key);
	char msg[512];

	if (!k)
		return fail(p, "unknown parameter '%s' in section [pgbouncer]", key);
	if (!set_value(k, p->cf, value, msg, sizeof(msg)))
		return fail(p, "%s", msg);
	return true;
}

/* --- Lines, sections and %include ----------------------------------------- */

static bool parse_text(struct parser *p, char *text, size_t len);

static bool parse_section(struct parser *p, char *line)
{
	char *name = skip_space(line + 1), *end = strchr(name, ']');

	if (!end || *skip_space(end + 1) != '\0')
		return fail(p, "syntax error in section header");
	*end = '\0';
	trim_end(name);
	if (strcmp(name, "pgbouncer") == 0) {
		char msg[512];

		/* A repeated [pgbouncer] header starts over from the defaults. */
		p->sec = SEC_MAIN;
		p->seen_main = true;
		if (!apply_defaults(p->cf, msg, sizeof(msg)))
			return fail(p, "%s", msg);
	} else if (strcmp(name, "databases") == 0) {
		p->sec = SEC_DATABASES;
	} else if (strcmp(name, "users") == 0) {
		p->sec = SEC_USERS;
	} else if (strcmp(name, "peers") == 0) {
		p->sec = SEC_PEERS;
	} else {
		return fail(p, "unknown section '%s'", name);
	}
	return true;
}

/* Read a whole regular file into a NUL-terminated malloc'd buffer. */
static char *read_file(const char *path, size_t *lenp, char *msg, size_t msglen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf;
	size_t n;

	if (!f) {
		snprintf(msg, msglen, "cannot open '%s': %s", path, strerror(errno));
		return NULL;
	}
	/* Refuse devices and FIFOs: %include /dev/zero would never end. */
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_SIZE) {
		snprintf(msg, msglen, "'%s' is not a regular file of sane size", path);
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(msg, msglen, "out of memory");
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		snprintf(msg, msglen, "cannot read '%s'", path);
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*lenp = n;
	return buf;
}

static bool parse_include(struct parser *p, char *arg)
{
	struct parser sub = *p;
	char msg[512];
	char *text;
	size_t len;
	bool ok;

	if (*arg == '\0')
		return fail(p, "%%include needs a file name");
	if (p->depth >= MAX_INCLUDE_DEPTH)
		return fail(p, "%%include nested too deeply (max %d)", MAX_INCLUDE_DEPTH);
	text = read_file(arg, &len, msg, sizeof(msg));
	if (!text)
		return fail(p, "%s", msg);
	sub.origin = arg;
	sub.line = 0;
	sub.depth = p->depth + 1;
	ok = parse_text(&sub, text, len);
	free(text);
	/* The included file continues the stream: its last section stays current. */
	p->sec = sub.sec;
	p->seen_main = sub.seen_main;
	return ok;
}

static bool parse_entry(struct parser *p, char *line)
{
	char *key = NULL, *value = NULL;

	if (!split_key_value(p, line, &key, &value))
		return false;
	switch (p->sec) {
	case SEC_MAIN:
		return set_main_key(p, key, value);
	case SEC_DATABASES:
		return add_database(p, key, value);
	case SEC_USERS:
		return add_user(p, key, value);
	case SEC_PEERS:
		return add_peer(p, key, value);
	default:
		return fail(p, "key '%s' outside of any section", key);
	}
}

static bool parse_line(struct parser *p, char *line)
{
	char *s = skip_space(line);

	trim_end(s);
	if (*s == '\0' || *s == ';' || *s == '#')
		return true;
	if (*s == '[')
		return parse_section(p, s);
	if (strncmp(s, "%include", 8) == 0 && (s[8] == '\0' || is_space(s[8])))
		return parse_include(p, skip_space(s + 8));
	if (*s == '%')
		return fail(p, "unknown directive");
	return parse_entry(p, s);
}

/* `text` is writable, len bytes long and followed by a NUL. */
static bool parse_text(struct parser *p, char *text, size_t len)
{
	char *line = text, *end = text + len;

	while (line < end) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		char *stop = nl ? nl : end;

		p->line++;
		if (memchr(line, '\0', (size_t)(stop - line)))
			return fail(p, "NUL byte in configuration");
		*stop = '\0';
		if (!parse_line(p, line))
			return false;
		line = stop + 1;
	}
	return true;
}

/* Parse an owned, NUL-terminated copy of a file into a new config. */
static struct pv_config *parse_owned(char *text, size_t len, const char *origin, char *err,
				     size_t errlen)
{
	struct parser p = {0};
	char dummy[1];

	if (!err || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	p.err = err;
	p.errlen = errlen;
	p.origin = origin;
	p.cf = config_new(origin, err, errlen);
	if (!p.cf)
		return NULL;
	if (!parse_text(&p, text, len))
		goto bad;
	if (!p.seen_main) {
		snprintf(err, errlen, "%s: main section missing from config file", origin);
		goto bad;
	}
	return p.cf;
bad:
	config_free(p.cf);
	return NULL;
}

struct pv_config *config_parse_buffer(const char *text, size_t len, const char *origin, char *err,
				      size_t errlen)
{
	struct pv_config *cf;
	char *copy;

	if (!origin)
		origin = "<buffer>";
	copy = malloc(len + 1);
	if (!copy) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", origin);
		return NULL;
	}
	if (len)
		memcpy(copy, text, len);
	copy[len] = '\0';
	cf = parse_owned(copy, len, origin, err, errlen);
	free(copy);
	return cf;
}

struct pv_config *config_load(const char *path, char *err, size_t errlen)
{
	struct pv_config *cf;
	char msg[512];
	char *text;
	size_t len;

	text = read_file(path, &len, msg, sizeof(msg));
	if (!text) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, msg);
		return NULL;
	}
	cf = parse_owned(text, len, path, err, errlen);
	free(text);
	return cf;
}

/* --- Queries and RELOAD support ------------------------------------------- */

bool config_keep_non_reloadable(struct pv_config *next, const struct pv_config *running)
{
	char *copies[NKEYS] = {0};
	size_t i;

	/* Copy every string first so an allocation failure changes nothing. */
	for (i = 0; i < NKEYS; i++) {
		const struct cf_key *k = &keys[i];
		const char *s;

		if (k->reload || (k->type != CF_STR && k->type != CF_STRN))
			continue;
		s = *FIELD_PTR(running, k, char *const);
		if (s && !(copies[i] = strdup(s)))
			goto oom;
	}
	for (i = 0; i < NKEYS; i++) {
		const struct cf_key *k = &keys[i];

		if (k->reload)
			continue;
		if (k->type == CF_STR || k->type == CF_STRN) {
			free(*FIELD_PTR(next, k, char *));
			*FIELD_PTR(next, k, char *) = copies[i];
		} else if (k->type == CF_INT64 || k->type == CF_TIME) {
			*FIELD_PTR(next, k, int64_t) = *FIELD_PTR(running, k, const int64_t);
		} else {
			*FIELD_PTR(next, k, int) = *FIELD_PTR(running, k, const int);
		}
	}
	return true;
oom:
	for (i = 0; i < NKEYS; i++)
		free(copies[i]);
	return false;
}

struct db_conf *config_find_db(const struct pv_config *cf, const char *name)
{
	struct list_head *pos;

	list_for_each(pos, &cf->databases)
	{
		struct db_conf *db = container_of(pos, struct db_conf, node);
		if (strcmp(db->name, name) == 0)
			return db;
	}
	return NULL;
}

struct user_conf *config_find_user(const struct pv_config *cf, const char *name)
{
	struct list_head *pos;

	list_for_each(pos, &cf->users)
	{
		struct user_conf *u = container_of(pos, struct user_conf, node);
		if (strcmp(u->name, name) == 0)
			return u;
	}
	return NULL;
}

bool config_list_contains(const char *list, const char *name)
{
	size_t n;

	if (!list || !name || *name == '\0')
		return false;
	n = strlen(name);
	while (*list) {
		size_t len;

		while (*list == ',' || isspace((unsigned char)*list))
			list++;
		len = strcspn(list, ", \t\r\n\f\v");
		if (len == n && memcmp(list, name, n) == 0)
			return true;
		list += len;
	}
	return false;
}
