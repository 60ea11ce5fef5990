/*
 * sbuf.c - socket I/O: read, frame, dispatch, forward, write, close.
 */
#include "sbuf.h"
#include "pool.h"
#include "proto.h"
#include "client.h"
#include "server.h"
#include "log.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <event2/event.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

/* Past this much queued output, stop reading from whoever feeds the socket. */
#define OUT_HIGH_WATER(cf) ((size_t)(cf)->pkt_buf * 4)

/*
 * The range of the current source's input buffer gathered for forwarding.
 * Only one socket is processed at a time, so one batch suffices; anything that
 * queues output elsewhere flushes it first so bytes never overtake each other.
 */
static struct {
	struct pv_socket *src;
	struct pv_socket *dst;
	size_t start;
	size_t len;
} fwd;

/*
 * Rewritten rows (sbuf_out_begin/commit) are not sent by a write event after
 * the input batch: the destination is flushed once at the end of the batch,
 * so a masked row goes out in the same send as the CommandComplete and
 * ReadyForQuery behind it, and a writable socket costs no epoll_ctl. One
 * destination at a time (only one socket's input is processed at a time);
 * input_depth says whether an input batch is running to end it.
 */
static struct pv_socket *out_due;
static int input_depth;

/* Sockets whose processing resumes after the current event. */
static struct pv_socket **deferred;
static size_t n_deferred, cap_deferred;
static struct pv_socket **batch;
static size_t cap_batch;

/*
 * Idle sockets keep no buffers: an emptied buffer of the standard size goes
 * back to a small cache, so thousands of idle clients cost little memory and
 * busy ones do not call malloc for every request.
 */
#define IOBUF_CACHE_MAX 256
static uint8_t *iobuf_cache[IOBUF_CACHE_MAX];
static size_t iobuf_cached;

/* The capacity buf_reserve() gives an empty buffer asked for pkt_buf bytes. */
static size_t iobuf_std_cap(void)
{
	size_t cap = 256;
	while (cap < (size_t)G.cf->pkt_buf)
		cap *= 2;
	return cap;
}

static void iobuf_release(struct pv_buf *b)
{
	if (!b->data)
		return;
	if (b->cap == iobuf_std_cap() && iobuf_cached < IOBUF_CACHE_MAX)
		iobuf_cache[iobuf_cached++] = b->data;
	else
		free(b->data);
	buf_init(b);
}

static bool iobuf_acquire(struct pv_buf *b, size_t want)
{
	if (!b->data && iobuf_cached > 0 && want <= iobuf_std_cap()) {
		b->data = iobuf_cache[--iobuf_cached];
		b->cap = iobuf_std_cap();
		b->pos = b->len = 0;
		return true;
	}
	return buf_reserve(b, want);
}

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void process_input(struct pv_socket *s);
static void tls_read_pending(struct pv_socket *s);

/*
 * A client waiting for a server is paused and woken once per transaction in
 * transaction pooling; removing and re-adding its read event each time cost
 * two epoll_ctl calls per transaction. A plain socket that is paused (not
 * under back-pressure) therefore stays watched: it has normally nothing to
 * say until it gets its answer, and if it does, on_read stops watching it
 * then. TLS sockets keep the strict behaviour (their reads have side effects).
 */
static bool read_watch_lazily(const struct pv_socket *s)
{
	return s->read_paused && !s->bp_paused && s->tls_state == PV_TLS_NONE;
}

static void update_read_event(struct pv_socket *s)
{
	if (s->closing || !s->ev_read)
		return;
	/* A TLS write waiting for readability needs the read event even while paused. */
	if ((s->read_paused || s->bp_paused) && !s->tls_write_wants_read && !read_watch_lazily(s))
		event_del(s->ev_read);
	else
		event_add(s->ev_read, NULL);
}

/*
 * The write event is created the first time a socket must wait for
 * writability: most idle clients never do, and an unused event is ~140 bytes
 * on each of them. Once created it stays until the socket closes.
 */
static bool watch_write(struct pv_socket *s)
{
	if (!s->ev_write)
		s->ev_write = event_new(G.base, s->fd, EV_WRITE | EV_PERSIST, on_write, s);
	return s->ev_write && event_add(s->ev_write, NULL) == 0;
}

static void unwatch_write(struct pv_socket *s)
{
	if (s->ev_write)
		event_del(s->ev_write);
}

