/*
 * client.h - the client side of the protocol: accepting a connection, the
 * startup packet (SSL/GSSENC/Cancel requests, protocol negotiation, startup
 * parameters), client authentication, and each message a logged-in client
 * sends (pool-mode bookkeeping and the client->server governance hook).
 */
#ifndef PV_CLIENT_H
#define PV_CLIENT_H

#include <stdbool.h>
#include "sbuf.h"

struct pv_socket;
struct pkt;

/* A new connection from a listener. */
void client_accept(int fd, bool is_unix);
enum pkt_action client_handle_pkt(struct pv_socket *c, struct pkt *p);
/* Peer closed or read error. */
void client_on_eof(struct pv_socket *c);
/* Disconnect with a FATAL error (sqlstate, text) and log "closing because". */
void client_fatal(struct pv_socket *c, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Close a client; releases or closes its server. */
void client_close(struct pv_socket *c, const char *reason);
/* Login finished: count the client and make it active (admin clients do not count
 * against max_client_conn). */
void client_mark_logged_in(struct pv_socket *c, bool counts_toward_max);
/* Send the welcome (AuthOk, params, key, RFQ) and make the client active. */
bool client_send_welcome(struct pv_socket *c);
/* A linked server finished syncing vars for this client: continue with its request. */
void client_server_ready(struct pv_socket *c);
/*
 * A token login whose token's exp has passed, and the client is between
 * requests (no query running; no server, or a server idle outside a
 * transaction). Always false for non-token logins.
 */
bool client_token_expired(const struct pv_socket *c);

/* Auth (auth.c): start authentication after a valid startup packet. */
void auth_start(struct pv_socket *c);
/* A PasswordMessage / SASL response arrived. */
enum pkt_action auth_handle_pkt(struct pv_socket *c, struct pkt *p);

#endif
