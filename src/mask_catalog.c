/*
 * mask_catalog.c - column provenance for masking: per database, the columns
 * (table OID, attnum) the mask rules cover, resolved with one catalog query
 * on a pooled server connection at link time, plus view columns derived from
 * them (view definitions analysed with libpg_query). The flow and the
 * freshness rules are described in include/mask_catalog.h.
 *
 * Per database there is one struct mask_db, reached through
 * pv_database.mask_cat; it lives in this module's list (objects.c frees
 * databases without telling us, so the janitor tick drops entries no live
 * database points at). A resolution (struct mcat) is an open-addressing hash
 * on (oid, attnum), built whole from the query's rows and swapped in, so the
 * rewriter's lookups never see a half-built table.
 */
#include "mask_catalog.h"
#include "client.h"
#include "log.h"
#include "oidc.h"
#include "pool.h"
#include "proto.h"
#include "server.h"

#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MCAT_MAX_ROW   (1024 * 1024) /* a view definition larger than this: query failed */
#define MCAT_MAX_ROWS  1000000
#define MCAT_MAX_DEPTH 1000 /* JSON nesting walked in a view's parse tree */

/* ---- the query ---------------------------------------------------------------------- */

/*
 * One statement, one text[] parameter (anchored regexes over
 * "schema.table.column"). Rows, all text, (kind, oid, num, nsp, rel, att,
 * aux_oid, aux):
 *   c: a matched column (oid, attnum, names); aux = "schema.table.column" of
 *      the parent whose column matched when this is a partition / child
 *   v: a view depending (transitively) on one: oid, depth, names, definition
 *   a: a view's output column: view oid, attnum, att
 *   d: a column a view's rule references: view oid, attnum, names, table oid
 * Views come with their greatest dependency depth, so processing them by
 * depth sees every view's inputs resolved first.
 */
static const char catalog_sql[] =
    "WITH RECURSIVE direct AS ("
    " SELECT c.oid, a.attnum, n.nspname::text AS nsp, c.relname::text AS rel,"
    " a.attname::text AS att"
    " FROM pg_catalog.pg_attribute a"
    " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f')"
    " AND n.nspname || '.' || c.relname || '.' || a.attname ~ ANY ($1::text[])),"
    " cols(oid, attnum, nsp, rel, att, origin) AS ("
    " SELECT oid, attnum, nsp, rel, att, NULL::text COLLATE \"C\" FROM direct"
    " UNION ALL"
    " SELECT c.oid, a.attnum, n.nspname::text, c.relname::text, a.attname::text,"
    " coalesce(k.origin, k.nsp || '.' || k.rel || '.' || k.att)"
    " FROM cols k JOIN pg_catalog.pg_inherits i ON i.inhparent = k.oid"
    " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = k.att"
    " AND NOT a.attisdropped),"
    " vdep(oid, depth) AS ("
    " SELECT r.ev_class, 1 FROM cols k"
    " JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    " AND d.refobjid = k.oid AND d.refobjsubid = k.attnum"
    " AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
    " JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> k.oid"
    " UNION"
    " SELECT r.ev_class, v.depth + 1 FROM vdep v"
    " JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    " AND d.refobjid = v.oid AND d.refobjsubid > 0"
    " AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
    " JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
    " WHERE r.ev_class <> v.oid AND v.depth < 16),"
    " views AS (SELECT oid, max(depth) AS depth FROM vdep GROUP BY oid)"
    " SELECT 'c', oid, attnum, nsp, rel, att, NULL::oid, origin FROM cols"
    " UNION ALL"
    " SELECT 'v', v.oid, v.depth, n.nspname::text, c.relname::text, NULL, NULL,"
    " pg_catalog.pg_get_viewdef(v.oid)"
    " FROM views v JOIN pg_catalog.pg_class c ON c.oid = v.oid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " UNION ALL"
    " SELECT 'a', a.attrelid, a.attnum, NULL, NULL, a.attname::text, NULL, NULL"
    " FROM views v JOIN pg_catalog.pg_attribute a ON a.attrelid = v.oid"
    " AND a.attnum > 0 AND NOT a.attisdropped"
    " UNION ALL"
    " SELECT DISTINCT 'd', r.ev_class, d.refobjsubid, n.nspname::text, c.relname::text,"
    " a.attname::text, d.refobjid, NULL"
    " FROM views v JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid"
    " JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
    " AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    " AND d.refobjsubid > 0 AND d.refobjid <> v.oid"
    " JOIN pg_catalog.pg_class c ON c.oid = d.refobjid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid";

/* ---- state ------------------------------------------------------------------------- */

struct mcol {
	uint32_t oid; /* 0: empty slot */
	int16_t attnum;
	const struct mask_rule *rule; /* NULL after RELOAD removed the rule */
	char *rule_name;              /* survives the policy (RELOAD maps it again) */
	char *schema, *table, *column;
	char *via; /* view columns: "schema.table.column" of the base column */
};

struct mcat {
	struct mcol *slots;
	size_t cap; /* power of two, at least twice n */
	size_t n;
	usec_t resolved_at;
};

struct mrow {
	char kind;
	uint32_t oid, aux_oid;
	int num;
	char *nsp, *rel, *att, *aux;
};

