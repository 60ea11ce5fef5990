/*
 * record_events.c - builds the recorded events from the packet path and
 * hands them to the recorder (record_events.h says what this owns; the
 * event schema is doc/recordings.md).
 *
 * Statements and results are paired per client with a FIFO of what was sent:
 * a Query, each Execute, and a marker per Sync. CommandComplete, EmptyQuery,
 * PortalSuspended and ErrorResponse complete the first entry; ReadyForQuery
 * ends everything up to its Query or Sync (an Execute the server skipped after
 * an error gets a `skipped` result).
 *
 * Back-pressure (block mode): an event the queue refuses is parked on its
 * client, in order, and the client stops being read; the room eventfd of the
 * recorder drains parked events and wakes the client. An event of a client
 * that has parked events is parked behind them, so the order per session is
 * kept. Events of closed clients are kept on an orphan list, never dropped.
 */
#include "record_events.h"
#include "record_desc.h"
#include "sqlcomment.h"
#include "approval.h"
#include "governance.h"
#include "hooks.h"
#include "inspect.h"
#include "log.h"
#include "oidc.h"
#include "pool.h"
#include "proto.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REC_MAX_TRACKED 512 /* Parse texts / portals remembered per client */
#define REC_TYPE_MAX    24
#define REC_HOLD_USEC   5000 /* a statement waits this long for its result to fold in */

/* One event waiting for room in the queue (block mode). */
struct rec_ev {
	char type[REC_TYPE_MAX];
	struct rec_event *fields;
	struct rec_ev *next;
};

/* A named (or unnamed, "") prepared statement or portal of the client. */
struct rec_named {
	char *name;
	char *text;     /* statement text; NULL when unknown */
	uint32_t *oids; /* statements: declared parameter types */
	uint16_t n_oids;
	bool denied;  /* the Parse was replaced by a denial (rules.c) */
	char *params; /* portals: rendered Bind parameters, a JSON array as text */
	size_t params_len;
	char *stmt; /* portals: the statement name bound */
};

enum pend_kind {
	PEND_QUERY,    /* a simple Query: results until its ReadyForQuery */
	PEND_EXEC,     /* an Execute: one completion */
	PEND_SYNC,     /* a Sync: ends the extended batch */
	PEND_DESCRIBE, /* a Describe: ParameterDescription / RowDescription / NoData */
	PEND_OTHER,    /* a FunctionCall: a ReadyForQuery boundary, nothing recorded */
};

struct rec_pending {
	enum pend_kind kind;
	uint64_t stmt; /* statement number in the session; 0: not recorded (denied) */
	bool refused;  /* replaced by a denial: the error is its result */
	usec_t sent;
	int part; /* Query: results so far (multi-statement texts) */
	json_t *columns;
	json_t *rows;
	char *name; /* Describe of a statement: its name (the types are learnt from 't') */
	struct rec_pending *next;
};

struct rec_client {
	char session[40];
	char session_json[44]; /* the same quoted as JSON (no escaping needed): set raw per event */
	size_t session_json_len;
	bool started; /* session_start recorded */
	usec_t connect;
	json_t *params; /* startup parameters without secrets */
	uint64_t n_stmt, n_results, n_errors;
	struct rec_named *stmts, *portals;
	size_t n_stmts, n_portals;
	struct rec_pending *pend, *pend_tail;
	struct rec_ev *parked, *parked_tail;
	bool waiting; /* on the waiters list */
	struct pv_socket *owner;
	struct rec_client *next_wait;
	struct rec_event *held; /* a statement event waiting for its result (fold) */
	uint64_t held_stmt;
	usec_t held_since;
	struct rec_client *held_prev, *held_next; /* the holders list, oldest first */
};

static struct recorder *R;
static struct rec_policy *P; /* the running recorder's policy (our copy) */
static struct event *room_ev;
static struct rec_client *waiters;
static struct rec_ev *orphans, *orphans_tail;
static uint32_t session_prefix;
static uint64_t session_counter;
static struct rec_client *holders, *holders_tail; /* clients with a held statement */
static struct event *hold_ev;                     /* flushes statements held too long */
static struct rec_event *fold_scratch;            /* a result about to be folded */

static enum pkt_action rec_client_msg(struct pv_socket *c, struct pkt *p);
static enum pkt_action rec_server_msg(struct pv_socket *s, struct pkt *p);
static void pend_pool_clear(void);

/* --- parked events ----------------------------------------------------------------- */

static void on_room(evutil_socket_t fd, short what, void *arg);

static void want_room(void)
{
	if (!room_ev) {
		room_ev =
		    event_new(G.base, recorder_room_fd(R), EV_READ | EV_PERSIST, on_room, NULL);
		if (!room_ev) {
			log_error("recorder: cannot watch the queue for room");
			return;
		}
	}
	event_add(room_ev, NULL);
}

static bool park_on(struct rec_ev **head, struct rec_ev **tail, const char *type,
                    struct rec_event *fields)
{
	struct rec_ev *e = calloc(1, sizeof(*e));
	if (!e) {
		log_error("recorder: out of memory: %s event lost", type);
		rec_event_free(fields);
		return false;
	}
	snprintf(e->type, sizeof(e->type), "%s", type);
	e->fields = fields;
	if (*tail)
		(*tail)->next = e;
	else
		*head = e;
	*tail = e;
	return true;
}

static void park(struct rec_client *rc, const char *type, struct rec_event *fields)
{
	if (!rc) {
		park_on(&orphans, &orphans_tail, type, fields);
		want_room();
		return;
	}
	park_on(&rc->parked, &rc->parked_tail, type, fields);
	if (!rc->waiting) {
		rc->waiting = true;
		rc->next_wait = waiters;
		waiters = rc;
	}
	/* fail closed: the client waits until its events are in the queue */
	if (rc->owner && !rc->owner->closing)
		sbuf_pause(rc->owner);
	want_room();
}