/* Out of memory for an event: the socket cannot go on. */
static void close_no_event(struct pv_socket *s)
{
	if (s->is_server)
		server_close(s, "out of memory for an event");
	else
		client_close(s, "out of memory for an event");
}

/*
 * Wait until s can take more output. An SSL_write that must first read (a TLS
 * 1.3 KeyUpdate...) waits for readability instead: EV_WRITE would spin.
 * false: no memory for the write event (the caller closes s).
 */
static bool arm_write(struct pv_socket *s)
{
	if (s->tls && s->tls_write_wants_read) {
		update_read_event(s);
		return true;
	}
	return watch_write(s);
}

/* The read event lives in the socket's own allocation (objects.c): no malloc per socket. */
static bool attach_read(struct pv_socket *s, int fd)
{
	struct event *ev = socket_event_mem(s);
	s->fd = fd;
	if (event_assign(ev, G.base, fd, EV_READ | EV_PERSIST, on_read, s) != 0)
		return false;
	s->ev_read = ev;
	return true;
}

bool sbuf_attach(struct pv_socket *s, int fd)
{
	if (!attach_read(s, fd))
		return false;
	s->read_paused = false;
	update_read_event(s);
	return true;
}

/* Append to dst's queue; with an empty queue try the kernel first. */
static bool send_or_queue(struct pv_socket *dst, const uint8_t *data, size_t len)
{
	if (dst->closing)
		return true; /* dropped with the socket */
	if (buf_pending(&dst->out) == 0 && dst->fd >= 0 && !dst->connecting) {
		ssize_t n = dst->tls ? tls_send(dst, data, len)
				     : send(dst->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			/* The read side will notice the broken peer; drop the data. */
			return true;
		}
		if (len == 0)
			return true;
	}
	if (!buf_append(&dst->out, data, len))
		return false;
	if (dst == out_due)
		return true; /* sent at the end of the input batch */
	if (dst->ev_read && !dst->connecting)
		return arm_write(dst);
	return true;
}

void sbuf_forward_flush(void)
{
	struct pv_socket *src = fwd.src, *dst = fwd.dst;
	if (!src || fwd.len == 0) {
		fwd.src = NULL;
		return;
	}
	fwd.src = NULL;
	if (!send_or_queue(dst, src->in.data + fwd.start, fwd.len)) {
		log_error("out of memory queueing %zu bytes", fwd.len);
		if (dst->is_server)
			server_close(dst, "out of memory");
		else
			client_close(dst, "out of memory");
		return;
	}
	fwd.len = 0;
	/* Back-pressure: the destination is not keeping up, stop reading the source. */
	if (buf_pending(&dst->out) > OUT_HIGH_WATER(G.cf) && !src->bp_paused) {
		src->bp_paused = true;
		update_read_event(src);
	}
}

static void forward_bytes(struct pv_socket *s, size_t start, size_t len)
{
	struct pv_socket *dst = s->link;
	if (!dst || len == 0)
		return;
	if (fwd.src == s && fwd.dst == dst && fwd.start + fwd.len == start) {
		fwd.len += len;
		return;
	}
	sbuf_forward_flush();
	fwd.src = s;
	fwd.dst = dst;
	fwd.start = start;
	fwd.len = len;
}

void sbuf_forward_current(struct pv_socket *s, const struct pkt *p)
{
	/* The handler's message always starts at the read position. */
	forward_bytes(s, s->in.pos, p->len);
}

bool sbuf_queue(struct pv_socket *s, const void *data, size_t len)
{
	sbuf_forward_flush();
	return send_or_queue(s, data, len);
}

/* Above this many queued bytes a rewritten stream is sent at once, not at the end of the batch. */
#define OUT_BATCH_BYTES (64 * 1024)
/* A forward batch up to this size is copied behind a rewritten row rather than sent alone. */
#define SPILL_MAX_BYTES 8192

/* Send what is queued for the socket the current input batch was writing to. */
static void flush_out_due(void)
{
	struct pv_socket *dst = out_due;

	out_due = NULL;
	if (dst)
		sbuf_flush(dst);
}

/* dst's queue is flushed at the end of the running input batch (false: none runs). */
static bool defer_out(struct pv_socket *dst)
{
	if (input_depth == 0 || !dst->ev_read || dst->connecting)
		return false;
	if (out_due && out_due != dst)
		flush_out_due();
	out_due = dst;
	return true;
}

