/*
 * approval.c - the registry of held statements and the APPROVE ... FOR map.
 *
 * Both are plain lists: approvals are human-paced (a few hundred at most at
 * once), and the FOR map is pruned of expired entries as it is walked.
 */
#include "approval.h"
#include "governance.h"
#include "log.h"
#include "oidc.h"
#include "pool.h"
#include "record_events.h"
#include "sbuf.h"
#include "util.h"
#include "webhook.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct approval *approvals; /* oldest first */
static uint64_t next_id = 1;

/* One APPROVE ... FOR: who (subject, or login name when token-less) may run fingerprint. */
struct allow_for {
	bool token; /* who is an identity subject, not a login name: they never match */
	char *who;
	uint64_t fingerprint;
	usec_t until;
	struct allow_for *next;
};

static struct allow_for *allowed;

const char *approval_state_name(enum approval_state s)
{
	switch (s) {
	case APPROVAL_PENDING:
		return "pending";
	case APPROVAL_APPROVED:
		return "approved";
	case APPROVAL_DENIED:
		return "denied";
	case APPROVAL_TIMED_OUT:
		return "timed out";
	case APPROVAL_CANCELED:
		return "canceled";
	}
	return "?";
}

static void approval_free(struct approval *a)
{
	free(a->rule);
	free(a->subject);
	free(a->provider);
	for (size_t i = 0; i < a->n_groups; i++)
		free(a->groups[i]);
	free(a->groups);
	free(a->database);
	free(a->db_user);
	free(a->app_name);
	free(a->text);
	free(a->approver);
	free(a->approver_provider);
	free(a->reason);
	free(a);
}

/* Webhook decision names: stable identifiers, unlike the log wording. */
static const char *decision_name(enum approval_state s)
{
	return s == APPROVAL_TIMED_OUT ? "timed_out" : approval_state_name(s);
}

/* Wall clock of a monotonic instant (deadlines are monotonic usec). */
static int64_t wall_of(usec_t t)
{
	usec_t now = now_usec();
	int64_t wall = (int64_t)time(NULL);
	return t >= now ? wall + (int64_t)((t - now) / USEC_PER_SEC)
	                : wall - (int64_t)((now - t) / USEC_PER_SEC);
}

/* Tell approval.webhook (if the running policy has one); never blocks. */
static void announce(const struct approval *a, bool requested)
{
	const struct gov_policy *pol = gov_active();
	/* timeouts and cancels are decided by nobody: approver stays null */
	bool human = a->state == APPROVAL_APPROVED || a->state == APPROVAL_DENIED;
	struct webhook_event ev;

	if (!pol || !pol->webhook.url)
		return;
	ev = (struct webhook_event){
	    .event = requested ? "approval_requested" : "approval_decided",
	    .id = a->id,
	    .decision = decision_name(a->state),
	    .approver = human ? a->approver : NULL,
	    .approver_provider = human ? a->approver_provider : NULL,
	    .subject = a->subject,
	    .provider = a->provider,
	    .groups = a->groups,
	    .n_groups = a->n_groups,
	    .database = a->database,
	    .db_user = a->db_user,
	    .application_name = a->app_name,
	    .statement = a->text,
	    .statement_len = a->text_len,
	    .fingerprint = a->fingerprint,
	    .rule = a->rule,
	    .reason = a->reason,
	    .expires_at = requested ? wall_of(a->deadline) : 0,
	    .decided_at = requested ? 0 : (int64_t)time(NULL),
	};
	webhook_notify(&pol->webhook, &ev);
}

static void unlink_approval(struct approval *a)
{
	for (struct approval **pp = &approvals; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			return;
		}
	}
}

/* The statement for logs and SHOW: first APPROVAL_STMT_MAX bytes, escaped for a log line. */
static void keep_statement(struct approval *a, const char *sql, size_t len)
{
	char raw[APPROVAL_STMT_MAX + 1];
	size_t n = len < APPROVAL_STMT_MAX ? len : APPROVAL_STMT_MAX;

	memcpy(raw, sql, n);
	raw[n] = '\0';
	oidc_log_escape(raw, a->statement, sizeof(a->statement));
}

static char *dup_or_null(const char *s, bool *ok)
{
	char *d = s ? strdup(s) : NULL;
	if (s && !d)
		*ok = false;
	return d;
}

/* What the webhook needs beyond SHOW APPROVALS: groups, provider, the longer text. */
static bool keep_for_webhook(struct approval *a, const struct pv_socket *c, const char *sql,
                             size_t len)
{
	const struct pv_identity *id = c->identity;
	bool ok = true;

	a->text_len = len < WEBHOOK_STMT_MAX ? len : WEBHOOK_STMT_MAX;
	if (!(a->text = malloc(a->text_len + 1)))
		return false;
	memcpy(a->text, sql, a->text_len);
	a->text[a->text_len] = '\0';
	a->app_name = dup_or_null(c->app_name, &ok);
	if (!id)
		return ok;
	a->provider = dup_or_null(id->provider, &ok);
	if (id->n_groups && !(a->groups = calloc(id->n_groups, sizeof(char *))))
		return false;
	for (size_t i = 0; ok && i < id->n_groups; i++, a->n_groups++)
		a->groups[i] = dup_or_null(id->groups[i], &ok);
	return ok;
}

