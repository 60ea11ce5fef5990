/*
 * record_events.h - what pgvigil records (governance spec §4, issue 9).
 *
 * Owns: building every recorded event from the packet path (session start and
 * end, statements with Bind parameters and sqlcommenter context, result
 * summaries and rows, denials, approval requests and decisions, admin
 * commands), the per-client recording state (struct rec_client: session id,
 * Parse texts by statement name, statements in flight, events parked by
 * back-pressure, a statement event held a few ms so its result folds into it), the record_client / record_server hooks, the running
 * recorder's lifecycle (start, RELOAD, stop) and SHOW RECORDER's numbers.
 * Writing the events is recorder.h; the `recording:` section of the
 * governance file is parsed by recorder_policy.c into struct rec_policy.
 *
 * Secrets never reach an event: the startup password and token are never
 * seen here (authentication is auth.c), startup parameters and admin SET
 * commands with secret-looking names are redacted, and masked values are
 * recorded only after masking (mask.c calls record_result_row with the
 * rewritten row). Event loop thread only.
 */
#ifndef PV_RECORD_EVENTS_H
#define PV_RECORD_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recorder.h"

struct pv_socket;
struct pkt;
struct approval;
struct startup_param;

enum rec_results {
	REC_RESULTS_NONE,    /* no result events */
	REC_RESULTS_SUMMARY, /* command tag, rows, duration, SQLSTATE */
	REC_RESULTS_ROWS,    /* the summary and the rows the client received, capped */
};

/* The parsed `recording:` section (recorder_policy.c); immutable once loaded. */
struct rec_policy {
	struct rec_config cfg; /* directory resolved against the governance file; hmac_key read */
	bool statements;       /* record statements (and their results); default true */
	enum rec_results results;
	int64_t max_result_rows; /* rows kept per statement with results: rows */
	int64_t max_value_bytes; /* bytes kept per value (params and rows) */
};

void rec_policy_free(struct rec_policy *rp);
/* Does changing from a to b need a new recorder (directory, files, keys)? */
bool rec_policy_needs_restart(const struct rec_policy *a, const struct rec_policy *b);

/* main.c: start after daemonizing (a thread), follow RELOAD, stop at exit. */
bool record_start(char *err, size_t errlen);
void record_reload(void);
void record_stop(void);

/* SHOW RECORDER: false when recording is off. */
bool record_stats(struct rec_stats *out);

/* client.c: startup parameters (kept without secrets until the session starts). */
void record_startup_params(struct pv_socket *c, const struct startup_param *params, int n);
/* client.c: login finished / client gone. */
void record_session_start(struct pv_socket *c);
void record_session_end(struct pv_socket *c, const char *reason);
/* objects.c: free the recording state (parked events are kept and still written). */
void record_client_free(struct pv_socket *c);

/*
 * rules.c: p (a Query or Parse) was replaced by an error: a `denial` event
 * when rule is given (NULL: the decision was already recorded), and the
 * coming error is recorded as its result.
 */
void record_refused(struct pv_socket *c, const struct pkt *p, const char *rule,
                    const char *message);
/* approval.c: a statement was held (requested) or decided. */
void record_approval(const struct approval *a, bool requested);
/* admin.c: one admin-console command (secrets redacted here). */
void record_admin(struct pv_socket *c, const char *text);

/*
 * mask.c: a DataRow it rewrote (and consumed) as the client receives it.
 * Rows it forwards unchanged are seen by the record_server hook.
 */
void record_result_row(struct pv_socket *client, const uint8_t *body, size_t len);

#endif