static void flush_held(struct rec_client *rc);

/* Emit with back-pressure; fields is always taken. */
static void emit(struct rec_client *rc, const char *type, struct rec_event *fields)
{
	if (!fields)
		return;
	if (!R) {
		rec_event_free(fields);
		return;
	}
	if (rc && rc->held) /* a session's events stay in the order they happened */
		flush_held(rc);
	if ((rc && rc->parked) || (!rc && orphans)) {
		park(rc, type, fields);
		return;
	}
	if (recorder_emit_event(R, type, fields) == REC_FULL)
		park(rc, type, fields);
}

/* Move queued events into the recorder; false when it is full again. */
static bool drain(struct rec_ev **head, struct rec_ev **tail)
{
	while (*head) {
		struct rec_ev *e = *head;
		if (recorder_emit_event(R, e->type, e->fields) == REC_FULL)
			return false;
		*head = e->next;
		free(e);
	}
	*tail = NULL;
	return true;
}

static void drain_waiters(void)
{
	struct rec_client **pp = &waiters;
	while (*pp) {
		struct rec_client *rc = *pp;
		if (!drain(&rc->parked, &rc->parked_tail))
			return;
		*pp = rc->next_wait;
		rc->waiting = false;
		if (rc->owner && !rc->owner->closing)
			sbuf_wakeup(rc->owner);
	}
}

static void on_room(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!R)
		return;
	recorder_room_ack(R);
	if (drain(&orphans, &orphans_tail))
		drain_waiters();
	if (!orphans && !waiters)
		event_del(room_ev);
}

/* --- statements held for their result ---------------------------------------------- */

/*
 * Why statements are held: with results recorded, every statement made two
 * events, and each event costs the recorder thread a serialization, a SHA-256
 * and a line, and the loop an event and a queue slot. Most results come within
 * milliseconds, so a statement event waits here (at most REC_HOLD_USEC) for its
 * first result and carries it as its `result` member: one event, not two. A
 * statement whose result is slower, or that another event of its session
 * follows first (a pipeline), is emitted alone as before and its result comes
 * as a `result` event; so a session's events stay in the order they happened
 * and a long-running statement reaches the recording while it runs. A held
 * event lives in pgvigil's memory as a queued or parked one does: a crash loses
 * it as it would lose them, no more.
 */
static void on_hold_timer(evutil_socket_t fd, short what, void *arg);

/* rc's held statement, out of the holders list (NULL when none). */
static struct rec_event *unhold(struct rec_client *rc)
{
	struct rec_event *ev = rc->held;

	if (!ev)
		return NULL;
	if (rc->held_prev)
		rc->held_prev->held_next = rc->held_next;
	else
		holders = rc->held_next;
	if (rc->held_next)
		rc->held_next->held_prev = rc->held_prev;
	else
		holders_tail = rc->held_prev;
	rc->held_prev = rc->held_next = NULL;
	rc->held = NULL;
	return ev;
}

/* rc's held statement emitted alone: its result will be a `result` event. */
static void flush_held(struct rec_client *rc)
{
	emit(rc, "statement", unhold(rc));
}

static void flush_all_held(void)
{
	while (holders)
		flush_held(holders);
}

static bool arm_hold_timer(usec_t delay)
{
	struct timeval tv = {(time_t)(delay / USEC_PER_SEC), (suseconds_t)(delay % USEC_PER_SEC)};

	if (!hold_ev && !(hold_ev = evtimer_new(G.base, on_hold_timer, NULL)))
		return false;
	return evtimer_add(hold_ev, &tv) == 0;
}

/* Statements held REC_HOLD_USEC go alone (holders are oldest first). */
static void on_hold_timer(evutil_socket_t fd, short what, void *arg)
{
	usec_t now = now_usec();

	(void)fd;
	(void)what;
	(void)arg;
	while (holders && (now - holders->held_since >= REC_HOLD_USEC || now < holders->held_since))
		flush_held(holders);
	if (holders && !arm_hold_timer(holders->held_since + REC_HOLD_USEC - now))
		flush_all_held();
}

/* A statement event sent at `sent`: held for its result when results are recorded. */
static void emit_statement(struct rec_client *rc, struct rec_event *ev, uint64_t stmt, usec_t sent)
{
	if (!ev)
		return;
	rec_event_set_ts(ev, sent);
	if (rc->held)
		flush_held(rc);
	/* the timer runs while anything is held (on_hold_timer re-arms it) */
	if (P->results == REC_RESULTS_NONE ||
	    (!(hold_ev && evtimer_pending(hold_ev, NULL)) && !arm_hold_timer(REC_HOLD_USEC))) {
		emit(rc, "statement", ev);
		return;
	}
	rc->held = ev;
	rc->held_stmt = stmt;
	rc->held_since = sent;
	rc->held_prev = holders_tail;
	if (holders_tail)
		holders_tail->held_next = rc;
	else
		holders = rc;
	holders_tail = rc;
}

/* e's first result while its statement is still held: it is folded into it. */
static bool foldable(const struct rec_client *rc, const struct rec_pending *e)
{
	return rc->held && e->stmt && rc->held_stmt == e->stmt && e->part == 0;
}

/* A result made by result_event: folded into its held statement, or a `result` event. */
static void emit_result(struct rec_client *rc, struct rec_event *ev)
{
	static const char *const none[] = {NULL};
	struct rec_event *st;

	if (ev != fold_scratch) {
		emit(rc, "result", ev);
		return;
	}
	st = unhold(rc);
	rec_event_nest(st, "result", ev, none);
	rec_event_reset(ev);
	emit(rc, "statement", st);
}

