/*
 * mask.h - where masking happens: the result rewriter on the server-to-client
 * path, and the statement-time masking check.
 *
 * Owns:
 *  - the server_msg hook (hooks.h): DataRow values of columns whose
 *    RowDescription names a masked (table OID, column number) are replaced
 *    (text and binary formats, simple and extended protocol, cursors,
 *    RETURNING: they all carry a RowDescription or a tracked Describe);
 *    content detectors over text values when `detect` masks apply; derived
 *    output columns of a simple Query (`derived: mask`); error and notice
 *    fields that could echo a masked value; NotificationResponse payloads
 *    and COPY TO STDOUT data through the detectors;
 *  - the per-client plan cache: which column of the current result layout
 *    gets what, computed once per layout and looked up once per result (at
 *    its first DataRow), so result sets without a masked column are
 *    forwarded untouched with one pointer test per row;
 *  - mask_statement_check(): called by rules.c for every allowed statement;
 *    denies statements that would leak masked values in ways the rewriter
 *    cannot see (derived values, predicates, COPY of masked tables, unknown
 *    layouts) using mask_derived.h, and notes DDL for the catalog.
 *
 * Does not own: policy and catalog (mask_catalog.h), what a value becomes
 * (mask_value.h), derived-reference analysis (mask_derived.h), result
 * layouts (prepared.h: ps_current_layout).
 *
 * The recorder sees rewritten rows only (record_events.h).
 */
#ifndef PV_MASK_H
#define PV_MASK_H

#include <stdbool.h>
#include <stddef.h>

struct gov_policy;
struct inspect_result;
struct pv_socket;

/* A policy became active (startup, RELOAD): install or remove the hook. */
void mask_install(const struct gov_policy *pol);

/*
 * rules.c: statement text sql of client c was classified as res and allowed
 * by the rules. true = deny it with the reason in text. parse_name: NULL for
 * a simple Query, else the Parse's statement name (derived output positions
 * are kept per statement name, then per portal at Bind). When rewrite (empty
 * on entry) gets text, that Query text is sent instead (a COPY of a masked
 * table, with its probe in front: mask_copy.h).
 */
struct pv_buf;
struct pkt;
bool mask_statement_check(struct pv_socket *c, const struct inspect_result *res, const char *sql,
                          const char *parse_name, struct pv_buf *rewrite, char *text,
                          size_t textlen);
/*
 * rules.c: a Bind of client c (complete), with derived: mask. Queued: its
 * portal takes the statement's derived positions at the server's
 * BindComplete. false: out of memory or too many Binds unanswered (close
 * the client).
 */
bool mask_note_bind(struct pv_socket *c, const struct pkt *p);

/* Free a client's masking state. */
void mask_client_free(struct pv_socket *c);

#endif
