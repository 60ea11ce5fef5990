/*
 * mask_policy.c - the masking sections of the governance file: masks,
 * derived, predicates and mask_refresh (schema in include/mask_catalog.h and
 * doc/governance.md). Hash keys are read here, at load time, so nothing on
 * the event loop touches the disk.
 */
#include "gov_parse.h"
#include "mask_catalog.h"
#include "mask_value.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK_KEEP_LAST_MAX 1000
#define MASK_KEY_MIN       16
#define MASK_REFRESH_MAX   (7 * 86400)

#define MRULE(p) ((struct mask_rule *)(p))

/* Parse-time state beyond struct mask_rule: what was given, for the checks at the end. */
struct mask_tmp {
	struct mask_rule *r;
	bool have_method, have_keep_last;
	char *key_file; /* resolved path */
	yaml_node_t *key_node;
};

static bool k_mask_name(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "name", &((struct mask_tmp *)o)->r->name);
}

static bool k_mask_columns(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_strlist *l = &((struct mask_tmp *)o)->r->columns;
	if (!get_strlist(ps, v, "columns", l))
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (!mask_glob_valid(l->v[i]))
			return fail(ps, v,
			            "column pattern \"%s\" must be schema.table.column (three "
			            "non-empty parts, '*' and '?' allowed)",
			            l->v[i]);
	return true;
}

static bool k_mask_detect(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_strlist l = {0};
	bool ok = get_strlist(ps, v, "detect", &l);

	for (size_t i = 0; ok && i < l.n; i++) {
		uint32_t bit = mask_detector_from_name(l.v[i]);
		if (!bit)
			ok = fail(ps, v,
			          "unknown detector \"%s\" (credit_card, us_ssn, email, jwt, "
			          "aws_access_key)",
			          l.v[i]);
		((struct mask_tmp *)o)->r->detect |= bit;
	}
	strlist_free(&l);
	return ok;
}

static bool k_mask_method(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct mask_tmp *t = o;
	const char *s = scalar(v);
	int m = s ? mask_method_from_name(s) : -1;

	if (m < 0)
		return fail(ps, v, "method must be redact, partial, hash, null or email");
	t->r->spec.method = (enum mask_method)m;
	t->have_method = true;
	return true;
}

static bool k_mask_keep_last(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct mask_tmp *t = o;
	int64_t n;
	if (!get_number(ps, v, "keep_last", MASK_KEEP_LAST_MAX, false, &n))
		return false;
	t->r->spec.keep_last = (int)n;
	t->have_keep_last = true;
	return true;
}

static bool k_mask_key_file(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct mask_tmp *t = o;
	t->key_node = v;
	return get_path(ps, v, "key_file", &t->key_file);
}

static bool k_exc_groups(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "groups", &((struct mask_tmp *)o)->r->except_groups);
}

static const struct gov_key except_keys[] = {{"groups", k_exc_groups}};

static bool k_mask_except(struct gparser *ps, yaml_node_t *v, void *o)
{
	if (!parse_mapping(ps, v, "except", except_keys, 1, o))
		return false;
	return ((struct mask_tmp *)o)->r->except_groups.n ? true
	                                                  : fail(ps, v, "except needs groups");
}

static const struct gov_key mask_keys[] = {
    {"name", k_mask_name},     {"columns", k_mask_columns},     {"detect", k_mask_detect},
    {"method", k_mask_method}, {"keep_last", k_mask_keep_last}, {"key_file", k_mask_key_file},
    {"except", k_mask_except},
};

/* The HMAC key: MASK_KEY_MIN..MASK_HASH_KEY_MAX raw bytes. */
static bool read_key(struct gparser *ps, struct mask_tmp *t)
{
	struct mask_spec *sp = &t->r->spec;
	FILE *f = fopen(t->key_file, "rb");
	size_t n;

	if (!f)
		return fail(ps, t->key_node, "key_file %s: %s", t->key_file, strerror(errno));
	n = fread(sp->key, 1, sizeof(sp->key), f);
	/* One byte more than the maximum tells a too-long file from an exact fit. */
	if (!ferror(f) && n == sizeof(sp->key) && fgetc(f) != EOF)
		n = sizeof(sp->key) + 1;
	if (ferror(f)) {
		fclose(f);
		return fail(ps, t->key_node, "key_file %s: read error", t->key_file);
	}
	fclose(f);
	if (n < MASK_KEY_MIN || n > MASK_HASH_KEY_MAX)
		return fail(ps, t->key_node, "key_file %s must hold %d to %d bytes", t->key_file,
		            MASK_KEY_MIN, MASK_HASH_KEY_MAX);
	sp->key_len = n;
	return true;
}

