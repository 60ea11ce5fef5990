/*
 * rec_json.h - the JSON text of recorded events (src/rec_json.c), internal to
 * the recorder. Owns the growable byte buffer (struct rec_buf), the layout of
 * an event built as text on the event loop (struct rec_event: its members kept
 * as finished "key":value chunks, see rec_event_* in recorder.h), and the
 * serializer that writes an event's line body byte for byte as jansson's
 * compact, key-sorted output would (doc/recordings.md "Hash"). Pure functions
 * of their arguments; usable from any thread.
 */
#ifndef PV_REC_JSON_H
#define PV_REC_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recorder.h"

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
/* Append n bytes of s to b (src/rec_json.c); false when out of memory (latched in b->oom). */
bool rec_buf_put(struct rec_buf *b, const char *s, size_t n);

#endif