/* --- lifecycle ------------------------------------------------------------------- */

static struct rec_policy *policy_copy(const struct rec_policy *src)
{
	struct rec_policy *p = malloc(sizeof(*p));
	if (!p)
		return NULL;
	*p = *src;
	p->cfg.directory = strdup(src->cfg.directory);
	p->cfg.hmac_key = src->cfg.hmac_key ? strdup(src->cfg.hmac_key) : NULL;
	if (!p->cfg.directory || (src->cfg.hmac_key && !p->cfg.hmac_key)) {
		rec_policy_free(p);
		return NULL;
	}
	return p;
}

static void set_hooks(bool on)
{
	pv_hooks.record_client = on && P->statements ? rec_client_msg : NULL;
	pv_hooks.record_server =
	    on && P->statements && P->results != REC_RESULTS_NONE ? rec_server_msg : NULL;
}

/* Stop the running recorder (it writes everything queued); parked events stay parked. */
static void stop_running(void)
{
	if (R)
		flush_all_held();
	if (hold_ev) {
		event_free(hold_ev);
		hold_ev = NULL;
	}
	rec_event_free(fold_scratch);
	fold_scratch = NULL;
	if (room_ev) {
		event_free(room_ev);
		room_ev = NULL;
	}
	if (R)
		recorder_stop(R);
	R = NULL;
	rec_policy_free(P);
	P = NULL;
	set_hooks(false);
	rec_desc_clear();
	pend_pool_clear();
}

static bool start_with(const struct rec_policy *pol, char *err, size_t errlen)
{
	struct rec_policy *copy = policy_copy(pol);
	struct recorder *r;

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	r = recorder_start(&copy->cfg, err, errlen);
	if (!r) {
		rec_policy_free(copy);
		return false;
	}
	R = r;
	P = copy;
	set_hooks(true);
	log_info("recorder: recording to %s", P->cfg.directory);
	/* events parked for the previous recorder go to this one; their clients resume */
	if (drain(&orphans, &orphans_tail))
		drain_waiters();
	if (orphans || waiters)
		want_room();
	return true;
}

bool record_start(char *err, size_t errlen)
{
	const struct gov_policy *pol = gov_active();
	if (!session_prefix && !random_bytes(&session_prefix, sizeof(session_prefix)))
		session_prefix = (uint32_t)now_usec();
	if (!pol || !pol->recording)
		return true;
	return start_with(pol->recording, err, errlen);
}

static void free_events(struct rec_ev **head, struct rec_ev **tail)
{
	while (*head) {
		struct rec_ev *e = *head;
		*head = e->next;
		rec_event_free(e->fields);
		free(e);
	}
	*tail = NULL;
}

/* Recording turned off: nothing can take parked events any more; their clients go on. */
static void discard_parked(void)
{
	size_t n = 0;
	free_events(&orphans, &orphans_tail);
	while (waiters) {
		struct rec_client *rc = waiters;
		waiters = rc->next_wait;
		rc->waiting = false;
		free_events(&rc->parked, &rc->parked_tail);
		if (rc->owner && !rc->owner->closing)
			sbuf_wakeup(rc->owner);
		n++;
	}
	if (n)
		log_warning("recorder: off by RELOAD: events of %zu waiting clients not recorded",
		            n);
}

void record_reload(void)
{
	const struct gov_policy *pol = gov_active();
	const struct rec_policy *next = pol ? pol->recording : NULL;
	char err[512];

	if (!next) {
		if (R)
			log_info("recorder: recording turned off");
		stop_running();
		discard_parked();
		return;
	}
	rec_desc_clear(); /* the classification may have changed with the reload */
	flush_all_held(); /* `results` may change: nothing waits for a result under old rules */
	if (R && !rec_policy_needs_restart(P, next)) {
		/* statements/results/caps apply to new events at once */
		P->statements = next->statements;
		P->results = next->results;
		P->max_result_rows = next->max_result_rows;
		P->max_value_bytes = next->max_value_bytes;
		set_hooks(true);
		return;
	}
	stop_running();
	if (!start_with(next, err, sizeof(err))) {
		log_error("recorder: cannot start, recording is off: %s", err);
		discard_parked();
	}
}

void record_stop(void)
{
	/* Parked events get one last chance: the stopping recorder writes what it holds. */
	if (R) {
		drain(&orphans, &orphans_tail);
		for (struct rec_client *rc = waiters; rc; rc = rc->next_wait)
			drain(&rc->parked, &rc->parked_tail);
	}
	stop_running();
}

bool record_stats(struct rec_stats *out)
{
	if (!R)
		return false;
	recorder_stats(R, out);
	return true;
}

/* --- per-client state ---------------------------------------------------------------- */

static struct rec_client *rc_get(struct pv_socket *c)
{
	struct rec_client *rc = c->rec;
	if (rc || !R)
		return rc;
	rc = calloc(1, sizeof(*rc));
	if (!rc)
		return NULL;
	snprintf(rc->session, sizeof(rc->session), "%08x-%llu", session_prefix,
	         (unsigned long long)++session_counter);
	rc->session_json_len =
	    (size_t)snprintf(rc->session_json, sizeof(rc->session_json), "\"%s\"", rc->session);
	rc->connect = c->connect_time ? c->connect_time : now_usec();
	rc->owner = c;
	c->rec = rc;
	return rc;
}

static void named_clear(struct rec_named *n)
{
	free(n->name);
	free(n->text);
	free(n->oids);
	free(n->stmt);
	free(n->params);
	memset(n, 0, sizeof(*n));
}

static void named_free_all(struct rec_named **v, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		named_clear(&(*v)[i]);
	free(*v);
	*v = NULL;
	*n = 0;
}

