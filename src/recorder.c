/*
 * recorder.c - the session recorder's queue and thread (include/recorder.h).
 *
 * Owns the bounded ring of events between the event loop and the recorder
 * thread, the thread's main loop (batching, periodic work, retry after write
 * errors), back-pressure (drop counting, the room eventfd) and the statistics
 * behind SHOW RECORDER. Files and the hash chain live in recorder_file.c.
 *
 * The queue is a lock-free single-producer / single-consumer ring
 * (include/recorder_ring.h explains its memory ordering): the loop queues an
 * event with one slot copy, a sequentially consistent store of the tail and a
 * load of the writer's sleep flag, no mutex. The mutex and condition
 * variable remain only for the writer's sleep: the loop takes the mutex just to
 * signal a writer that sleeps waiting for it (the ring's sleep flag says so).
 *
 * Why the ring is peeked, not popped: the writer reads slots [head, head+n)
 * and only pops them once they are on disk. The loop only ever fills slots
 * past tail while the ring has room, so those slots are stable, and an event
 * that fails to write stays queued (and keeps counting against the queue,
 * which is what makes BLOCK mode hold clients back).
 */
#include "recorder.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "recorder_file.h"
#include "recorder_ring.h"
#include "util.h"

#define REC_DEFAULT_QUEUE 4096
#define REC_TICK_USEC     (200 * 1000LL) /* periodic work granularity */
#define REC_RETRY_USEC    (100 * 1000LL) /* wait after a failed write */
#define REC_STOP_RETRIES  50             /* give up a failing disk at stop after ~5 s */
#define REC_LINGER_USEC   5000             /* let a batch gather this long before writing it */
#define REC_BUSY_USEC     20000            /* ...if the last pass was this recent (else write now) */
#define REC_WAKE_MAX      1024             /* ...unless this many events (or half the queue) wait */
#define REC_PASS_MAX      1024             /* events written per pass: pop (make room) this often */
#define REC_POOL_EVENTS   1024             /* written events kept for the loop to reuse */

