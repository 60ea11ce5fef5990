/*
 * hooks.h - the two governance hook points on the packet path.
 *
 * client_msg sees every message a logged-in client sends before it is
 * forwarded to a server; server_msg sees every message a server sends to its
 * linked client. Inspection (client_msg), masking (server_msg) and recording
 * (both) attach here. A NULL hook costs one pointer test per message.
 *
 * A hook returns PKT_FORWARD to let the message through unchanged, or any
 * other pkt_action to take it over (PKT_NEED_FULL to see it whole first,
 * PKT_CONSUMED after queueing a replacement with sbuf_queue, ...).
 */
#ifndef PV_HOOKS_H
#define PV_HOOKS_H

#include "sbuf.h"

struct pv_socket;
struct pkt;

typedef enum pkt_action (*pv_msg_hook)(struct pv_socket *s, struct pkt *p);

struct pv_hooks {
	/*
	 * client_gate sees a logged-in client's message before a server is
	 * requested for it (client.c), so a statement can be held without
	 * occupying a server; PKT_FORWARD goes on to the server request.
	 */
	pv_msg_hook client_gate;
	pv_msg_hook client_msg;
	pv_msg_hook server_msg;
	/*
	 * Recording (record_events.c; NULL when off): record_client sees each
	 * message client_msg let through (PKT_FORWARD), record_server each
	 * message server_msg let through, before prepared-statement handling.
	 */
	pv_msg_hook record_client;
	pv_msg_hook record_server;
};

extern struct pv_hooks pv_hooks;

#endif
