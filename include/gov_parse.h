/*
 * gov_parse.h - INTERNAL to the governance loader: the YAML walking helpers
 * that every section parser uses (governance.c for identity/rules/approval,
 * mask_policy.c for masks). Not for other modules: they read the parsed
 * struct gov_policy through governance.h.
 *
 * A parser state (struct gparser) holds the libyaml document, the file name
 * for "file:line: what is wrong" errors, the directory relative paths are
 * resolved against, and the policy being filled. Every helper returns false
 * after writing such an error into ps->err.
 */
#ifndef PV_GOV_PARSE_H
#define PV_GOV_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "governance.h"

#define GOV_MAX_ENTRIES 4096 /* per sequence */

struct gparser {
	yaml_document_t doc;
	const char *origin;
	const char *base_dir;
	char *err;
	size_t errlen;
	struct gov_policy *pol;
};

/*
 * The section parsers call these by their short names (fail, scalar...);
 * the exported symbols carry a gov_ prefix so they cannot clash elsewhere.
 */
#define fail           gov_fail
#define node_at        gov_node_at
#define get_string     gov_get_string
#define get_bool       gov_get_bool
#define get_number     gov_get_number
#define get_strlist    gov_get_strlist
#define strlist_has    gov_strlist_has
#define strlist_free   gov_strlist_free
#define parse_mapping  gov_parse_mapping
#define parse_sequence gov_parse_sequence
#define get_path       gov_get_path
#define set_default    gov_set_default

/* Write "origin:line: msg" (line of at, or 1) into ps->err; always false. */
bool fail(struct gparser *ps, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
yaml_node_t *node_at(struct gparser *ps, int index);
/* The text of a scalar node, NULL for mappings and sequences. Inline, not a
 * renamed symbol: "scalar" is also a libyaml struct member. */
static inline const char *scalar(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}
/* A non-empty string, stored once into *out (an error if *out is already set). */
bool get_string(struct gparser *ps, yaml_node_t *n, const char *what, char **out);
bool get_bool(struct gparser *ps, yaml_node_t *n, const char *what, bool *out);
/* Non-negative integer up to max; duration: with an optional s / m / min / h suffix. */
bool get_number(struct gparser *ps, yaml_node_t *n, const char *what, int64_t max, bool duration,
                int64_t *out);
/* A sequence of non-empty strings (a bare scalar counts as a one-element list). */
bool get_strlist(struct gparser *ps, yaml_node_t *n, const char *what, struct gov_strlist *out);
bool strlist_has(const struct gov_strlist *l, const char *s);
void strlist_free(struct gov_strlist *l);
/* Relative paths are relative to the governance file's directory. */
bool get_path(struct gparser *ps, yaml_node_t *v, const char *what, char **out);
/* *field = strdup(value) unless already set. */
bool set_default(struct gparser *ps, yaml_node_t *n, char **field, const char *value);

typedef bool (*key_fn)(struct gparser *ps, yaml_node_t *val, void *obj);

struct gov_key {
	const char *name;
	key_fn parse;
};

/* Walk a mapping: every key must be in keys, once; each calls its parse(ps, value, obj). */
bool parse_mapping(struct gparser *ps, yaml_node_t *n, const char *what, const struct gov_key *keys,
                   size_t nkeys, void *obj);
/* For a sequence of mappings: calls each(ps, item, element) after sizing the array. */
bool parse_sequence(struct gparser *ps, yaml_node_t *n, const char *what, size_t elem, void **arr,
                    size_t *count, bool (*each)(struct gparser *, yaml_node_t *, void *));

/* Sections parsed elsewhere (mask_policy.c): masks, derived, predicates, mask_refresh. */
bool mask_parse_masks(struct gparser *ps, yaml_node_t *n);
bool mask_parse_derived(struct gparser *ps, yaml_node_t *n);
bool mask_parse_predicates(struct gparser *ps, yaml_node_t *n);
bool mask_parse_refresh(struct gparser *ps, yaml_node_t *n);
/* Free the masks of pol (gov_free). */
void mask_policy_free(struct gov_policy *pol);
/* Section parsed in recorder_policy.c: recording (freed by rec_policy_free, record_events.h). */
bool rec_parse_recording(struct gparser *ps, yaml_node_t *n);

#endif
