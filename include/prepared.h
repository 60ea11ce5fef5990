/*
 * prepared.h - protocol-level prepared statements in transaction and
 * statement mode, and the pipeline of outstanding requests on each server.
 *
 * Clients name their statements freely; servers are shared. A global cache
 * gives every distinct Parse body (query text + parameter types) one id and a
 * server-side name "PGVIGIL_<id>". Each client maps its names to cache
 * entries; each server keeps the set of ids it has prepared, capped at
 * max_prepared_statements (LRU, evicted with a protocol Close). A Parse the
 * server already knows is answered locally, a Bind/Describe on a server that
 * lacks the statement gets a Parse injected first, and Close of a statement is
 * answered locally.
 *
 * Every request forwarded to a tracked server is queued (type + what to do
 * with its response: forward, skip, or synthesize), so injected responses are
 * dropped and synthesized ones appear at the right pipeline position, and
 * after an ErrorResponse everything up to the next Sync is discarded as
 * PostgreSQL does. This queue is also where later stages learn which
 * statement an Execute runs.
 *
 * Result layouts (src/layout.c, tracking here): when ps_layouts_needed is set,
 * the same queue records which statement and portal each Describe, Bind and
 * Execute names, keeps a copy of every RowDescription that passes (statement
 * Describe: on the shared statement, per pool; unnamed statement, portals and
 * simple-Query result sets: per server) and so knows, for every DataRow, the
 * layout of the result it belongs to: ps_current_layout(). Tracking runs only
 * on servers with ps_track set; session mode will set ps_track (and
 * ps_layouts_needed) when masking is configured.
 */
#ifndef PV_PREPARED_H
#define PV_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sbuf.h"

struct pv_socket;
struct pkt;

/* Should this server track requests (transaction/statement mode, cache enabled)? */
bool ps_server_wants_tracking(const struct pv_socket *server);

/* A logged-in client's extended-protocol / query message, server already linked. */
enum pkt_action ps_client_msg(struct pv_socket *c, struct pv_socket *s, struct pkt *p);
/* Does the client handler need this message whole before ps_client_msg? */
bool ps_client_needs_full(const struct pkt *p);
/*
 * A response from a tracked, linked server. Returns PKT_FORWARD when the
 * caller should go on with normal handling (ReadyForQuery), else the action.
 */
enum pkt_action ps_server_msg(struct pv_socket *s, struct pkt *p);

/*
 * An ErrorResponse from a tracked, linked server: in extended mode PostgreSQL
 * skips every request up to the next Sync, so the pipeline drops them. The
 * caller runs it before any hook that may rewrite or consume the error.
 */
void ps_server_error(struct pv_socket *s);
/* A ReadyForQuery was forwarded: emit answers queued behind it. */
void ps_after_forward(struct pv_socket *s);
/* The server's statements are gone (DISCARD ALL, reset query). */
void ps_server_forget_all(struct pv_socket *s);
/* Free per-socket state. */
void ps_client_free(struct pv_socket *c);
void ps_server_free(struct pv_socket *s);
/* Number of statements a client has named / a server has prepared (SHOW CLIENTS/SERVERS). */
int ps_client_count(const struct pv_socket *c);
int ps_server_count(const struct pv_socket *s);
/* Requests still awaiting a response on this server. */
int ps_pending_count(const struct pv_socket *s);

/* --- result layouts ---------------------------------------------------------- */

/* One column of a RowDescription. */
struct ps_layout_col {
	const char *name;   /* points into the layout's body */
	uint32_t table_oid; /* 0 when the column is not a plain table column */
	int16_t attnum;	    /* 0 likewise */
	uint32_t type_oid;
	int16_t typlen;
	int32_t typmod;
	int16_t format; /* 0 text, 1 binary (as the DataRows carry it) */
};

/*
 * An immutable copy of a RowDescription body, parsed. Refcounted: take a
 * reference to keep one past the current message. The body's format codes
 * match cols[].format (Bind's result formats applied).
 */
struct ps_layout {
	int refs;
	uint16_t ncols;
	size_t body_len;
	const uint8_t *body; /* int16 ncols, then the columns, as on the wire */
	struct ps_layout_col cols[];
};

/*
 * Gate for the copying cost: false (default) = no layout is recorded and the
 * functions below return NULL. The masking stage sets it at configuration.
 */
extern bool ps_layouts_needed;

/* The layout of the result whose DataRows the server is sending now; NULL = unknown. */
const struct ps_layout *ps_current_layout(const struct pv_socket *server);
/* Are those rows an Execute's? Then the portal it runs ("" unnamed; NULL = unknown). */
bool ps_current_is_execute(const struct pv_socket *server);
const char *ps_current_portal(const struct pv_socket *server);
/*
 * The layout of the client's named statement as last described on a server of
 * the server's pool ("" = the server's unnamed statement); NULL = unknown.
 */
const struct ps_layout *ps_statement_layout(const struct pv_socket *client,
					    const struct pv_socket *server, const char *name);

/* layout.c: parse a RowDescription body; NULL when malformed or out of memory. */
struct ps_layout *ps_layout_new(const uint8_t *body, size_t len);
struct ps_layout *ps_layout_ref(const struct ps_layout *l);
void ps_layout_put(struct ps_layout *l);
/*
 * base with Bind's result-format codes (ncodes raw big-endian int16s) applied:
 * a reference to base when nothing changes, NULL when invalid or out of memory.
 */
struct ps_layout *ps_layout_with_formats(const struct ps_layout *base, const uint8_t *codes,
					 uint16_t ncodes);

#endif
