/*
 * webhook.h - approval notifications (governance `approval.webhook`): a JSON
 * POST when a statement is held and when it is decided.
 *
 * Owns the webhook worker thread (the only code that does network I/O for
 * notifications, with libcurl), the bounded queue that feeds it, the JSON
 * body and its HMAC signature. The event loop builds the body and the
 * signature and hands a self-contained job over under a mutex; it never
 * waits for the network. When the queue is full the notification is
 * dropped, counted and logged. Delivery is best effort: no retries, no
 * redirects; failures are counted by the worker and logged by the loop
 * (webhook_poll), because the logger belongs to the loop thread.
 *
 * What a job is sent with (URL, CA file, timeout, secret) is taken from the
 * running policy when it is queued, so a RELOAD applies to the next
 * notification without restarting anything.
 */
#ifndef PV_WEBHOOK_H
#define PV_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gov_webhook;

#define WEBHOOK_QUEUE_MAX       256          /* jobs waiting for the worker */
#define WEBHOOK_STMT_MAX        4096         /* bytes of statement text in a body */
#define WEBHOOK_SIG_LEN         (7 + 64 + 1) /* "sha256=" + hex + NUL */
#define WEBHOOK_DEFAULT_TIMEOUT 5
#define WEBHOOK_MAX_TIMEOUT     60

/* One notification; every string may be NULL (JSON null). Nothing secret goes here. */
struct webhook_event {
	const char *event;    /* "approval_requested" | "approval_decided" */
	uint64_t id;          /* approval id */
	const char *decision; /* "pending", "approved", "denied", "timed_out", "canceled" */
	const char *approver; /* identity subject or admin user name; NULL: nobody */
	const char *approver_provider;  /* the approver's identity provider; NULL: not a token */
	const char *subject, *provider; /* the held statement's identity */
	char *const *groups;
	size_t n_groups;
	const char *database, *db_user, *application_name;
	const char *statement; /* truncated to WEBHOOK_STMT_MAX bytes (UTF-8 safe) */
	size_t statement_len;
	uint64_t fingerprint; /* 0: none (text the parser rejected) */
	const char *rule;
	const char *reason; /* DENY reason / APPROVE ... FOR note */
	int64_t expires_at; /* unix seconds; approval_requested */
	int64_t decided_at; /* unix seconds; approval_decided */
};

/* The JSON body (malloc'd, NUL-terminated); NULL when out of memory. Pure. */
char *webhook_body(const struct webhook_event *ev);
/* "sha256=<hex HMAC-SHA256(key, body)>" into out; false on failure. Pure. */
bool webhook_signature(const unsigned char *key, size_t keylen, const char *body, size_t len,
                       char out[WEBHOOK_SIG_LEN]);
/* NULL when url may be used, else why not (https only; http to loopback if allowed). */
const char *webhook_url_refused(const char *url, bool allow_insecure_loopback);

/*
 * Event loop: queue ev for cfg's URL (cfg NULL or without a URL: nothing).
 * Starts the worker on first use (after daemonize, as threads must). Never blocks.
 */
void webhook_notify(const struct gov_webhook *cfg, const struct webhook_event *ev);
/* Event loop (janitor tick): log what the worker reported since the last call. */
void webhook_poll(void);
/* At exit: stop the worker (interrupting a transfer), drop what is still queued. */
void webhook_stop(void);
/* Counters for logs and tests. */
uint64_t webhook_dropped(void);

#endif
