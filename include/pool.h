/*
 * pool.h - the object model: databases, users, pools and sockets, and the
 * per-pool state lists that say what each socket is doing.
 *
 * A pool serves one (database, user) pair. Every client and server socket sits
 * in exactly one list of its pool (or the global login list), and that list is
 * its state: moving a socket between lists is how state changes. pool.c owns
 * the transitions (link a waiting client to an idle server, release a server
 * after a transaction, launch new server connections); client.c and server.c
 * own the protocol on each side; sbuf.c owns the bytes.
 */
#ifndef PV_POOL_H
#define PV_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"
#include "list.h"
#include "util.h"
#include "varcache.h"
#include "scram.h"

struct event;
struct event_base;
struct authfile;
struct dns_ctx;
struct dns_req;
struct pkt;
struct ssl_st;
struct pv_identity;
struct approval;
struct mask_db;
struct mask_client;
struct rec_client;

enum sock_state {
	SOCK_FREE,
	CL_LOGIN,	  /* startup/authentication in progress (global login list) */
	CL_WAITING_LOGIN, /* authenticated, waiting for the pool's first server login */
	CL_WAITING,	  /* has a request, waiting for a server */
	CL_ACTIVE,	  /* logged in: idle or linked to a server */
	CL_CANCEL,	  /* a CancelRequest connection being serviced */
	SV_LOGIN,	  /* connecting / logging in */
	SV_IDLE,	  /* ready for a client */
	SV_USED,	  /* idle, needs server_check_query before reuse */
	SV_TESTED,	  /* running reset or check query */
	SV_ACTIVE,	  /* linked to a client */
	SV_CANCEL,	  /* connection that only delivers a CancelRequest */
};

/* A [databases] entry made live (or an auto-database from "*"). */
struct pv_database {
	struct list_head node; /* global database list */
	char *name;
	struct db_conf *conf; /* points into the running config; NULL for admin */
	bool is_admin;
	bool is_auto;
	bool dead; /* removed by RELOAD; freed when empty */
	bool paused;   /* admin PAUSE db / KILL db: no server work until RESUME db */
	bool disabled; /* admin DISABLE db: new client logins refused */
	int client_count;
	int server_count;
	usec_t inactive_since; /* autodb reaping */
	struct mask_db *mask_cat; /* mask_catalog.c: resolved masked columns; owned there */
};

/* A user name known to the pooler (auth_file, [users], or forced user). */
struct pv_user {
	struct list_head node; /* global user list */
	char *name;
	int client_count;
	int server_count;
};

struct pv_stats {
	uint64_t xact_count, query_count, server_assignment_count;
	uint64_t bytes_received, bytes_sent;
	uint64_t xact_time, query_time, wait_time; /* usec */
	uint64_t client_parse_count, server_parse_count, bind_count; /* prepared statements */
	uint64_t client_login_count;
};

struct pv_pool {
	struct list_head node; /* global pool list */
	struct pv_database *db;
	struct pv_user *user; /* pool (server login) user */

	/* client lists */
	struct list_head active_clients;
	struct list_head waiting_clients; /* CL_WAITING and CL_WAITING_LOGIN, FIFO */
	/* server lists */
	struct list_head login_servers;
	struct list_head idle_servers;
	struct list_head used_servers;
	struct list_head tested_servers;
	struct list_head active_servers;
	struct list_head cancel_servers;

	/* The welcome sent to clients: server ParameterStatus values from the first login. */
	struct pv_buf welcome_params; /* encoded 'S' messages */
	bool have_welcome;
	struct varcache server_defaults; /* tracked values as the server reported them */

	/* The last server login failure, replayed to clients during back-off. */
	char *last_login_error;
	char last_login_sqlstate[6];
	usec_t last_login_failed_at;
	usec_t last_connect_at;

	/* SCRAM pass-through keys learnt from a client's proof. */
	bool have_scram_keys;
	uint8_t scram_client_key[SCRAM_KEY_LEN];
	uint8_t scram_server_key[SCRAM_KEY_LEN];

	int host_rr; /* round-robin position in a host list */
	usec_t last_lifetime_close; /* server_lifetime closes are spread out (janitor.c) */
	usec_t unused_since;	    /* no clients and no servers since then (pool_idle_timeout) */
	struct pv_stats stats;
	/* stats.c: totals at the last two stats_period ticks; averages = their difference */
	struct pv_stats stats_older, stats_newer;
};