struct mask_db {
	struct list_head node;
	struct pv_database *db;
	struct mcat *cur;   /* NULL: never resolved under the running policy */
	bool invalid;       /* mask_catalog_invalidate() since cur was built */
	uint64_t runner_id; /* id of the server running the query; 0: none */
	uint64_t run_gen;   /* policy generation the running query was built for */
	struct mrow *rows;  /* the running query's rows */
	size_t n_rows, cap_rows;
	bool rows_bad; /* a malformed or oversized row: the query counts as failed */
};

static struct list_head mdbs = LIST_HEAD_INIT(mdbs);
static uint64_t policy_gen = 1;

static bool db_alive(const struct mask_db *m);

static const struct gov_policy *pol(void)
{
	return gov_active();
}

static int64_t refresh_seconds(void)
{
	const struct gov_policy *p = pol();
	return p && p->mask_refresh > 0 ? p->mask_refresh : MASK_DEFAULT_REFRESH;
}

/* Does the running policy have rules by column (the only ones needing the catalog)? */
static bool column_rules_exist(void)
{
	const struct gov_policy *p = pol();
	for (size_t i = 0; p && i < p->n_masks; i++)
		if (p->masks[i].columns.n)
			return true;
	return false;
}

/* ---- globs ------------------------------------------------------------------------- */

bool mask_glob_valid(const char *glob)
{
	const char *dot1 = strchr(glob, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;

	if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
		return false;
	if (dot1 == glob || dot2 == dot1 + 1 || !dot2[1])
		return false;
	for (const char *p = glob; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/*
 * '*' -> ".*", '?' -> "." and every other ASCII punctuation escaped: in an
 * ARE a backslash before a non-alphanumeric character is that character.
 * Bytes >= 0x80 (UTF-8) pass as they are.
 */
char *mask_glob_regex(const char *glob)
{
	size_t n = strlen(glob);
	char *out = malloc(2 * n + 3), *o = out;

	if (!out)
		return NULL;
	*o++ = '^';
	for (const unsigned char *p = (const unsigned char *)glob; *p; p++) {
		if (*p == '*') {
			*o++ = '.';
			*o++ = '*';
		} else if (*p == '?') {
			*o++ = '.';
		} else if (*p >= 0x80 || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		           (*p >= 'A' && *p <= 'Z') || *p == '_') {
			*o++ = (char)*p;
		} else {
			*o++ = '\\';
			*o++ = (char)*p;
		}
	}
	*o++ = '$';
	*o = '\0';
	return out;
}

/* Length of the UTF-8 character at s (1 for stray continuation bytes). */
static size_t utf8_len(const unsigned char *s)
{
	size_t n = *s >= 0xf0 ? 4 : *s >= 0xe0 ? 3 : *s >= 0xc0 ? 2 : 1;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return i;
	return n;
}

bool mask_glob_match(const char *glob, const char *name)
{
	const char *star = NULL, *resume = NULL;

	/* Iterative matching with one backtrack point: the last '*'. */
	while (*name) {
		if (*glob == '*') {
			star = glob++;
			resume = name;
		} else if (*glob == '?') {
			glob++;
			name += utf8_len((const unsigned char *)name);
		} else if (*glob && *glob == *name) {
			glob++;
			name++;
		} else if (star) {
			glob = star + 1;
			resume += utf8_len((const unsigned char *)resume);
			name = resume;
		} else {
			return false;
		}
	}
	while (*glob == '*')
		glob++;
	return *glob == '\0';
}

/* The first rule (file order) with a column glob matching name, or NULL. */
static const struct mask_rule *rule_for_name(const char *name, size_t *index)
{
	const struct gov_policy *p = pol();
	for (size_t i = 0; p && i < p->n_masks; i++)
		for (size_t j = 0; j < p->masks[i].columns.n; j++)
			if (mask_glob_match(p->masks[i].columns.v[j], name)) {
				*index = i;
				return &p->masks[i];
			}
	return NULL;
}

/* ---- the hash ------------------------------------------------------------------------ */

static size_t slot_of(const struct mcat *m, uint32_t oid, int16_t attnum)
{
	uint64_t h = ((uint64_t)oid << 16 | (uint16_t)attnum) * 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 32) & (m->cap - 1);
}

static struct mcol *mcat_find(const struct mcat *m, uint32_t oid, int16_t attnum)
{
	if (!m || !m->cap)
		return NULL;
	for (size_t i = slot_of(m, oid, attnum);; i = (i + 1) & (m->cap - 1)) {
		struct mcol *c = &m->slots[i];
		if (!c->oid)
			return NULL;
		if (c->oid == oid && c->attnum == attnum)
			return c;
	}
}

static void mcol_clear(struct mcol *c)
{
	free(c->rule_name);
	free(c->schema);
	free(c->table);
	free(c->column);
	free(c->via);
}

static void mcat_free(struct mcat *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].oid)
			mcol_clear(&m->slots[i]);
	free(m->slots);
	free(m);
}

static struct mcat *mcat_new(size_t expect)
{
	struct mcat *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cap = 16;
	while (m->cap < expect * 2 + 2)
		m->cap *= 2;
	m->slots = calloc(m->cap, sizeof(*m->slots));
	if (!m->slots) {
		free(m);
		return NULL;
	}
	return m;
}

static char *join3(const char *a, const char *b, const char *c)
{
	char *s;
	return asprintf(&s, "%s.%s.%s", a, b, c) < 0 ? NULL : s;
}

static size_t rule_index(const struct mask_rule *r)
{
	return (size_t)(r - pol()->masks);
}

