/*
 * config.h - the pgbouncer.ini model: every [pgbouncer] key, [databases],
 * [users] and [peers], loaded by a table-driven parser (src/config.c).
 *
 * A loaded configuration is an immutable snapshot (struct pv_config). Startup
 * loads one; RELOAD loads a fresh one and, only if the whole file is valid,
 * swaps it in (non-reloadable keys are carried over from the running one), so a
 * bad file never leaves a half-applied configuration.
 *
 * Conventions: booleans and integers are int; times are usec_t (microseconds;
 * the file gives float seconds); strings are malloc'd and never NULL ("" when
 * empty) unless documented as "NULL when unset".
 */
#ifndef PV_CONFIG_H
#define PV_CONFIG_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include "list.h"

typedef int64_t usec_t;
#define USEC_PER_SEC 1000000LL

enum auth_type {
	AUTH_ANY,
	AUTH_TRUST,
	AUTH_PLAIN,
	AUTH_MD5,
	AUTH_SCRAM_SHA_256,
	AUTH_CERT,
	AUTH_HBA,
	AUTH_OIDC, /* governance: the JWT is the password */
	AUTH_PEER, /* only from HBA lines */
	AUTH_REJECT, /* only from HBA lines */
};

enum pool_mode {
	POOL_SESSION,
	POOL_TRANSACTION,
	POOL_STATEMENT,
	POOL_INHERIT, /* db / user entry without pool_mode */
};

enum ssl_mode {
	SSLMODE_DISABLE,
	SSLMODE_ALLOW,
	SSLMODE_PREFER,
	SSLMODE_REQUIRE,
	SSLMODE_VERIFY_CA,
	SSLMODE_VERIFY_FULL,
};

enum lb_hosts {
	LB_ROUND_ROBIN,
	LB_DISABLE,
};

/* One [databases] entry. Integer limits are -1 when not given (inherit). */
struct db_conf {
	struct list_head node; /* in pv_config.databases, file order */
	char *name;		/* entry name ("*" = autodb template) */
	char *dbname;		/* NULL when unset: defaults to name */
	char *host;		/* NULL when unset: unix socket in default dir; may be a comma list */
	int port;		/* 5432 when unset */
	char *user;		/* forced user, NULL when unset */
	char *password;		/* NULL when unset */
	char *auth_user;	/* NULL when unset */
	char *auth_query;	/* NULL when unset */
	char *auth_dbname;	/* NULL when unset */
	char *client_encoding;	/* NULL when unset */
	char *datestyle;	/* NULL when unset */
	char *timezone;		/* NULL when unset */
	char *application_name; /* NULL when unset */
	char *connect_query;	/* NULL when unset */
	int pool_size;
	int min_pool_size;
	int reserve_pool_size;
	int max_db_connections;
	int max_db_client_connections;
	usec_t query_wait_timeout; /* -1 when unset */
	usec_t server_lifetime;	   /* -1 when unset */
	enum pool_mode pool_mode;  /* POOL_INHERIT when unset */
	enum lb_hosts load_balance_hosts;
	bool load_balance_hosts_set;
};

/* One [users] entry. Integer limits are -1 when not given. */
struct user_conf {
	struct list_head node;
	char *name;
	enum pool_mode pool_mode; /* POOL_INHERIT when unset */
	int pool_size;
	int reserve_pool_size;
	int max_user_connections;
	int max_user_client_connections;
	usec_t query_timeout; /* -1 when unset, likewise below */
	usec_t query_wait_timeout;
	usec_t idle_transaction_timeout;
	usec_t transaction_timeout;
	usec_t client_idle_timeout;
};

/* One [peers] entry. */
struct peer_conf {
	struct list_head node;
	int peer_id;
	char *host;
	int port;
	int pool_size; /* -1 when unset: default_pool_size */
};

struct pv_config {
	char *conffile; /* path given on the command line */

