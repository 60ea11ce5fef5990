/*
 * sqlcomment.h - sqlcommenter tags (a trailing comment key='value',... with
 * URL-encoded keys and values, as google/sqlcommenter writes it) and the
 * agent context among them (traceparent, tracestate, prompt*, agent*).
 *
 * Owns: parsing that comment into JSON for the recorder's statement events
 * (record_events.c). Pure functions, no I/O.
 */
#ifndef PV_SQLCOMMENT_H
#define PV_SQLCOMMENT_H

#include <jansson.h>
#include <stddef.h>

/* Tags of the comment at the end of sql (before trailing blanks and ';'); NULL when none. */
json_t *sqlcomment_tags(const char *sql, size_t len);
/* The subset of tags that describes the agent's context (a new object; NULL on OOM). */
json_t *sqlcomment_context(json_t *tags);

#endif
