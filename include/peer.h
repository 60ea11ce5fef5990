/*
 * peer.h - cancel forwarding between the processes of a so_reuseport set-up
 * ([peers] and peer_id, PgBouncer's "peering").
 *
 * With peer_id > 0 every cancel key handed to a client carries the process's
 * id in bytes 1-2 (little-endian) and a forwarding TTL of 3 in the low two
 * bits of byte 7. A CancelRequest that arrives at another process (the kernel
 * spreads new connections over all processes of the port) is forwarded,
 * with the TTL decremented, as a plain CancelRequest over a new connection
 * to the [peers] entry of that id; a TTL of 0 drops it (no forwarding loops).
 * Keys with the process's own id are matched locally, the TTL bits ignored.
 *
 * One peer pool per peer id bounds the cancels in flight to that peer at its
 * pool_size; further requests wait in FIFO order (cancel_wait_timeout).
 */
#ifndef PV_PEER_H
#define PV_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "config.h"

struct pv_socket;
struct peer_pool;

/* Put the process's peer id and TTL into a freshly generated client cancel key. */
void peer_stamp_key(uint8_t key[8]);
/*
 * A CancelRequest for key arrived on client c (state CL_CANCEL). Returns true
 * if it was taken over (forwarded, queued or dropped: c may be closed), false
 * if the key is this process's own (key normalised for local matching).
 */
bool peer_handle_cancel(struct pv_socket *c, uint8_t key[8]);
/* Start waiting forwards while the peer pool has room. */
void peer_pool_activate(struct peer_pool *pp);
/* Janitor: cancel_wait_timeout for waiting and in-flight forwards. */
void peers_janitor(usec_t now);

/* SHOW PEER_POOLS / SHOW LISTS. */
struct peer_pool_row {
	int peer_id;
	int cl_active_cancel_req;
	int cl_waiting_cancel_req;
	int sv_active_cancel;
	int sv_login;
};
bool peer_pool_row_at(size_t index, struct peer_pool_row *row);
size_t peer_pool_count(void);

#endif