/*
 * Add a column (an existing entry keeps the rule that comes first in the
 * file). The size was chosen up front from the row count, so there is room.
 */
static bool mcat_add(struct mcat *m, const struct mrow *src, const struct mask_rule *r,
                     const char *via)
{
	struct mcol *c = mcat_find(m, src->oid, (int16_t)src->num);
	size_t i;

	if (c) {
		char *name;
		if (rule_index(r) >= rule_index(c->rule))
			return true;
		if (!(name = strdup(r->name)))
			return false;
		free(c->rule_name);
		c->rule_name = name;
		c->rule = r;
		return true;
	}
	if (m->n + 1 > m->cap / 2)
		return false;
	for (i = slot_of(m, src->oid, (int16_t)src->num); m->slots[i].oid;
	     i = (i + 1) & (m->cap - 1))
		;
	c = &m->slots[i];
	c->schema = strdup(src->nsp);
	c->table = strdup(src->rel);
	c->column = strdup(src->att);
	c->via = via ? strdup(via) : NULL;
	c->rule_name = strdup(r->name);
	if (!c->schema || !c->table || !c->column || (via && !c->via) || !c->rule_name) {
		mcol_clear(c);
		memset(c, 0, sizeof(*c));
		return false;
	}
	c->oid = src->oid;
	c->attnum = (int16_t)src->num;
	c->rule = r;
	m->n++;
	return true;
}

/* ---- per-database state ------------------------------------------------------------------ */

static struct mask_db *mdb_of(const struct pv_database *db)
{
	return db ? (struct mask_db *)db->mask_cat : NULL;
}

static struct mask_db *mdb_get(struct pv_database *db)
{
	struct mask_db *m = mdb_of(db);
	if (m)
		return m;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->db = db;
	list_append(&mdbs, &m->node);
	db->mask_cat = m;
	return m;
}

static void rows_clear(struct mask_db *m)
{
	for (size_t i = 0; i < m->n_rows; i++) {
		free(m->rows[i].nsp);
		free(m->rows[i].rel);
		free(m->rows[i].att);
		free(m->rows[i].aux);
	}
	free(m->rows);
	m->rows = NULL;
	m->n_rows = m->cap_rows = 0;
	m->rows_bad = false;
}

static void mdb_free(struct mask_db *m)
{
	list_del(&m->node);
	rows_clear(m);
	mcat_free(m->cur);
	free(m);
}

static bool is_stale(const struct mask_db *m, usec_t now)
{
	return !m->cur || m->invalid ||
	       now - m->cur->resolved_at >= (usec_t)refresh_seconds() * USEC_PER_SEC;
}

/* ---- public lookups ----------------------------------------------------------------------- */

bool mask_policy_active(void)
{
	const struct gov_policy *p = pol();
	return p && p->n_masks > 0;
}

const struct mask_rule *mask_column_rule(const struct pv_database *db, uint32_t table_oid,
                                         int16_t attnum)
{
	struct mask_db *m = mdb_of(db);
	struct mcol *c = m && table_oid ? mcat_find(m->cur, table_oid, attnum) : NULL;
	return c ? c->rule : NULL;
}

bool mask_rule_exempt(const struct mask_rule *r, const struct pv_identity *id)
{
	if (!r || !id)
		return false;
	for (size_t i = 0; i < id->n_groups; i++)
		for (size_t j = 0; j < r->except_groups.n; j++)
			if (strcmp(id->groups[i], r->except_groups.v[j]) == 0)
				return true;
	return false;
}

uint32_t mask_detectors(const struct pv_identity *id, const struct mask_spec **spec_out)
{
	const struct gov_policy *p = pol();
	uint32_t bits = 0;

	if (spec_out)
		*spec_out = NULL;
	for (size_t i = 0; p && i < p->n_masks; i++) {
		const struct mask_rule *r = &p->masks[i];
		if (!r->detect || mask_rule_exempt(r, id))
			continue;
		if (!bits && spec_out)
			*spec_out = &r->spec;
		bits |= r->detect;
	}
	return bits;
}

void mask_rule_hit(const struct mask_rule *r)
{
	/* The policy owns its rules; only this counter changes, on the loop thread. */
	if (r)
		((struct mask_rule *)r)->hits++;
}

bool mask_derived_mask(void)
{
	return pol() && pol()->derived_mask;
}

bool mask_predicates_deny(void)
{
	return pol() && pol()->predicates_deny;
}

void mask_catalog_foreach(const struct pv_database *db,
                          void (*fn)(void *arg, const char *schema, const char *table,
                                     const char *column, const struct mask_rule *r),
                          void *arg)
{
	struct mask_db *m = mdb_of(db);
	for (size_t i = 0; m && m->cur && i < m->cur->cap; i++) {
		const struct mcol *c = &m->cur->slots[i];
		if (c->oid && c->rule)
			fn(arg, c->schema, c->table, c->column, c->rule);
	}
}

void mask_catalog_invalidate(struct pv_database *db)
{
	struct mask_db *m = mdb_of(db);
	if (m)
		m->invalid = true;
}

