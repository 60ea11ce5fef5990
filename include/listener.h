/*
 * listener.h - listening sockets: TCP on listen_addr:listen_port and the unix
 * socket .s.PGSQL.<port> in unix_socket_dir; accepting hands fds to client.c.
 */
#ifndef PV_LISTENER_H
#define PV_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

/* Open all listeners from the running config. false + err on failure. */
bool listeners_open(char *err, size_t errlen);
/* Stop accepting on TCP (shutdown) or everything. */
void listeners_close_tcp(void);
void listeners_close_all(void);
/* Stop / resume accepting (SUSPEND, max_client_conn back-off). */
void listeners_pause(bool paused);
/* SHOW FDS: the i-th open listening fd (false past the end; fd -1 for closed slots). */
bool listeners_fd_at(int i, int *fd, bool *is_unix);

#endif