/* Replication connections (replication.c): physical (replication=true) or logical (=database). */
enum repl_kind {
	REPL_NONE,
	REPL_PHYSICAL,
	REPL_LOGICAL,
};

struct peer_pool;

enum server_task {
	TASK_NONE,
	TASK_SET_VARS, /* SET for varcache sync, client waits */
	TASK_RESET,    /* server_reset_query */
	TASK_CHECK,    /* server_check_query */
	TASK_CONNECT_QUERY,
	TASK_AUTH_QUERY, /* auth_query for a parked login client (auth_query.c) */
	TASK_MASK_CATALOG, /* masking column catalog query, or waiting for one (mask_catalog.c) */
};

/* Client login progress. */
enum login_phase {
	LOGIN_STARTUP, /* waiting for the StartupMessage */
	LOGIN_AUTH,    /* waiting for a PasswordMessage / SASL response */
	LOGIN_DONE,
};

/*
 * A remote address as kept per socket: IPv4 or IPv6 as is; for a unix socket
 * only the family (clients' unix peers are unnamed; a server's full connect
 * address is in its pv_server_side). sockaddr_storage would cost 100 more
 * bytes on each of thousands of clients. ss_family aliases the family of
 * every member, so code written for a sockaddr_storage reads it unchanged.
 */
union pv_addr {
	sa_family_t ss_family;
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/*
 * State only a server connection has: allocated together with server sockets
 * (socket_new(true)), absent (srv == NULL) on clients, which are the many.
 */
struct pv_server_side {
	enum server_task task;
	bool task_failed;
	int host_index;
	usec_t idle_since; /* last release or ReadyForQuery: idle / idle-in-transaction age */
	struct scram_client *scram_cl;
	struct dns_req *dns;
	char *tls_host;		   /* the host name verify-full checks */
	struct pv_buf task_err;	   /* error text while running a task */
	struct pv_buf repl_params; /* its own login's ParameterStatus (replication client welcome) */
	socklen_t addr_len;	   /* the address connected to (cancel requests reuse it) */
	struct sockaddr_storage addr;
};

/*
 * A client or server connection. Kept small: with thousands of mostly idle
 * clients this struct is most of the pooler's memory. Server-only state is in
 * srv, the read event sits in the same allocation (socket_new), the write
 * event is created the first time the socket's output backs up (sbuf.c), and
 * the local address is asked from the kernel when shown.
 */
struct pv_socket {
	/*
	 * Member order packs the small fields together: with thousands of idle
	 * clients every padding hole costs, so keep like-sized members adjacent.
	 */
	struct list_head node; /* state list */
	enum sock_state state;
	int fd;
	uint64_t id;
	struct pv_pool *pool;
	struct pv_socket *link;

	struct event *ev_read;	/* in this socket's allocation; NULL until attached */
	struct event *ev_write; /* NULL until first needed */
	struct pv_server_side *srv; /* servers only (same allocation); NULL on clients */
	/* TLS (tls.c; sbuf.c drives it): NULL on plain sockets. */
	struct ssl_st *tls;
	bool is_server;
	bool read_paused; /* not processing input: waiting for a server, a task... */
	bool bp_paused;	  /* back-pressure: the linked socket's output is full */
	bool connecting;  /* non-blocking connect in progress */
	bool closing;	  /* closed; memory freed at end of loop iteration */
	bool is_unix;
	bool pass_drop;		   /* the streamed remainder (pass_remain) is discarded */
	uint8_t tls_state;	   /* enum tls_sock_state (tls.h) */
	bool tls_direct;	   /* client: TLS from the first byte (no SSLRequest) */
	bool tls_read_wants_write; /* SSL_read needs the socket writable first */
	bool tls_write_wants_read; /* SSL_write needs the socket readable first */
	bool tls_broken;	   /* fatal TLS error: no close_notify, no more I/O */
	union pv_addr remote;
	struct pv_buf in;  /* bytes read, not yet processed */
	struct pv_buf out; /* bytes to write */
	/* Bytes of a large message being streamed straight to link without parsing (or dropped). */
	uint64_t pass_remain;

	int peer_pid; /* unix peer */
	int peer_uid;