void mask_catalog_show(void (*fn)(void *arg, const struct mask_show_row *row), void *arg)
{
	const struct gov_policy *p = pol();
	struct list_head *it;

	list_for_each(it, &mdbs)
	{
		struct mask_db *m = container_of(it, struct mask_db, node);
		/* a database freed since the last tick: its entry goes at the next one */
		if (!db_alive(m))
			continue;
		for (size_t i = 0; m->cur && i < m->cur->cap; i++) {
			const struct mcol *c = &m->cur->slots[i];
			struct mask_show_row row = {m->db->name, c->schema, c->table,
			                            c->column,   c->via,    c->rule,
			                            c->oid,      c->attnum, m->cur->resolved_at};
			if (c->oid && c->rule)
				fn(arg, &row);
		}
	}
	for (size_t i = 0; p && i < p->n_masks; i++) {
		struct mask_show_row row = {.rule = &p->masks[i]};
		if (p->masks[i].detect)
			fn(arg, &row);
	}
}

/* ---- RELOAD ---------------------------------------------------------------------------------- */

/*
 * Entries keep masking under the new policy's rule of the same name (a
 * session-mode client may not be linked again for a long time); columns
 * whose rule is gone stop being masked. Everything is stale, so the next
 * link resolves the new globs.
 */
void mask_catalog_policy_changed(void)
{
	const struct gov_policy *p = pol();
	struct list_head *it;

	policy_gen++;
	list_for_each(it, &mdbs)
	{
		struct mask_db *m = container_of(it, struct mask_db, node);
		for (size_t i = 0; m->cur && i < m->cur->cap; i++) {
			struct mcol *c = &m->cur->slots[i];
			/* the old rules are freed already: match by the copied name */
			const char *name = c->oid ? c->rule_name : NULL;
			c->rule = NULL;
			for (size_t j = 0; name && p && j < p->n_masks; j++)
				if (p->masks[j].columns.n && strcmp(p->masks[j].name, name) == 0)
					c->rule = &p->masks[j];
		}
		m->invalid = true;
	}
}

/* ---- view analysis -------------------------------------------------------------------- */

/* A masked column a view's rule references, with its resolved entry. */
struct vdep {
	const struct mrow *row;
	const struct mcol *col;
};

struct vrange { /* a RangeVar of the definition: how the query names a relation */
	const char *schema, *rel, *refname;
};

struct vctx {
	struct vdep *deps;
	size_t n_deps;
	struct vrange *ranges;
	size_t n_ranges, cap_ranges;
	bool unsafe; /* a construct that can rename columns out of sight */
	bool oom;
};

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/*
 * Subqueries in FROM, CTEs and table functions can hand a masked column on
 * under another name, and set operations merge columns: the name-based
 * analysis below cannot follow them, so such a view is masked whole.
 */
static void walk_tree(struct vctx *v, json_t *n, int depth)
{
	const char *key;
	json_t *child;
	size_t i;

	if (depth > MCAT_MAX_DEPTH) {
		v->unsafe = true;
		return;
	}
	if (json_is_array(n)) {
		json_array_foreach(n, i, child) walk_tree(v, child, depth + 1);
		return;
	}
	if (!json_is_object(n))
		return;
	json_object_foreach(n, key, child)
	{
		const char *op = !strcmp(key, "SelectStmt") ? jstr(child, "op") : NULL;
		if (!strcmp(key, "RangeSubselect") || !strcmp(key, "RangeFunction") ||
		    !strcmp(key, "CommonTableExpr") || !strcmp(key, "RangeTableFunc") ||
		    (op && strcmp(op, "SETOP_NONE") != 0))
			v->unsafe = true;
		if (!strcmp(key, "RangeVar") && json_is_object(child)) {
			struct vrange r = {jstr(child, "schemaname"), jstr(child, "relname"), NULL};
			r.refname = jstr(json_object_get(child, "alias"), "aliasname");
			if (!r.refname)
				r.refname = r.rel;
			if (v->n_ranges == v->cap_ranges) {
				size_t cap = v->cap_ranges ? 2 * v->cap_ranges : 8;
				struct vrange *nr = realloc(v->ranges, cap * sizeof(*nr));
				if (!nr) {
					v->oom = true;
					return;
				}
				v->ranges = nr;
				v->cap_ranges = cap;
			}
			if (r.rel)
				v->ranges[v->n_ranges++] = r;
		}
		walk_tree(v, child, depth + 1);
	}
}

static const struct vrange *range_named(const struct vctx *v, const char *refname)
{
	for (size_t i = 0; i < v->n_ranges; i++)
		if (strcmp(v->ranges[i].refname, refname) == 0)
			return &v->ranges[i];
	return NULL;
}

static bool range_is(const struct vrange *r, const struct mrow *d)
{
	return strcmp(r->rel, d->rel) == 0 && (!r->schema || strcmp(r->schema, d->nsp) == 0);
}

/* A masked column named col (qualified by qual): an unknown qualifier matches by name. */
static int dep_named(const struct vctx *v, const char *qual, const char *col)
{
	const struct vrange *r = qual ? range_named(v, qual) : NULL;
	for (size_t i = 0; i < v->n_deps; i++)
		if (strcmp(v->deps[i].row->att, col) == 0 && (!r || range_is(r, v->deps[i].row)))
			return (int)i;
	return -1;
}

/* A whole-row reference (t, or t.*) to a relation with a masked column. */
static int dep_whole_row(const struct vctx *v, const char *refname)
{
	const struct vrange *r = refname ? range_named(v, refname) : NULL;
	for (size_t i = 0; i < v->n_deps; i++)
		if (!refname || (r && range_is(r, v->deps[i].row)))
			return (int)i;
	return -1;
}