/*
 * Before a message is built in dst's queue, the bytes gathered for dst so far
 * must precede it: a small batch is copied into the queue (one send at the
 * end of the input batch for both), a large one or another destination's is
 * sent as usual.
 */
static void forward_spill(struct pv_socket *dst)
{
	if (fwd.src && fwd.dst == dst && fwd.len <= SPILL_MAX_BYTES && !dst->closing &&
	    defer_out(dst) && buf_append(&dst->out, fwd.src->in.data + fwd.start, fwd.len)) {
		fwd.src = NULL;
		fwd.len = 0;
		return;
	}
	sbuf_forward_flush();
}

struct pv_buf *sbuf_out_begin(struct pv_socket *dst)
{
	if (dst->closing || dst->fd < 0) {
		sbuf_forward_flush();
		return NULL;
	}
	forward_spill(dst);
	return &dst->out;
}

/*
 * Messages built in place of src's (rewritten DataRows) are batched in dst's
 * queue and sent by the write event after the current input batch, instead
 * of one send per message; under the same back-pressure as forwarded bytes,
 * so a slow client stops the server.
 */
void sbuf_out_commit(struct pv_socket *src, struct pv_socket *dst)
{
	if (buf_pending(&dst->out) >= OUT_BATCH_BYTES) {
		sbuf_flush(dst);
	} else if (defer_out(dst)) {
		/* sent with what follows it in this input batch */
	} else if (dst->ev_read && !dst->connecting && !arm_write(dst)) {
		close_no_event(dst);
		return;
	}
	if (buf_pending(&dst->out) > OUT_HIGH_WATER(G.cf) && !src->bp_paused) {
		src->bp_paused = true;
		update_read_event(src);
	}
}

bool sbuf_queue_from(struct pv_socket *src, struct pv_socket *dst, const void *data, size_t len)
{
	struct pv_buf *out = sbuf_out_begin(dst);

	if (!out)
		return true; /* dropped with the socket */
	if (!buf_append(out, data, len))
		return false;
	sbuf_out_commit(src, dst);
	return true;
}

void sbuf_flush(struct pv_socket *s)
{
	sbuf_forward_flush();
	if (s->closing || s->fd < 0)
		return;
	while (buf_pending(&s->out) > 0) {
		/* TLS retries must pass the same bytes again: they stay at out.pos. */
		ssize_t n = s->tls ? tls_send(s, s->out.data + s->out.pos, buf_pending(&s->out))
				   : send(s->fd, s->out.data + s->out.pos, buf_pending(&s->out),
					  MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			s->out.pos += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!arm_write(s))
				close_no_event(s);
			return;
		}
		if (n < 0 && errno == EINTR)
			continue;
		/* Broken connection: let the read side report it. */
		break;
	}
	iobuf_release(&s->out);
	unwatch_write(s);
}

void sbuf_pause(struct pv_socket *s)
{
	if (!s->read_paused) {
		s->read_paused = true;
		update_read_event(s);
	}
}

void sbuf_wakeup(struct pv_socket *s)
{
	if (s->closing)
		return;
	for (size_t i = 0; i < n_deferred; i++)
		if (deferred[i] == s)
			return;
	if (n_deferred == cap_deferred) {
		size_t ncap = cap_deferred ? cap_deferred * 2 : 256;
		struct pv_socket **n = realloc(deferred, ncap * sizeof(*n));
		if (!n) {
			/* Cannot defer: resume reading; buffered input waits for new data. */
			s->read_paused = false;
			update_read_event(s);
			return;
		}
		deferred = n;
		cap_deferred = ncap;
	}
	deferred[n_deferred++] = s;
}

bool sbuf_run_deferred(void)
{
	size_t n = n_deferred;
	struct pv_socket **tmp;

	if (n == 0)
		return false;
	/* Swap arrays: handlers may defer more sockets while we run this batch. */
	tmp = batch;
	batch = deferred;
	deferred = tmp;
	{
		size_t c = cap_batch;
		cap_batch = cap_deferred;
		cap_deferred = c;
	}
	n_deferred = 0;
	for (size_t i = 0; i < n; i++) {
		struct pv_socket *s = batch[i];
		if (!s)
			continue;
		batch[i] = NULL;
		if (s->closing)
			continue;
		s->read_paused = false;
		update_read_event(s);
		if (!s->bp_paused)
			process_input(s);
		if (s->tls)
			tls_read_pending(s);
	}
	return n_deferred > 0;
}

