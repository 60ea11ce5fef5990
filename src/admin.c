/*
 * admin.c - the admin console: access, the command grammar, control commands
 * and the pooler-wide PAUSE / SUSPEND / SHUTDOWN state they share with signals.
 * SHOW commands live in admin_show.c.
 */
#include "pv_build_config.h"
#include "admin.h"
#include "client.h"
#include "server.h"
#include "listener.h"
#include "log.h"
#include "peer.h"
#include "approval.h"
#include "governance.h"
#include "oidc.h"
#include "record_events.h"

#include <ctype.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define CMD_MAX   15
#define ARG_MAX   63
#define VALUE_MAX 255

static const struct admin_ops *ops;
static struct pv_pool *admin_pool;

void admin_set_ops(const struct admin_ops *o)
{
	ops = o;
}

/* --- admin database, access, welcome -------------------------------------------- */

bool admin_is_admin_db_name(const char *name)
{
	return strcmp(name, ADMIN_DB_NAME) == 0 || strcmp(name, ADMIN_DB_ALIAS) == 0;
}

static struct pv_database *admin_db_new(void)
{
	struct pv_database *db = calloc(1, sizeof(*db));
	if (!db)
		return NULL;
	db->name = strdup(ADMIN_DB_NAME);
	if (!db->name) {
		free(db);
		return NULL;
	}
	db->is_admin = true;
	list_append(&G.databases, &db->node);
	return db;
}

struct pv_pool *admin_pool_get(void)
{
	struct pv_database *db;
	struct pv_user *user;

	if (admin_pool)
		return admin_pool;
	db = database_find(ADMIN_DB_NAME);
	if (!db && !(db = admin_db_new()))
		return NULL;
	user = user_get(ADMIN_USER_NAME);
	if (!user)
		return NULL;
	admin_pool = pool_get(db, user);
	return admin_pool;
}

bool admin_is_own_user(const struct pv_socket *c)
{
	return c->is_unix && c->peer_uid == (int)geteuid() && c->startup_user &&
	       strcmp(c->startup_user, ADMIN_USER_NAME) == 0;
}

/* The fixed ParameterStatus set of the admin console (spec 3.1). */
static bool queue_admin_params(struct pv_buf *out)
{
	static const char *const params[][2] = {
	    {"server_version", PACKAGE_VERSION "/bouncer"},
	    {"client_encoding", "UTF8"},
	    {"server_encoding", "UTF8"},
	    {"DateStyle", "ISO"},
	    {"TimeZone", "GMT"},
	    {"standard_conforming_strings", "on"},
	    {"is_superuser", "on"},
	};
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
		if (!msg_param_status(out, params[i][0], params[i][1]))
			return false;
	return true;
}

static bool admin_send_welcome(struct pv_socket *c)
{
	struct pv_buf out;
	bool ok;

	if (!random_bytes(c->cancel_key, sizeof(c->cancel_key))) {
		client_fatal(c, "08P01", "could not generate cancel key");
		return false;
	}
	c->cancel_key[0] &= 0x7f;
	peer_stamp_key(c->cancel_key); /* with peering, matched here, not forwarded */
	buf_init(&out);
	ok = msg_auth_request(&out, 0, NULL, 0) && queue_admin_params(&out) &&
	     msg_backend_key(&out, c->cancel_key) && msg_ready(&out, 'I') &&
	     sbuf_queue(c, out.data, out.len);
	buf_free(&out);
	if (!ok) {
		client_close(c, "out of memory");
		return false;
	}
	/* Admin clients do not count against max_client_conn (G.client_count). */
	client_mark_logged_in(c, false);
	return true;
}

/*
 * A token login to the console: the identity's approver groups are what let it
 * in (no grant, no db_user: the console is not a database role). It is never
 * an admin_users / stats_users login, whatever startup user it names: those
 * names stand for password identities.
 */
static void approver_login(struct pv_socket *c)
{
	char subject[512];

	oidc_log_escape(c->identity->subject, subject, sizeof(subject));
	if (!gov_is_approver(gov_active(), c->identity)) {
		slog_info(c, "admin login refused: subject=%s provider=%s is not in approver groups",
		          subject, c->identity->provider);
		client_fatal(c, "08P01", "not allowed");
		return;
	}
	slog_info(c, "admin login as approver: subject=%s provider=%s", subject,
	          c->identity->provider);
	admin_send_welcome(c);
}

void admin_login_ok(struct pv_socket *c)
{
	const char *user = c->startup_user;

	if (c->identity) {
		approver_login(c);
		return;
	}
	if (admin_is_own_user(c) || config_list_contains(G.cf->admin_users, user)) {
		c->admin_user = true;
	} else if (config_list_contains(G.cf->stats_users, user) || G.cf->auth_type == AUTH_ANY) {
		/* auth_type=any lets every name in, with stats rights only (as PgBouncer does). */
		c->stats_user = true;
	} else {
		client_fatal(c, "08P01", "not allowed");
		return;
	}
	admin_send_welcome(c);
}

/* --- replies ------------------------------------------------------------------------ */

static bool queue_buf(struct pv_socket *c, struct pv_buf *out, bool ok)
{
	ok = ok && sbuf_queue(c, out->data, out->len);
	buf_free(out);
	if (!ok)
		client_close(c, "out of memory");
	return ok;
}

static void reply_ok(struct pv_socket *c, const char *tag)
{
	struct pv_buf out;
	buf_init(&out);
	queue_buf(c, &out, msg_command_complete(&out, tag) && msg_ready(&out, 'I'));
}