/* The masked column a ColumnRef ({"fields": [...]}) denotes, or -1. */
static int colref_dep(const struct vctx *v, json_t *cref)
{
	json_t *fields = json_object_get(cref, "fields");
	size_t n = json_array_size(fields);
	json_t *last = json_array_get(fields, n ? n - 1 : 0);
	const char *col = jstr(json_object_get(last, "String"), "sval");
	const char *qual =
	    n >= 2 ? jstr(json_object_get(json_array_get(fields, n - 2), "String"), "sval") : NULL;
	int d;

	if (!n)
		return -1;
	if (json_object_get(last, "A_Star"))
		return dep_whole_row(v, qual);
	if (!col)
		return -1;
	d = dep_named(v, qual, col);
	return d < 0 && n == 1 ? dep_whole_row(v, col) : d;
}

/* The first masked column referenced anywhere in an expression, or -1. */
static int expr_dep(const struct vctx *v, json_t *n, int depth)
{
	const char *key;
	json_t *child;
	size_t i;
	int d = -1;

	if (depth > MCAT_MAX_DEPTH)
		return v->n_deps ? 0 : -1;
	if (json_is_array(n)) {
		json_array_foreach(n, i, child) if (d < 0) d = expr_dep(v, child, depth + 1);
		return d;
	}
	if (!json_is_object(n))
		return -1;
	json_object_foreach(n, key, child)
	{
		if (d < 0 && !strcmp(key, "ColumnRef"))
			d = colref_dep(v, child);
		if (d < 0)
			d = expr_dep(v, child, depth + 1);
	}
	return d;
}

/* "schema.table.column" of the base column behind a masked dependency. */
static char *base_of(const struct mcol *c)
{
	return c->via ? strdup(c->via) : join3(c->schema, c->table, c->column);
}

static bool add_view_col(struct mcat *m, const struct mrow *view, const struct mrow *attr,
                         const struct mcol *dep)
{
	struct mrow r = {.oid = view->oid,
	                 .num = attr->num,
	                 .nsp = view->nsp,
	                 .rel = view->rel,
	                 .att = attr->att};
	char *via = base_of(dep);
	bool ok = via && mcat_add(m, &r, dep->rule, via);
	free(via);
	return ok;
}

/* The target list of the definition's single SELECT, or NULL (then: mask all). */
static json_t *target_list(json_t *tree)
{
	json_t *stmts = json_object_get(tree, "stmts");
	json_t *sel;
	if (json_array_size(stmts) != 1)
		return NULL;
	sel = json_object_get(json_object_get(json_array_get(stmts, 0), "stmt"), "SelectStmt");
	return json_object_get(sel, "targetList");
}

/*
 * Map each output column (attrs, in attnum order) of one view. false only
 * on allocation failure.
 */
static bool map_view(struct mcat *m, const struct mrow *view, const struct mrow *attrs,
                     size_t n_attrs, struct vctx *v)
{
	PgQueryParseResult pr = pg_query_parse(view->aux ? view->aux : "");
	json_t *tree = pr.error ? NULL : json_loads(pr.parse_tree, 0, NULL);
	json_t *tl = tree ? target_list(tree) : NULL;
	bool ok = true;

	if (tl)
		walk_tree(v, tree, 0);
	if (!tl || v->unsafe || json_array_size(tl) != n_attrs) {
		/* Fail closed: every column of a view we cannot follow is masked. */
		log_debug("masking: view %s.%s not analysable, all columns masked", view->nsp,
		          view->rel);
		for (size_t i = 0; ok && i < n_attrs; i++)
			ok = add_view_col(m, view, &attrs[i], v->deps[0].col);
	}
	for (size_t i = 0; ok && !v->oom && tl && !v->unsafe && i < n_attrs; i++) {
		json_t *val =
		    json_object_get(json_object_get(json_array_get(tl, i), "ResTarget"), "val");
		int d = expr_dep(v, val, 0);
		if (d >= 0)
			ok = add_view_col(m, view, &attrs[i], v->deps[d].col);
	}
	json_decref(tree);
	pg_query_free_parse_result(pr);
	return ok && !v->oom;
}

static int row_cmp(const void *a, const void *b)
{
	const struct mrow *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->oid != y->oid)
		return x->oid < y->oid ? -1 : 1;
	return x->num < y->num ? -1 : x->num > y->num;
}

/* Rows of kind for oid in the sorted rows: [*start, *start + return). */
static size_t rows_for(const struct mask_db *m, char kind, uint32_t oid, size_t *start)
{
	size_t lo = 0, hi = m->n_rows, n = 0;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct mrow *r = &m->rows[mid];
		if (r->kind < kind || (r->kind == kind && r->oid < oid))
			lo = mid + 1;
		else
			hi = mid;
	}
	*start = lo;
	while (lo + n < m->n_rows && m->rows[lo + n].kind == kind && m->rows[lo + n].oid == oid)
		n++;
	return n;
}

