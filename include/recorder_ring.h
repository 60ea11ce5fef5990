/*
 * recorder_ring.h - the recorder's lock-free single-producer / single-consumer
 * queue (internal to src/recorder.c; unit-tested in test/unit/test_recorder.c).
 *
 * The event loop is the only producer and the recorder thread the only
 * consumer. head and tail count slots ever consumed / produced (they only grow;
 * the slot of index i is slot[i % cap]), so tail - head is the depth and no
 * slot is ever "ambiguous" between full and empty.
 *
 * Memory ordering, in one place:
 *  - The producer fills slot[tail % cap] and then publishes it by storing tail
 *    with release semantics; the consumer loads tail with acquire, so the
 *    slot's contents are visible before it reads them.
 *  - The consumer reads (and frees) slots, then stores head with release; the
 *    producer loads head with acquire before it overwrites a slot, so the
 *    consumer is done with that slot when the producer writes it.
 *  - Two flags need more than that, because each side writes one variable and
 *    then reads the other's (the store-load "Dekker" pattern, which acquire /
 *    release alone does not order):
 *      sleep:     consumer stores sleep, then loads tail;
 *                 producer stores tail, then loads sleep.
 *      want_room: producer stores want_room, then loads head;
 *                 consumer stores head, then loads want_room.
 *    All four accesses on each pair are seq_cst, so in the single total order
 *    of seq_cst operations at least one side sees the other's store: either
 *    the consumer sees the new event (and does not sleep), or the producer sees
 *    it asleep (and wakes it); either the producer sees the freed slot (and
 *    queues after all) or the consumer sees want_room (and signals room).
 *    That is what makes wake-ups and room signals impossible to lose.
 */
#ifndef PV_RECORDER_RING_H
#define PV_RECORDER_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "recorder_file.h" /* struct rec_slot */

/* What the consumer waits for while it sleeps (ring.sleep). */
enum rec_sleep {
	REC_AWAKE = 0,    /* not sleeping: the producer never signals */
	REC_SLEEP_EMPTY,  /* sleeping on an empty queue: wake at the first event */
	REC_SLEEP_LINGER, /* letting a batch gather: wake at wake_at events */
	REC_SLEEP_PAUSED, /* test pause: only recorder_test_pause / stop wake it */
};

struct rec_ring {
	struct rec_slot *slot;
	size_t cap;
	size_t wake_at; /* queued events that end a linger early (>= 1) */
	/*
	 * Each side's counter on its own cache line (padding, not _Alignas: the
	 * recorder is calloc'd, which does not promise 64-byte alignment): the
	 * producer does not read head per push (head_seen), so keeping the lines
	 * apart stops them bouncing between the cores on every push and pop.
	 */
	char pad0[64];
	atomic_size_t tail; /* written by the producer only */
	size_t head_seen;   /* producer's last head: reloaded only when full */
	char pad1[64];
	atomic_size_t head; /* written by the consumer only */
	char pad2[64];
	atomic_int sleep;      /* enum rec_sleep; consumer sets, producer clears */
	atomic_bool want_room; /* producer sets after a refusal, consumer clears */
};

/* slot: cap entries owned by the caller. wake_at is clamped to [1, cap]. */
static inline void rec_ring_init(struct rec_ring *q, struct rec_slot *slot, size_t cap,
                                 size_t wake_at)
{
	q->slot = slot;
	q->cap = cap;
	q->wake_at = wake_at == 0 ? 1 : wake_at > cap ? cap : wake_at;
	atomic_init(&q->tail, 0);
	atomic_init(&q->head, 0);
	atomic_init(&q->sleep, REC_AWAKE);
	atomic_init(&q->want_room, false);
	q->head_seen = 0;
}

/* Events queued, as seen from any thread (a snapshot; exact on either side). */
static inline size_t rec_ring_depth(struct rec_ring *q)
{
	size_t head = atomic_load_explicit(&q->head, memory_order_acquire);
	size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);

	return tail - head;
}

/* --- producer side ------------------------------------------------------------------ */

/* Room for one more event (producer only; may be stale-full, never stale-free). */
static inline bool rec_ring_has_room(struct rec_ring *q)
{
	size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);

	if (tail - q->head_seen < q->cap)
		return true;
	q->head_seen = atomic_load_explicit(&q->head, memory_order_acquire);
	return tail - q->head_seen < q->cap;
}

/*
 * Queue *s. Returns false when full; then want_room is set (after a last look
 * at head, see the file comment), so the consumer signals when it frees a slot.
 * On success *wake tells whether the consumer sleeps waiting for this event
 * (the caller then signals it under the consumer's mutex, rec_ring_claim_wake).
 */
