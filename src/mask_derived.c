/*
 * mask_derived.c - the masking decision for one classified statement
 * (include/mask_derived.h): deny it, or name the output columns the rewriter
 * must mask as a whole, because a masked value would otherwise leave in a
 * form RowDescription does not trace (expressions, whole rows, set
 * operations, writes elsewhere). Asks about names only, through mask_names.
 */
#include "mask_derived.h"

#include <stdio.h>
#include <string.h>

/* Longer than any "schema.table.column" PostgreSQL accepts (63-byte names). */
#define NAME_MAX_LEN 256

/* Append s to name[*at..cap), cutting it to fit (the name is for people, not parsing). */
static void name_put(char *name, size_t cap, size_t *at, const char *s)
{
	size_t n = strlen(s);

	if (n > cap - 1 - *at)
		n = cap - 1 - *at;
	memcpy(name + *at, s, n);
	*at += n;
	name[*at] = '\0';
}

/*
 * Is (schema, table, column) masked? column NULL: any column of the table.
 * Every masked reference of every statement is named here, denied or not,
 * so the name is joined by hand: snprintf cost more than the whole check.
 */
static bool one_masked(const struct mask_names *mn, const char *schema, const char *table,
                       const char *column, char *name, size_t cap)
{
	bool m = column ? mn->is_masked(mn->arg, schema, table, column)
	                : mn->table_has_masked(mn->arg, schema, table);
	size_t at = 0;

	if (!m)
		return false;
	name[0] = '\0';
	if (schema) {
		name_put(name, cap, &at, schema);
		name_put(name, cap, &at, ".");
	}
	name_put(name, cap, &at, table);
	if (column) {
		name_put(name, cap, &at, ".");
		name_put(name, cap, &at, column);
	}
	return true;
}

/*
 * One "schema.table" or "table" entry of inspect_result.tables. A quoted
 * name may itself hold a dot, so every split is tried; "schema.*" (a whole
 * schema, from DROP SCHEMA and the like) is no relation.
 */
static bool entry_masked(const struct mask_names *mn, const char *entry, const char *column,
                         char *name, size_t cap)
{
	char buf[NAME_MAX_LEN];
	size_t len = strlen(entry);

	if (len >= sizeof(buf) || (len >= 2 && strcmp(entry + len - 2, ".*") == 0))
		return false;
	if (one_masked(mn, NULL, entry, column, name, cap))
		return true;
	memcpy(buf, entry, len + 1);
	for (char *dot = strchr(buf, '.'); dot; dot = strchr(dot + 1, '.')) {
		*dot = '\0';
		if (one_masked(mn, buf, dot + 1, column, name, cap))
			return true;
		*dot = '.';
	}
	return false;
}

/* Table NULL: the column could come from any relation of the statement. */
static bool ref_masked(const struct inspect_result *r, const struct mask_names *mn,
                       const struct inspect_colref *c, char *name, size_t cap)
{
	const char *column = c->column && strcmp(c->column, "*") != 0 ? c->column : NULL;

	if (c->table)
		return one_masked(mn, c->schema, c->table, column, name, cap);
	for (int i = 0; i < r->n_tables; i++) {
		if (entry_masked(mn, r->tables[i], column, name, cap))
			return true;
	}
	return false;
}

static bool any_table_masked(const struct inspect_result *r, const struct mask_names *mn,
                             char *name, size_t cap)
{
	for (int i = 0; i < r->n_tables; i++) {
		if (entry_masked(mn, r->tables[i], NULL, name, cap))
			return true;
	}
	return false;
}

static void deny(struct mask_verdict *out, const char *what, const char *name, const char *why)
{
	out->deny = true;
	out->mask_positions_lo = 0;
	/* a long quoted name may be cut: the reason is for people, not parsing */
	if (snprintf(out->reason, sizeof(out->reason), "%s %s%s%s", what, name, *why ? " " : "",
	             why) < 0)
		out->reason[0] = '\0';
}

/* One masked reference; false when it denies the statement. */
static bool check_ref(const struct inspect_colref *c, const char *name, enum mask_derived_mode mode,
                      bool predicates_deny, struct mask_verdict *out)
{
	const char *what =
	    c->column && strcmp(c->column, "*") != 0 ? "masked column" : "masked columns of";

	if (c->ctx & CR_WHOLEROW) {
		deny(out, "whole-row reference to", name, "(it has masked columns)");
	} else if (c->ctx & CR_WRITE) {
		deny(out, what, name, "copied into storage or code");
	} else if ((c->ctx & CR_DERIVED) && mode == MASK_DERIVED_DENY) {
		deny(out, what, name, "used in an expression");
	} else if ((c->ctx & CR_DERIVED) && (c->output_pos < 1 || c->output_pos > 64)) {
		/* the rewriter masks by position: one it cannot name cannot be masked */
		deny(out, what, name, "used in an expression at an unknown output position");
	} else if ((c->ctx & CR_PREDICATE) && predicates_deny) {
		deny(out, what, name, "used in a predicate");
	} else {
		if (c->ctx & CR_DERIVED)
			out->mask_positions_lo |= UINT64_C(1) << (c->output_pos - 1);
		return true;
	}
	return false;
}

void mask_check_statement(const struct inspect_result *r, const struct mask_names *names,
                          enum mask_derived_mode mode, bool predicates_deny,
                          struct mask_verdict *out)
{
	char name[NAME_MAX_LEN];

	memset(out, 0, sizeof(*out));
	/* what inspection could not see completely may hide any use of a masked table */
	if ((r->colrefs_truncated || r->parse_error) &&
	    any_table_masked(r, names, name, sizeof(name))) {
		deny(out, "statement too complex to check; it reads masked table", name, "");
		return;
	}
	for (int i = 0; i < r->n_colrefs; i++) {
		const struct inspect_colref *c = &r->colrefs[i];

		if (ref_masked(r, names, c, name, sizeof(name)) &&
		    !check_ref(c, name, mode, predicates_deny, out))
			return;
	}
}
