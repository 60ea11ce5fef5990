/*
 * sockopt.c - tcp_* settings on client, server and listening sockets.
 */
#include "sockopt.h"
#include "pool.h"
#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

static void set_int(int fd, int level, int opt, int val, const char *name)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)) < 0)
		log_warning("setsockopt(%s=%d) failed: %s", name, val, strerror(errno));
}

/* keepcnt / keepidle / keepintvl of 0 keep the OS defaults. */
static void tune_keepalive(int fd)
{
	set_int(fd, SOL_SOCKET, SO_KEEPALIVE, G.cf->tcp_keepalive ? 1 : 0, "SO_KEEPALIVE");
	if (!G.cf->tcp_keepalive)
		return;
	if (G.cf->tcp_keepcnt > 0)
		set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, G.cf->tcp_keepcnt, "TCP_KEEPCNT");
	if (G.cf->tcp_keepidle > 0)
		set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, G.cf->tcp_keepidle, "TCP_KEEPIDLE");
	if (G.cf->tcp_keepintvl > 0)
		set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, G.cf->tcp_keepintvl, "TCP_KEEPINTVL");
}

void sockopt_tune_tcp(int fd)
{
	set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	tune_keepalive(fd);
#ifdef TCP_USER_TIMEOUT
	if (G.cf->tcp_user_timeout > 0)
		set_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, G.cf->tcp_user_timeout,
		        "TCP_USER_TIMEOUT");
#endif
	if (G.cf->tcp_socket_buffer > 0) {
		set_int(fd, SOL_SOCKET, SO_SNDBUF, G.cf->tcp_socket_buffer, "SO_SNDBUF");
		set_int(fd, SOL_SOCKET, SO_RCVBUF, G.cf->tcp_socket_buffer, "SO_RCVBUF");
	}
}

/*
 * With TCP_DEFER_ACCEPT the kernel wakes us only once the client has sent
 * its first bytes (PostgreSQL clients always speak first). PgBouncer treats
 * any non-zero tcp_defer_accept as "on" with a 45 second limit.
 */
void sockopt_tune_listener(int fd)
{
#ifdef TCP_DEFER_ACCEPT
	if (G.cf->tcp_defer_accept > 0)
		set_int(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, 45, "TCP_DEFER_ACCEPT");
#else
	(void)fd;
#endif
}