/* Remove a closing socket from the deferred queue so it is never touched after free. */
static void deferred_forget(struct pv_socket *s)
{
	for (size_t i = 0; i < n_deferred; i++) {
		if (deferred[i] == s) {
			deferred[i] = deferred[--n_deferred];
			i--;
		}
	}
	/* ... and from a batch that is running right now. */
	for (size_t i = 0; i < cap_batch; i++)
		if (batch && batch[i] == s)
			batch[i] = NULL;
}

void sbuf_close(struct pv_socket *s)
{
	if (s->closing)
		return;
	if (fwd.src == s || fwd.dst == s)
		sbuf_forward_flush();
	if (out_due == s)
		out_due = NULL;
	/* Best effort: push out a final error message before closing. */
	if (buf_pending(&s->out) > 0 && s->fd >= 0 && !s->connecting)
		(void)(s->tls ? tls_send(s, s->out.data + s->out.pos, buf_pending(&s->out))
			      : send(s->fd, s->out.data + s->out.pos, buf_pending(&s->out),
				     MSG_NOSIGNAL | MSG_DONTWAIT));
	if (s->tls)
		tls_shutdown(s);
	s->closing = true;
	deferred_forget(s);
	if (s->ev_read) {
		event_del(s->ev_read); /* embedded (objects.c): nothing to free */
		s->ev_read = NULL;
	}
	if (s->ev_write) {
		event_free(s->ev_write);
		s->ev_write = NULL;
	}
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	list_del(&s->node);
	list_append(&G.justfree, &s->node);
}

bool sbuf_connect(struct pv_socket *s, const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	if (sa->sa_family != AF_UNIX) {
		int on = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	}
	if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
		int err = errno;
		close(fd);
		errno = err;
		return false;
	}
	/* Writability tells us the connect finished (or failed). */
	if (!attach_read(s, fd) || !watch_write(s)) {
		s->fd = -1;
		s->ev_read = NULL;
		close(fd);
		errno = ENOMEM;
		return false;
	}
	s->connecting = true;
	return true;
}

/* --- TLS: handshake, SSLRequest answer, direct TLS, readiness inversions --------- */

static void tls_failed(struct pv_socket *s, const char *why)
{
	if (s->is_server) {
		server_tls_failed(s, why);
	} else {
		client_close(s, why);
	}
}

/* Drive the handshake from whichever event fired. */
static void tls_step(struct pv_socket *s)
{
	char err[256];

	switch (tls_handshake(s, err, sizeof(err))) {
	case TLS_HS_WANT_READ:
		unwatch_write(s);
		event_add(s->ev_read, NULL);
		return;
	case TLS_HS_WANT_WRITE:
		if (!watch_write(s))
			tls_failed(s, "out of memory for an event");
		return;
	case TLS_HS_FAILED:
		tls_failed(s, err);
		return;
	case TLS_HS_DONE:
		break;
	}
	unwatch_write(s);
	update_read_event(s);
	if (s->is_server)
		server_tls_ready(s);
	else
		slog_debug(s, "TLS handshake done");
	if (s->closing)
		return;
	if (buf_pending(&s->out) > 0)
		sbuf_flush(s);
	if (tls_pending(s))
		sbuf_wakeup(s);
}

bool sbuf_tls_start(struct pv_socket *s)
{
	char err[256];
	if (!tls_start(s, err, sizeof(err))) {
		tls_failed(s, err);
		return false;
	}
	tls_step(s);
	return !s->closing;
}

/* A new TLS-enabled TCP client: 0x16 (a TLS handshake record) means direct TLS. */
static bool peek_direct_tls(struct pv_socket *s)
{
	uint8_t b;
	ssize_t n = recv(s->fd, &b, 1, MSG_PEEK);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return false;
	s->tls_state = PV_TLS_NONE;
	if (n != 1 || b != 0x16)
		return true; /* plain: the normal read handles data, EOF and errors */
	s->tls_direct = true;
	sbuf_tls_start(s);
	return false;
}