struct approval *approval_hold(struct pv_socket *c, const char *rule, const char *sql, size_t len,
                               uint64_t fingerprint, int64_t timeout_s)
{
	struct approval *a = calloc(1, sizeof(*a)), **tail = &approvals;
	bool ok = true;

	if (!a)
		return NULL;
	a->rule = dup_or_null(rule, &ok);
	a->subject = dup_or_null(c->identity ? c->identity->subject : NULL, &ok);
	a->database = dup_or_null(c->pool->db->name, &ok);
	a->db_user = dup_or_null(c->pool->user->name, &ok);
	if (!ok || !keep_for_webhook(a, c, sql, len)) {
		approval_free(a);
		return NULL;
	}
	a->id = next_id++;
	a->client = c;
	a->state = APPROVAL_PENDING;
	a->fingerprint = fingerprint;
	a->created = now_usec();
	a->deadline = a->created + (usec_t)timeout_s * USEC_PER_SEC;
	keep_statement(a, sql, len);
	while (*tail)
		tail = &(*tail)->next;
	*tail = a;
	c->approval = a;
	slog_info(c, "approval: id=%llu held: rule=%s subject=%s statement=%s",
	          (unsigned long long)a->id, a->rule, a->subject ? a->subject : "-", a->statement);
	announce(a, true);
	record_approval(a, true);
	return a;
}

struct approval *approval_find_pending(uint64_t id)
{
	for (struct approval *a = approvals; a; a = a->next)
		if (a->id == id && a->state == APPROVAL_PENDING && !a->client->closing)
			return a;
	return NULL;
}

void approval_decide(struct approval *a, enum approval_state state, const char *who,
                     const char *reason)
{
	approval_decide_as(a, state, who, NULL, reason);
}

/*
 * Who decided is kept for the webhook; an allocation failure only loses that
 * copy (the log line below still names them), never the decision.
 */
void approval_decide_as(struct approval *a, enum approval_state state, const char *who,
                        const char *provider, const char *reason)
{
	char who_esc[512];

	a->state = state;
	free(a->reason);
	a->reason = reason && reason[0] ? strdup(reason) : NULL;
	free(a->approver);
	free(a->approver_provider);
	a->approver = who ? strdup(who) : NULL;
	a->approver_provider = provider ? strdup(provider) : NULL;
	/* an identity subject comes from a token: escape it for the log line */
	oidc_log_escape(who ? who : "-", who_esc, sizeof(who_esc));
	slog_info(a->client, "approval: id=%llu %s by %s%s%s%s%s", (unsigned long long)a->id,
	          approval_state_name(state), who_esc, provider ? " provider=" : "",
	          provider ? provider : "", a->reason ? ": " : "", a->reason ? a->reason : "");
	announce(a, false);
	record_approval(a, false);
	/* The held message is still first in its input buffer: dispatch it again. */
	sbuf_wakeup(a->client);
}

/* Who an APPROVE ... FOR speaks for: the identity subject, else the login name. */
static const char *who_of(const struct pv_socket *c, bool *token)
{
	*token = c->identity != NULL;
	return c->identity ? c->identity->subject : c->startup_user;
}

bool approval_allow_for(const struct approval *a, usec_t until)
{
	struct allow_for *f = calloc(1, sizeof(*f));
	bool token;
	const char *who = who_of(a->client, &token);

	if (!f || !who || !(f->who = strdup(who))) {
		free(f);
		return false;
	}
	f->token = token;
	f->fingerprint = a->fingerprint;
	f->until = until;
	f->next = allowed;
	allowed = f;
	return true;
}

bool approval_preapproved(const struct pv_socket *c, uint64_t fingerprint)
{
	usec_t now = now_usec();
	bool token;
	const char *who = who_of(c, &token);
	struct allow_for **pp = &allowed;

	while (*pp) {
		struct allow_for *f = *pp;
		if (f->until <= now) {
			*pp = f->next;
			free(f->who);
			free(f);
			continue;
		}
		if (who && f->fingerprint == fingerprint && f->token == token &&
		    strcmp(f->who, who) == 0)
			return true;
		pp = &f->next;
	}
	return false;
}

void approval_done(struct pv_socket *c)
{
	struct approval *a = c->approval;
	if (!a)
		return;
	c->approval = NULL;
	unlink_approval(a);
	approval_free(a);
}

void approval_client_gone(struct pv_socket *c)
{
	if (c->approval && c->approval->state == APPROVAL_PENDING) {
		slog_info(c, "approval: id=%llu withdrawn: client disconnected",
		          (unsigned long long)c->approval->id);
		c->approval->state = APPROVAL_CANCELED;
		free(c->approval->reason);
		c->approval->reason = strdup("client disconnected");
		announce(c->approval, false);
		record_approval(c->approval, false);
	}
	approval_done(c);
}

void approval_tick(usec_t now)
{
	webhook_poll();
	for (struct approval *a = approvals; a; a = a->next)
		if (a->state == APPROVAL_PENDING && now >= a->deadline)
			approval_decide(a, APPROVAL_TIMED_OUT, "timeout", NULL);
}

void approval_for_each_pending(void (*fn)(const struct approval *a, void *arg), void *arg)
{
	for (struct approval *a = approvals; a; a = a->next)
		if (a->state == APPROVAL_PENDING && !a->client->closing)
			fn(a, arg);
}
