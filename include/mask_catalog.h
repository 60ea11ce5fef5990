/*
 * mask_catalog.h - the masking policy (governance file: masks, derived,
 * predicates, mask_refresh) and column provenance: which (table OID, column
 * number) of each database a mask rule covers.
 *
 * Owns: the struct mask_rule objects (parsed by mask_policy.c into the
 * governance policy, which owns their memory), the per-database catalog of
 * resolved columns (mask_catalog.c) and its freshness, and the one catalog
 * query that builds it. Does not own: what a value becomes (mask_value.h),
 * where rows are rewritten (mask.c), derived-value checks (mask_derived.c).
 *
 * Resolution: column globs ("schema.table.column", '*' and '?') are sent as
 * anchored regular expressions in one extended-protocol query on a pooled
 * server connection, at the moment a client's transaction is linked to it
 * (the way auth_query runs): matching columns of tables, partitioned tables
 * (and their partitions / inheritance children), views, materialized views
 * and foreign tables; plus every view that depends, directly or through
 * other views, on a matched column, with its definition. View definitions
 * are analysed with libpg_query: an output column that is a plain reference
 * to a masked column gets that column's rule, one computed from a masked
 * column (or from a whole row holding one) gets it too, and a view whose
 * definition cannot be analysed gets every column masked (fail closed).
 *
 * Freshness: a database is stale until resolved, after RELOAD (new policy:
 * old entries are kept, mapped to the new rule of the same name, until the
 * next resolution), mask_refresh seconds after resolving, and
 * after mask_catalog_invalidate(). Linking a client to a server of a stale
 * database runs the query there first; the client's traffic waits. One query
 * per database is in flight; other clients use the previous resolution, or
 * wait when there is none. A failed query fails the client (ErrorResponse,
 * closed) and is logged; clients never see rows of a database whose catalog
 * was never resolved.
 *
 * Everything here runs on the event loop thread.
 */
#ifndef PV_MASK_CATALOG_H
#define PV_MASK_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "governance.h"
#include "mask_value.h"
#include "sbuf.h"

struct pv_database;
struct pv_identity;
struct pv_socket;
struct pkt;

#define MASK_DEFAULT_KEEP_LAST 4
#define MASK_DEFAULT_REFRESH   60 /* seconds */

/* One entry of masks: (immutable once loaded, except the hit counter). */
struct mask_rule {
	int line;
	char *name;
	struct gov_strlist columns; /* "schema.table.column" globs; may be empty */
	uint32_t detect;            /* enum mask_detector bits; 0 = no content detection */
	struct mask_spec spec;
	struct gov_strlist except_groups; /* identities in any of these see clear values */
	uint64_t hits;                    /* values masked (mask_rule_hit) */
};

/* ---- lookups for the rewriter and inspection (event loop, O(1)) ---- */

/* Is any mask configured in the running policy? */
bool mask_policy_active(void);
/* The rule masking column attnum of table_oid in db, or NULL (also when unresolved). */
const struct mask_rule *mask_column_rule(const struct pv_database *db, uint32_t table_oid,
                                         int16_t attnum);
/* Does id see r's columns in clear? identity may be NULL: password logins never are exempt. */
bool mask_rule_exempt(const struct mask_rule *r, const struct pv_identity *id);
/*
 * Union of the detect bits of the detect rules id is not exempt from, and
 * (when non-zero) the spec of the first such rule in *spec_out.
 */
uint32_t mask_detectors(const struct pv_identity *id, const struct mask_spec **spec_out);
/* Count one masked value for SHOW MASKS. */
void mask_rule_hit(const struct mask_rule *r);
/* derived: mask (true) or deny (false, the default); predicates: deny (true) or allow. */
bool mask_derived_mask(void);
bool mask_predicates_deny(void);

/* Every resolved (schema, table, column, rule) of db, views included. */
void mask_catalog_foreach(const struct pv_database *db,
                          void (*fn)(void *arg, const char *schema, const char *table,
                                     const char *column, const struct mask_rule *r),
                          void *arg);
/* Resolve db again at its next link (inspection calls this after DDL). */
void mask_catalog_invalidate(struct pv_database *db);

/* ---- wiring ---- */

/*
 * pool.c, when client c is linked to server s: true when s now runs the
 * catalog query (or waits for another server's) and c must wait; c is woken
 * (or failed) when it is done. false: go on as usual.
 */
bool mask_catalog_link(struct pv_socket *c, struct pv_socket *s);
/* server.c: a message on a server running TASK_MASK_CATALOG. */
enum pkt_action mask_catalog_server_pkt(struct pv_socket *s, struct pkt *p);
/* governance.c (gov_commit): a new policy runs: every database is stale; resolved
 * columns keep masking under the new rule of the same name until re-resolved. */
void mask_catalog_policy_changed(void);
/* janitor.c: periodic staleness, lost queries, catalogs of removed databases. */
void mask_catalog_tick(usec_t now);

/* One row of SHOW MASKS (via: "schema.table.column" of the base column, or NULL). */
struct mask_show_row {
	const char *database, *schema, *table, *column, *via;
	const struct mask_rule *rule;
	uint32_t table_oid;
	int16_t attnum;
	usec_t resolved_at; /* 0 for detect rules */
};
void mask_catalog_show(void (*fn)(void *arg, const struct mask_show_row *row), void *arg);

/* ---- helpers (exported for the unit tests) ---- */

/* Is glob a valid column pattern: three non-empty dot-separated parts? */
bool mask_glob_valid(const char *glob);
/* The anchored PostgreSQL regular expression for glob, malloc'd (NULL: out of memory). */
char *mask_glob_regex(const char *glob);
/* Does name ("schema.table.column") match glob? '*' any run, '?' one UTF-8 character. */
bool mask_glob_match(const char *glob, const char *name);

#endif