/* One view: its masked dependencies (already resolved: depth order), then its columns. */
static bool resolve_view(struct mcat *cat, const struct mask_db *m, const struct mrow *view)
{
	size_t a0, d0, n_attrs = rows_for(m, 'a', view->oid, &a0);
	size_t n_d = rows_for(m, 'd', view->oid, &d0);
	struct vctx v = {0};
	bool ok = true;

	v.deps = calloc(n_d ? n_d : 1, sizeof(*v.deps));
	if (!v.deps)
		return false;
	for (size_t i = 0; i < n_d; i++) {
		const struct mrow *d = &m->rows[d0 + i];
		const struct mcol *c = mcat_find(cat, d->aux_oid, (int16_t)d->num);
		if (c)
			v.deps[v.n_deps++] = (struct vdep){d, c};
	}
	if (v.n_deps && n_attrs)
		ok = map_view(cat, view, &m->rows[a0], n_attrs, &v);
	free(v.deps);
	free(v.ranges);
	return ok;
}

/* ---- building a resolution from the rows ------------------------------------------------ */

static int view_depth_cmp(const void *a, const void *b)
{
	const struct mrow *x = *(const struct mrow *const *)a, *y = *(const struct mrow *const *)b;
	return x->num < y->num ? -1 : x->num > y->num;
}

static bool add_base_col(struct mcat *cat, const struct mrow *r)
{
	const struct gov_policy *p = pol();
	const struct mask_rule *rule;
	size_t idx;
	char *name = r->aux ? strdup(r->aux) : join3(r->nsp, r->rel, r->att);

	if (!name)
		return false;
	rule = rule_for_name(name, &idx);
	/* The server's regex matched, so some glob covers it: never leave it unmasked. */
	for (size_t i = 0; !rule && i < p->n_masks; i++)
		if (p->masks[i].columns.n)
			rule = &p->masks[i];
	free(name);
	return rule ? mcat_add(cat, r, rule, NULL) : true;
}

static struct mcat *build(struct mask_db *m)
{
	struct mcat *cat = mcat_new(m->n_rows);
	const struct mrow **views = calloc(m->n_rows ? m->n_rows : 1, sizeof(*views));
	size_t n_views = 0;
	bool ok = cat && views;

	if (ok)
		qsort(m->rows, m->n_rows, sizeof(*m->rows), row_cmp);
	for (size_t i = 0; ok && i < m->n_rows; i++) {
		if (m->rows[i].kind == 'c')
			ok = add_base_col(cat, &m->rows[i]);
		else if (m->rows[i].kind == 'v')
			views[n_views++] = &m->rows[i];
	}
	if (ok)
		qsort(views, n_views, sizeof(*views), view_depth_cmp);
	for (size_t i = 0; ok && i < n_views; i++)
		ok = resolve_view(cat, m, views[i]);
	free(views);
	if (!ok) {
		mcat_free(cat);
		return NULL;
	}
	return cat;
}

/* ---- the query on a server ------------------------------------------------------------------- */

/* The text[] literal of anchored regexes: {"^a\\.b\\.c$",...} (quotes and backslashes escaped). */
static bool build_patterns(struct pv_buf *out)
{
	const struct gov_policy *p = pol();
	bool ok = buf_append(out, "{", 1);

	for (size_t i = 0; ok && p && i < p->n_masks; i++)
		for (size_t j = 0; ok && j < p->masks[i].columns.n; j++) {
			char *re = mask_glob_regex(p->masks[i].columns.v[j]);
			ok = re && (out->len == 1 || buf_append(out, ",", 1)) &&
			     buf_append(out, "\"", 1);
			for (const char *c = re; ok && *c; c++)
				ok = (*c != '"' && *c != '\\' ? true : buf_append(out, "\\", 1)) &&
				     buf_append(out, c, 1);
			ok = ok && buf_append(out, "\"", 1);
			free(re);
		}
	return ok && buf_append(out, "}", 1);
}

/* Parse/Bind/Execute/Sync, unnamed statement and portal, all text. */
static bool build_query(struct pv_buf *out)
{
	struct pv_buf arr;
	struct pkt_builder b;
	bool ok;

	buf_init(&arr);
	ok = build_patterns(&arr);
	build_begin(&b, out, 'P');
	build_string(&b, "");
	build_string(&b, catalog_sql);
	build_u16(&b, 0);
	ok = build_end(&b) && ok;
	build_begin(&b, out, 'B');
	build_string(&b, "");
	build_string(&b, "");
	build_u16(&b, 0);
	build_u16(&b, 1);
	build_u32(&b, (uint32_t)arr.len);
	build_bytes(&b, arr.data, arr.len);
	build_u16(&b, 0);
	ok = build_end(&b) && ok;
	build_begin(&b, out, 'E');
	build_string(&b, "");
	build_u32(&b, 0);
	ok = build_end(&b) && ok;
	build_begin(&b, out, 'S');
	ok = build_end(&b) && ok;
	buf_free(&arr);
	return ok;
}

/* Run the query on s (linked to a waiting client). On failure s is closed. */
static void start_query(struct mask_db *m, struct pv_socket *s)
{
	struct pv_buf out;
	bool ok;

	rows_clear(m);
	s->srv->task = TASK_MASK_CATALOG;
	s->srv->task_failed = false;
	buf_reset(&s->srv->task_err);
	buf_init(&out);
	ok = build_query(&out) && sbuf_queue(s, out.data, out.len);
	buf_free(&out);
	if (!ok) {
		server_close(s, "out of memory");
		return;
	}
	s->expect_rfq++;
	m->runner_id = s->id;
	m->run_gen = policy_gen;
	slog_debug(s, "masking: resolving the column catalog");
}

