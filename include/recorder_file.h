/*
 * recorder_file.h - the recorder's file writer (src/recorder_file.c), internal
 * to the recorder. Owns the recording directory from the writer thread: chain
 * state (next seq, previous hash), the active .partial file, rotation,
 * retention, fsync and crash repair. Only ever used by one thread at a time
 * (recorder_start, then the writer thread, then recorder_stop after the join).
 * The JSON text of events is rec_json.h.
 */
#ifndef PV_RECORDER_FILE_H
#define PV_RECORDER_FILE_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include "rec_json.h"
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


/* Periodic work: fsync interval, time rotation, age retention, pending notes. */
int recw_tick(struct rec_writer *w, usec_t mono);

/* Write pending notes, close and rename the active file. 0 or an errno. */
int recw_close(struct rec_writer *w);

void recw_free(struct rec_writer *w);

/* Record a write error into the stats (thread-safe). */
void recw_error(struct rec_writer *w, const char *what, int err);

#endif