struct recorder {
	struct rec_config cfg; /* deep copy */
	pthread_t thread;
	pthread_mutex_t lock; /* the writer's sleep (cond); stopping and paused change under it */
	pthread_cond_t cond;  /* work for the writer */
	struct rec_slot *slots;
	struct rec_ring q;    /* slots as a lock-free queue: the loop produces, the writer consumes */
	struct rec_pool pool; /* written events back to the loop: the writer produces */
	void *pool_cells[REC_POOL_EVENTS];
	void *spare[REC_POOL_EVENTS]; /* loop only: events taken from the pool, newest on top */
	size_t nspare;
	atomic_bool stopping; /* set under lock; the loop (which stops) reads it without */
	usec_t last_pass;     /* mono time the writer last wrote events (writer thread only) */
	atomic_uint_fast64_t drops;
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

/*
 * Wait (lock held) until there is work, stop is requested, or the tick passes.
 * Why the linger: waking the writer per event cost a futex wake and a context
 * switch each, on a machine whose cores the loop and the database need. While
 * events keep coming (the last pass is recent), once an event waits the writer
 * sleeps on until REC_LINGER_USEC has passed or wake_at events are queued (emit
 * signals then), and writes them as a batch. After a quiet spell the first
 * event is written at once, so a lone event is not delayed.
 * The sleep is announced in the ring (rec_ring_may_sleep) so that the loop
 * signals only a writer that waits, and only for what it waits for.
 */
static void wait_work(struct recorder *r)
{
	struct timespec deadline;
	bool lingering = false;

	abstime_in(&deadline, REC_TICK_USEC);
	while (!atomic_load(&r->stopping)) {
		bool paused = atomic_load(&r->paused);
		size_t n = rec_ring_depth(&r->q);
		enum rec_sleep mode;
		int rc;

		if (!paused && n >= r->q.wake_at)
			break;
		/*
		 * While busy, linger even before the first event of the next batch
		 * comes: waiting for it instead cost the loop a futex wake and the
		 * writer a context switch per batch, only to start the linger then.
		 */
		if (!paused && !lingering && (n > 0 || mono_usec() - r->last_pass < REC_BUSY_USEC)) {
			if (n > 0 && mono_usec() - r->last_pass >= REC_BUSY_USEC)
				break;
			abstime_in(&deadline, REC_LINGER_USEC);
			lingering = true;
		}
		mode = paused ? REC_SLEEP_PAUSED : lingering ? REC_SLEEP_LINGER : REC_SLEEP_EMPTY;
		if (!rec_ring_may_sleep(&r->q, mode))
			continue; /* what we would wait for came meanwhile */
		rc = pthread_cond_timedwait(&r->cond, &r->lock, &deadline);
		rec_ring_awake(&r->q);
		if (rc == ETIMEDOUT)
			break; /* linger over (write) or tick (periodic work) */
	}
}

/* Write slots [head, head+n) in order; returns how many reached the file. */
static size_t write_slots(struct recorder *r, size_t head, size_t n, int *err)
{
	size_t done = 0;

	*err = n ? recw_write_batch(&r->w, r->slots, r->q.cap, head, n, &done) : 0;
	return done;
}

/*
 * Pop `done` written slots (from head, which only this thread moves) and wake a
 * loop waiting for room. The events are freed before they are released: once
 * head moves past a slot the loop may overwrite it.
 * Why this thread writes nothing into the slots or the events it hands back:
 * the loop writes them next, and a cache line this core last wrote would have
 * to come back from here (a slower transfer than one it only read); the loop
 * empties an event when it takes it (recorder_event_new).
 */
static void pop_slots(struct recorder *r, size_t head, size_t done)
{
	uint64_t one = 1;

	for (size_t i = 0; i < done; i++) {
		struct rec_slot *s = &r->slots[(head + i) % r->q.cap];

		json_decref(s->fields);
		if (s->ev && !rec_pool_put(&r->pool, s->ev))
			rec_event_free(s->ev);
	}
	if (rec_ring_pop(&r->q, done) && write(r->room_fd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the fd is readable already */
	}
}

/* At stop on a disk that keeps failing: count what cannot be written as dropped. */
static void abandon_queue(struct recorder *r)
{
	size_t head, n = rec_ring_peek(&r->q, &head);

	atomic_fetch_add_explicit(&r->drops, n, memory_order_relaxed);
	pop_slots(r, head, n);
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
		wait_work(r);
		stopping = atomic_load(&r->stopping);
		n = rec_ring_peek(&r->q, &head);
		n = atomic_load(&r->paused) && !stopping ? 0 : n;
		n = n > REC_PASS_MAX ? REC_PASS_MAX : n;
		pthread_mutex_unlock(&r->lock);

		if ((err = recw_tick(&r->w, mono_usec())) != 0)
			recw_error(&r->w, "write", err);
		done = write_slots(r, head, n, &err);
		if (done)
			r->last_pass = mono_usec();
		pop_slots(r, head, done);
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
	r->slots = r->cfg.queue_size <= SIZE_MAX / sizeof(*r->slots)
	               ? aligned_alloc(_Alignof(struct rec_slot), r->cfg.queue_size * sizeof(*r->slots))
	               : NULL;
	if (r->slots)
		memset(r->slots, 0, r->cfg.queue_size * sizeof(*r->slots));
	r->room_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!r->slots || r->room_fd < 0) {
		if (r->room_fd >= 0)
			close(r->room_fd);
		free(r->slots);
		free_config(&r->cfg);
		free(r);
		return NULL;
	}
	rec_ring_init(&r->q, r->slots, r->cfg.queue_size,
	              r->cfg.queue_size / 2 > REC_WAKE_MAX ? REC_WAKE_MAX : r->cfg.queue_size / 2);
	rec_pool_init(&r->pool, r->pool_cells, REC_POOL_EVENTS);
	atomic_init(&r->stopping, false);
	atomic_init(&r->drops, 0);
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
	size_t head, n = rec_ring_peek(&r->q, &head);
	void *ev;

	/* nothing is left after a normal stop; this only frees, it writes nothing */
	pop_slots(r, head, n);
	while ((ev = rec_pool_take(&r->pool)) != NULL)
		rec_event_free(ev);
	while (r->nspare)
		rec_event_free(r->spare[--r->nspare]);
	recw_free(&r->w);
	close(r->room_fd);
	free(r->slots);
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
	atomic_store(&r->stopping, true);
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

/*
 * Queue a filled slot in O(1) without a lock; take the lock only to wake a
 * writer that sleeps waiting for this event. Refused when full (BLOCK: the
 * ring remembers to signal room_fd; DROP: counted) or when stopping (which
 * only the loop itself sets, after its last emit).
 */
static enum rec_enqueue enqueue(struct recorder *r, const struct rec_slot *slot)
{
	bool wake = false;

	if (atomic_load_explicit(&r->stopping, memory_order_relaxed))
		return REC_ERROR;
	if (r->cfg.on_backpressure == REC_BP_DROP && !rec_ring_has_room(&r->q)) {
		atomic_fetch_add_explicit(&r->drops, 1, memory_order_relaxed);
		return REC_DROPPED; /* no want_room: nobody waits for room in drop mode */
	}
	if (!rec_ring_push(&r->q, slot, &wake)) {
		if (r->cfg.on_backpressure == REC_BP_BLOCK)
			return REC_FULL;
		atomic_fetch_add_explicit(&r->drops, 1, memory_order_relaxed);
		return REC_DROPPED;
	}
	if (wake) {
		pthread_mutex_lock(&r->lock);
		if (rec_ring_claim_wake(&r->q))
			pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->lock);
	}
	return REC_OK;
}

enum rec_enqueue recorder_emit(struct recorder *r, const char *type, json_t *fields)
{
	json_t *ev = fields ? fields : json_object();
	struct rec_slot slot = {ev, NULL, now_usec(), ""};
	enum rec_enqueue res = REC_OK;

