/*
 * replication.h - replication connections (replication=database|true).
 *
 * A replication client never shares a server: once authenticated it gets a
 * dedicated server connection, launched at once and linked 1:1 for the whole
 * session (session semantics whatever the pool mode). The server's startup
 * packet carries the client's "replication" and "options" values verbatim
 * and its tracked parameters; the client's welcome is that server's own
 * ParameterStatus set. SQL, replication commands and COPY BOTH streams pass
 * through untouched. The server is closed when its client leaves, and at once
 * when it is tagged close_needed.
 */
#ifndef PV_REPLICATION_H
#define PV_REPLICATION_H

#include <stdbool.h>
#include "pool.h"

struct pkt_builder;

/* Parse a "replication" startup value; false if it is not database/boolean. */
bool repl_parse(const char *value, enum repl_kind *out);
/* "none", "logical" or "physical" (SHOW CLIENTS / SERVERS). */
const char *repl_kind_name(enum repl_kind k);
/* auth.c: a replication client authenticated: launch its server. */
void repl_client_authenticated(struct pv_socket *c);
/* server.c: the dedicated server logged in / failed to. */
void repl_server_login_done(struct pv_socket *s);
void repl_server_login_failed(struct pv_socket *s, const char *sqlstate, const char *msg);
/* server.c: the client's replication, options and tracked parameters for the startup. */
void repl_add_startup_params(const struct pv_socket *s, struct pkt_builder *b);

#endif