/*
 * Finished FIFO entries kept for reuse (loop thread only): every statement
 * takes one to three (Describe, Execute, Sync), which was a calloc and a free
 * each. Only while recording runs, so that nothing is left pooled after stop.
 */
#define PEND_POOL_MAX 256
static struct rec_pending *pend_pool;
static size_t pend_pooled;

static void pend_free(struct rec_pending *e)
{
	json_decref(e->columns);
	json_decref(e->rows);
	free(e->name);
	if (R && pend_pooled < PEND_POOL_MAX) {
		e->next = pend_pool;
		pend_pool = e;
		pend_pooled++;
	} else {
		free(e);
	}
}

static struct rec_pending *pend_alloc(void)
{
	struct rec_pending *e = pend_pool;

	if (!e)
		return calloc(1, sizeof(*e));
	pend_pool = e->next;
	pend_pooled--;
	memset(e, 0, sizeof(*e));
	return e;
}

static void pend_pool_clear(void)
{
	while (pend_pool) {
		struct rec_pending *e = pend_pool;
		pend_pool = e->next;
		free(e);
	}
	pend_pooled = 0;
}

static void waiters_remove(struct rec_client *rc)
{
	for (struct rec_client **pp = &waiters; *pp; pp = &(*pp)->next_wait) {
		if (*pp == rc) {
			*pp = rc->next_wait;
			break;
		}
	}
	rc->waiting = false;
}

void record_client_free(struct pv_socket *c)
{
	struct rec_client *rc = c->rec;
	if (!rc)
		return;
	if (rc->held) {
		rc->owner = NULL; /* going: its event may wait for room, but not pause it */
		flush_held(rc);
	}
	if (rc->waiting)
		waiters_remove(rc);
	/* parked events outlive the client: they are part of the record */
	if (rc->parked) {
		if (orphans_tail)
			orphans_tail->next = rc->parked;
		else
			orphans = rc->parked;
		orphans_tail = rc->parked_tail;
		if (R)
			want_room();
	}
	while (rc->pend) {
		struct rec_pending *e = rc->pend;
		rc->pend = e->next;
		pend_free(e);
	}
	named_free_all(&rc->stmts, &rc->n_stmts);
	named_free_all(&rc->portals, &rc->n_portals);
	json_decref(rc->params);
	free(rc);
	c->rec = NULL;
}

static struct rec_named *named_find(struct rec_named *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

/*
 * *slot = a copy of s (NULL: none), keeping the copy already there when it is
 * the same text: clients re-Parse and re-Bind the unnamed statement and portal
 * with the same text every time, which cost two allocations and frees each.
 */
static void keep_or_dup(char **slot, const char *s)
{
	if (*slot && s && strcmp(*slot, s) == 0)
		return;
	free(*slot);
	*slot = s ? strdup(s) : NULL; /* out of memory: the text is unknown (null) */
}

/*
 * The entry for name, emptied for new content but for its name, text and stmt
 * (which the caller sets with keep_or_dup); the oldest is forgotten at the cap.
 */
static struct rec_named *named_slot(struct rec_named **v, size_t *n, const char *name)
{
	struct rec_named *e = named_find(*v, *n, name), *grown;
	char *dup;

	if (e) {
		char *keep_name = e->name, *keep_text = e->text, *keep_stmt = e->stmt;

		e->name = e->text = e->stmt = NULL;
		named_clear(e);
		e->name = keep_name;
		e->text = keep_text;
		e->stmt = keep_stmt;
		return e;
	}
	if (!(dup = strdup(name)))
		return NULL;
	if (*n == REC_MAX_TRACKED) {
		named_clear(&(*v)[0]);
		memmove(&(*v)[0], &(*v)[1], (*n - 1) * sizeof(**v));
		--*n;
	} else {
		grown = realloc(*v, (*n + 1) * sizeof(**v));
		if (!grown) {
			free(dup);
			return NULL;
		}
		*v = grown;
	}
	e = &(*v)[(*n)++];
	memset(e, 0, sizeof(*e));
	e->name = dup;
	return e;
}

static void named_remove(struct rec_named *v, size_t *n, const char *name)
{
	struct rec_named *e = named_find(v, *n, name);
	if (!e)
		return;
	named_clear(e);
	memmove(e, e + 1, (size_t)(&v[*n] - (e + 1)) * sizeof(*e));
	--*n;
}

/*
 * A string literal that needs no escaping, set as ready JSON text: most
 * events carry a few (protocol, sqlstate) and the UTF-8 check and escaping
 * of each showed in the profile.
 */
#define rec_event_lit(ev, key, lit) rec_event_raw((ev), (key), "\"" lit "\"", sizeof(lit) + 1)

static struct rec_event *event_of(const struct rec_client *rc)
{
	struct rec_event *ev = recorder_event_new(R); /* reuses written events */
	if (ev)
		rec_event_raw(ev, "session", rc->session_json, rc->session_json_len);
	return ev;
}

/* A setting or parameter name that may hold a secret. */
static bool secret_name(const char *k, size_t len)
{
	static const char *const words[] = {"password", "secret", "token", "key", "credential"};
	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		size_t wl = strlen(words[w]);
		for (size_t i = 0; i + wl <= len; i++)
			if (strncasecmp(k + i, words[w], wl) == 0)
				return true;
	}
	return false;
}

/* --- sessions --------------------------------------------------------------------- */

static bool secret_param(const char *key)
{
	return secret_name(key, strlen(key)) || strcasecmp(key, "options") == 0;
}

