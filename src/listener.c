/*
 * listener.c - TCP and unix-domain listening sockets.
 */
#include "listener.h"
#include "client.h"
#include "pool.h"
#include "log.h"
#include "sockopt.h"

#include <errno.h>
#include <event2/event.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_LISTENERS 16

struct listener {
	int fd;
	bool is_unix;
	struct event *ev;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static struct listener listeners[MAX_LISTENERS];
static int n_listeners;

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct listener *l = arg;
	/* Accept a bounded batch per wake-up so one busy listener cannot starve the loop. */
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warning("accept() failed: %s", strerror(errno));
			return;
		}
		if (!l->is_unix)
			sockopt_tune_tcp(fd);
		client_accept(fd, l->is_unix);
	}
}

static bool add_listener(int fd, bool is_unix, const char *path, char *err, size_t errlen)
{
	struct listener *l;
	if (n_listeners >= MAX_LISTENERS) {
		snprintf(err, errlen, "too many listen addresses");
		close(fd);
		return false;
	}
	l = &listeners[n_listeners];
	l->fd = fd;
	l->is_unix = is_unix;
	strlcpy_pv(l->path, path ? path : "", sizeof(l->path));
	l->ev = event_new(G.base, fd, EV_READ | EV_PERSIST, on_accept, l);
	if (!l->ev || event_add(l->ev, NULL) != 0) {
		snprintf(err, errlen, "cannot watch listening socket");
		close(fd);
		return false;
	}
	n_listeners++;
	return true;
}

static bool listen_tcp_addr(const struct addrinfo *ai, char *err, size_t errlen)
{
	int on = 1;
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket(): %s", strerror(errno));
		return false;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (G.cf->so_reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, G.cf->listen_backlog) < 0) {
		snprintf(err, errlen, "bind/listen on port %d: %s", G.cf->listen_port,
			 strerror(errno));
		close(fd);
		return false;
	}
	sockopt_tune_listener(fd);
	return add_listener(fd, false, NULL, err, errlen);
}

/* listen_addr is a comma list of numeric addresses, host names resolved once at start, or "*". */
static bool listen_tcp(char *err, size_t errlen)
{
	char *list = strdup(G.cf->listen_addr), *save = NULL, *tok;
	bool ok = true;
	char port[16];

	if (!list) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	snprintf(port, sizeof(port), "%d", G.cf->listen_port);
	for (tok = strtok_r(list, ", \t", &save); ok && tok; tok = strtok_r(NULL, ", \t", &save)) {
		struct addrinfo hints = {0}, *res = NULL, *ai;
		int rc;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		rc = getaddrinfo(strcmp(tok, "*") == 0 ? NULL : tok, port, &hints, &res);
		if (rc != 0) {
			snprintf(err, errlen, "listen_addr %s: %s", tok, gai_strerror(rc));
			ok = false;
			break;
		}
		for (ai = res; ok && ai; ai = ai->ai_next)
			ok = listen_tcp_addr(ai, err, errlen);
		freeaddrinfo(res);
	}
	free(list);
	return ok;
}

/* Refuse to steal the socket of a running pooler: connect first, as PgBouncer does. */
static bool unix_socket_in_use(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool used;
	if (fd < 0)
		return false;
	used = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return used;
}

static bool listen_unix(char *err, size_t errlen)
{
	struct sockaddr_un sun;
	const char *dir = G.cf->unix_socket_dir;
	bool abstract = dir[0] == '@';
	int fd, n;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", dir, G.cf->listen_port);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "unix_socket_dir too long");
		return false;
	}
	if (abstract) {
		sun.sun_path[0] = '\0';
	} else {
		if (unix_socket_in_use(&sun)) {
			snprintf(err, errlen, "unix socket is in use, cannot continue");
			return false;
		}
		unlink(sun.sun_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "bind %s: %s", sun.sun_path + abstract, strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	if (!abstract) {
		chmod(sun.sun_path, (mode_t)G.cf->unix_socket_mode);
		if (G.cf->unix_socket_group[0]) {
			struct group *gr = getgrnam(G.cf->unix_socket_group);
			if (!gr || chown(sun.sun_path, (uid_t)-1, gr->gr_gid) < 0)
				log_warning("cannot set group of %s to %s", sun.sun_path,
					    G.cf->unix_socket_group);
		}
	}
	if (listen(fd, G.cf->listen_backlog) < 0) {
		snprintf(err, errlen, "listen %s: %s", sun.sun_path, strerror(errno));
		close(fd);
		return false;
	}
	return add_listener(fd, true, abstract ? NULL : sun.sun_path, err, errlen);
}

bool listeners_open(char *err, size_t errlen)
{
	if (G.cf->unix_socket_dir[0] && !listen_unix(err, errlen))
		return false;
	if (G.cf->listen_addr[0] && !listen_tcp(err, errlen))
		return false;
	if (n_listeners == 0) {
		snprintf(err, errlen, "nothing to listen on: set listen_addr or unix_socket_dir");
		return false;
	}
	return true;
}

static void close_listener(struct listener *l)
{
	if (l->fd < 0)
		return;
	event_free(l->ev);
	close(l->fd);
	if (l->path[0])
		unlink(l->path);
	l->fd = -1;
}

void listeners_close_tcp(void)
{
	for (int i = 0; i < n_listeners; i++)
		if (!listeners[i].is_unix)
			close_listener(&listeners[i]);
}

void listeners_close_all(void)
{
	for (int i = 0; i < n_listeners; i++)
		close_listener(&listeners[i]);
}

void listeners_pause(bool paused)
{
	for (int i = 0; i < n_listeners; i++) {
		if (listeners[i].fd < 0)
			continue;
		if (paused)
			event_del(listeners[i].ev);
		else
			event_add(listeners[i].ev, NULL);
	}
}

/* admin.c (SHOW FDS) */
bool listeners_fd_at(int i, int *fd, bool *is_unix)
{
	if (i < 0 || i >= n_listeners)
		return false;
	*fd = listeners[i].fd;
	*is_unix = listeners[i].is_unix;
	return true;
}
