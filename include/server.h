/*
 * server.h - the server side: connecting to PostgreSQL (host lists, unix
 * sockets, DNS), logging in (cleartext, md5, SCRAM, SCRAM pass-through), the
 * messages a server sends (ReadyForQuery bookkeeping that decides when a
 * server can be released, ParameterStatus tracking, the server->client
 * governance hook) and internal queries (SET sync, reset, check).
 */
#ifndef PV_SERVER_H
#define PV_SERVER_H

#include <stdbool.h>
#include "sbuf.h"
#include "pool.h"

struct pkt;

/* Open a new server connection for the pool. */
bool server_launch(struct pv_pool *pool);
/* A replication client's dedicated server, linked from the start (replication.c). */
bool server_launch_replication(struct pv_socket *client);
/* server_fast_close / replication: close a close_needed server between transactions. */
bool server_fast_close_check(struct pv_socket *s);
/* Open a connection that only carries a CancelRequest for target. */
bool server_launch_cancel(struct pv_socket *requester, struct pv_socket *target);
void server_connected(struct pv_socket *s, int err);
/* sbuf.c: TLS with the server is up / was refused ('N') / failed. */
void server_tls_ready(struct pv_socket *s);
void server_tls_refused(struct pv_socket *s);
void server_tls_failed(struct pv_socket *s, const char *why);
enum pkt_action server_handle_pkt(struct pv_socket *s, struct pkt *p);
void server_on_eof(struct pv_socket *s);
/* After a ReadyForQuery was forwarded: release the server if the pool mode says so. */
void server_after_forward(struct pv_socket *s);
void server_close(struct pv_socket *s, const char *reason);
/* Run an internal query on an unlinked (or just linked) server. */
bool server_run_task(struct pv_socket *s, enum server_task task, const char *sql);
/* Is the server between requests (ReadyForQuery idle, nothing outstanding)? */
bool server_is_ready(const struct pv_socket *s);
/* Take a (complete) ReadyForQuery; a malformed one closes the server and returns false. */
bool server_take_ready(struct pv_socket *s, const struct pkt *p);
/* A client's request is about to be forwarded: account it. */
void server_note_client_msg(struct pv_socket *s, char type);

#endif