	/* [pgbouncer] — field name = ini key */
	char *admin_users;
	int application_name_add_host;
	char *auth_dbname; /* NULL when unset */
	char *auth_file;   /* NULL when unset */
	char *auth_hba_file;
	char *auth_ident_file; /* NULL when unset */
	char *auth_ldap_options;
	char *auth_query;
	enum auth_type auth_type;
	char *auth_user; /* NULL when unset */
	usec_t autodb_idle_timeout;
	usec_t cancel_wait_timeout;
	usec_t client_idle_timeout;
	usec_t client_login_timeout;
	char *client_tls13_ciphers;
	char *client_tls_ca_file;
	char *client_tls_cert_file;
	char *client_tls_ciphers;
	char *client_tls_dheparams;
	char *client_tls_ecdhcurve;
	char *client_tls_key_file;
	char *client_tls_protocols;
	enum ssl_mode client_tls_sslmode;
	int default_pool_size;
	int disable_pqexec;
	usec_t dns_max_ttl;
	usec_t dns_nxdomain_ttl;
	usec_t dns_zone_check_period;
	char *governance_file; /* pgvigil: YAML governance policy; "" = none */
	usec_t idle_transaction_timeout;
	char *ignore_startup_parameters;
	char *job_name;
	char *listen_addr;
	int listen_backlog;
	int listen_port;
	int log_connections;
	int log_disconnections;
	int log_pooler_errors;
	int log_stats;
	char *logfile;
	char *login_notify_message;
	int max_client_conn;
	int max_db_client_connections;
	int max_db_connections;
	int64_t max_packet_size;
	int max_prepared_statements;
	int max_user_client_connections;
	int max_user_connections;
	char *metrics_listen_addr; /* pgvigil: Prometheus /metrics listener, "" = off */
	int metrics_listen_port;   /* pgvigil */
	int min_pool_size;
	int peer_id;
	char *pidfile;
	int pkt_buf;
	usec_t pool_idle_timeout;
	enum pool_mode pool_mode;
	usec_t query_timeout;
	int query_wait_notify; /* int seconds */
	usec_t query_wait_timeout;
	int reserve_pool_size;
	usec_t reserve_pool_timeout;
	char *resolv_conf;
	int sbuf_loopcnt;
	int scram_iterations;
	usec_t server_check_delay;
	/*
	 * The health-check query. PgBouncer's default "<empty>" means "send an
	 * empty query" and an explicit "" means "no check": here the default is
	 * server_check_query = "" with server_check_query_disabled = 0, and an
	 * empty value in the file sets server_check_query_disabled = 1. Writing
	 * "<empty>" in the file is the same as the default.
	 */
	char *server_check_query;
	int server_check_query_disabled; /* pgvigil: not an ini key, see above */
	usec_t server_connect_timeout;
	int server_fast_close;
	usec_t server_idle_timeout;
	usec_t server_lifetime;
	usec_t server_login_retry;
	char *server_reset_query;
	int server_reset_query_always;
	int server_round_robin;
	char *server_tls13_ciphers;
	char *server_tls_ca_file;
	char *server_tls_cert_file;
	char *server_tls_ciphers;
	char *server_tls_key_file;
	char *server_tls_protocols;
	enum ssl_mode server_tls_sslmode;
	int so_reuseport;
	int stats_period; /* int seconds */
	char *stats_users;
	usec_t suspend_timeout;
	int syslog;
	char *syslog_facility;
	char *syslog_ident;
	int tcp_defer_accept;
	int tcp_keepalive;
	int tcp_keepcnt;
	int tcp_keepidle;
	int tcp_keepintvl;
	int tcp_socket_buffer;
	int tcp_user_timeout;
	char *track_extra_parameters;
	usec_t transaction_timeout;
	char *unix_socket_dir;
	char *unix_socket_group;
	int unix_socket_mode;
	char *user; /* NULL when unset */
	int verbose;

	struct list_head databases; /* struct db_conf, file order */
	struct list_head users;	    /* struct user_conf */
	struct list_head peers;	    /* struct peer_conf */
};

/*
 * Load `path` into a freshly allocated config. On failure returns NULL and
 * writes "file:line: reason" into err. Never exits.
 */
struct pv_config *config_load(const char *path, char *err, size_t errlen);

/*
 * Parse an in-memory file image (need not be NUL-terminated; a NUL byte inside
 * is an error). `origin` names it in error messages and becomes conffile
 * ("<buffer>" when NULL). %include lines still open files relative to CWD.
 * Same result/err contract as config_load().
 */
struct pv_config *config_parse_buffer(const char *text, size_t len, const char *origin, char *err,
				      size_t errlen);

/* Free a config and everything it owns. NULL is allowed. */
void config_free(struct pv_config *cf);

/*
 * Prepare `next` to replace `running` on RELOAD: copies every non-reloadable
 * key's value from running into next (PgBouncer silently keeps them).
 * Returns false (next untouched) only when memory runs out.
 */
bool config_keep_non_reloadable(struct pv_config *next, const struct pv_config *running);

/* Look up entries; NULL when absent. */
struct db_conf *config_find_db(const struct pv_config *cf, const char *name);
struct user_conf *config_find_user(const struct pv_config *cf, const char *name);

/* Is `name` in the comma/space separated list `list`? (admin_users, stats_users...) */
bool config_list_contains(const char *list, const char *name);

/*
 * SHOW CONFIG / admin SET support: iterate keys in table (alphabetical) order.
 * value/default are formatted as PgBouncer prints them. Returns false past the end.
 */
struct config_row {
	const char *key;
	char value[512];
	char default_value[512];
	bool changeable;
};
bool config_row_at(const struct pv_config *cf, size_t index, struct config_row *row);

/*
 * Set one [pgbouncer] key from text (admin SET). false + err on bad key/value.
 * A non-reloadable key returns true and changes nothing (as PgBouncer does).
 */
bool config_set_key(struct pv_config *cf, const char *key, const char *value, char *err,
		    size_t errlen);

/* Human names of enum values ("session", "md5", ...). */
const char *pool_mode_name(enum pool_mode m);
const char *auth_type_name(enum auth_type t);
const char *ssl_mode_name(enum ssl_mode m);
const char *lb_hosts_name(enum lb_hosts l);

/* Number of [pgbouncer] keys (rows of SHOW CONFIG). */
size_t config_key_count(void);

#endif