/*
 * The server's one-byte answer to our SSLRequest. Bytes after an 'S' were sent
 * before the handshake, unprotected: refused, as PostgreSQL clients do.
 */
static void read_ssl_answer(struct pv_socket *s)
{
	uint8_t b[64];
	ssize_t n = recv(s->fd, b, sizeof(b), 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		server_on_eof(s);
		return;
	}
	s->tls_state = PV_TLS_NONE;
	if (b[0] == 'S' && n == 1) {
		sbuf_tls_start(s);
	} else if (b[0] == 'S') {
		server_tls_failed(s, "server sent data after the SSL answer");
	} else if (b[0] == 'N' && n == 1) {
		server_tls_refused(s);
	} else if (b[0] == 'E') {
		/* An ErrorResponse instead of an answer: the login handler reports it. */
		if (!buf_append(&s->in, b, (size_t)n)) {
			server_close(s, "out of memory");
			return;
		}
		process_input(s);
	} else {
		server_tls_failed(s, "bad SSL answer from server");
	}
}

/* on_read for TLS states; true: go on with the normal (SSL_)read. */
static bool tls_on_read(struct pv_socket *s)
{
	switch (s->tls_state) {
	case PV_TLS_PEEK:
		return peek_direct_tls(s);
	case PV_TLS_SSLREQ:
		read_ssl_answer(s);
		return false;
	case PV_TLS_HANDSHAKE:
		tls_step(s);
		return false;
	default:
		break;
	}
	if (s->tls_write_wants_read) {
		s->tls_write_wants_read = false;
		update_read_event(s);
		sbuf_flush(s);
		if (s->closing || s->read_paused || s->bp_paused)
			return false;
	}
	return true;
}

/* on_write for TLS sockets; true: go on flushing. */
static bool tls_on_write(struct pv_socket *s)
{
	if (s->tls_state == PV_TLS_HANDSHAKE) {
		tls_step(s);
		return false;
	}
	if (s->tls_read_wants_write) {
		s->tls_read_wants_write = false;
		if (!s->read_paused && !s->bp_paused)
			on_read(s->fd, EV_READ, s);
		if (s->closing)
			return false;
	}
	return true;
}

/*
 * Deferred: a resumed TLS socket may hold input inside SSL that no fd event
 * will announce (decrypted bytes, or a record read while a write was due).
 */
static void tls_read_pending(struct pv_socket *s)
{
	if (!s->closing && !s->read_paused && !s->bp_paused && tls_has_input(s))
		on_read(s->fd, EV_READ, s);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	struct pv_socket *s = arg;
	struct pv_socket *feeder;

	if (s->connecting) {
		int err = 0;
		socklen_t elen = sizeof(err);
		s->connecting = false;
		unwatch_write(s);
		update_read_event(s);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
		server_connected(s, err);
		return;
	}
	if (s->tls && !tls_on_write(s))
		return;
	sbuf_flush(s);
	if (s->closing || buf_pending(&s->out) > 0)
		return;
	/* Drained: whoever was blocked feeding us may read again. */
	feeder = s->link;
	if (feeder && feeder->bp_paused && !feeder->closing)
		sbuf_resume_bp(feeder);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct pv_socket *s = arg;
	size_t want = (size_t)G.cf->pkt_buf;
	ssize_t n;

	if (read_watch_lazily(s)) {
		/* paused but still watched (update_read_event): stop now, read when woken */
		event_del(s->ev_read);
		return;
	}
	if (s->tls_state != PV_TLS_NONE && !tls_on_read(s))
		return;
	if (buf_pending(&s->in) == 0)
		buf_reset(&s->in);
	if (!s->in.data ? !iobuf_acquire(&s->in, want)
			: (s->in.cap - s->in.len < want / 2 && !buf_reserve(&s->in, want))) {
		if (s->is_server)
			server_close(s, "out of memory");
		else
			client_close(s, "out of memory");
		return;
	}
	n = s->tls ? tls_recv(s, s->in.data + s->in.len, s->in.cap - s->in.len)
		   : recv(fd, s->in.data + s->in.len, s->in.cap - s->in.len, 0);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
		if (s->is_server)
			server_on_eof(s);
		else
			client_on_eof(s);
		return;
	}
	if (n < 0) {
		/* Nothing came (spurious wake-up): an idle socket keeps no buffer. */
		if (buf_pending(&s->in) == 0)
			iobuf_release(&s->in);
		if (s->tls_read_wants_write && !watch_write(s))
			close_no_event(s);
		return;
	}
	s->in.len += (size_t)n;
	if (s->pool) {
		if (s->is_server)
			s->pool->stats.bytes_sent += (uint64_t)n;
		else
			s->pool->stats.bytes_received += (uint64_t)n;
	}
	process_input(s);
	if (s->tls && !s->closing && tls_pending(s) && !s->read_paused && !s->bp_paused)
		sbuf_wakeup(s); /* SSL holds more: the fd will not say so */
}