	usec_t connect_time;
	usec_t request_time;
	usec_t query_start;
	usec_t xact_start;
	usec_t wait_start;

	struct varcache vars;
	uint8_t cancel_key[8]; /* client: what we gave; server: what the server gave us */

	/* client side */
	enum login_phase login_phase;
	bool wants_admin;
	bool admin_user;
	bool stats_user;
	bool auth_cleartext; /* sent AuthenticationCleartextPassword */
	bool auth_oidc;	     /* the password asked for is an OIDC token (oidc.c) */
	bool aq_done;	     /* auth_query.c: queried for this login: use the cached credentials */
	uint8_t md5_salt[4];
	/* server side (the rest is in srv) */
	bool in_extended; /* extended-protocol messages sent since the last Sync */
	char tx_status;	  /* last ReadyForQuery status: 'I', 'T', 'E' */

	/* client side */
	/* Interned (pv_strintern): thousands of clients share a few names. */
	const char *startup_user;
	const char *startup_db;
	const char *app_name;
	struct scram_server *scram;   /* during SCRAM login */
	struct pv_identity *identity; /* after a token login: who the token names */
	uint64_t stmt_count;	      /* requests started (SHOW SESSIONS) */
	uint64_t denials;	      /* statements denied by a rule (rules.c) */
	struct rules_client *rules_client; /* rules.c: SQL PREPARE name -> classification */
	struct approval *approval;	   /* approval.c: the statement held for a decision */
	struct mask_client *mask;	   /* mask.c: result plan and statement marks */
	struct rec_client *rec;		   /* record_events.c: session id, statements in flight */
	/* auth_query.c: while the query runs, the client waits in the auth pool */
	struct pv_pool *aq_home_pool; /* its own pool; non-NULL while parked */
	struct pv_socket *cancel_target; /* CancelRequest: the server to cancel */
	int aq_rows;			 /* auth_query.c: DataRows seen; -1 = malformed result */

	/* server side */
	int expect_rfq; /* ReadyForQuery messages still owed (Query/Sync/FunctionCall sent) */
	bool close_needed;
	bool copy_in;
	bool wait_notified; /* client got the query_wait_notify NOTICE */
	bool suspended;	    /* admin SUSPEND stopped reading it (admin.c resumes it) */

	/* prepared.c: client name map; server statement set and request pipeline */
	bool ps_track;
	struct ps_client *ps_client;
	struct ps_server *ps_server;

