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
};

/*
 * Classify a NUL-terminated text into acc. depth counts nested texts (function
 * bodies, PL/pgSQL expressions); 0 for the text the client sent.
 */
void inspect_walk_text(struct inspect_acc *acc, const char *sql, int depth);

/* Move the sorted, de-duplicated strings into *out / *n; the vector is left empty. */
void strvec_finish(struct strvec *sv, char ***out, int *n);
void strvec_free(struct strvec *sv);

#endif
