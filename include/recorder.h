/*
 * recorder.h - the session recorder (governance spec §4, issue 9).
 *
 * Owns: the bounded queue between the event loop and the recorder thread, the
 * recorder thread itself, and the recording directory: hash-chained JSON Lines
 * files, their rotation, retention, fsync policy and write-error retry. The
 * packet path (client.c) builds the event fields; this module only records.
 * The file format is documented in doc/recordings.md; pgvigil-audit
 * (tools/pgvigil-audit.c) verifies and replays it.
 *
 * Threading: recorder_emit, recorder_emit_event, recorder_has_room,
 * recorder_room_fd and recorder_room_ack are called from the event loop only
 * (one producer); rec_event_* on the thread that owns the event until it is
 * emitted; recorder_stats from any thread; recorder_start / recorder_stop from
 * the main thread.
 */
#ifndef PV_RECORDER_H
#define PV_RECORDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h" /* usec_t */

#define REC_FORMAT_VERSION 2
#define REC_HASH_HEX_LEN   64 /* SHA-256 / HMAC-SHA-256 as lowercase hex */

enum rec_fsync {
	REC_FSYNC_ALWAYS,   /* fdatasync after every write batch */
	REC_FSYNC_INTERVAL, /* at most once a second while dirty */
	REC_FSYNC_NEVER,    /* never: the kernel writes back when it likes */
};

enum rec_backpressure {
	REC_BP_BLOCK, /* queue full: emit refuses (REC_FULL), caller stops reading */
	REC_BP_DROP,  /* queue full: the event is counted as dropped */
};

struct rec_config {
	char *directory;        /* created (one level) if missing */
	uint64_t rotate_size;   /* bytes; 0 = no size rotation */
	usec_t rotate_interval; /* 0 = no time rotation */
	usec_t max_age;         /* retention by file age; 0 = keep */
	uint64_t max_bytes;     /* retention by directory total; 0 = keep */
	enum rec_fsync fsync;
	enum rec_backpressure on_backpressure;
	size_t queue_size; /* events; 0 = 4096 */
	char *hmac_key;    /* NULL = plain SHA-256 chain */
};

enum rec_enqueue {
	REC_OK,      /* queued; ownership of fields taken */
	REC_DROPPED, /* DROP mode, queue full: counted; fields freed */
	REC_FULL,    /* BLOCK mode, queue full: NOT queued; fields untouched (still the caller's) */
	REC_ERROR,   /* out of memory or recorder stopping; fields freed */
};

struct rec_stats {
	char file[256];       /* active file name ("" when none is open) */
	uint64_t bytes;       /* bytes written since start */
	uint64_t events;      /* events written since start (headers included) */
	uint64_t queue_depth; /* events waiting for the writer */
	uint64_t drops;       /* events dropped (DROP mode, or lost at stop) */
	bool failing;         /* the last write attempt failed; retrying */
	char last_error[256]; /* most recent write error, "" when none ever */
};

struct recorder;

/*
 * An event under construction: its members kept as JSON text (serialized at
 * once, strings escaped as jansson does), sorted by key when written. Keys are
 * kept by pointer: pass string literals. Setting a key again replaces it;
 * reserved keys (v, seq, ts, type, prev, hash) are ignored. A member that
 * cannot be added (out of memory, more than REC_EVENT_MEMBERS) makes the
 * whole event fail: recorder_emit_event then returns REC_ERROR.
 */
#define REC_EVENT_MEMBERS 32
struct rec_event;
struct rec_event *rec_event_new(void); /* NULL when out of memory */
/* The same on the loop (the producer) for an event to emit to r: reuses written events. */
struct rec_event *recorder_event_new(struct recorder *r);
void rec_event_free(struct rec_event *e);
/* An event emptied for reuse, as rec_event_new makes it (its first storage kept). */
void rec_event_reset(struct rec_event *e);
void rec_event_str(struct rec_event *e, const char *key, const char *s); /* NULL: null */
/* s[0..n) when it is valid UTF-8 (as json_stringn); false (nothing set) otherwise. */
bool rec_event_strn(struct rec_event *e, const char *key, const char *s, size_t n);
void rec_event_int(struct rec_event *e, const char *key, int64_t v);
void rec_event_bool(struct rec_event *e, const char *key, bool v);
void rec_event_null(struct rec_event *e, const char *key);
/* A JSON value (keys sorted), taken; NULL sets nothing, like json_object_set_new. */
void rec_event_json(struct rec_event *e, const char *key, json_t *v);
/*
 * Every member of src (already serialized) set in dst as well, as if set there
 * one by one: for a part of an event kept and reused (src is not changed).
 */
