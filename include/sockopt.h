/*
 * sockopt.h - the tcp_* settings applied to TCP sockets, as PgBouncer does:
 * accepted client sockets and server connections get TCP_NODELAY, keepalive
 * (with keepcnt / keepidle / keepintvl), tcp_user_timeout and
 * tcp_socket_buffer; listening sockets get TCP_DEFER_ACCEPT.
 */
#ifndef PV_SOCKOPT_H
#define PV_SOCKOPT_H

/* A connected TCP socket (client or server side). Failures are logged, not fatal. */
void sockopt_tune_tcp(int fd);
/* A TCP listening socket: tcp_defer_accept. */
void sockopt_tune_listener(int fd);

#endif
