/*
 * gov_parse.c - the YAML walking helpers shared by the governance section
 * parsers (include/gov_parse.h): error reporting, scalars, lists, durations,
 * paths and key-table driven mappings. Moved out of governance.c unchanged.
 */
#include "gov_parse.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool fail(struct gparser *ps, const yaml_node_t *at, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, ps->errlen, "%s:%zu: %s", ps->origin, at ? at->start_mark.line + 1 : 1,
	         msg);
	return false;
}

yaml_node_t *node_at(struct gparser *ps, int index)
{
	return yaml_document_get_node(&ps->doc, index);
}

/* --- scalars ------------------------------------------------------------------ */

bool get_string(struct gparser *ps, yaml_node_t *n, const char *what, char **out)
{
	const char *s = scalar(n);
	if (!s || !s[0])
		return fail(ps, n, "%s must be a non-empty string", what);
	if (*out)
		return fail(ps, n, "%s given twice", what);
	*out = strdup(s);
	return *out ? true : fail(ps, n, "out of memory");
}

bool get_bool(struct gparser *ps, yaml_node_t *n, const char *what, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no",
	                                                                       "off"};
	const char *s = scalar(n);
	for (size_t i = 0; s && i < 3; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = true, true;
		if (strcasecmp(s, no[i]) == 0)
			return *out = false, true;
	}
	return fail(ps, n, "%s must be true or false", what);
}

/* Non-negative integer with an optional unit suffix from units (NULL: none allowed). */
bool get_number(struct gparser *ps, yaml_node_t *n, const char *what, int64_t max, bool duration,
                int64_t *out)
{
	const char *s = scalar(n);
	char *end;
	long long v;
	int64_t mult = 1;

	if (!s || !s[0] || s[0] == '-' || s[0] == '+')
		goto bad;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s)
		goto bad;
	if (duration && *end) {
		if (strcmp(end, "s") == 0)
			mult = 1;
		else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
			mult = 60;
		else if (strcmp(end, "h") == 0)
			mult = 3600;
		else
			goto bad;
	} else if (*end) {
		goto bad;
	}
	if (v > max / mult)
		return fail(ps, n, "%s is too large (at most %lld)", what, (long long)max);
	*out = v * mult;
	return true;
bad:
	return fail(ps, n, "%s must be %s", what,
	            duration ? "a duration like 60s, 5m or 1h" : "a non-negative integer");
}

/* A sequence of non-empty strings (a bare scalar counts as a one-element list). */
bool get_strlist(struct gparser *ps, yaml_node_t *n, const char *what, struct gov_strlist *out)
{
	yaml_node_item_t *it;
	size_t count;

	if (out->v)
		return fail(ps, n, "%s given twice", what);
	if (n->type == YAML_SCALAR_NODE) {
		out->v = calloc(1, sizeof(char *));
		if (!out->v)
			return fail(ps, n, "out of memory");
		out->n = 1;
		return get_string(ps, n, what, &out->v[0]);
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return fail(ps, n, "%s must be a list of strings", what);
	count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (count == 0)
		return fail(ps, n, "%s must not be empty", what);
	if (count > GOV_MAX_ENTRIES)
		return fail(ps, n, "%s has too many entries", what);
	out->v = calloc(count, sizeof(char *));
	if (!out->v)
		return fail(ps, n, "out of memory");
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *e = node_at(ps, *it);
		if (!get_string(ps, e, what, &out->v[out->n]))
			return false;
		out->n++;
	}
	return true;
}

bool strlist_has(const struct gov_strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

void strlist_free(struct gov_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Walk a mapping: every key must be in keys, once. */
bool parse_mapping(struct gparser *ps, yaml_node_t *n, const char *what, const struct gov_key *keys,
                   size_t nkeys, void *obj)
{
	uint64_t seen = 0;

	if (n->type != YAML_MAPPING_NODE)
		return fail(ps, n, "%s must be a mapping", what);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node_at(ps, p->key), *v = node_at(ps, p->value);
		const char *name = scalar(k);
		size_t i;
		if (!name)
			return fail(ps, k, "keys of %s must be strings", what);
		for (i = 0; i < nkeys && strcmp(keys[i].name, name) != 0; i++)
			;
		if (i == nkeys)
			return fail(ps, k, "unknown key \"%s\" in %s", name, what);
		if (seen & (1ull << i))
			return fail(ps, k, "duplicate key \"%s\" in %s", name, what);
		seen |= 1ull << i;
		if (!keys[i].parse(ps, v, obj))
			return false;
	}
	return true;
}

/* For a sequence of mappings: calls each(ps, item, index) after sizing the array. */
bool parse_sequence(struct gparser *ps, yaml_node_t *n, const char *what, size_t elem, void **arr,
                    size_t *count, bool (*each)(struct gparser *, yaml_node_t *, void *))
{
	size_t len;

	if (*arr)
		return fail(ps, n, "%s given twice", what);
	if (n->type != YAML_SEQUENCE_NODE)
		return fail(ps, n, "%s must be a list", what);
	len = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (len > GOV_MAX_ENTRIES)
		return fail(ps, n, "%s has too many entries", what);
	*arr = calloc(len ? len : 1, elem);
	if (!*arr)
		return fail(ps, n, "out of memory");
	for (size_t i = 0; i < len; i++) {
		yaml_node_t *e = node_at(ps, n->data.sequence.items.start[i]);
		void *obj = (char *)*arr + i * elem;
		/* counted before parsing so a half-parsed element is freed too */
		*count = i + 1;
		if (!each(ps, e, obj))
			return false;
	}
	return true;
}

/* Relative paths are relative to the governance file's directory. */
bool get_path(struct gparser *ps, yaml_node_t *v, const char *what, char **out)
{
	char *name = NULL;
	if (!get_string(ps, v, what, &name))
		return false;
	if (name[0] == '/' || !ps->base_dir) {
		*out = name;
		return true;
	}
	if (asprintf(out, "%s/%s", ps->base_dir, name) < 0) {
		*out = NULL;
		free(name);
		return fail(ps, v, "out of memory");
	}
	free(name);
	return true;
}

bool set_default(struct gparser *ps, yaml_node_t *n, char **field, const char *value)
{
	if (*field)
		return true;
	*field = strdup(value);
	return *field ? true : fail(ps, n, "out of memory");
}