static void reply_error_state(struct pv_socket *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error_state(struct pv_socket *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	struct pv_buf out;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	buf_init(&out);
	queue_buf(c, &out, msg_error(&out, "ERROR", sqlstate, msg) && msg_ready(&out, 'I'));
}

#define reply_error(c, ...) reply_error_state(c, "08P01", __VA_ARGS__)

static void reply_notice_ok(struct pv_socket *c, const char *notice, const char *tag)
{
	struct pv_buf out;
	buf_init(&out);
	queue_buf(c, &out,
	          msg_notice(&out, "00000", notice) && msg_command_complete(&out, tag) &&
	              msg_ready(&out, 'I'));
}

/* --- grammar -------------------------------------------------------------------- */

/* One parsed command: CMD [ARG] or SET key = value. */
struct admin_cmd {
	char cmd[CMD_MAX + 1];
	char arg[ARG_MAX + 1]; /* "" when absent; the key for SET */
	char value[VALUE_MAX + 1];
	bool has_arg;
	bool quoted_arg;
	const char *query; /* the whole text, for error messages */
};

static const char *skip_space(const char *p)
{
	while (*p && isspace((unsigned char)*p))
		p++;
	return p;
}

static bool is_word_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_';
}

/* Copy a run of word characters; false if empty or longer than max. */
static bool take_word(const char **pp, char *dst, size_t max)
{
	const char *p = *pp;
	size_t n = 0;
	while (is_word_char(p[n]))
		n++;
	if (n == 0 || n > max)
		return false;
	memcpy(dst, p, n);
	dst[n] = '\0';
	*pp = p + n;
	return true;
}

/* "double quoted" name (no escapes, as in PgBouncer's grammar). */
static bool take_dquoted(const char **pp, char *dst, size_t max)
{
	const char *p = *pp + 1, *end = strchr(p, '"');
	size_t n;
	if (!end)
		return false;
	n = (size_t)(end - p);
	if (n == 0 || n > max)
		return false;
	memcpy(dst, p, n);
	dst[n] = '\0';
	*pp = end + 1;
	return true;
}

/* 'single quoted' value with '' as an escaped quote. */
static bool take_squoted(const char **pp, char *dst, size_t max)
{
	const char *p = *pp + 1;
	size_t n = 0;
	for (;;) {
		if (*p == '\0')
			return false;
		if (*p == '\'') {
			if (p[1] != '\'')
				break;
			p++;
		}
		if (n >= max)
			return false;
		dst[n++] = *p++;
	}
	dst[n] = '\0';
	*pp = p + 1;
	return true;
}

/* Unquoted SET value: anything up to white space or ';'. */
static bool take_bare_value(const char **pp, char *dst, size_t max)
{
	const char *p = *pp;
	size_t n = 0;
	while (p[n] && !isspace((unsigned char)p[n]) && p[n] != ';')
		n++;
	if (n == 0 || n > max)
		return false;
	memcpy(dst, p, n);
	dst[n] = '\0';
	*pp = p + n;
	return true;
}

/* Only white space and one optional ';' may follow a command. */
static bool at_end(const char *p)
{
	p = skip_space(p);
	if (*p == ';')
		p = skip_space(p + 1);
	return *p == '\0';
}

static bool parse_set(const char *p, struct admin_cmd *out)
{
	p = skip_space(p);
	if (!take_word(&p, out->arg, ARG_MAX))
		return false;
	p = skip_space(p);
	if (*p == '=')
		p++;
	else if (strncasecmp(p, "to", 2) == 0 && !is_word_char(p[2]))
		p += 2;
	else
		return false;
	p = skip_space(p);
	if (*p == '\'' ? !take_squoted(&p, out->value, VALUE_MAX)
	               : !take_bare_value(&p, out->value, VALUE_MAX))
		return false;
	out->has_arg = true;
	return at_end(p);
}

/*
 * APPROVE <id> [FOR <duration>] and DENY <id> [reason]: arg is the id, value
 * the rest of the line (a reason may be 'single quoted'), checked by the command.
 */
static bool parse_decision(const char *p, struct admin_cmd *out)
{
	size_t n;

	p = skip_space(p);
	if (!take_word(&p, out->arg, ARG_MAX))
		return false;
	out->has_arg = true;
	p = skip_space(p);
	if (*p == '\'')
		return take_squoted(&p, out->value, VALUE_MAX) && at_end(p);
	n = strlen(p);
	while (n > 0 && (isspace((unsigned char)p[n - 1]) || p[n - 1] == ';'))
		n--;
	if (n > VALUE_MAX)
		return false;
	memcpy(out->value, p, n);
	out->value[n] = '\0';
	return true;
}

static bool parse_command(const char *q, struct admin_cmd *out)
{
	const char *p = skip_space(q);

	memset(out, 0, sizeof(*out));
	out->query = q;
	if (!take_word(&p, out->cmd, CMD_MAX))
		return false;
	if (strcasecmp(out->cmd, "SET") == 0)
		return parse_set(p, out);
	if (strcasecmp(out->cmd, "APPROVE") == 0 || strcasecmp(out->cmd, "DENY") == 0)
		return parse_decision(p, out);
	if (*p && !isspace((unsigned char)*p) && *p != ';')
		return false;
	p = skip_space(p);
	if (*p == '"') {
		if (!take_dquoted(&p, out->arg, ARG_MAX))
			return false;
		out->has_arg = true;
		out->quoted_arg = true;
	} else if (is_word_char(*p)) {
		if (!take_word(&p, out->arg, ARG_MAX))
			return false;
		out->has_arg = true;
	}
	return at_end(p);
}

/* --- pending (asynchronous) commands ------------------------------------------------- */

enum wait_kind {
	WAIT_PAUSE_ALL,
	WAIT_PAUSE_DB,
	WAIT_SUSPEND,
	WAIT_CLOSE_ALL,
	WAIT_CLOSE_DB,
};

