/*
 * record_desc.h - what a statement, a value and a Bind's parameters look like
 * in a recorded event (doc/recordings.md "Events").
 *
 * Owns: a statement's description (its text, with string literals redacted in
 * DDL that names a password; its fingerprint, class and statement count from
 * the inspector; its sqlcommenter tags and agent context), the cache of
 * descriptions of repeated texts, text values capped on a character boundary
 * (hex when not UTF-8), and Bind parameters rendered per format and type.
 * record_events.c decides when events are made and calls these.
 *
 * Event loop thread only (the description cache is not locked).
 */
#ifndef PV_RECORD_DESC_H
#define PV_RECORD_DESC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recorder.h"

struct pkt_reader;

/* Text capped at cap bytes (cut on a character boundary); a hex string when not UTF-8. */
json_t *rec_text_json(const uint8_t *v, size_t len, size_t cap);
/* The same, straight into an event member. */
void rec_text_set(struct rec_event *ev, const char *key, const uint8_t *v, size_t len, size_t cap);

/* text, fingerprint, class, statements, context and tags of one statement text. */
void rec_describe_sql(struct rec_event *ev, const char *sql, size_t len);
/* rec_describe_sql, copied from the cache when this exact text was described before. */
void rec_describe_cached(struct rec_event *ev, const char *sql, size_t len);
/* Does s name a password, secret or token (case-insensitive)? Such texts are redacted. */
bool rec_mentions_secret(const char *s, size_t len);
/* Empty the description cache (recorder reload and stop). */
void rec_desc_clear(void);

/*
 * A Bind's parameters (r just past the statement name) as a JSON array text:
 * NULL, text values as strings, binary bool/int2/int4/int8 by their declared
 * type oids[i], other binary values as hex; each capped at cap bytes.
 */
char *rec_bind_params(struct pkt_reader *r, const uint32_t *oids, size_t n_oids, size_t cap,
                      size_t *outlen);

#endif
