/*
 * sbuf.h - the bytes of every socket: non-blocking reads into the socket's
 * input buffer, framing into messages, per-message dispatch to the protocol
 * handler (client.c / server.c), forwarding to the linked socket, writes with
 * back-pressure, and deferred close/free.
 *
 * Forwarding is zero-copy on the fast path: consecutive forwarded messages are
 * gathered as one range of the source's input buffer and sent straight to the
 * destination's fd; only what the kernel does not take is copied into the
 * destination's output buffer. Messages larger than the buffer are streamed
 * through unless the handler asks to see them whole.
 */
#ifndef PV_SBUF_H
#define PV_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct pv_socket;
struct pkt;

enum pkt_action {
	PKT_FORWARD,   /* send to the linked socket (streamed if incomplete) */
	PKT_CONSUMED,  /* handled here; the message must be complete */
	PKT_DROP,      /* discard (may be incomplete: the rest is skipped as it arrives) */
	PKT_NEED_FULL, /* call again once the whole message is buffered */
	PKT_PAUSE,     /* stop processing this socket; the message stays queued */
	PKT_STOP,      /* the socket was closed */
	PKT_FORWARD_THEN_DONE, /* forward, then call server_after_forward() (release checks) */
};

/* Start watching an accepted or connecting fd. */
bool sbuf_attach(struct pv_socket *s, int fd);
/* Queue bytes for writing to s (after anything already forwarded to it). */
bool sbuf_queue(struct pv_socket *s, const void *data, size_t len);
/*
 * Queue a message that replaces one read from src (rewritten rows): batched
 * (no send per call: sent at the end of the current input batch, in one send
 * with what is forwarded after it) and with back-pressure on src when dst
 * falls behind.
 */
bool sbuf_queue_from(struct pv_socket *src, struct pv_socket *dst, const void *data, size_t len);
/*
 * The same, built in place: sbuf_out_begin returns dst's output queue (NULL
 * when dst is going away) to append whole messages to, after the bytes
 * forwarded to dst so far (a small batch of them is copied into the queue, so
 * both leave in one send); sbuf_out_commit then schedules the write and
 * applies back-pressure. A message may be taken back by resetting the queue's
 * len before committing.
 */
struct pv_buf *sbuf_out_begin(struct pv_socket *dst);
void sbuf_out_commit(struct pv_socket *src, struct pv_socket *dst);
/* Write what is queued; arms EV_WRITE when the kernel is full. */
void sbuf_flush(struct pv_socket *s);
/* Stop / restart processing input (a client waiting for a server...). */
void sbuf_pause(struct pv_socket *s);
/* Resume after the current event: re-enables reading and processes buffered input. */
void sbuf_wakeup(struct pv_socket *s);
/* Back-pressure on s is over (its destination drained or went away). */
void sbuf_resume_bp(struct pv_socket *s);
/* Close the fd now, free the memory after this loop iteration. */
void sbuf_close(struct pv_socket *s);
/* Non-blocking connect; the server handler is told through server_connected(). */
bool sbuf_connect(struct pv_socket *s, const struct sockaddr *sa, socklen_t len);
/* From a handler: forward the complete current message now (then return PKT_CONSUMED). */
void sbuf_forward_current(struct pv_socket *s, const struct pkt *p);
/* Send everything already gathered for forwarding (called before synthesizing output). */
void sbuf_forward_flush(void);
/*
 * Start TLS on s (after 'S' was exchanged, or on a direct-TLS client) and run
 * the handshake on its events; false when it failed (s closed).
 */
bool sbuf_tls_start(struct pv_socket *s);
/* Run deferred wake-ups; returns true if there is more deferred work. */
bool sbuf_run_deferred(void);

#endif