/* An admin client whose reply is sent once a condition holds (checked per loop). */
struct admin_wait {
	uint64_t client_id;
	enum wait_kind kind;
	char db[ARG_MAX + 1];
};

static struct admin_wait *waits;
static size_t n_waits, cap_waits;
static uint64_t suspend_owner; /* id of the admin client that ran SUSPEND */
static usec_t suspend_started;
static int paused_dbs; /* databases with db->paused, to keep admin_per_loop cheap */

static bool add_wait(struct pv_socket *c, enum wait_kind kind, const char *db)
{
	if (n_waits == cap_waits) {
		size_t ncap = cap_waits ? cap_waits * 2 : 8;
		struct admin_wait *n = realloc(waits, ncap * sizeof(*n));
		if (!n)
			return false;
		waits = n;
		cap_waits = ncap;
	}
	waits[n_waits].client_id = c->id;
	waits[n_waits].kind = kind;
	strlcpy_pv(waits[n_waits].db, db ? db : "", sizeof(waits[n_waits].db));
	n_waits++;
	return true;
}

static struct pv_socket *find_admin_client(uint64_t id)
{
	struct list_head *it;
	if (!admin_pool)
		return NULL;
	list_for_each(it, &admin_pool->active_clients)
	{
		struct pv_socket *c = container_of(it, struct pv_socket, node);
		if (c->id == id && !c->closing)
			return c;
	}
	return NULL;
}

static void set_db_paused(struct pv_database *db, bool paused)
{
	if (db->paused == paused)
		return;
	db->paused = paused;
	paused_dbs += paused ? 1 : -1;
}

/* --- walking pools and sockets --------------------------------------------------------- */

static struct list_head *const *client_lists(struct pv_pool *p, struct list_head *buf[2])
{
	buf[0] = &p->active_clients;
	buf[1] = &p->waiting_clients;
	return buf;
}

void admin_for_each_client(admin_socket_fn fn, void *arg)
{
	struct list_head *pit, *it, *tmp, *lists[2];
	list_for_each(pit, &G.pools)
	{
		struct pv_pool *p = container_of(pit, struct pv_pool, node);
		client_lists(p, lists);
		for (int i = 0; i < 2; i++)
			list_for_each_safe(it, tmp, lists[i])
			    fn(container_of(it, struct pv_socket, node), arg);
	}
}

static void for_each_pool_server(struct pv_pool *p, admin_socket_fn fn, void *arg)
{
	struct list_head *lists[] = {&p->active_servers, &p->idle_servers,  &p->used_servers,
	                             &p->tested_servers, &p->login_servers, &p->cancel_servers};
	struct list_head *it, *tmp;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		list_for_each_safe(it, tmp, lists[i])
		    fn(container_of(it, struct pv_socket, node), arg);
}

void admin_for_each_server(admin_socket_fn fn, void *arg)
{
	struct list_head *pit;
	list_for_each(pit, &G.pools)
	    for_each_pool_server(container_of(pit, struct pv_pool, node), fn, arg);
}

static void tag_close_needed(struct pv_socket *s, void *arg)
{
	s->close_needed = true;
}

static void close_server_cb(struct pv_socket *s, void *arg)
{
	if (s->state != SV_ACTIVE || !s->link)
		server_close(s, arg);
}

static void close_client_cb(struct pv_socket *c, void *arg)
{
	client_fatal(c, "08P01", "%s", (const char *)arg);
}

/* Apply fn to every pool of db (db NULL: every non-admin database). */
static void for_each_db_pool(struct pv_database *db, void (*fn)(struct pv_pool *, void *),
                             void *arg)
{
	struct list_head *it, *tmp;
	list_for_each_safe(it, tmp, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (db ? p->db == db : !p->db->is_admin)
			fn(p, arg);
	}
}

static void kill_pool(struct pv_pool *p, void *reason)
{
	struct list_head *it, *tmp, *lists[2];

	/* Released servers are closed, not reused; then clients; then whatever is left. */
	for_each_pool_server(p, tag_close_needed, NULL);
	client_lists(p, lists);
	for (int i = 0; i < 2; i++)
		list_for_each_safe(it, tmp, lists[i])
		    close_client_cb(container_of(it, struct pv_socket, node), reason);
	for_each_pool_server(p, close_server_cb, reason);
}

static void activate_pool(struct pv_pool *p, void *arg)
{
	pool_activate(p);
}

static void reconnect_pool(struct pv_pool *p, void *arg)
{
	for_each_pool_server(p, tag_close_needed, NULL);
}

/* Make every [databases] entry live so PAUSE/KILL/SHOW see it, as PgBouncer has them all. */
static void ensure_config_databases(void)
{
	struct list_head *it;
	list_for_each(it, &G.cf->databases)
	{
		struct db_conf *dc = container_of(it, struct db_conf, node);
		if (strcmp(dc->name, "*") != 0)
			database_get(dc->name);
	}
	admin_pool_get();
}

/* --- pooler control -------------------------------------------------------------- */

bool admin_pause_all(void)
{
	if (G.pause_mode != PAUSE_NONE)
		return false;
	G.pause_mode = PAUSE_PAUSE;
	return true;
}

/* Is s a socket SUSPEND stops? Admin clients stay active so RESUME can be sent. */
static bool suspendable(const struct pv_socket *s)
{
	return !s->closing && !(s->pool && s->pool->db->is_admin);
}

static void suspend_cb(struct pv_socket *s, void *arg)
{
	if (suspendable(s) && !s->read_paused) {
		s->suspended = true;
		sbuf_pause(s);
	}
}