void record_startup_params(struct pv_socket *c, const struct startup_param *params, int n)
{
	struct rec_client *rc = rc_get(c);
	if (!rc)
		return;
	json_decref(rc->params);
	rc->params = json_object();
	for (int i = 0; rc->params && i < n; i++) {
		const char *k = params[i].key, *v = params[i].value;
		/* "options" may carry -c settings with secrets; only its presence is kept */
		json_object_set_new(rc->params, k,
		                    secret_param(k)
		                        ? json_string("[redacted]")
		                        : rec_text_json((const uint8_t *)v, strlen(v), 1024));
	}
}

static void addr_of(const struct pv_socket *c, struct rec_event *ev)
{
	char addr[INET6_ADDRSTRLEN] = "unix";
	int port = 0;

	if (c->remote.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)&c->remote;
		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
		port = ntohs(in->sin_port);
	} else if (c->remote.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)&c->remote;
		inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
		port = ntohs(in6->sin6_port);
	}
	rec_event_str(ev, "client_addr", addr);
	rec_event_int(ev, "client_port", port);
}

static json_t *tls_of(const struct pv_socket *c)
{
	if (!c->tls)
		return json_null();
	return json_pack("{s:s,s:s}", "version", SSL_get_version(c->tls), "cipher",
	                 SSL_get_cipher_name(c->tls));
}

static void identity_of(const struct pv_socket *c, struct rec_event *ev)
{
	const struct pv_identity *id = c->identity;
	json_t *groups = json_array();

	for (size_t i = 0; id && groups && i < id->n_groups; i++)
		json_array_append_new(groups, json_string(id->groups[i]));
	rec_event_str(ev, "identity", id ? id->subject : NULL);
	rec_event_str(ev, "provider", id ? id->provider : NULL);
	rec_event_json(ev, "groups", groups ? groups : json_null());
}

void record_session_start(struct pv_socket *c)
{
	struct rec_client *rc;
	struct rec_event *ev;

	if (!R || c->pool->db->is_admin || c->replication || !(rc = rc_get(c)) || rc->started)
		return;
	rc->started = true;
	if (!(ev = event_of(rc)))
		return;
	identity_of(c, ev);
	rec_event_str(ev, "db_user", c->pool->user->name);
	rec_event_str(ev, "login_user", c->startup_user);
	rec_event_str(ev, "database", c->pool->db->name);
	addr_of(c, ev);
	rec_event_json(ev, "tls", tls_of(c));
	rec_event_str(ev, "application_name", c->app_name);
	rec_event_json(ev, "params", rc->params ? json_incref(rc->params) : json_object());
	emit(rc, "session_start", ev);
}

void record_session_end(struct pv_socket *c, const char *reason)
{
	struct rec_client *rc = c->rec;
	struct rec_event *ev;

	if (!rc || !rc->started || !(ev = event_of(rc)))
		return;
	rc->started = false;
	rec_event_str(ev, "reason", reason ? reason : "");
	rec_event_int(ev, "duration_us", now_usec() - rc->connect);
	rec_event_int(ev, "statements", (json_int_t)rc->n_stmt);
	rec_event_int(ev, "results", (json_int_t)rc->n_results);
	rec_event_int(ev, "errors", (json_int_t)rc->n_errors);
	rec_event_int(ev, "denials", (json_int_t)c->denials);
	/* the client is going: its event must not pause it, only wait with the others */
	rc->owner = NULL;
	emit(rc, "session_end", ev);
	rc->owner = c;
}

/* A client that logged in before recording started is recorded from its next message. */
static struct rec_client *rc_session(struct pv_socket *c)
{
	struct rec_client *rc = rc_get(c);
	if (rc && !rc->started && !c->pool->db->is_admin)
		record_session_start(c);
	return rc;
}

/* --- client messages ---------------------------------------------------------------- */

static struct rec_pending *pend_push(struct rec_client *rc, enum pend_kind kind, uint64_t stmt)
{
	struct rec_pending *e = pend_alloc();
	if (!e)
		return NULL;
	e->kind = kind;
	e->stmt = stmt;
	/* only statements have a duration: a clock read less for Describe and Sync */
	e->sent = kind == PEND_QUERY || kind == PEND_EXEC ? now_usec() : 0;
	if (rc->pend_tail)
		rc->pend_tail->next = e;
	else
		rc->pend = e;
	rc->pend_tail = e;
	return e;
}

static void pend_pop(struct rec_client *rc)
{
	struct rec_pending *e = rc->pend;
	if (!e)
		return;
	rc->pend = e->next;
	if (!rc->pend)
		rc->pend_tail = NULL;
	pend_free(e);
}

static void on_query(struct rec_client *rc, const struct pkt *p)
{
	struct pkt_reader r;
	const char *sql;
	struct rec_event *ev;
	struct rec_pending *e;

	reader_init_pkt(&r, p);
	sql = read_string(&r);
	if (!sql || !(ev = event_of(rc)))
		return;
	rec_event_int(ev, "stmt", (json_int_t)++rc->n_stmt);
	rec_event_lit(ev, "protocol", "simple");
	rec_describe_cached(ev, sql, strlen(sql));
	e = pend_push(rc, PEND_QUERY, rc->n_stmt);
	emit_statement(rc, ev, rc->n_stmt, e ? e->sent : now_usec());
}

static void on_parse(struct rec_client *rc, const struct pkt *p, bool denied)
{
	struct pkt_reader r;
	const char *name, *sql;
	struct rec_named *e;
	uint16_t n;

	reader_init_pkt(&r, p);
	name = read_string(&r);
	sql = read_string(&r);
	n = read_u16(&r);
	if (!name || !sql || r.bad || !(e = named_slot(&rc->stmts, &rc->n_stmts, name)))
		return;
	keep_or_dup(&e->text, sql);
	e->denied = denied;
	e->oids = n ? calloc(n, sizeof(*e->oids)) : NULL;
	for (uint16_t i = 0; e->oids && i < n; i++)
		e->oids[i] = read_u32(&r);
	e->n_oids = e->oids ? n : 0;
}

