/*
 * auth_query.h - credentials of users that are not in auth_file, fetched from
 * PostgreSQL with auth_query over a pooled connection of auth_user.
 *
 * Flow: auth.c sees a login user missing from auth_file while auth_user is
 * set (db-level auth_user wins over the global one) and calls
 * auth_query_start(). The client is parked as a waiting client of the pool
 * (auth database, auth_user); when pool.c links a server to it,
 * auth_query_link() sends auth_query as Parse/Bind/Execute/Sync (unnamed
 * statement and portal, one text parameter: the user name) instead of the
 * usual varcache SET, so nothing the client chose reaches that connection.
 * server.c hands that server's replies to auth_query_server_pkt(). At
 * ReadyForQuery the server goes back to its pool and the client to its own,
 * and authentication continues (auth_start() again, now with the cached
 * credentials) or fails (`no such user`, or the query failed).
 *
 * Credentials are cached per (database, user); every login of such a user
 * queries again and refreshes the entry, which server.c also uses as the
 * password source for server logins of that user.
 */
#ifndef PV_AUTH_QUERY_H
#define PV_AUTH_QUERY_H

#include <stdbool.h>
#include "sbuf.h"

struct pv_socket;
struct pkt;
struct auth_entry;

/* Does a login of c need auth_query (auth_user set, user not in auth_file, not yet queried)? */
bool auth_query_needed(const struct pv_socket *c);
/* Park c and run the query; on errors c is failed (closing). */
void auth_query_start(struct pv_socket *c);
/* pool.c: server s was linked to parked client c. Always returns false (client stays paused). */
bool auth_query_link(struct pv_socket *c, struct pv_socket *s);
/* server.c: a reply on a server running TASK_AUTH_QUERY. */
enum pkt_action auth_query_server_pkt(struct pv_socket *s, struct pkt *p);

/* Cached credentials of user for database db, or NULL. */
const struct auth_entry *auth_query_find(const char *db, const char *user);
/* Drop the whole cache (shutdown, tests). */
void auth_query_cache_clear(void);

#endif