static inline bool rec_ring_push(struct rec_ring *q, const struct rec_slot *s, bool *wake)
{
	size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	int sleep;

	if (!rec_ring_has_room(q)) {
		atomic_store(&q->want_room, true); /* seq_cst: Dekker with rec_ring_pop */
		q->head_seen = atomic_load(&q->head);
		if (tail - q->head_seen >= q->cap)
			return false;
		/* room appeared meanwhile: queue after all; want_room stays (a spare signal) */
	}
	/*
	 * Why the prefetch: the ring is large (queue_size slots) and each slot is
	 * cold when its turn comes; the seq_cst store below is a full barrier that
	 * waits for this slot's store to reach the cache, so a miss here stalled
	 * every push. Fetching a few slots ahead for writing hides that miss.
	 */
	__builtin_prefetch(&q->slot[(tail + 4) % q->cap], 1, 3);
	q->slot[tail % q->cap] = *s;
	atomic_store(&q->tail, tail + 1); /* seq_cst: publishes the slot, then Dekker with sleep */
	sleep = atomic_load(&q->sleep);
	*wake = sleep == REC_SLEEP_EMPTY ||
	        (sleep == REC_SLEEP_LINGER && tail + 1 - atomic_load(&q->head) >= q->wake_at);
	return true;
}

/*
 * Call with the consumer's mutex held after push said *wake: true when the
 * caller should signal (only one producer signal per sleep).
 */
static inline bool rec_ring_claim_wake(struct rec_ring *q)
{
	int s = atomic_load(&q->sleep);

	if (s != REC_SLEEP_EMPTY && s != REC_SLEEP_LINGER)
		return false;
	return atomic_exchange(&q->sleep, REC_AWAKE) != REC_AWAKE;
}

/* --- consumer side ------------------------------------------------------------------ */

/* The queued events are slot[(*head + i) % cap], i < return value. */
static inline size_t rec_ring_peek(struct rec_ring *q, size_t *head)
{
	*head = atomic_load_explicit(&q->head, memory_order_relaxed); /* our own */
	return atomic_load_explicit(&q->tail, memory_order_acquire) - *head;
}

/*
 * Release n consumed slots to the producer. True when the producer was
 * refused meanwhile and waits for room: the caller signals it then.
 */
static inline bool rec_ring_pop(struct rec_ring *q, size_t n)
{
	size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);

	if (n == 0)
		return false;
	atomic_store(&q->head, head + n); /* seq_cst: releases the slots, Dekker with want_room */
	return atomic_load(&q->want_room) && atomic_exchange(&q->want_room, false);
}

/*
 * About to sleep in `mode` (consumer mutex held): announce it, then look at the
 * queue once more. False when what the sleep would wait for is already there:
 * the consumer must not sleep (the flag is cleared again).
 */
static inline bool rec_ring_may_sleep(struct rec_ring *q, enum rec_sleep mode)
{
	size_t n;

	atomic_store(&q->sleep, (int)mode); /* seq_cst: Dekker with push */
	n = atomic_load(&q->tail) - atomic_load_explicit(&q->head, memory_order_relaxed);
	if ((mode == REC_SLEEP_EMPTY && n > 0) || (mode == REC_SLEEP_LINGER && n >= q->wake_at)) {
		atomic_store(&q->sleep, REC_AWAKE);
		return false;
	}
	return true;
}

/* Woken or timed out (consumer mutex held). */
static inline void rec_ring_awake(struct rec_ring *q)
{
	atomic_store(&q->sleep, REC_AWAKE);
}

/* --- the free-event pool: the same scheme the other way round ------------------------- */

/*
 * Events the writer has written, handed back to the loop for reuse: one more
 * SPSC ring (the writer puts, the loop takes). Why: events are allocated on
 * the loop and freed on the writer thread, and glibc's per-thread caches make
 * that cross-thread pattern take the arena lock on both sides for every
 * event. Neither side ever waits on this ring (full: the writer frees; empty:
 * the loop allocates), so plain release/acquire on the two counters is enough:
 * the putter's release of `put` publishes the pointer, the taker's release of
 * `take` hands the cell back before the putter overwrites it.
 */
struct rec_pool {
	void **cell;
	size_t cap;
	char pad0[64];
	atomic_size_t put; /* written by the writer thread only */
	char pad1[64];
	atomic_size_t take; /* written by the loop only */
};

static inline void rec_pool_init(struct rec_pool *p, void **cell, size_t cap)
{
	p->cell = cell;
	p->cap = cap;
	atomic_init(&p->put, 0);
	atomic_init(&p->take, 0);
}

/* Writer side: false when full (the caller frees the item itself). */
static inline bool rec_pool_put(struct rec_pool *p, void *item)
{
	size_t put = atomic_load_explicit(&p->put, memory_order_relaxed);

	if (p->cap == 0 || put - atomic_load_explicit(&p->take, memory_order_acquire) >= p->cap)
		return false;
	p->cell[put % p->cap] = item;
	atomic_store_explicit(&p->put, put + 1, memory_order_release);
	return true;
}

/* Loop side: an item, or NULL when empty. */
static inline void *rec_pool_take(struct rec_pool *p)
{
	size_t take = atomic_load_explicit(&p->take, memory_order_relaxed);
	void *item;

	if (atomic_load_explicit(&p->put, memory_order_acquire) == take)
		return NULL;
	item = p->cell[take % p->cap];
	atomic_store_explicit(&p->take, take + 1, memory_order_release);
	return item;
}

#endif