static void on_bind(struct rec_client *rc, const struct pkt *p)
{
	struct pkt_reader r;
	const char *portal, *stmt;
	struct rec_named *st, *e;

	reader_init_pkt(&r, p);
	portal = read_string(&r);
	stmt = read_string(&r);
	if (!portal || !stmt)
		return;
	st = named_find(rc->stmts, rc->n_stmts, stmt);
	if (!(e = named_slot(&rc->portals, &rc->n_portals, portal)))
		return;
	keep_or_dup(&e->stmt, stmt);
	keep_or_dup(&e->text, st ? st->text : NULL);
	e->denied = st && st->denied;
	e->params = rec_bind_params(&r, st ? st->oids : NULL, st ? st->n_oids : 0,
	                            (size_t)P->max_value_bytes, &e->params_len);
}

static void on_execute(struct rec_client *rc, const struct pkt *p)
{
	struct pkt_reader r;
	const char *portal;
	const struct rec_named *e;
	struct rec_event *ev;
	struct rec_pending *pe;

	reader_init_pkt(&r, p);
	portal = read_string(&r);
	if (!portal || !(ev = event_of(rc)))
		return;
	e = named_find(rc->portals, rc->n_portals, portal);
	rec_event_int(ev, "stmt", (json_int_t)++rc->n_stmt);
	rec_event_lit(ev, "protocol", "extended");
	if (e && e->text)
		rec_describe_cached(ev, e->text, strlen(e->text));
	else
		rec_event_null(ev, "text");
	rec_event_str(ev, "statement_name", e && e->stmt ? e->stmt : NULL);
	if (portal[0])
		rec_event_str(ev, "portal", portal);
	if (e && e->params)
		rec_event_raw(ev, "params", e->params, e->params_len);
	else
		rec_event_raw(ev, "params", "[]", 2);
	if (e && e->denied)
		rec_event_bool(ev, "denied", true);
	pe = pend_push(rc, PEND_EXEC, rc->n_stmt);
	emit_statement(rc, ev, rc->n_stmt, pe ? pe->sent : now_usec());
}

/* Describe: its answer is in the FIFO too; a statement's parameter types come with it. */
static void on_describe(struct rec_client *rc, const struct pkt *p)
{
	struct pkt_reader r;
	struct rec_pending *e = pend_push(rc, PEND_DESCRIBE, 0);
	uint8_t kind;
	const char *name;

	reader_init_pkt(&r, p);
	kind = read_u8(&r);
	name = read_string(&r);
	if (e && kind == 'S' && name)
		e->name = strdup(name);
}

static void on_close(struct rec_client *rc, const struct pkt *p)
{
	struct pkt_reader r;
	uint8_t kind;
	const char *name;

	reader_init_pkt(&r, p);
	kind = read_u8(&r);
	name = read_string(&r);
	if (!name)
		return;
	if (kind == 'S')
		named_remove(rc->stmts, &rc->n_stmts, name);
	else
		named_remove(rc->portals, &rc->n_portals, name);
}

/* record_client hook: every message a logged-in client sends to its server. */
static enum pkt_action rec_client_msg(struct pv_socket *c, struct pkt *p)
{
	struct rec_client *rc;

	switch (p->type) {
	case 'Q':
	case 'P':
	case 'B':
	case 'E':
	case 'C':
	case 'S':
	case 'F':
	case 'D':
		break;
	default:
		return PKT_FORWARD;
	}
	if (c->replication)
		return PKT_FORWARD;
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (!(rc = rc_session(c)))
		return PKT_FORWARD;
	switch (p->type) {
	case 'Q':
		on_query(rc, p);
		break;
	case 'P':
		on_parse(rc, p, false);
		break;
	case 'B':
		on_bind(rc, p);
		break;
	case 'E':
		on_execute(rc, p);
		break;
	case 'C':
		on_close(rc, p);
		break;
	case 'S':
		pend_push(rc, PEND_SYNC, 0);
		break;
	case 'D':
		on_describe(rc, p);
		break;
	default:
		pend_push(rc, PEND_OTHER, 0);
		break;
	}
	return PKT_FORWARD;
}

/* --- server messages ---------------------------------------------------------------- */

/* rows from a command tag: its last word for the commands that count rows; -1: null. */
static long long rows_of(const char *tag)
{
	static const char *const counted[] = {"SELECT", "INSERT", "UPDATE", "DELETE",
	                                      "COPY",   "FETCH",  "MOVE",   "MERGE"};
	const char *last = strrchr(tag, ' ');
	size_t w = strcspn(tag, " ");

	if (!last || !last[1])
		return -1;
	for (const char *d = last + 1; *d; d++)
		if (!isdigit((unsigned char)*d))
			return -1;
	for (size_t i = 0; i < sizeof(counted) / sizeof(counted[0]); i++)
		if (strlen(counted[i]) == w && strncmp(tag, counted[i], w) == 0)
			return strtoll(last + 1, NULL, 10);
	return -1;
}

/*
 * The fields every result has; emit it with emit_result. The first result of a
 * held statement is made in fold_scratch, without the session, stmt and part
 * its statement already says.
 */
static struct rec_event *result_event(struct rec_client *rc, struct rec_pending *e)
{
	struct rec_event *ev;