/* A decimal field (not NUL-terminated in the packet). */
static unsigned long field_num(const uint8_t *v, int32_t len)
{
	char tmp[16];
	if (len <= 0 || len >= (int32_t)sizeof(tmp))
		return 0;
	memcpy(tmp, v, (size_t)len);
	tmp[len] = '\0';
	return strtoul(tmp, NULL, 10);
}

static char *field_dup(const uint8_t *v, int32_t len)
{
	return len < 0 ? NULL : strndup((const char *)v, (size_t)len);
}

/* One DataRow of 8 text fields. */
static bool take_row(struct mask_db *m, const struct pkt *p)
{
	struct pkt_reader r;
	const uint8_t *f[8];
	int32_t len[8];
	struct mrow *row;

	reader_init_pkt(&r, p);
	if (read_u16(&r) != 8)
		return false;
	for (int i = 0; i < 8; i++) {
		len[i] = (int32_t)read_u32(&r);
		f[i] = len[i] > 0 ? read_bytes(&r, (size_t)len[i]) : NULL;
		if (r.bad || (len[i] > 0 && !f[i]) || (f[i] && memchr(f[i], 0, (size_t)len[i])))
			return false;
	}
	if (reader_left(&r) || len[0] != 1 || len[1] <= 0 || len[2] <= 0 ||
	    m->n_rows >= MCAT_MAX_ROWS)
		return false;
	if (m->n_rows == m->cap_rows) {
		size_t cap = m->cap_rows ? 2 * m->cap_rows : 64;
		struct mrow *nr = realloc(m->rows, cap * sizeof(*nr));
		if (!nr)
			return false;
		m->rows = nr;
		m->cap_rows = cap;
	}
	row = &m->rows[m->n_rows];
	*row = (struct mrow){.kind = (char)f[0][0],
	                     .oid = (uint32_t)field_num(f[1], len[1]),
	                     .num = (int)(int16_t)field_num(f[2], len[2]),
	                     .nsp = field_dup(f[3] ? f[3] : (const uint8_t *)"", len[3]),
	                     .rel = field_dup(f[4] ? f[4] : (const uint8_t *)"", len[4]),
	                     .att = field_dup(f[5] ? f[5] : (const uint8_t *)"", len[5]),
	                     .aux_oid = (uint32_t)field_num(f[6], len[6]),
	                     .aux = field_dup(f[7] ? f[7] : (const uint8_t *)"", len[7])};
	m->n_rows++;
	/* NULL only where the query sends NULL; otherwise it means out of memory. */
	if ((len[3] >= 0 && !row->nsp) || (len[4] >= 0 && !row->rel) ||
	    (len[5] >= 0 && !row->att) || (len[7] >= 0 && !row->aux))
		return false;
	if (row->kind == 'a')
		return row->att != NULL;
	if (row->kind == 'v')
		return row->nsp && row->rel;
	return row->nsp && row->rel && row->att;
}

/* ---- finishing: the client, the waiters --------------------------------------------------- */

static bool db_alive(const struct mask_db *m)
{
	struct list_head *it;
	list_for_each(it, &G.databases)
	{
		if (container_of(it, struct pv_database, node)->mask_cat == m)
			return true;
	}
	return false;
}

/*
 * Servers of m's database waiting (task set, no query of their own) for the
 * running query, collected first: settling one may move sockets between
 * lists. The array holds at most n; the caller frees it.
 */
static struct pv_socket **collect_waiters(const struct mask_db *m, size_t *n)
{
	struct list_head *it, *jt;
	struct pv_socket **v = NULL;
	size_t cap = 0;

	*n = 0;
	list_for_each(it, &G.pools)
	{
		struct pv_pool *pool = container_of(it, struct pv_pool, node);
		if (pool->db != m->db)
			continue;
		list_for_each(jt, &pool->active_servers)
		{
			struct pv_socket *s = container_of(jt, struct pv_socket, node);
			if (s->closing || s->srv->task != TASK_MASK_CATALOG || s->id == m->runner_id)
				continue;
			if (*n == cap) {
				struct pv_socket **nv =
				    realloc(v, (cap ? 2 * cap : 8) * sizeof(*nv));
				if (!nv)
					return v; /* the rest waits for the next tick */
				v = nv;
				cap = cap ? 2 * cap : 8;
			}
			v[(*n)++] = s;
		}
	}
	return v;
}

static bool runner_alive(const struct mask_db *m)
{
	struct list_head *it, *jt;
	list_for_each(it, &G.pools)
	{
		struct pv_pool *pool = container_of(it, struct pv_pool, node);
		if (pool->db != m->db)
			continue;
		list_for_each(jt, &pool->active_servers)
		{
			struct pv_socket *s = container_of(jt, struct pv_socket, node);
			if (s->id == m->runner_id)
				return !s->closing && s->srv->task == TASK_MASK_CATALOG;
		}
	}
	return false;
}

/*
 * The client linked to s goes on (ok: parameter sync, then its request), or
 * gets an error and is closed; the server goes back to the pool when healthy.
 */
static void settle_client(struct pv_socket *c, struct pv_socket *s, bool ok)
{
	bool healthy = s->tx_status == 'I' && s->expect_rfq == 0 && !s->closing;

	s->srv->task = TASK_NONE;
	if (ok && c) {
		if (pool_link_sync_vars(c, s))
			client_server_ready(c);
		return;
	}
	if (c) {
		c->link = NULL;
		s->link = NULL;
	}
	if (healthy)
		pool_release_server(s);
	else
		server_close(s, "masking catalog query failed");
	if (c && !c->closing)
		client_fatal(c, "55000",
		             "masking: the column catalog of this database could not be resolved");
}

