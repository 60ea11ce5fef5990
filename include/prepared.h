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
 */
#ifndef PV_PREPARED_H
#define PV_PREPARED_H

#include <stdbool.h>
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

#endif