static enum pkt_action dispatch(struct pv_socket *s, struct pkt *p)
{
	return s->is_server ? server_handle_pkt(s, p) : client_handle_pkt(s, p);
}

static void protocol_violation(struct pv_socket *s, const char *what)
{
	if (s->is_server) {
		server_close(s, what);
	} else {
		client_fatal(s, "08P01", "%s", what);
	}
}

/* Pass through (or drop) the remainder of a streamed message. */
static bool stream_remainder(struct pv_socket *s)
{
	size_t avail = buf_pending(&s->in);
	size_t n = avail < s->pass_remain ? avail : (size_t)s->pass_remain;
	if (n == 0)
		return false;
	if (!s->pass_drop)
		forward_bytes(s, s->in.pos, n);
	s->in.pos += n;
	s->pass_remain -= n;
	return true;
}

void sbuf_resume_bp(struct pv_socket *s)
{
	if (!s->bp_paused)
		return;
	s->bp_paused = false;
	update_read_event(s);
	if (!s->read_paused)
		sbuf_wakeup(s);
}

/* End of an input batch: what it gathered or queued for others goes out now. */
static void end_input(void)
{
	sbuf_forward_flush();
	input_depth--;
	flush_out_due();
}

static void process_input_batch(struct pv_socket *s);

static void process_input(struct pv_socket *s)
{
	input_depth++;
	process_input_batch(s);
	end_input();
	if (!s->closing && buf_pending(&s->in) == 0)
		iobuf_release(&s->in);
}

static void process_input_batch(struct pv_socket *s)
{
	while (!s->closing && !s->read_paused && !s->bp_paused) {
		struct pkt p;
		enum frame_result fr;
		enum pkt_action act;
		size_t avail;

		if (s->pass_remain) {
			if (!stream_remainder(s))
				break;
			continue;
		}
		avail = buf_pending(&s->in);
		if (avail == 0)
			break;
		if (!s->is_server && s->login_phase == LOGIN_STARTUP)
			fr = proto_frame_startup(s->in.data + s->in.pos, avail, &p);
		else
			fr = proto_frame(s->in.data + s->in.pos, avail, &p);
		if (fr == FRAME_NEED_MORE)
			break;
		if (fr == FRAME_BAD) {
			protocol_violation(s, s->login_phase == LOGIN_STARTUP && !s->is_server
						      ? "invalid startup packet"
						      : "invalid packet length");
			return;
		}
		if ((int64_t)p.len > G.cf->max_packet_size) {
			protocol_violation(s, "max_packet_size exceeded");
			return;
		}
		act = dispatch(s, &p);
		switch (act) {
		case PKT_FORWARD:
			forward_bytes(s, s->in.pos, p.avail);
			s->in.pos += p.avail;
			s->pass_remain = p.len - p.avail;
			s->pass_drop = false;
			break;
		case PKT_FORWARD_THEN_DONE:
			forward_bytes(s, s->in.pos, p.len);
			s->in.pos += p.len;
			server_after_forward(s);
			break;
		case PKT_DROP:
			s->in.pos += p.avail;
			s->pass_remain = p.len - p.avail;
			s->pass_drop = true;
			break;
		case PKT_CONSUMED:
			s->in.pos += p.len;
			break;
		case PKT_NEED_FULL:
			/* Growing may move or compact the buffer: send the batch first. */
			sbuf_forward_flush();
			if (!buf_reserve(&s->in, p.len - p.avail)) {
				protocol_violation(s, "out of memory");
				return;
			}
			return;
		case PKT_PAUSE:
			if (!s->read_paused) {
				s->read_paused = true;
				update_read_event(s);
			}
			return;
		case PKT_STOP:
			return;
		}
	}
}
