/*
 * admin.h - the admin console: the virtual database "pgbouncer" (alias
 * "pgvigil"), its access rules, its command grammar and the SHOW / control
 * commands; plus the pooler-wide control state it drives (PAUSE, SUSPEND,
 * SHUTDOWN modes) that signals (main.c) share.
 *
 * The admin database is a real pv_database (is_admin) with one pool whose
 * user is the forced user "pgbouncer". It never has servers: admin clients'
 * messages are answered here (admin_handle_pkt) and never reach PostgreSQL.
 *
 * admin.c owns access, grammar, control commands and the per-loop completion
 * of asynchronous commands (PAUSE, SUSPEND, WAIT_CLOSE); admin_show.c owns the
 * table of SHOW commands and their row producers.
 */
#ifndef PV_ADMIN_H
#define PV_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include "pool.h"
#include "proto.h"
#include "sbuf.h"

#define ADMIN_DB_NAME   "pgbouncer"
#define ADMIN_DB_ALIAS  "pgvigil"
#define ADMIN_USER_NAME "pgbouncer"
/* The PgBouncer release whose admin console and texts pgvigil reproduces. */
#define ADMIN_COMPAT_VERSION "1.25.2"

/* Process-level actions main.c provides (the library does not link main.c). */
struct admin_ops {
	bool (*reload)(void);         /* RELOAD: false when the file was bad */
	void (*config_changed)(void); /* after admin SET changed a key in place */
};
void admin_set_ops(const struct admin_ops *ops);

/* --- routing and login (client.c, auth.c) ------------------------------------ */

bool admin_is_admin_db_name(const char *name);
/* The admin pool (created on first use); NULL when out of memory. */
struct pv_pool *admin_pool_get(void);
/* Unix-socket client with our UID logging in as "pgbouncer": admin without password. */
bool admin_is_own_user(const struct pv_socket *c);
/* Authentication (or own_user) succeeded: decide admin/stats/not allowed, send the welcome. */
void admin_login_ok(struct pv_socket *c);
/* Every message of a logged-in admin client. */
enum pkt_action admin_handle_pkt(struct pv_socket *c, struct pkt *p);

/* --- pooler control (admin commands and signals) ---------------------------- */

/* Per loop iteration: pause/suspend work, completion of waiting admin commands. */
void admin_per_loop(void);
/* SIGUSR1 / PAUSE: false when already paused or suspended. */
bool admin_pause_all(void);
/* SIGUSR2 / RESUME: false when not paused or suspended. */
bool admin_resume_all(void);
/* SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS], SIGINT/TERM/QUIT. */
void admin_start_shutdown(enum shutdown_mode mode);
/*
 * RELOAD / SIGHUP, after G.cf was replaced but before databases_sync_with_config():
 * servers of databases whose connection settings changed are tagged close_needed,
 * removed databases are killed.
 */
void admin_apply_reload(void);

/* --- result sets (shared by admin.c and admin_show.c) ------------------------- */

enum admin_type {
	AT_TEXT,    /* text, OID 25 (timestamps are rendered as text too) */
	AT_INT4,    /* int4, OID 23 */
	AT_INT8,    /* int8, OID 20 */
	AT_NUMERIC, /* numeric, OID 1700 */
};

struct admin_col {
	const char *name;
	enum admin_type type;
};

/* A result set being built into out; failures are sticky. */
struct admin_res {
	struct pv_buf *out;
	int ncols;
	int col; /* columns written in the current row */
	struct pkt_builder row;
	bool failed;
};

void res_row_begin(struct admin_res *r);
void res_text(struct admin_res *r, const char *v); /* NULL = SQL NULL */
void res_int(struct admin_res *r, long long v);
void res_uint(struct admin_res *r, unsigned long long v);
void res_fmt(struct admin_res *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void res_row_end(struct admin_res *r);

/*
 * One SHOW subcommand. Adding a SHOW is one entry in admin_show.c's table plus
 * a producer that writes rows with res_* (columns in the order of cols).
 */
struct admin_show {
	const char *name; /* upper case, as listed by SHOW HELP */
	bool admin_only;
	const struct admin_col *cols;
	int ncols;
	void (*rows)(struct admin_res *r);
};

/* Case-insensitive lookup; NULL when unknown. */
const struct admin_show *admin_show_find(const char *name);
const struct admin_show *admin_show_at(size_t i);
/* RowDescription, rows and CommandComplete "SHOW" appended to out; false on OOM. */
bool admin_show_run(const struct admin_show *sh, struct pv_buf *out);
/* Text of the SHOW HELP notice (static buffer). */
const char *admin_help_text(void);

/* Sockets the SHOW producers walk: every client and server of every pool. */
typedef void (*admin_socket_fn)(struct pv_socket *s, void *arg);
void admin_for_each_client(admin_socket_fn fn, void *arg);
void admin_for_each_server(admin_socket_fn fn, void *arg);

#endif