static void resume_cb(struct pv_socket *s, void *arg)
{
	if (s->suspended) {
		s->suspended = false;
		sbuf_wakeup(s);
	}
}

static void for_each_socket(admin_socket_fn fn, void *arg)
{
	struct list_head *it, *tmp;
	admin_for_each_client(fn, arg);
	admin_for_each_server(fn, arg);
	list_for_each_safe(it, tmp, &G.login_clients)
	    fn(container_of(it, struct pv_socket, node), arg);
}

/* Pending PAUSE/SUSPEND replies are sent when the pause ends early (RESUME). */
static void finish_waits_of(enum wait_kind a, enum wait_kind b);

bool admin_resume_all(void)
{
	if (G.pause_mode == PAUSE_NONE)
		return false;
	if (G.pause_mode == PAUSE_SUSPEND) {
		for_each_socket(resume_cb, NULL);
		listeners_pause(false);
		suspend_owner = 0;
	}
	G.pause_mode = PAUSE_NONE;
	finish_waits_of(WAIT_PAUSE_ALL, WAIT_SUSPEND);
	pools_per_loop();
	return true;
}

void admin_start_shutdown(enum shutdown_mode mode)
{
	G.shutdown_mode = mode;
	/* WAIT_FOR_CLIENTS keeps serving its clients, so servers may still be launched. */
	if (mode != SHUTDOWN_WAIT_FOR_CLIENTS)
		G.shutting_down = true;
	if (mode == SHUTDOWN_IMMEDIATE) {
		event_base_loopbreak(G.base);
		return;
	}
	listeners_close_tcp();
	if (mode == SHUTDOWN_WAIT_FOR_SERVERS && G.pause_mode == PAUSE_NONE)
		G.pause_mode = PAUSE_PAUSE;
}