	if (foldable(rc, e) && (fold_scratch || (fold_scratch = rec_event_new()))) {
		ev = fold_scratch;
	} else {
		if (!(ev = event_of(rc)))
			return NULL;
		if (e->stmt)
			rec_event_int(ev, "stmt", (int64_t)e->stmt);
		else
			rec_event_null(ev, "stmt");
		if (e->kind == PEND_QUERY) /* which statement of a (multi-statement) text */
			rec_event_int(ev, "part", e->part);
	}
	rec_event_int(ev, "duration_us", now_usec() - e->sent);
	if (e->refused)
		rec_event_bool(ev, "denied", true);
	if (e->rows) {
		rec_event_json(ev, "columns", e->columns ? e->columns : json_array());
		rec_event_json(ev, "data", e->rows);
		e->columns = e->rows = NULL;
	}
	e->part++;
	rc->n_results++;
	return ev;
}

static void on_complete(struct rec_client *rc, const struct pkt *p)
{
	struct rec_pending *e = rc->pend;
	struct pkt_reader r;
	const char *tag = "";
	struct rec_event *ev;

	if (!e || (e->kind != PEND_QUERY && e->kind != PEND_EXEC))
		return;
	if (p->type == 'C') {
		reader_init_pkt(&r, p);
		tag = read_string(&r);
		tag = tag ? tag : "";
	}
	if ((ev = result_event(rc, e))) {
		long long rows = rows_of(tag);

		rec_event_str(ev, "command_tag", tag);
		if (rows >= 0)
			rec_event_int(ev, "rows", rows);
		else
			rec_event_null(ev, "rows");
		rec_event_lit(ev, "sqlstate", "00000");
		if (p->type == 's')
			rec_event_bool(ev, "suspended", true);
		emit_result(rc, ev);
	}
	if (e->kind == PEND_EXEC)
		pend_pop(rc);
}

static void skipped(struct rec_client *rc, struct rec_pending *e)
{
	struct rec_event *ev = result_event(rc, e);
	if (!ev)
		return;
	rec_event_null(ev, "command_tag");
	rec_event_null(ev, "rows");
	rec_event_bool(ev, "skipped", true);
	emit_result(rc, ev);
}

/* After an error the server skips everything up to the Sync (extended protocol). */
static void skip_to_sync(struct rec_client *rc)
{
	while (rc->pend && (rc->pend->kind == PEND_EXEC || rc->pend->kind == PEND_DESCRIBE)) {
		if (rc->pend->kind == PEND_EXEC)
			skipped(rc, rc->pend);
		pend_pop(rc);
	}
}

static void on_error(struct rec_client *rc, const struct pkt *p)
{
	struct rec_pending *e = rc->pend;
	struct error_fields ef = {0};
	struct rec_event *ev;

	if (e && e->kind == PEND_DESCRIBE) {
		skip_to_sync(rc);
		return;
	}
	if (!e || (e->kind != PEND_QUERY && e->kind != PEND_EXEC))
		return;
	proto_parse_error(pkt_body(p), pkt_body_len(p), &ef);
	rc->n_errors++;
	if ((ev = result_event(rc, e))) {
		rec_event_null(ev, "command_tag");
		rec_event_null(ev, "rows");
		rec_event_str(ev, "sqlstate", ef.sqlstate ? ef.sqlstate : "");
		if (ef.message)
			rec_text_set(ev, "error", (const uint8_t *)ef.message, strlen(ef.message),
			             2048);
		else
			rec_event_null(ev, "error");
		emit_result(rc, ev);
	}
	if (e->kind != PEND_EXEC)
		return;
	pend_pop(rc);
	skip_to_sync(rc);
}

/* ReadyForQuery: what was sent up to its Query / Sync / FunctionCall is over. */
static void on_ready(struct rec_client *rc)
{
	while (rc->pend) {
		enum pend_kind k = rc->pend->kind;
		if (k == PEND_EXEC)
			skipped(rc, rc->pend);
		pend_pop(rc);
		if (k != PEND_EXEC && k != PEND_DESCRIBE)
			return;
	}
}

/* ParameterDescription: the types a Describe'd statement's parameters have. */
static void on_param_description(struct rec_client *rc, const struct pkt *p)
{
	struct rec_pending *e = rc->pend;
	struct rec_named *st;
	struct pkt_reader r;
	uint16_t n;
	uint32_t *oids;

	if (!e || e->kind != PEND_DESCRIBE || !e->name ||
	    !(st = named_find(rc->stmts, rc->n_stmts, e->name)))
		return;
	reader_init_pkt(&r, p);
	n = read_u16(&r);
	oids = n ? calloc(n, sizeof(*oids)) : NULL;
	if (!oids)
		return;
	for (uint16_t i = 0; i < n; i++)
		oids[i] = read_u32(&r);
	free(st->oids);
	st->oids = oids;
	st->n_oids = n;
}

static json_t *column_names(const struct pkt *p)
{
	json_t *cols = json_array();
	struct pkt_reader r;
	uint16_t n;

	reader_init_pkt(&r, p);
	n = read_u16(&r);
	for (uint16_t i = 0; cols && i < n && !r.bad; i++) {
		const char *name = read_string(&r);
		read_bytes(&r, 18); /* table oid, attnum, type oid, typlen, typmod, format */
		if (name)
			json_array_append_new(
			    cols, rec_text_json((const uint8_t *)name, strlen(name), 256));
	}
	return cols;
}

/*
 * RowDescription: of a simple Query's statement, or the answer to a Describe
 * (ends it; its columns belong to the Execute that follows, if any).
 */
static void on_row_description(struct rec_client *rc, const struct pkt *p, bool rows)
{
	struct rec_pending *e = rc->pend;

	if (e && e->kind == PEND_DESCRIBE) {
		pend_pop(rc);
		e = rc->pend;
		if (!rows || !e || e->kind != PEND_EXEC)
			return;
	}
	if (!rows || !e || (e->kind != PEND_QUERY && e->kind != PEND_EXEC))
		return;
	json_decref(e->columns);
	e->columns = column_names(p);
}