	/* replication.c: a replication client and its dedicated server share the kind */
	enum repl_kind replication;
	char *repl_value;	   /* client: the "replication" startup value, sent verbatim */
	char *repl_options;	   /* client: the "options" startup value, sent verbatim */
	/* peer.c: a CancelRequest forwarded to another process of a [peers] set-up */
	struct peer_pool *peer;
};

/* --- global state ------------------------------------------------------------ */

/* Global admin pause state: PAUSE waits for servers to be released, SUSPEND stops all I/O. */
enum pause_mode {
	PAUSE_NONE,
	PAUSE_PAUSE,
	PAUSE_SUSPEND,
};

enum shutdown_mode {
	SHUTDOWN_NONE,
	SHUTDOWN_WAIT_FOR_SERVERS, /* SIGINT: pause, exit when no server connection is left */
	SHUTDOWN_WAIT_FOR_CLIENTS, /* SIGTERM: exit when no client is left */
	SHUTDOWN_IMMEDIATE,
};

struct pv_globals {
	struct event_base *base;
	struct pv_config *cf;
	struct authfile *auth;
	struct dns_ctx *dns;
	struct list_head databases;
	struct list_head users;
	struct list_head pools;
	struct list_head login_clients;
	struct list_head justfree; /* closed sockets, freed after this loop iteration */
	uint64_t next_socket_id;
	int client_count;	/* non-admin logged-in + login clients */
	uint8_t mock_nonce[32]; /* per-process secret for mock SCRAM salts */
	bool shutting_down;
	enum pause_mode pause_mode;	 /* admin PAUSE / SUSPEND (admin.c) */
	enum shutdown_mode shutdown_mode; /* SHUTDOWN / SIGINT / SIGTERM (admin.c, main.c) */
};
extern struct pv_globals G;

/* New requests of a paused pool wait without a server (global PAUSE/SUSPEND or PAUSE db). */
static inline bool pool_is_paused(const struct pv_pool *pool)
{
	return !pool->db->is_admin && (G.pause_mode != PAUSE_NONE || pool->db->paused);
}

/* --- objects (objects.c) -------------------------------------------------------- */

struct pv_database *database_find(const char *name);
/* Find or create the live database for name (including autodb "*"). NULL if unknown. */
struct pv_database *database_get(const char *name);
struct pv_user *user_get(const char *name);
struct pv_pool *pool_get(struct pv_database *db, struct pv_user *user);
/* Unlink and free a pool / database that no socket refers to any more. */
void pool_free(struct pv_pool *pool);
void database_free(struct pv_database *db);
/* Rebuild databases after a config (re)load; tags servers of changed dbs close_needed. */
void databases_sync_with_config(void);

struct pv_socket *socket_new(bool is_server);
/* Bytes socket_new allocates for a client / server socket (SHOW MEM). */
size_t socket_alloc_size(bool is_server);
/* Memory for s's read event, inside s's allocation (sbuf.c assigns it). */
struct event *socket_event_mem(struct pv_socket *s);
/* Record where s is connected to (servers: the full address too, for cancel requests). */
void socket_set_remote(struct pv_socket *s, const struct sockaddr *sa, socklen_t len);
void socket_set_state(struct pv_socket *s, enum sock_state st);
void socket_free_justfree(void);
const char *socket_state_name(const struct pv_socket *s);
/* The "C-0x...: db/user@addr:port" prefix used in log lines. */
void socket_log_prefix(const struct pv_socket *s, char *buf, size_t len);
void slog(int level, const struct pv_socket *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define slog_info(s, ...) slog(LG_LOG, s, __VA_ARGS__)
#define slog_warning(s, ...) slog(LG_WARNING, s, __VA_ARGS__)
#define slog_error(s, ...) slog(LG_ERROR, s, __VA_ARGS__)
#define slog_debug(s, ...)                                                                         \
	do {                                                                                       \
		if (log_verbose >= 1)                                                              \
			slog(LG_DEBUG, s, __VA_ARGS__);                                            \
	} while (0)

/* Effective settings: user > db > global. */
enum pool_mode pool_effective_mode(const struct pv_pool *pool);
int pool_effective_size(const struct pv_pool *pool);
int pool_server_count(const struct pv_pool *pool);

/* --- pooling (pool.c) ------------------------------------------------------------ */

/* A client has a request: link it to a server or queue it. Returns true if linked now. */
bool pool_request_server(struct pv_socket *client);
/*
 * After linking: run the SET that syncs client's tracked parameters on server.
 * true: the request can go now; false: the client is woken when the SET is done.
 */
bool pool_link_sync_vars(struct pv_socket *client, struct pv_socket *server);
/* A server finished its work (transaction end, task end, login): hand it on. */
void pool_release_server(struct pv_socket *server);
/* Unlink client and server; the server goes to the idle/used/tested path or is closed. */
void pool_unlink(struct pv_socket *client, struct pv_socket *server);
/* Per-loop: give idle servers to waiting clients, launch connections as allowed. */
void pool_activate(struct pv_pool *pool);
void pools_per_loop(void);
/* A server login finished: set up the welcome, wake clients waiting for it. */
void pool_server_login_ok(struct pv_socket *server);
/* A server login failed: fail waiting login clients, start back-off. */
void pool_server_login_failed(struct pv_socket *server, const char *sqlstate, const char *msg);

/* Effective limits (pool.c): [users] > [databases] > [pgbouncer] as PgBouncer resolves them. */
int pool_min_size(const struct pv_pool *pool);
int pool_reserve_size(const struct pv_pool *pool);
usec_t pool_server_lifetime(const struct pv_pool *pool);
/* NULL, or the error text when the pool's db/user client cap is reached (at login). */
const char *pool_client_limit(const struct pv_pool *pool);
/* Janitor: top up to min_pool_size, shrink above pool_size + reserve. */
void pool_maintain_size(struct pv_pool *pool);
/* May a server of this pool be closed for server_lifetime now? (one close per lifetime/size) */
bool pool_lifetime_over(struct pv_pool *pool, const struct pv_socket *server, usec_t now);

#endif
