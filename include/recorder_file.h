/*
 * recorder_file.h - the recorder's file writer (src/recorder_file.c), internal
 * to the recorder. Owns the recording directory from the writer thread: chain
 * state (next seq, previous hash), the active .partial file, rotation,
 * retention, fsync and crash repair. Only ever used by one thread at a time
 * (recorder_start, then the writer thread, then recorder_stop after the join).
 */
#ifndef PV_RECORDER_FILE_H
#define PV_RECORDER_FILE_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include "recorder.h"

#define REC_NAME_MAX 96
#define REC_TYPE_MAX 32 /* event types up to 31 bytes travel in the slot, not the object */

/*
 * One queued event: the loop's fields (never modified by the writer) and
 * envelope data. A slot is one cache line (aligned in the ring): the loop's
 * write of one slot then never shares a line with a slot the writer reads.
 */
struct rec_slot {
	_Alignas(64) json_t *fields; /* a JSON object; reserved keys in it are ignored */
	struct rec_event *ev;    /* or (fields NULL) an event built as text */
	usec_t ts;               /* when it was emitted */
	char type[REC_TYPE_MAX]; /* "" = take "type" from fields (a type too long for here) */
};

/* A growable byte buffer; oom latches the first allocation failure. */
struct rec_buf {
	char *p;
	size_t len, cap;
	bool oom;
	bool borrowed; /* p is not ours (inline storage): copied to the heap on growth */
};

struct rec_event {
	struct rec_buf text; /* the members as "key":value chunks, back to back */
	size_t n;
	usec_t ts;        /* when it happened; 0: when emitted */
	uint64_t keybits; /* keys set, one bit each by prefix: a key set again is rare */
	bool failed;      /* (kept with the header: one cache line less per event) */
	struct {
		const char *key;
		uint64_t prefix; /* of key, for the writer's sort */
		uint32_t off, len;
	} m[REC_EVENT_MEMBERS];
	char inline_text[384]; /* text's first storage: no second allocation for most events */
};

struct rec_writer {
	const struct rec_config *cfg;
	int fd;                  /* active .partial file, -1 when none */
	char name[REC_NAME_MAX]; /* final (.jsonl) name of the active file */
	uint64_t size;           /* bytes in the active file */
	uint64_t lines;          /* events in the active file */
	usec_t opened;           /* mono time the active file was opened */
	usec_t last_sync;        /* mono time of the last fdatasync */
	usec_t last_retention;   /* mono time retention last ran */
	bool dirty;              /* written since the last fdatasync */
	uint64_t next_seq;
	char prev[REC_HASH_HEX_LEN + 1];
	char prev_file[REC_NAME_MAX]; /* "" for a new directory */
	json_t *notes;                /* writer-made events not yet written (recovery, retention) */
	struct rec_buf batch;         /* lines serialized but not yet written (reused) */
	EVP_MD *md;                   /* SHA-256, fetched once: per-call fetches cost a lock each */
	EVP_MD_CTX *mdctx;            /* reused digest context (plain SHA-256 chain) */
	atomic_int *fault;            /* test hook: injected errno */
	pthread_mutex_t *stats_lock;
	struct rec_stats *stats;
};

/* Prepare the directory and recover the chain head. -1 with err on failure. */
int recw_open_dir(struct rec_writer *w, char *err, size_t errlen);

/*
 * Write the n events ring[(head + i) % cap], i < n, in order: serialized into
 * one buffer and appended with one write() per batch (a batch ends early where
 * size rotation is due). The fields are only read. *done = how many events
 * reached the file. 0 or an errno; on error nothing of the failed batch is left
 * in the file and the chain state is unchanged, so a retry writes identical
 * bytes.
 */
int recw_write_batch(struct rec_writer *w, const struct rec_slot *ring, size_t cap, size_t head,
                     size_t n, size_t *done);

/*
 * Serialize fields as a recorded event body: compact JSON with keys sorted
 * (byte-identical to jansson's JSON_COMPACT | JSON_SORT_KEYS) and the envelope
 * keys v, seq, ts, type, prev merged in; reserved keys of fields are skipped.
 * Appends to b; false when out of memory. Exposed for the unit test.
 */
bool rec_serialize_event(struct rec_buf *b, json_t *fields, const char *type, usec_t ts,
                         uint64_t seq, const char *prev);
/* The same for a built event. */
bool rec_serialize_built(struct rec_buf *b, const struct rec_event *e, const char *type, usec_t ts,
                         uint64_t seq, const char *prev);

/* Periodic work: fsync interval, time rotation, age retention, pending notes. */
int recw_tick(struct rec_writer *w, usec_t mono);

/* Write pending notes, close and rename the active file. 0 or an errno. */
int recw_close(struct rec_writer *w);

void recw_free(struct rec_writer *w);

/* Record a write error into the stats (thread-safe). */
void recw_error(struct rec_writer *w, const char *what, int err);

#endif
