/*
 * approval.h - statements held for a human decision (rule action `approve`).
 *
 * Owns the registry of held statements (one per client at most: the held
 * message blocks the client's input), the decisions on them (APPROVE, DENY,
 * timeout, the client's CancelRequest) and the APPROVE ... FOR map that lets
 * the same identity run the same statement fingerprint again without asking.
 * Holding and releasing the message on the packet path is rules.c; the admin
 * commands are admin.c / admin_show.c. Holds and decisions are announced to
 * approval.webhook (webhook.h) when the policy has one. Event loop thread only.
 */
#ifndef PV_APPROVAL_H
#define PV_APPROVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct pv_socket;

#define APPROVAL_STMT_MAX 200 /* bytes of the statement kept for SHOW APPROVALS */

enum approval_state {
	APPROVAL_PENDING,
	APPROVAL_APPROVED, /* run the held message once */
	APPROVAL_DENIED,
	APPROVAL_TIMED_OUT,
	APPROVAL_CANCELED, /* the client's CancelRequest withdrew it */
};

struct approval {
	uint64_t id;
	struct pv_socket *client; /* owner: client->approval points back */
	enum approval_state state;
	char *rule;
	char *subject; /* identity subject; NULL for a token-less login */
	char *provider; /* the identity's provider; NULL for a token-less login */
	char **groups;  /* the identity's groups (webhook) */
	size_t n_groups;
	char *database, *db_user, *app_name;
	char statement[APPROVAL_STMT_MAX + 1];
	char *text; /* the statement for the webhook: first WEBHOOK_STMT_MAX bytes, raw */
	size_t text_len;
	char *approver;          /* who decided: identity subject or login name; NULL: pending */
	char *approver_provider; /* set when the approver logged in with a token */
	uint64_t fingerprint;
	usec_t created, deadline;
	char *reason;          /* DENY reason, or APPROVE ... FOR note; NULL: none */
	struct approval *next; /* registry list */
};

/*
 * Register c's held statement and attach it to c; NULL when out of memory.
 * timeout_s is the policy's approval timeout.
 */
struct approval *approval_hold(struct pv_socket *c, const char *rule, const char *sql, size_t len,
                               uint64_t fingerprint, int64_t timeout_s);
/* A pending approval by id; NULL when unknown or already decided. */
struct approval *approval_find_pending(uint64_t id);
/*
 * Decide a pending approval (state != PENDING): logged with who decided,
 * and the client is woken so the held message is dispatched again.
 */
void approval_decide(struct approval *a, enum approval_state state, const char *who,
                     const char *reason);
/* The same, decided by a token identity: who is its subject, provider its provider. */
void approval_decide_as(struct approval *a, enum approval_state state, const char *who,
                        const char *provider, const char *reason);
/* APPROVE ... FOR: a's identity may run a's fingerprint until until. False on OOM. */
bool approval_allow_for(const struct approval *a, usec_t until);
/* Does an APPROVE ... FOR cover c running fingerprint now? */
bool approval_preapproved(const struct pv_socket *c, uint64_t fingerprint);
/* The held message was dispatched with its decision: forget it. */
void approval_done(struct pv_socket *c);
/* The client goes away: its approval (if any) is withdrawn. */
void approval_client_gone(struct pv_socket *c);
/* Janitor tick: time out pending approvals past their deadline. */
void approval_tick(usec_t now);
/* SHOW APPROVALS: pending approvals, oldest first. */
void approval_for_each_pending(void (*fn)(const struct approval *a, void *arg), void *arg);
const char *approval_state_name(enum approval_state s);

#endif