	if (!json_is_object(ev))
		res = REC_ERROR;
	else if (strlen(type) < sizeof(slot.type)) /* the usual case: no allocation */
		memcpy(slot.type, type, strlen(type) + 1);
	else if (json_object_set_new(ev, "type", json_string(type)) < 0)
		res = REC_ERROR;
	if (res == REC_OK)
		res = enqueue(r, &slot);
	if (res != REC_OK && (res != REC_FULL || !fields))
		json_decref(ev);
	return res;
}

enum rec_enqueue recorder_emit_event(struct recorder *r, const char *type, struct rec_event *e)
{
	struct rec_slot slot = {NULL, e, e && e->ts ? e->ts : now_usec(), ""};
	enum rec_enqueue res;

	/* a built event has no object to carry a long type: types are short words */
	if (!e || e->failed || strlen(type) >= sizeof(slot.type)) {
		rec_event_free(e);
		return REC_ERROR;
	}
	memcpy(slot.type, type, strlen(type) + 1);
	res = enqueue(r, &slot);
	if (res != REC_OK && res != REC_FULL)
		rec_event_free(e);
	return res;
}

struct rec_event *recorder_event_new(struct recorder *r)
{
	struct rec_event *e;
	void *back;

	if (!r)
		return rec_event_new();
	/*
	 * Why a stack: the pool returns events oldest first, so reusing them in
	 * that order cycled through every event ever pooled (a megabyte, cold in
	 * this core's cache). Taking the newest first keeps the events in use down
	 * to about those of one write batch; the rest wait at the bottom.
	 */
	while ((back = rec_pool_take(&r->pool)) != NULL) {
		if (r->nspare < REC_POOL_EVENTS)
			r->spare[r->nspare++] = back;
		else
			rec_event_free(back);
	}
	if (!r->nspare)
		return rec_event_new();
	e = r->spare[--r->nspare];
	rec_event_reset(e); /* here, not on the writer: see pop_slots */
	return e;
}

bool recorder_has_room(struct recorder *r)
{
	return rec_ring_has_room(&r->q);
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
	out->queue_depth = rec_ring_depth(&r->q);
	out->drops = atomic_load_explicit(&r->drops, memory_order_relaxed);
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