static void settle_waiters(struct mask_db *m, bool ok)
{
	size_t n;
	struct pv_socket **v = collect_waiters(m, &n);

	for (size_t i = 0; i < n; i++)
		if (!v[i]->closing && v[i]->srv->task == TASK_MASK_CATALOG)
			settle_client(v[i]->link, v[i], ok);
	free(v);
}

static void note_error(struct pv_socket *s, const struct pkt *p)
{
	struct error_fields ef;
	s->srv->task_failed = true;
	if (proto_parse_error(pkt_body(p), pkt_body_len(p), &ef) && ef.message) {
		buf_reset(&s->srv->task_err);
		buf_append(&s->srv->task_err, ef.message, strlen(ef.message) + 1);
	}
}

static enum pkt_action finish(struct mask_db *m, struct pv_socket *s, const struct pkt *p)
{
	struct pv_socket *c = s->link;
	struct mcat *cat = NULL;
	bool ok;

	m->runner_id = 0;
	if (!server_take_ready(s, p)) {
		rows_clear(m);
		return PKT_STOP; /* closed; a waiter takes over at the next tick */
	}
	ok = !s->srv->task_failed && !m->rows_bad && s->tx_status == 'I';
	/* RELOAD changed the globs while the query ran: run the new one. */
	if (ok && m->run_gen != policy_gen && column_rules_exist()) {
		start_query(m, s);
		return s->closing ? PKT_STOP : PKT_CONSUMED;
	}
	if (ok && !(cat = build(m)))
		buf_append(&s->srv->task_err, "out of memory", 14);
	rows_clear(m);
	if (cat) {
		cat->resolved_at = now_usec();
		mcat_free(m->cur);
		m->cur = cat;
		m->invalid = false;
		slog_debug(s, "masking: %zu columns resolved", cat->n);
	} else {
		slog_error(s, "masking: column catalog query failed: %s",
		           s->srv->task_err.len ? (const char *)s->srv->task_err.data : "malformed reply");
	}
	settle_client(c, s, cat != NULL);
	/* Waiters exist only while there was no resolution: they share the outcome. */
	settle_waiters(m, cat != NULL);
	return s->closing ? PKT_STOP : PKT_CONSUMED;
}

/* A waiting server should stay silent; anything but notices ends it. */
static enum pkt_action waiter_pkt(struct pv_socket *s, struct pkt *p)
{
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (p->type == 'N' || p->type == 'S')
		return PKT_CONSUMED;
	server_close(s, "unexpected message while waiting for the masking catalog");
	return PKT_STOP;
}

enum pkt_action mask_catalog_server_pkt(struct pv_socket *s, struct pkt *p)
{
	struct mask_db *m = mdb_of(s->pool->db);

	if (!m || m->runner_id != s->id)
		return waiter_pkt(s, p);
	if (p->len > MCAT_MAX_ROW) {
		slog_warning(s, "masking: catalog reply too large");
		m->rows_bad = true;
		return PKT_DROP;
	}
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	switch (p->type) {
	case '1': /* ParseComplete */
	case '2': /* BindComplete */
	case 'C':
	case 'N':
	case 'n':
	case 'S':
		return PKT_CONSUMED;
	case 'D':
		if (!m->rows_bad && !take_row(m, p))
			m->rows_bad = true;
		return PKT_CONSUMED;
	case 'E':
		note_error(s, p);
		return PKT_CONSUMED;
	case 'Z':
		return finish(m, s, p);
	default:
		slog_warning(s, "masking: unexpected message '%c' in the catalog reply", p->type);
		m->rows_bad = true;
		return PKT_CONSUMED;
	}
}

/* ---- linking and the tick ------------------------------------------------------------------- */

bool mask_catalog_link(struct pv_socket *c, struct pv_socket *s)
{
	struct pv_database *db = c->pool->db;
	struct mask_db *m;

	if (db->is_admin || !column_rules_exist())
		return false;
	m = mdb_get(db);
	if (!m) {
		server_close(s, "out of memory"); /* fails the client: never unmasked rows */
		return true;
	}
	if (!is_stale(m, now_usec()))
		return false;
	if (m->runner_id) {
		if (m->cur)
			return false; /* the previous resolution serves until the new one is in */
		s->srv->task = TASK_MASK_CATALOG; /* wait for the one in flight */
		return true;
	}
	start_query(m, s);
	return true;
}

/* The runner went away (server closed): a waiter runs the query, or all go on. */
static void take_over(struct mask_db *m)
{
	size_t n;
	struct pv_socket **v = collect_waiters(m, &n);
	struct pv_socket *first = n ? v[0] : NULL;

	free(v);
	if (!first)
		return;
	if (column_rules_exist() && is_stale(m, now_usec()))
		start_query(m, first);
	else
		settle_waiters(m, true);
}

void mask_catalog_tick(usec_t now)
{
	struct list_head *it, *tmp;

	(void)now;
	list_for_each_safe(it, tmp, &mdbs)
	{
		struct mask_db *m = container_of(it, struct mask_db, node);
		if (!db_alive(m)) {
			mdb_free(m);
			continue;
		}
		if (m->runner_id && !runner_alive(m)) {
			m->runner_id = 0;
			rows_clear(m);
		}
		if (!m->runner_id)
			take_over(m);
	}
}