void rec_event_merge(struct rec_event *dst, const struct rec_event *src);
/*
 * src's members but those named in skip (a NULL-terminated list) as one JSON
 * object, keys sorted, set as dst's member `key`: a part made as an event of
 * its own and kept inside another (a statement's folded result).
 */
void rec_event_nest(struct rec_event *dst, const char *key, const struct rec_event *src,
                    const char *const *skip);
/* When the event happened (wall clock, µs); unset, the time it is emitted is used. */
void rec_event_set_ts(struct rec_event *e, usec_t ts);
/* false when a member could not be added (the event would be refused at emit). */
bool rec_event_ok(const struct rec_event *e);
/* Raw JSON text (trusted to be one valid value, as rec_event_* or rec_jarray make it). */
void rec_event_raw(struct rec_event *e, const char *key, const char *json, size_t n);

/*
 * A JSON array built as text, byte for byte as json_dumps would write it, to
 * be kept (e.g. Bind parameters on their portal) and set later with
 * rec_event_raw: no jansson values per element. Start from {0}.
 */
struct rec_jarray {
	char *p;
	size_t len, cap, n;
	bool oom;
};
void rec_jarray_null(struct rec_jarray *a);
void rec_jarray_int(struct rec_jarray *a, int64_t v);
void rec_jarray_bool(struct rec_jarray *a, bool v);
/* s[0..n) when it is valid UTF-8 (as json_stringn); false (nothing added) otherwise. */
bool rec_jarray_strn(struct rec_jarray *a, const char *s, size_t n);
/* The closed array "[...]" (malloc'd, *len set), or NULL when out of memory; a is emptied. */
char *rec_jarray_finish(struct rec_jarray *a, size_t *len);

/*
 * Open the recording directory (continuing the hash chain of the newest file
 * found there, repairing a crashed .partial file) and start the writer thread.
 * The config is copied. NULL with a message in err on failure.
 */
struct recorder *recorder_start(const struct rec_config *cfg, char *err, size_t errlen);

/*
 * Write everything queued, close the active file (renamed to .jsonl), join.
 * Call it on the loop's thread (or after the loop ended), never concurrently
 * with an emit: the queue has one producer, and emits after the stop are
 * refused by a flag the producer reads without a lock.
 */
void recorder_stop(struct recorder *r);

/*
 * Record one event of `type` (e.g. "statement"). Never blocks on disk: stamps
 * the time and appends to the lock-free queue in O(1) (the writer's mutex is
 * taken only to wake a writer that sleeps waiting for events).
 * `fields` (a JSON object or NULL) is taken over except when REC_FULL is
 * returned. Keys v, seq, ts, type, prev and hash are reserved and overwritten.
 *
 * Back-pressure contract (BLOCK mode): on REC_FULL the caller keeps its event,
 * stops reading the client that produced it, watches recorder_room_fd() for
 * readability, then calls recorder_room_ack() and retries the emit. Nothing is
 * lost; clients wait while the disk is slow or failing.
 */
enum rec_enqueue recorder_emit(struct recorder *r, const char *type, json_t *fields);

/*
 * The same for an event built with rec_event_* (below): no JSON objects, so
 * the loop allocates at most once per event (none when recorder_event_new
 * reuses a written one) instead of once per key and value, and the writer only
 * sorts and copies text. e is taken except on REC_FULL.
 */
enum rec_enqueue recorder_emit_event(struct recorder *r, const char *type, struct rec_event *e);

bool recorder_has_room(struct recorder *r);

/* An eventfd that becomes readable when room returns after a REC_FULL. */
int recorder_room_fd(struct recorder *r);
void recorder_room_ack(struct recorder *r);

void recorder_stats(struct recorder *r, struct rec_stats *out);

/*
 * The per-event hash (doc/recordings.md "Hash"): hex SHA-256, or HMAC-SHA-256
 * when key is non-NULL, over `len` bytes. out holds REC_HASH_HEX_LEN + 1.
 * false on a crypto failure. Shared with pgvigil-audit.
 */
bool rec_hash_hex(const char *key, const void *data, size_t len, char *out);

/*
 * Split a recorded line (without its newline) into the hashed body and the
 * stored hash: the line must end with ,"hash":"<64 hex>"} . Writes the body
 * (the line with that suffix replaced by "}") into body (malloc'd) and the hex
 * into hash. false when the line does not have that shape.
 */
bool rec_split_line(const char *line, size_t len, char **body, size_t *bodylen, char *hash);

/* Test aids (test/unit/test_recorder.c, pgvigil-audit selftest-write). */
void recorder_test_pause(struct recorder *r, bool paused); /* stall the writer */
void recorder_test_fault(struct recorder *r, int err);     /* writes fail with err; 0 = off */

#endif
