/*
 * inspect_walk.h - internal interface between the classification cache
 * (src/inspect.c) and the parse-tree walker (src/inspect_walk.c). Not for
 * other modules: they use inspect.h.
 */
#ifndef PV_INSPECT_WALK_H
#define PV_INSPECT_WALK_H

#include "inspect.h"

/* A growable list of owned strings; sorted and de-duplicated at the end. */
struct strvec {
	char **v;
	int n;
	int cap;
};

/* Column references collected so far (src/inspect_cols.c); at most INSPECT_MAX_COLREFS. */
struct colvec {
	struct inspect_colref *v;
	int n;
	int cap;
	bool truncated;
};

/* What one classification accumulates while walking (nested texts included). */
struct inspect_acc {
	uint32_t classes;
	bool parse_error;
	bool without_where;
	bool oom;
	int n_statements; /* top-level statements of the outermost text only */
	struct strvec tables;
	struct strvec functions;
	struct strvec prepared;
	struct strvec executed;
	struct colvec colrefs;
};

/*
 * Classify a NUL-terminated text into acc. depth counts nested texts (function
 * bodies, PL/pgSQL expressions); 0 for the text the client sent.
 */
void inspect_walk_text(struct inspect_acc *acc, const char *sql, int depth);

/* Move the sorted, de-duplicated strings into *out / *n; the vector is left empty. */
void strvec_finish(struct strvec *sv, char ***out, int *n);
void strvec_free(struct strvec *sv);

/*
 * Column references of one parsed statement (libpg_query JSON, a jansson
 * json_t) into acc->colrefs. nested: the statement comes from a DO block or
 * function body, so every reference is CR_WRITE | CR_DERIVED.
 */
struct json_t;
void inspect_cols_stmt(struct inspect_acc *acc, struct json_t *stmt, bool nested);
/* A multi-statement text: which result set a position means is unknown. */
void inspect_cols_positions_unknown(struct inspect_acc *acc);
/* Move the references into a result; the vector is left empty. */
void colvec_finish(struct colvec *cv, struct inspect_colref **out, int *n, bool *truncated);
void colvec_free(struct colvec *cv);
void colrefs_free(struct inspect_colref *v, int n);

#endif