static bool str_differs(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

/* The [databases] keys whose change makes existing server connections obsolete. */
static bool db_conf_changed(const struct db_conf *a, const struct db_conf *b)
{
	return str_differs(a->dbname, b->dbname) || str_differs(a->host, b->host) ||
	       a->port != b->port || str_differs(a->user, b->user) ||
	       str_differs(a->password, b->password) ||
	       str_differs(a->connect_query, b->connect_query) ||
	       str_differs(a->auth_dbname, b->auth_dbname) ||
	       str_differs(a->auth_query, b->auth_query) ||
	       a->load_balance_hosts != b->load_balance_hosts;
}

void admin_apply_reload(void)
{
	struct list_head *it;
	list_for_each(it, &G.databases)
	{
		struct pv_database *db = container_of(it, struct pv_database, node);
		struct db_conf *next;
		if (db->is_admin || db->dead || !db->conf)
			continue;
		next = config_find_db(G.cf, db->is_auto ? "*" : db->name);
		if (!next) {
			log_info("database %s removed from configuration", db->name);
			/* Killed like KILL db; databases_sync_with_config() marks it dead. */
			for_each_db_pool(db, kill_pool, "database removed");
			set_db_paused(db, false);
		} else if (db_conf_changed(db->conf, next)) {
			for_each_db_pool(db, reconnect_pool, NULL);
		}
	}
}

/* --- per loop --------------------------------------------------------------------------- */

static void close_idle_server(struct pv_pool *p)
{
	struct list_head *lists[] = {&p->idle_servers, &p->used_servers, &p->login_servers};
	struct list_head *it, *tmp;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		list_for_each_safe(it, tmp, lists[i])
		    server_close(container_of(it, struct pv_socket, node), "pause mode");
}

/* Paused pools keep no idle server: PAUSE completes when the busy ones are released. */
static void close_paused_servers(void)
{
	struct list_head *it;
	list_for_each(it, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (pool_is_paused(p))
			close_idle_server(p);
	}
}

static void drop_waiting_cb(struct pv_socket *c, void *arg)
{
	if ((c->state == CL_WAITING || c->state == CL_WAITING_LOGIN) && !c->pool->db->is_admin)
		client_fatal(c, "08P01", "server shutting down");
}

struct count_arg {
	struct pv_database *db; /* NULL: all non-admin */
	int n;
	bool close_needed_only;
};

static void count_server_cb(struct pv_socket *s, void *arg)
{
	struct count_arg *ca = arg;
	if (s->state == SV_CANCEL || s->closing)
		return;
	if (ca->db ? s->pool->db != ca->db : s->pool->db->is_admin)
		return;
	if (!ca->close_needed_only || s->close_needed)
		ca->n++;
}

static int count_servers(const char *dbname, bool close_needed_only)
{
	struct count_arg ca = {NULL, 0, close_needed_only};
	if (dbname[0] && !(ca.db = database_find(dbname)))
		return 0;
	admin_for_each_server(count_server_cb, &ca);
	return ca.n;
}

static void flushed_cb(struct pv_socket *s, void *arg)
{
	if (suspendable(s) && buf_pending(&s->out) > 0)
		*(bool *)arg = false;
}

static bool suspend_done(void)
{
	bool flushed = true;
	if (G.cf->suspend_timeout > 0 && now_usec() - suspend_started > G.cf->suspend_timeout)
		return true;
	for_each_socket(flushed_cb, &flushed);
	return flushed;
}

static bool wait_done(const struct admin_wait *w)
{
	switch (w->kind) {
	case WAIT_PAUSE_ALL:
		return G.pause_mode == PAUSE_NONE || count_servers("", false) == 0;
	case WAIT_PAUSE_DB:
		/* RESUME db (from another admin) ends the wait as well. */
		return !database_find(w->db) || !database_find(w->db)->paused ||
		       count_servers(w->db, false) == 0;
	case WAIT_SUSPEND:
		return G.pause_mode != PAUSE_SUSPEND || suspend_done();
	case WAIT_CLOSE_ALL:
	case WAIT_CLOSE_DB:
	default:
		return count_servers(w->db, true) == 0;
	}
}

static const char *wait_tag(enum wait_kind k)
{
	switch (k) {
	case WAIT_PAUSE_ALL:
	case WAIT_PAUSE_DB:
		return "PAUSE";
	case WAIT_SUSPEND:
		return "SUSPEND";
	default:
		return "WAIT_CLOSE";
	}
}

static void finish_wait(size_t i)
{
	struct pv_socket *c = find_admin_client(waits[i].client_id);
	enum wait_kind kind = waits[i].kind;
	waits[i] = waits[--n_waits];
	if (!c)
		return;
	reply_ok(c, wait_tag(kind));
	if (!c->closing)
		sbuf_wakeup(c);
}

static void finish_waits_of(enum wait_kind a, enum wait_kind b)
{
	for (size_t i = 0; i < n_waits;)
		if (waits[i].kind == a || waits[i].kind == b)
			finish_wait(i);
		else
			i++;
}

static void check_waits(void)
{
	for (size_t i = 0; i < n_waits;) {
		if (!find_admin_client(waits[i].client_id))
			waits[i] = waits[--n_waits];
		else if (wait_done(&waits[i]))
			finish_wait(i);
		else
			i++;
	}
}

void admin_per_loop(void)
{
	if (G.pause_mode == PAUSE_NONE && paused_dbs == 0 && n_waits == 0)
		return;
	if (G.shutdown_mode == SHUTDOWN_WAIT_FOR_SERVERS)
		admin_for_each_client(drop_waiting_cb, NULL);
	close_paused_servers();
	if (G.pause_mode == PAUSE_SUSPEND) {
		/* Re-applied every loop: deferred wake-ups may have restarted a socket. */
		for_each_socket(suspend_cb, NULL);
		if (suspend_owner && !find_admin_client(suspend_owner)) {
			log_info("admin client that ran SUSPEND is gone, resuming");
			admin_resume_all();
		}
	}
	check_waits();
}

/* --- commands ------------------------------------------------------------------------ */

enum cmd_result {
	CMD_DONE,   /* reply queued */
	CMD_WAIT,   /* reply comes later: stop reading the client */
	CMD_CLOSED, /* the client is gone */
};

/* Look up the database argument, replying with an error when it cannot be used. */
static struct pv_database *arg_db(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct pv_database *db = database_find(cmd->arg);
	if (!db && strcmp(cmd->arg, ADMIN_DB_NAME) != 0)
		db = database_get(cmd->arg);
	if (!db)
		reply_error(c, "no such database: %s", cmd->arg);
	return db;
}

static enum cmd_result wait_or_fail(struct pv_socket *c, enum wait_kind kind, const char *db)
{
	if (!add_wait(c, kind, db)) {
		reply_error(c, "out of memory");
		return CMD_DONE;
	}
	return CMD_WAIT;
}

static enum cmd_result cmd_pause(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct pv_database *db;
	if (!cmd->has_arg) {
		if (!admin_pause_all()) {
			reply_error(c, "already suspended/paused");
			return CMD_DONE;
		}
		return wait_or_fail(c, WAIT_PAUSE_ALL, NULL);
	}
	if (G.pause_mode != PAUSE_NONE) {
		reply_error(c, "already suspended/paused");
		return CMD_DONE;
	}
	if (!(db = arg_db(c, cmd)))
		return CMD_DONE;
	if (db->is_admin) {
		reply_error(c, "cannot pause admin db: %s", cmd->arg);
		return CMD_DONE;
	}
	if (db->paused) {
		reply_error(c, "already suspended/paused");
		return CMD_DONE;
	}
	set_db_paused(db, true);
	return wait_or_fail(c, WAIT_PAUSE_DB, db->name);
}

static enum cmd_result cmd_resume(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct pv_database *db;
	if (!cmd->has_arg) {
		if (G.shutdown_mode != SHUTDOWN_NONE)
			reply_error(c, "pooler is shutting down");
		else if (!admin_resume_all())
			reply_error(c, "pooler is not paused/suspended");
		else
			reply_ok(c, "RESUME");
		return CMD_DONE;
	}
	if (!(db = arg_db(c, cmd)))
		return CMD_DONE;
	if (!db->paused) {
		reply_error(c, "database %s is not paused", cmd->arg);
		return CMD_DONE;
	}
	set_db_paused(db, false);
	for_each_db_pool(db, activate_pool, NULL);
	reply_ok(c, "RESUME");
	return CMD_DONE;
}

static enum cmd_result cmd_suspend(struct pv_socket *c, const struct admin_cmd *cmd)
{
	if (cmd->has_arg) {
		reply_error(c, "invalid command '%s', use SHOW HELP;", cmd->query);
		return CMD_DONE;
	}
	if (G.pause_mode != PAUSE_NONE) {
		reply_error(c, "already suspended/paused");
		return CMD_DONE;
	}
	if (paused_dbs > 0) {
		reply_error(c, "cannot suspend with paused databases");
		return CMD_DONE;
	}
	G.pause_mode = PAUSE_SUSPEND;
	suspend_owner = c->id;
	suspend_started = now_usec();
	listeners_pause(true);
	for_each_socket(suspend_cb, NULL);
	return wait_or_fail(c, WAIT_SUSPEND, NULL);
}

static enum cmd_result cmd_enable_disable(struct pv_socket *c, const struct admin_cmd *cmd,
                                          bool disable)
{
	struct pv_database *db;
	if (!cmd->has_arg) {
		reply_error(c, "a database is required");
		return CMD_DONE;
	}
	if (!(db = arg_db(c, cmd)))
		return CMD_DONE;
	if (db->is_admin) {
		reply_error(c, "cannot %s admin db: %s", disable ? "disable" : "enable", cmd->arg);
		return CMD_DONE;
	}
	db->disabled = disable;
	reply_ok(c, disable ? "DISABLE" : "ENABLE");
	return CMD_DONE;
}

static enum cmd_result cmd_disable(struct pv_socket *c, const struct admin_cmd *cmd)
{
	return cmd_enable_disable(c, cmd, true);
}

static enum cmd_result cmd_enable(struct pv_socket *c, const struct admin_cmd *cmd)
{
	return cmd_enable_disable(c, cmd, false);
}

static enum cmd_result cmd_reconnect(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct pv_database *db = NULL;
	if (cmd->has_arg && !(db = arg_db(c, cmd)))
		return CMD_DONE;
	for_each_db_pool(db, reconnect_pool, NULL);
	reply_ok(c, "RECONNECT");
	return CMD_DONE;
}

static enum cmd_result cmd_kill(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct pv_database *db = NULL;
	struct list_head *it;

	if (G.pause_mode != PAUSE_NONE) {
		reply_error(c, "already suspended/paused");
		return CMD_DONE;
	}
	if (cmd->has_arg) {
		if (!(db = arg_db(c, cmd)))
			return CMD_DONE;
		if (db->is_admin) {
			reply_error(c, "cannot kill admin db: %s", cmd->arg);
			return CMD_DONE;
		}
		set_db_paused(db, true);
	} else {
		/* Every database is paused (RESUME db undoes it), as KILL db does for one. */
		ensure_config_databases();
		list_for_each(it, &G.databases)
		{
			struct pv_database *d = container_of(it, struct pv_database, node);
			if (!d->is_admin && !d->dead)
				set_db_paused(d, true);
		}
	}
	for_each_db_pool(db, kill_pool, "database removed");
	reply_ok(c, "KILL");
	return CMD_DONE;
}

struct find_id {
	uint64_t id;
	struct pv_socket *found;
};

static void find_id_cb(struct pv_socket *s, void *arg)
{
	struct find_id *f = arg;
	if (s->id == f->id && !s->closing && s->state != CL_CANCEL)
		f->found = s;
}

static enum cmd_result cmd_kill_client(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct find_id f = {0, NULL};
	char *end = NULL;
	struct pv_socket *target, *server;
	struct list_head *it, *tmp;

	if (!cmd->has_arg || !isdigit((unsigned char)cmd->arg[0]) ||
	    (f.id = strtoull(cmd->arg, &end, 10), *end != '\0')) {
		reply_error(c, "invalid client pointer supplied");
		return CMD_DONE;
	}
	admin_for_each_client(find_id_cb, &f);
	list_for_each_safe(it, tmp, &G.login_clients)
	    find_id_cb(container_of(it, struct pv_socket, node), &f);
	if (!(target = f.found)) {
		reply_error(c, "client not found");
		return CMD_DONE;
	}
	/* The server goes too: it may be in the middle of the client's query. */
	if ((server = target->link) != NULL) {
		target->link = NULL;
		server->link = NULL;
		server_close(server, "admin forced disconnect");
	}
	client_fatal(target, "08P01", "admin forced disconnect");
	if (target == c)
		return CMD_CLOSED;
	reply_ok(c, "KILL_CLIENT");
	return CMD_DONE;
}

/* --- approvals (approval.h) ------------------------------------------------------------ */

/* A token login to the console: it may only see and decide held statements. */
static bool is_approver(const struct pv_socket *c)
{
	return c->identity && !c->admin_user && !c->stats_user;
}

/*
 * What an approver may run, checked per command so that a RELOAD that drops
 * their group, or the token's expiry, ends their rights on the open session.
 */
static bool approver_may_run(struct pv_socket *c, const struct admin_cmd *cmd)
{
	bool cmd_ok = strcasecmp(cmd->cmd, "APPROVE") == 0 || strcasecmp(cmd->cmd, "DENY") == 0 ||
	              (strcasecmp(cmd->cmd, "SHOW") == 0 && strcasecmp(cmd->arg, "APPROVALS") == 0);

	if (!cmd_ok || !gov_is_approver(gov_active(), c->identity)) {
		reply_error(c, "admin access needed");
		return false;
	}
	if (c->identity->exp && c->identity->exp <= (int64_t)time(NULL)) {
		reply_error(c, "token expired: log in again");
		return false;
	}
	return true;
}

/* Decide as the login: an identity (subject + provider) or the admin user name. */
static void decide(struct pv_socket *c, struct approval *a, enum approval_state st,
                   const char *reason)
{
	if (is_approver(c))
		approval_decide_as(a, st, c->identity->subject, c->identity->provider, reason);
	else
		approval_decide(a, st, c->startup_user, reason);
}

/* The pending approval cmd names; NULL after replying an error. */
static struct approval *decision_target(struct pv_socket *c, const struct admin_cmd *cmd)
{
	char *end = NULL;
	unsigned long long id;
	struct approval *a;

	if (!isdigit((unsigned char)cmd->arg[0]) || (id = strtoull(cmd->arg, &end, 10), *end)) {
		reply_error(c, "invalid approval id");
		return NULL;
	}
	if (!(a = approval_find_pending(id)))
		reply_error(c, "approval %llu not found or already decided", id);
	return a;
}

/* "FOR <n>[s|m|h|d]" (no unit: seconds) into seconds; false when malformed. */
static bool parse_for(const char *v, int64_t *secs)
{
	char *end;
	unsigned long long n;
	int64_t mult = 1;

	if (strncasecmp(v, "FOR", 3) != 0 || !isspace((unsigned char)v[3]))
		return false;
	v = skip_space(v + 3);
	if (!isdigit((unsigned char)*v))
		return false;
	n = strtoull(v, &end, 10);
	if (strcasecmp(end, "m") == 0 || strcasecmp(end, "min") == 0)
		mult = 60;
	else if (strcasecmp(end, "h") == 0)
		mult = 3600;
	else if (strcasecmp(end, "d") == 0)
		mult = 86400;
	else if (*end && strcasecmp(end, "s") != 0)
		return false;
	if (n == 0 || n > (unsigned long long)(366 * 86400) / (unsigned long long)mult)
		return false;
	*secs = (int64_t)n * mult;
	return true;
}

static enum cmd_result cmd_approve(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct approval *a = decision_target(c, cmd);
	int64_t secs = 0;
	char note[64] = "";

	if (!a)
		return CMD_DONE;
	/* Four eyes: an approver identity never approves its own statement (admins may). */
	if (is_approver(c) && a->subject && strcmp(a->subject, c->identity->subject) == 0) {
		reply_error(c, "approval %llu is your own statement: another approver must decide",
		            (unsigned long long)a->id);
		return CMD_DONE;
	}
	if (cmd->value[0] && !parse_for(cmd->value, &secs)) {
		reply_error(c, "invalid command '%s', use APPROVE <id> [FOR <n>s|m|h|d]", cmd->query);
		return CMD_DONE;
	}
	/* Text the parser rejected has no fingerprint: FOR would have nothing to match. */
	if (secs && a->fingerprint == 0) {
		reply_error(c, "approval %llu has no statement fingerprint: approve it without FOR",
		            (unsigned long long)a->id);
		return CMD_DONE;
	}
	if (secs && !approval_allow_for(a, now_usec() + secs * USEC_PER_SEC)) {
		reply_error(c, "out of memory");
		return CMD_DONE;
	}
	if (secs)
		snprintf(note, sizeof(note), "same statement allowed for %llds", (long long)secs);
	decide(c, a, APPROVAL_APPROVED, note);
	reply_ok(c, "APPROVE");
	return CMD_DONE;
}

static enum cmd_result cmd_deny(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct approval *a = decision_target(c, cmd);

	if (!a)
		return CMD_DONE;
	decide(c, a, APPROVAL_DENIED, cmd->value);
	reply_ok(c, "DENY");
	return CMD_DONE;
}

static enum cmd_result cmd_shutdown(struct pv_socket *c, const struct admin_cmd *cmd)
{
	enum shutdown_mode mode;
	if (!cmd->has_arg)
		mode = SHUTDOWN_IMMEDIATE;
	else if (strcasecmp(cmd->arg, "WAIT_FOR_SERVERS") == 0)
		mode = SHUTDOWN_WAIT_FOR_SERVERS;
	else if (strcasecmp(cmd->arg, "WAIT_FOR_CLIENTS") == 0)
		mode = SHUTDOWN_WAIT_FOR_CLIENTS;
	else {
		reply_error(c, "invalid command '%s', use SHOW HELP;", cmd->query);
		return CMD_DONE;
	}
	if (mode != SHUTDOWN_IMMEDIATE && G.shutdown_mode != SHUTDOWN_NONE) {
		reply_error(c, "pooler is shutting down");
		return CMD_DONE;
	}
	log_info("SHUTDOWN%s%s command issued", cmd->has_arg ? " " : "", cmd->arg);
	admin_start_shutdown(mode);
	if (mode == SHUTDOWN_IMMEDIATE)
		return CMD_WAIT; /* no reply: the connection stays open until the process exits */
	reply_ok(c, "SHUTDOWN");
	return CMD_DONE;
}

static enum cmd_result cmd_reload(struct pv_socket *c, const struct admin_cmd *cmd)
{
	if (!ops || !ops->reload || !ops->reload())
		reply_error_state(c, "F0000", "RELOAD failed, see logs for additional details");
	else
		reply_ok(c, "RELOAD");
	return CMD_DONE;
}

static enum cmd_result cmd_wait_close(struct pv_socket *c, const struct admin_cmd *cmd)
{
	struct pv_database *db = NULL;
	if (cmd->has_arg && !(db = arg_db(c, cmd)))
		return CMD_DONE;
	return wait_or_fail(c, db ? WAIT_CLOSE_DB : WAIT_CLOSE_ALL, db ? db->name : NULL);
}

/* SHOW/SET of these answer like a server would, so drivers that probe them work. */
static const char *const fake_params[][2] = {
    {"client_encoding", "UTF-8"},
    {"default_transaction_isolation", "read committed"},
    {"standard_conforming_strings", "on"},
    {"datestyle", "ISO"},
    {"timezone", "GMT"},
};

static int fake_param_index(const char *name)
{
	for (size_t i = 0; i < sizeof(fake_params) / sizeof(fake_params[0]); i++)
		if (strcasecmp(name, fake_params[i][0]) == 0)
			return (int)i;
	return -1;
}

static enum cmd_result cmd_set(struct pv_socket *c, const struct admin_cmd *cmd)
{
	char err[256], tag[CMD_MAX + ARG_MAX + VALUE_MAX + 8];

	if (fake_param_index(cmd->arg) >= 0) {
		reply_notice_ok(c, "SET ignored", "SET");
		return CMD_DONE;
	}
	if (!c->admin_user) {
		reply_error(c, "admin access needed");
		return CMD_DONE;
	}
	if (!config_set_key(G.cf, cmd->arg, cmd->value, err, sizeof(err))) {
		log_warning("admin SET %s failed: %s", cmd->arg, err);
		reply_error(c, "SET failed");
		return CMD_DONE;
	}
	if (ops && ops->config_changed)
		ops->config_changed();
	snprintf(tag, sizeof(tag), "SET %s=%s", cmd->arg, cmd->value);
	reply_ok(c, tag);
	return CMD_DONE;
}

/* The value of the fake parameter being shown (the loop is single-threaded). */
static const char *fake_value;

static void fake_param_row(struct admin_res *r)
{
	res_row_begin(r);
	res_text(r, fake_value);
	res_row_end(r);
}

static void send_fake_param(struct pv_socket *c, int idx)
{
	struct admin_col col = {fake_params[idx][0], AT_TEXT};
	struct admin_show sh = {fake_params[idx][0], false, &col, 1, fake_param_row};
	struct pv_buf out;

	fake_value = fake_params[idx][1];
	buf_init(&out);
	queue_buf(c, &out, admin_show_run(&sh, &out) && msg_ready(&out, 'I'));
}

static enum cmd_result cmd_show(struct pv_socket *c, const struct admin_cmd *cmd)
{
	const struct admin_show *sh;
	struct pv_buf out;
	int fake;

	if (!cmd->has_arg) {
		reply_error(c, "invalid command '%s', use SHOW HELP;", cmd->query);
		return CMD_DONE;
	}
	if ((fake = fake_param_index(cmd->arg)) >= 0) {
		send_fake_param(c, fake);
		return c->closing ? CMD_CLOSED : CMD_DONE;
	}
	if (strcasecmp(cmd->arg, "HELP") == 0) {
		reply_notice_ok(c, admin_help_text(), "SHOW");
		return CMD_DONE;
	}
	if (!(sh = admin_show_find(cmd->arg))) {
		reply_error(c, "invalid command '%s', use SHOW HELP;", cmd->query);
		return CMD_DONE;
	}
	/* run_command() let an approver through for SHOW APPROVALS only */
	if (sh->admin_only && !c->admin_user && !is_approver(c)) {
		reply_error(c, "admin access needed");
		return CMD_DONE;
	}
	if (strcasecmp(sh->name, "DATABASES") == 0 || strcasecmp(sh->name, "USERS") == 0)
		ensure_config_databases();
	buf_init(&out);
	queue_buf(c, &out, admin_show_run(sh, &out) && msg_ready(&out, 'I'));
	return c->closing ? CMD_CLOSED : CMD_DONE;
}

struct admin_command {
	const char *name;
	bool admin_only;
	enum cmd_result (*fn)(struct pv_socket *c, const struct admin_cmd *cmd);
};

/* Rights are checked here, except SHOW and SET which check per subcommand / key. */
static const struct admin_command commands[] = {
    {"SHOW", false, cmd_show},
    {"SELECT", false, cmd_show},
    {"SET", false, cmd_set},
    {"PAUSE", true, cmd_pause},
    {"RESUME", true, cmd_resume},
    {"SUSPEND", true, cmd_suspend},
    {"DISABLE", true, cmd_disable},
    {"ENABLE", true, cmd_enable},
    {"RECONNECT", true, cmd_reconnect},
    {"KILL", true, cmd_kill},
    {"KILL_CLIENT", true, cmd_kill_client},
    {"SHUTDOWN", true, cmd_shutdown},
    {"RELOAD", true, cmd_reload},
    {"WAIT_CLOSE", true, cmd_wait_close},
    {"APPROVE", true, cmd_approve},
    {"DENY", true, cmd_deny},
};

static enum cmd_result run_command(struct pv_socket *c, const char *q)
{
	struct admin_cmd cmd;

	if (!parse_command(q, &cmd)) {
		reply_error(c, "invalid command '%s', use SHOW HELP;", q);
		return CMD_DONE;
	}
	if (is_approver(c) && !approver_may_run(c, &cmd))
		return CMD_DONE;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcasecmp(cmd.cmd, commands[i].name) != 0)
			continue;
		if (commands[i].admin_only && !c->admin_user && !is_approver(c)) {
			reply_error(c, "admin access needed");
			return CMD_DONE;
		}
		return commands[i].fn(c, &cmd);
	}
	reply_error(c, "invalid command '%s', use SHOW HELP;", q);
	return CMD_DONE;
}

