/*
 * tls.h - TLS with OpenSSL on both sides: the SSL_CTX for clients (pgvigil is
 * the TLS server) and for PostgreSQL servers (pgvigil is the TLS client), set
 * up from the client_tls_* / server_tls_* keys, and the per-socket SSL calls
 * that sbuf.c drives from the socket's read/write events.
 *
 * All calls are non-blocking. I/O wrappers report like recv()/send(): a byte
 * count, 0 for a clean end, or -1 with errno (EAGAIN: retry when the socket is
 * ready; which readiness is recorded in tls_read_wants_write /
 * tls_write_wants_read of the socket).
 */
#ifndef PV_TLS_H
#define PV_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct pv_socket;
struct pv_config;

/* pv_socket.tls_state */
enum tls_sock_state {
	PV_TLS_NONE,      /* plain socket (or TLS not decided yet) */
	PV_TLS_PEEK,      /* new TCP client, client TLS on: first byte 0x16 = direct TLS */
	PV_TLS_SSLREQ,    /* server: SSLRequest sent, waiting for 'S' / 'N' */
	PV_TLS_HANDSHAKE, /* handshake in progress */
	PV_TLS_OPEN,      /* established: data goes through SSL_read / SSL_write */
};

enum tls_hs_result {
	TLS_HS_DONE,
	TLS_HS_WANT_READ,
	TLS_HS_WANT_WRITE,
	TLS_HS_FAILED,
};

/* Startup: build the contexts from G.cf; false (err set) is fatal. */
bool tls_setup(char *err, size_t errlen);
/* RELOAD / admin SET: rebuild when a TLS key or file changed; keeps the old on failure. */
void tls_reload(void);
/* Free the contexts (exit). */
void tls_cleanup(void);

/* Does pgvigil offer TLS to clients (client_tls_sslmode != disable and set up)? */
bool tls_client_enabled(void);
/* Should this server connection start with an SSLRequest? */
bool tls_server_wanted(const struct pv_socket *s);

/* Create the SSL object: accept side for clients, connect side for servers. */
bool tls_start(struct pv_socket *s, char *err, size_t errlen);
enum tls_hs_result tls_handshake(struct pv_socket *s, char *err, size_t errlen);
ssize_t tls_recv(struct pv_socket *s, void *buf, size_t len);
ssize_t tls_send(struct pv_socket *s, const void *buf, size_t len);
/* Decrypted bytes wait inside SSL (the fd will not signal them). */
bool tls_pending(const struct pv_socket *s);
/* ... or any input at all, even part of a record (a resumed socket retries a read). */
bool tls_has_input(const struct pv_socket *s);
/* One non-blocking close_notify attempt (best effort). */
void tls_shutdown(struct pv_socket *s);
/* Free the per-socket TLS state (socket_destroy). */
void tls_free(struct pv_socket *s);

/* "<proto>/<cipher>[/ECDH=<curve>]"; false (buf "") when s has no TLS. */
bool tls_info(const struct pv_socket *s, char *buf, size_t len);
/*
 * The CN of a client certificate that verified against client_tls_ca_file;
 * false when there is none, it did not verify, or it is not a plain string.
 * (cert auth and HBA ident maps compare it to the user name.)
 */
bool tls_peer_cn(struct pv_socket *s, char *buf, size_t len);

#endif
