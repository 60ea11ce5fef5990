/*
 * recorder.c - the session recorder's queue and thread (include/recorder.h).
 *
 * Owns the bounded ring of events between the event loop and the recorder
 * thread, the thread's main loop (batching, periodic work, retry after write
 * errors), back-pressure (drop counting, the room eventfd) and the statistics
 * behind SHOW RECORDER. Files and the hash chain live in recorder_file.c.
 *
 * Why the ring is peeked, not popped: the writer reads slots [head, head+n)
 * outside the mutex and only pops them once they are on disk. The loop only
 * ever fills the slot at head+count while count < cap, so those slots are
 * stable, and an event that fails to write stays queued (and keeps counting
 * against the queue, which is what makes BLOCK mode hold clients back).
 */
#include "recorder.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "recorder_file.h"
#include "util.h"

#define REC_DEFAULT_QUEUE 4096
#define REC_TICK_USEC     (200 * 1000LL) /* periodic work granularity */
#define REC_RETRY_USEC    (100 * 1000LL) /* wait after a failed write */
#define REC_STOP_RETRIES  50             /* give up a failing disk at stop after ~5 s */

struct rec_slot {
	json_t *fields; /* carries "type" */
	usec_t ts;
};

struct recorder {
	struct rec_config cfg; /* deep copy */
	pthread_t thread;
	pthread_mutex_t lock; /* ring, stopping, want_room, drops */
	pthread_cond_t cond;  /* work for the writer */
	struct rec_slot *ring;
	size_t cap, head, count;
	bool stopping;
	bool want_room; /* a REC_FULL was returned; signal room_fd when space returns */
	uint64_t drops;
	int room_fd;
	atomic_bool paused;
	atomic_int fault;
	pthread_mutex_t stats_lock;
	struct rec_stats stats;
	struct rec_writer w;
};

/* --- configuration copy ------------------------------------------------------------------ */

static void free_config(struct rec_config *c)
{
	free(c->directory);
	if (c->hmac_key)
		OPENSSL_cleanse(c->hmac_key, strlen(c->hmac_key));
	free(c->hmac_key);
}

static bool copy_config(struct rec_config *dst, const struct rec_config *src)
{
	*dst = *src;
	dst->directory = strdup(src->directory ? src->directory : "");
	dst->hmac_key = src->hmac_key ? strdup(src->hmac_key) : NULL;
	if (dst->queue_size == 0)
		dst->queue_size = REC_DEFAULT_QUEUE;
	return dst->directory && (dst->hmac_key || !src->hmac_key);
}

/* --- the writer thread ------------------------------------------------------------------- */

static void abstime_in(struct timespec *ts, usec_t usec)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += usec / USEC_PER_SEC;
	ts->tv_nsec += (long)(usec % USEC_PER_SEC) * 1000;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Wait (lock held) until there is work, stop is requested, or the tick passes. */
static void wait_work(struct recorder *r, usec_t timeout)
{
	struct timespec ts;

	abstime_in(&ts, timeout);
	while (!r->stopping && (r->count == 0 || atomic_load(&r->paused)))
		if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT)
			break;
}

/* Write slots [head, head+n) in order; returns how many reached the file. */
static size_t write_slots(struct recorder *r, size_t head, size_t n, int *err)
{
	size_t done;

	*err = 0;
	for (done = 0; done < n; done++) {
		struct rec_slot *s = &r->ring[(head + done) % r->cap];
		if ((*err = recw_write(&r->w, s->fields, s->ts)) != 0)
			break;
	}
	return done;
}