static enum pkt_action handle_query(struct pv_socket *c, struct pkt *p)
{
	struct pkt_reader r;
	const char *q;
	enum cmd_result res;

	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	reader_init_pkt(&r, p);
	q = read_string(&r);
	if (!q || reader_left(&r) != 0) {
		client_fatal(c, "08P01", "invalid query packet");
		return PKT_STOP;
	}
	/* Admin commands count as a transaction and a query, as in PgBouncer. */
	c->pool->stats.query_count++;
	c->pool->stats.xact_count++;
	if (log_verbose >= 1)
		slog(LG_DEBUG, c, "admin command: %s", q);
	record_admin(c, q);
	res = run_command(c, q);
	if (res == CMD_CLOSED || c->closing)
		return PKT_STOP;
	if (res == CMD_WAIT)
		sbuf_pause(c);
	return PKT_CONSUMED;
}

enum pkt_action admin_handle_pkt(struct pv_socket *c, struct pkt *p)
{
	switch (p->type) {
	case 'X':
		client_close(c, "client close request");
		return PKT_STOP;
	case 'Q':
		return handle_query(c, p);
	case 'P':
	case 'B':
	case 'E':
	case 'D':
	case 'C':
	case 'S':
	case 'H':
		client_fatal(c, "08P01", "extended query protocol not supported by admin console");
		return PKT_STOP;
	default:
		client_fatal(c, "08P01", "unsupported message type for admin console: 0x%02x",
		             p->type);
		return PKT_STOP;
	}
}