void record_result_row(struct pv_socket *client, const uint8_t *body, size_t len)
{
	struct rec_client *rc = client ? client->rec : NULL;
	struct rec_pending *e = rc ? rc->pend : NULL;
	struct pkt_reader r;
	json_t *row;
	uint16_t n;

	if (!R || !P || P->results != REC_RESULTS_ROWS || !e ||
	    (e->kind != PEND_QUERY && e->kind != PEND_EXEC))
		return;
	if (!e->rows && !(e->rows = json_array()))
		return;
	if (json_array_size(e->rows) >= (size_t)P->max_result_rows || !(row = json_array()))
		return;
	reader_init(&r, body, len);
	n = read_u16(&r);
	for (uint16_t i = 0; i < n && !r.bad; i++) {
		int32_t vl = (int32_t)read_u32(&r);
		const uint8_t *v = vl > 0 ? read_bytes(&r, (size_t)vl) : (const uint8_t *)"";
		if (r.bad)
			break;
		json_array_append_new(
		    row, vl < 0 ? json_null()
		                : rec_text_json(v, (size_t)vl, (size_t)P->max_value_bytes));
	}
	json_array_append_new(e->rows, row);
}

/* record_server hook: a linked server's message on its way to the client. */
static enum pkt_action rec_server_msg(struct pv_socket *s, struct pkt *p)
{
	struct pv_socket *c = s->link;
	struct rec_client *rc = c ? c->rec : NULL;
	bool rows = P->results == REC_RESULTS_ROWS;

	if (!rc || !rc->pend)
		return PKT_FORWARD;
	switch (p->type) {
	case 'D':
		if (!rows)
			return PKT_FORWARD;
		break;
	case 'T':
	case 't':
	case 'n':
	case 'C':
	case 'E':
	case 'I':
	case 's':
	case 'Z':
		break;
	default:
		return PKT_FORWARD;
	}
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	switch (p->type) {
	case 'D':
		record_result_row(c, pkt_body(p), pkt_body_len(p));
		break;
	case 'T':
		on_row_description(rc, p, rows);
		break;
	case 't':
		on_param_description(rc, p);
		break;
	case 'n':
		if (rc->pend->kind == PEND_DESCRIBE)
			pend_pop(rc);
		break;
	case 'E':
		on_error(rc, p);
		break;
	case 'Z':
		on_ready(rc);
		break;
	default:
		on_complete(rc, p);
		break;
	}
	return PKT_FORWARD;
}

/* --- decisions and admin commands ---------------------------------------------------------- */

void record_refused(struct pv_socket *c, const struct pkt *p, const char *rule, const char *message)
{
	struct rec_client *rc;
	struct pkt_reader r;
	const char *sql;
	struct rec_event *ev;

	if (!R || !(rc = rc_session(c)))
		return;
	if (p->type == 'P') {
		on_parse(rc, p, true);
	} else if (P->statements) {
		struct rec_pending *e = pend_push(rc, PEND_QUERY, 0);
		if (e)
			e->refused = true;
	}
	if (!rule || !(ev = event_of(rc)))
		return;
	reader_init_pkt(&r, p);
	if (p->type == 'P')
		read_string(&r);
	sql = read_string(&r);
	rec_event_str(ev, "decision", "deny");
	rec_event_str(ev, "rule", rule);
	rec_event_str(ev, "message", message);
	if (sql)
		rec_describe_sql(ev, sql, strlen(sql));
	emit(rc, "denial", ev);
}

static const char *decision_word(enum approval_state s)
{
	return s == APPROVAL_TIMED_OUT ? "timed_out" : approval_state_name(s);
}

void record_approval(const struct approval *a, bool requested)
{
	struct rec_client *rc;
	struct rec_event *ev;

	if (!R || !a->client || !(rc = rc_session(a->client)) || !(ev = event_of(rc)))
		return;
	rec_event_int(ev, "approval_id", (json_int_t)a->id);
	rec_event_str(ev, "rule", a->rule);
	if (requested) {
		rec_event_str(ev, "decision", "hold");
		if (a->text)
			rec_describe_sql(ev, a->text, a->text_len);
		emit(rc, "approval_request", ev);
		return;
	}
	rec_event_str(ev, "decision", decision_word(a->state));
	rec_event_str(ev, "approver", a->approver);
	if (a->approver_provider)
		rec_event_str(ev, "approver_provider", a->approver_provider);
	if (a->reason)
		rec_event_str(ev, "reason", a->reason);
	emit(rc, "decision", ev);
}

/* SET <key> = <value> with a secret-looking key: the value is not recorded. */
static char *admin_text(const char *text)
{
	const char *p = text, *k;
	size_t klen;
	char *out;

	while (isspace((unsigned char)*p))
		p++;
	if (strncasecmp(p, "SET", 3) != 0 || !isspace((unsigned char)p[3]))
		return strdup(rec_mentions_secret(text, strlen(text)) ? "[redacted]" : text);
	for (k = p + 3; isspace((unsigned char)*k); k++)
		;
	klen = strcspn(k, " \t\r\n=");
	if (!secret_name(k, klen))
		return strdup(text);
	if (asprintf(&out, "SET %.*s = [redacted]", (int)klen, k) < 0)
		return NULL;
	return out;
}

void record_admin(struct pv_socket *c, const char *text)
{
	struct rec_client *rc;
	char *safe;
	struct rec_event *ev;

	if (!R || !(rc = rc_get(c)) || !(ev = event_of(rc)))
		return;
	safe = admin_text(text);
	rec_event_str(ev, "command", safe);
	free(safe);
	rec_event_str(ev, "admin_user", c->startup_user ? c->startup_user : "");
	rec_event_str(ev, "identity", c->identity ? c->identity->subject : NULL);
	emit(rc, "admin", ev);
}