/* Pop `done` written slots and wake a loop waiting for room. */
static void pop_slots(struct recorder *r, size_t done)
{
	uint64_t one = 1;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < done; i++) {
		json_decref(r->ring[r->head].fields);
		r->ring[r->head].fields = NULL;
		r->head = (r->head + 1) % r->cap;
	}
	r->count -= done;
	if (done && r->want_room) {
		r->want_room = false;
		if (write(r->room_fd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: the fd is readable already */
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/* At stop on a disk that keeps failing: count what cannot be written as dropped. */
static void abandon_queue(struct recorder *r)
{
	pthread_mutex_lock(&r->lock);
	r->drops += r->count;
	pthread_mutex_unlock(&r->lock);
	pop_slots(r, r->count);
}

static void *writer_main(void *arg)
{
	struct recorder *r = arg;
	int failures = 0;

	for (;;) {
		size_t head, n, done;
		bool stopping;
		int err;

		pthread_mutex_lock(&r->lock);
		wait_work(r, REC_TICK_USEC);
		head = r->head;
		n = atomic_load(&r->paused) && !r->stopping ? 0 : r->count;
		stopping = r->stopping;
		pthread_mutex_unlock(&r->lock);

		if ((err = recw_tick(&r->w, mono_usec())) != 0)
			recw_error(&r->w, "write", err);
		done = write_slots(r, head, n, &err);
		pop_slots(r, done);
		if (err) {
			recw_error(&r->w, "write", err);
			if (stopping && ++failures >= REC_STOP_RETRIES) {
				abandon_queue(r);
				break;
			}
			failures = failures ? failures : 1;
			usleep(REC_RETRY_USEC); /* keep the event queued and retry */
			continue;
		}
		failures = 0;
		if (stopping && done == n)
			break;
	}
	return NULL;
}

/* --- public API -------------------------------------------------------------------------- */

static struct recorder *alloc_recorder(const struct rec_config *cfg)
{
	struct recorder *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	if (!copy_config(&r->cfg, cfg)) {
		free_config(&r->cfg);
		free(r);
		return NULL;
	}
	r->cap = r->cfg.queue_size;
	r->ring = calloc(r->cap, sizeof(*r->ring));
	r->room_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!r->ring || r->room_fd < 0) {
		if (r->room_fd >= 0)
			close(r->room_fd);
		free(r->ring);
		free_config(&r->cfg);
		free(r);
		return NULL;
	}
	atomic_init(&r->paused, false);
	atomic_init(&r->fault, 0);
	r->w.cfg = &r->cfg;
	r->w.fault = &r->fault;
	r->w.stats_lock = &r->stats_lock;
	r->w.stats = &r->stats;
	return r;
}

static void free_recorder(struct recorder *r)
{
	recw_free(&r->w);
	close(r->room_fd);
	free(r->ring);
	free_config(&r->cfg);
	free(r);
}

static bool init_sync(struct recorder *r)
{
	pthread_condattr_t ca;
	bool ok;

	if (pthread_condattr_init(&ca) != 0)
		return false;
	/* Timed waits use the monotonic clock so a wall-clock jump does not stall the writer. */
	ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
	     pthread_cond_init(&r->cond, &ca) == 0;
	pthread_condattr_destroy(&ca);
	if (!ok)
		return false;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->stats_lock, NULL);
	return true;
}

struct recorder *recorder_start(const struct rec_config *cfg, char *err, size_t errlen)
{
	struct recorder *r = alloc_recorder(cfg);

	if (!r) {
		snprintf(err, errlen, "recorder: out of memory");
		return NULL;
	}
	if (!init_sync(r)) {
		snprintf(err, errlen, "recorder: cannot initialise locks");
		free_recorder(r);
		return NULL;
	}
	if (recw_open_dir(&r->w, err, errlen) < 0) {
		free_recorder(r);
		return NULL;
	}
	if (pthread_create(&r->thread, NULL, writer_main, r) != 0) {
		snprintf(err, errlen, "recorder: cannot start thread: %s", strerror(errno));
		free_recorder(r);
		return NULL;
	}
	return r;
}

void recorder_stop(struct recorder *r)
{
	int err;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	atomic_store(&r->paused, false);
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	if ((err = recw_close(&r->w)) != 0)
		recw_error(&r->w, "close", err);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->stats_lock);
	free_recorder(r);
}

enum rec_enqueue recorder_emit(struct recorder *r, const char *type, json_t *fields)
{
	json_t *ev = fields ? fields : json_object();
	usec_t ts = now_usec();

	pthread_mutex_lock(&r->lock);
	if (r->count == r->cap || r->stopping) {
		enum rec_enqueue res = r->stopping                              ? REC_ERROR
		                       : r->cfg.on_backpressure == REC_BP_BLOCK ? REC_FULL
		                                                                : REC_DROPPED;
		if (res == REC_FULL)
			r->want_room = true;
		else if (res == REC_DROPPED)
			r->drops++;
		pthread_mutex_unlock(&r->lock);
		if (res != REC_FULL || !fields)
			json_decref(ev);
		return res;
	}
	pthread_mutex_unlock(&r->lock);

	/* Allocate outside the lock: only the O(1) slot fill happens under it. */
	if (!json_is_object(ev) || json_object_set_new(ev, "type", json_string(type)) < 0) {
		json_decref(ev);
		return REC_ERROR;
	}
	pthread_mutex_lock(&r->lock);
	if (r->count == r->cap) { /* only the loop adds, so this cannot happen; be safe */
		r->drops++;
		pthread_mutex_unlock(&r->lock);
		json_decref(ev);
		return REC_DROPPED;
	}
	r->ring[(r->head + r->count) % r->cap] = (struct rec_slot){ev, ts};
	r->count++;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return REC_OK;
}

bool recorder_has_room(struct recorder *r)
{
	bool room;

	pthread_mutex_lock(&r->lock);
	room = r->count < r->cap;
	pthread_mutex_unlock(&r->lock);
	return room;
}

int recorder_room_fd(struct recorder *r)
{
	return r->room_fd;
}

void recorder_room_ack(struct recorder *r)
{
	uint64_t v;

	if (read(r->room_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing pending */
	}
}

void recorder_stats(struct recorder *r, struct rec_stats *out)
{
	pthread_mutex_lock(&r->stats_lock);
	*out = r->stats;
	pthread_mutex_unlock(&r->stats_lock);
	pthread_mutex_lock(&r->lock);
	out->queue_depth = r->count;
	out->drops = r->drops;
	pthread_mutex_unlock(&r->lock);
}

void recorder_test_pause(struct recorder *r, bool paused)
{
	pthread_mutex_lock(&r->lock);
	atomic_store(&r->paused, paused);
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

void recorder_test_fault(struct recorder *r, int err)
{
	atomic_store(&r->fault, err);
}