/* Required keys and the combinations that make sense, once the mapping is read. */
static bool mask_finish(struct gparser *ps, yaml_node_t *n, struct mask_tmp *t)
{
	struct mask_rule *r = t->r;

	if (!r->name)
		return fail(ps, n, "mask needs a name");
	if (!r->columns.n && !r->detect)
		return fail(ps, n, "mask \"%s\" needs columns or detect", r->name);
	if (!t->have_method)
		return fail(ps, n, "mask \"%s\" needs a method", r->name);
	if (t->have_keep_last && r->spec.method != MM_PARTIAL)
		return fail(ps, n, "mask \"%s\": keep_last only applies to method partial",
		            r->name);
	if (r->spec.method == MM_HASH && !t->key_file)
		return fail(ps, n, "mask \"%s\": method hash needs key_file", r->name);
	if (t->key_file && r->spec.method != MM_HASH)
		return fail(ps, n, "mask \"%s\": key_file only applies to method hash", r->name);
	if (t->key_file && !read_key(ps, t))
		return false;
	for (struct mask_rule *q = ps->pol->masks; q < r; q++)
		if (strcmp(q->name, r->name) == 0)
			return fail(ps, n, "mask name \"%s\" is used twice", r->name);
	return true;
}

static bool parse_mask(struct gparser *ps, yaml_node_t *n, void *obj)
{
	struct mask_tmp t = {.r = obj};
	bool ok;

	t.r->line = (int)n->start_mark.line + 1;
	t.r->spec.keep_last = MASK_DEFAULT_KEEP_LAST;
	ok = parse_mapping(ps, n, "a mask", mask_keys, sizeof(mask_keys) / sizeof(mask_keys[0]),
	                   &t) &&
	     mask_finish(ps, n, &t);
	free(t.key_file);
	return ok;
}

bool mask_parse_masks(struct gparser *ps, yaml_node_t *n)
{
	struct gov_policy *pol = ps->pol;
	return parse_sequence(ps, n, "masks", sizeof(struct mask_rule), (void **)&pol->masks,
	                      &pol->n_masks, parse_mask);
}

bool mask_parse_derived(struct gparser *ps, yaml_node_t *n)
{
	const char *s = scalar(n);
	if (s && (strcmp(s, "deny") == 0 || strcmp(s, "mask") == 0)) {
		ps->pol->derived_mask = strcmp(s, "mask") == 0;
		return true;
	}
	return fail(ps, n, "derived must be deny or mask");
}

bool mask_parse_predicates(struct gparser *ps, yaml_node_t *n)
{
	const char *s = scalar(n);
	if (s && (strcmp(s, "allow") == 0 || strcmp(s, "deny") == 0)) {
		ps->pol->predicates_deny = strcmp(s, "deny") == 0;
		return true;
	}
	return fail(ps, n, "predicates must be allow or deny");
}

bool mask_parse_refresh(struct gparser *ps, yaml_node_t *n)
{
	if (!get_number(ps, n, "mask_refresh", MASK_REFRESH_MAX, true, &ps->pol->mask_refresh))
		return false;
	return ps->pol->mask_refresh >= 1 ? true : fail(ps, n, "mask_refresh must be at least 1s");
}

void mask_policy_free(struct gov_policy *pol)
{
	for (size_t i = 0; i < pol->n_masks; i++) {
		struct mask_rule *r = &pol->masks[i];
		free(r->name);
		strlist_free(&r->columns);
		strlist_free(&r->except_groups);
		/* the HMAC key is a secret: do not leave it in freed memory */
		explicit_bzero(r->spec.key, sizeof(r->spec.key));
	}
	free(pol->masks);
	pol->masks = NULL;
	pol->n_masks = 0;
}
