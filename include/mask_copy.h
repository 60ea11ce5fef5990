/*
 * mask_copy.h - the COPY part of masking: `COPY table [(columns)] TO STDOUT`
 * of a table with masked columns.
 *
 * Owns: reading such a statement (libpg_query: target, column list, format
 * and options), the probe query that gives its column layout (COPY carries
 * no RowDescription, so the Query is sent as "SELECT cols FROM table LIMIT 0;
 * <the COPY>" and mask.c swallows the probe's result), and the codecs that
 * split CopyData rows into fields and put them back together in text, csv
 * and binary formats. Which field gets masked, and how, is the caller's
 * (mask.c) business: these are pure functions without I/O.
 */
#ifndef PV_MASK_COPY_H
#define PV_MASK_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum copy_format { COPY_TEXT, COPY_CSV, COPY_BINARY };

struct copy_opts {
	enum copy_format format;
	char delim;	/* text: '\t', csv: ',' */
	char quote;	/* csv */
	char escape;	/* csv; defaults to quote */
	char *null_str; /* text: "\\N", csv: "" */
	bool header;	/* the first CopyData is a header line (text/csv) */
};

/*
 * Is sql exactly one `COPY relation [(columns)] TO STDOUT [options]`? Then
 * fill o (free with copy_opts_free) and append the probe query
 * ("SELECT <columns or *> FROM <relation> LIMIT 0", identifiers quoted) to
 * probe, and return true. false for anything else (COPY FROM, COPY (query),
 * files, programs, several statements, unparsable text, out of memory).
 */
bool copy_parse(const char *sql, struct copy_opts *o, struct pv_buf *probe);
void copy_opts_free(struct copy_opts *o);

/*
 * Mask one field of a row: col is 0-based, v/len its decoded value (binary
 * format: the raw bytes). Append the replacement to out or set *is_null.
 * false on allocation failure.
 */
typedef bool (*copy_mask_fn)(void *arg, int col, const uint8_t *v, size_t len, struct pv_buf *out,
                             bool *is_null);

struct copy_codec {
	const struct copy_opts *o;
	int ncols;
	const bool *want; /* want[col]: pass the column to mask() */
	copy_mask_fn mask;
	void *arg;
	bool header_pending; /* set from o->header, or true for binary (the signature) */
};

/*
 * Rewrite one CopyData payload into out (appended). false: out of memory, or
 * *bad when the data does not match the format or the column count.
 */
bool copy_rewrite(struct copy_codec *cc, const uint8_t *data, size_t len, struct pv_buf *out,
                  bool *bad);

#endif
