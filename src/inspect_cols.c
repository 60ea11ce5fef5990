/*
 * inspect_cols.c - collects column references with their context (output,
 * expression, predicate, whole row, write, RETURNING) from libpg_query's JSON
 * parse tree into inspect_acc.colrefs, for the masking checks of
 * src/mask_derived.c.
 *
 * Owns name resolution: FROM items, JOIN aliases, CTEs and sub-selects form
 * scopes; a reference resolves to the relation behind an alias, through
 * FROM-subqueries and CTEs, and to outer queries from correlated sub-selects.
 * A query's output columns are first collected as "pending" references (which
 * base columns each output carries, and whether unchanged), so an outer query
 * decides their context when it uses them. Where a name cannot be pinned to
 * one relation it is recorded with table NULL ("any relation of the
 * statement"), never dropped: the checker fails closed on what is vague.
 * Nothing here depends on literal values (cache keys ignore literals).
 */
#include "inspect_walk.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 1000 /* bounds recursion like the classifier walk */

/* A base column an output carries. column NULL: every column of table. */
struct pref {
	const char *schema, *table, *column;
	bool derived;  /* computed from it, not passed through */
	bool wholerow; /* carried as a composite value */
};

/* One output column of a query; star: an unknown number of columns. */
struct outcol {
	const char *name;
	bool star;
	struct pref *p;
	int n, cap;
};

struct outs {
	struct outcol *c;
	int n, cap;
};

enum rte_kind { RK_REL, RK_SUB, RK_JOIN };

/* A FROM item. Subqueries, CTEs, functions and VALUES are RK_SUB. */
struct rte {
	enum rte_kind kind;
	const char *alias; /* how it is referenced; NULL if it cannot be */
	const char *schema, *rel;
	bool renamed; /* RK_REL with a column alias list: names no longer say which column */
	struct outs *outs;
	json_t *colnames; /* RK_SUB: alias column list renaming outputs by position */
	int first, n;     /* RK_JOIN: member items in the same scope */
};

struct cte {
	const char *name;
	struct outs *outs;
	json_t *colnames;
};

struct scope {
	struct scope *parent; /* outer query, or the query a FROM-subquery sits in */
	struct rte *r;
	int n, cap;
	struct cte *c;
	int nc, capc;
};

/* Where references go: into an output being collected (col), or recorded with ctx/pos. */
struct sink {
	struct outcol *col;
	uint8_t ctx;
	int16_t pos;
	bool derived;
};

static const struct sink PRED = {NULL, CR_PREDICATE, 0, false};
static const struct sink WRITE = {NULL, CR_WRITE, 0, false};

struct cx {
	struct inspect_acc *acc;
	bool nested; /* DO block / function body: everything is a write */
	int depth;
	void **allocs; /* everything below lives until the statement is done */
	int nallocs, capallocs;
};

/* ---- memory: a per-statement arena, so scopes need no teardown ------------- */

static void *cx_alloc(struct cx *cx, size_t size)
{
	void *p;

	if (cx->nallocs == cx->capallocs) {
		int cap = cx->capallocs ? cx->capallocs * 2 : 32;
		void **nv = realloc(cx->allocs, (size_t)cap * sizeof(*nv));

		if (!nv) {
			cx->acc->oom = true;
			return NULL;
		}
		cx->allocs = nv;
		cx->capallocs = cap;
	}
	p = calloc(1, size);
	if (!p) {
		cx->acc->oom = true;
		return NULL;
	}
	cx->allocs[cx->nallocs++] = p;
	return p;
}

/* Make room for one more element in an arena array; false on allocation failure. */
static bool grow(struct cx *cx, void **v, int *cap, int n, size_t elem)
{
	void *nv;
	int ncap;

	if (n < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 4;
	nv = cx_alloc(cx, (size_t)ncap * elem);
	if (!nv)
		return false;
	if (n)
		memcpy(nv, *v, (size_t)n * elem);
	*v = nv;
	*cap = ncap;
	return true;
}

static struct outcol *new_outcol(struct cx *cx, struct outs *o, const char *name, bool star)
{
	struct outcol *oc;

	if (!grow(cx, (void **)&o->c, &o->cap, o->n, sizeof(*o->c)))
		return NULL;
	oc = &o->c[o->n++];
	memset(oc, 0, sizeof(*oc));
	oc->name = name;
	oc->star = star;
	return oc;
}

static void push_pref(struct cx *cx, struct outcol *oc, const struct pref *p)
{
	if (grow(cx, (void **)&oc->p, &oc->cap, oc->n, sizeof(*oc->p)))
		oc->p[oc->n++] = *p;
}

/* ---- the result vector --------------------------------------------------- */

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static char *dup_or_null(struct inspect_acc *acc, const char *s)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		acc->oom = true;
	return d;
}

static void colvec_add(struct inspect_acc *acc, const struct pref *p, const char *column,
                       uint8_t ctx, int pos)
{
	struct colvec *cv = &acc->colrefs;
	struct inspect_colref *c;

	for (int i = 0; i < cv->n; i++) {
		c = &cv->v[i];
		if (c->ctx == ctx && c->output_pos == pos && same(c->schema, p->schema) &&
		    same(c->table, p->table) && same(c->column, column))
			return;
	}
	if (cv->n >= INSPECT_MAX_COLREFS) {
		cv->truncated = true;
		return;
	}
	if (cv->n == cv->cap) {
		int cap = cv->cap ? cv->cap * 2 : 8;
		struct inspect_colref *nv = realloc(cv->v, (size_t)cap * sizeof(*nv));

		if (!nv) {
			acc->oom = true;
			return;
		}
		cv->v = nv;
		cv->cap = cap;
	}
	c = &cv->v[cv->n++];
	c->schema = dup_or_null(acc, p->schema);
	c->table = dup_or_null(acc, p->table);
	c->column = dup_or_null(acc, column);
	c->ctx = ctx;
	c->output_pos = (int16_t)pos;
}

/*
 * Record a reference reaching a final sink. A plain output or RETURNING
 * column stays so only when nothing was computed from it; writes are always
 * derived too; code bodies make everything a write.
 */
static void record(struct cx *cx, const struct sink *s, const struct pref *p)
{
	uint8_t ctx = s->ctx;
	int pos = s->pos;
	const char *column = p->column;

	if ((ctx & (CR_OUTPUT | CR_RETURNING)) && (s->derived || p->derived || p->wholerow))
		ctx = CR_DERIVED;
	if (ctx & CR_WRITE)
		ctx |= CR_DERIVED;
	if (p->wholerow)
		ctx |= CR_WHOLEROW;
	if (cx->nested)
		ctx = CR_WRITE | CR_DERIVED | (p->wholerow ? CR_WHOLEROW : 0);
	if (!column && !p->wholerow && (ctx & (CR_OUTPUT | CR_RETURNING)))
		column = "*";
	if ((ctx & (CR_PREDICATE | CR_WRITE)) && !(ctx & (CR_OUTPUT | CR_RETURNING)))
		pos = 0;
	if (pos > INT16_MAX)
		pos = -1;
	colvec_add(cx->acc, p, column, ctx, pos);
}

static void sink_ref(struct cx *cx, const struct sink *s, const struct pref *p)
{
	struct pref q = *p;

	q.derived = q.derived || s->derived;
	if (s->col)
		push_pref(cx, s->col, &q);
	else
		record(cx, s, &q);
}

static struct sink derived(const struct sink *s)
{
	struct sink d = *s;

	d.derived = true;
	return d;
}

/* Send one output's references on; name specialises a star, wholerow wraps them. */
static void emit_outcol(struct cx *cx, const struct outcol *oc, const struct sink *s,
                        const char *name, bool wholerow)
{
	int n = oc->n; /* a query reading itself (a CTE) must not chase what it adds */

	for (int i = 0; i < n; i++) {
		struct pref q = oc->p[i];

		if (name && !q.column && oc->star && !q.wholerow)
			q.column = name;
		q.wholerow = q.wholerow || wholerow;
		sink_ref(cx, s, &q);
	}
}

static void emit_all(struct cx *cx, const struct outs *o, const struct sink *s)
{
	for (int i = 0; i < o->n; i++)
		emit_outcol(cx, &o->c[i], s, NULL, false);
}

/* A statement's result columns: ctx for plain ones, positions counted until a star. */
static void emit_outs(struct cx *cx, const struct outs *o, uint8_t ctx)
{
	int pos = 1;
	bool known = !(ctx & CR_WRITE);

	for (int i = 0; i < o->n; i++) {
		bool at =
		    known && !o->c[i].star && pos <= INT16_MAX; /* a star spans unknown columns */
		struct sink s = {NULL, ctx, (int16_t)(at ? pos : -1), false};

		emit_outcol(cx, &o->c[i], &s, NULL, false);
		if (o->c[i].star)
			known = false;
		pos++;
	}
}

/* ---- JSON helpers ----------------------------------------------------------- */

static const char *jstr(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static const char *sval(json_t *node)
{
	return jstr(json_object_get(node, "String"), "sval");
}

/* Typed fields hold a node bare, Node fields wrap it: accept both. */
static json_t *unwrap(json_t *v, const char *name)
{
	json_t *in = json_object_get(v, name);

	return in ? in : v;
}

static bool deeper(struct cx *cx)
{
	if (cx->depth >= MAX_DEPTH) {
		cx->acc->colrefs.truncated = true; /* fail closed: the checker assumes the worst */
		return false;
	}
	cx->depth++;
	return true;
}

/* ---- scopes ----------------------------------------------------------------- */

static struct rte *add_rte(struct cx *cx, struct scope *sc, enum rte_kind kind, const char *alias)
{
	struct rte *rt;

	if (!grow(cx, (void **)&sc->r, &sc->cap, sc->n, sizeof(*sc->r)))
		return NULL;
	rt = &sc->r[sc->n++];
	memset(rt, 0, sizeof(*rt));
	rt->kind = kind;
	rt->alias = alias;
	return rt;
}

static struct cte *find_cte(struct scope *sc, const char *name)
{
	for (; sc; sc = sc->parent) {
		for (int i = sc->nc - 1; i >= 0; i--) {
			if (strcmp(sc->c[i].name, name) == 0)
				return &sc->c[i];
		}
	}
	return NULL;
}

/* The item a qualifier names: alias (or table name), or schema.table. */
static struct rte *find_rte(struct scope *sc, const char *schema, const char *name)
{
	for (; sc; sc = sc->parent) {
		for (int i = sc->n - 1; i >= 0; i--) {
			struct rte *rt = &sc->r[i];

			if (schema ? rt->kind == RK_REL && same(rt->schema, schema) &&
			                 strcmp(rt->rel, name) == 0
			           : same(rt->alias, name))
				return rt;
		}
	}
	return NULL;
}

static bool has_rels(const struct scope *sc)
{
	for (; sc; sc = sc->parent) {
		if (sc->n)
			return true;
	}
	return false;
}

/* Position of name in an alias column list, -1 if absent. */
static int colname_index(json_t *colnames, const char *name)
{
	size_t i;
	json_t *it;

	json_array_foreach(colnames, i, it)
	{
		if (same(sval(it), name))
			return (int)i;
	}
	return -1;
}

static bool star_before(const struct outs *o, int idx)
{
	for (int i = 0; i < idx && i < o->n; i++) {
		if (o->c[i].star)
			return true;
	}
	return false;
}

/*
 * Column `name` of a sub-select's outputs: by alias list position, by output
 * name, through a star, or (unnamed expressions, whose name PostgreSQL makes
 * up) every unnamed output. dry: only report whether anything matches.
 */
static bool sub_column(struct cx *cx, const struct outs *o, json_t *colnames, const char *name,
                       const struct sink *s, bool dry)
{
	int idx = colname_index(colnames, name);
	bool found = false;

	if (idx >= 0) {
		if (!dry && idx < o->n && !star_before(o, idx))
			emit_outcol(cx, &o->c[idx], s, NULL, false);
		else if (!dry) /* position unclear: every output, as computed */
			for (int i = 0; i < o->n; i++)
				emit_outcol(cx, &o->c[i],
				            &(struct sink){s->col, s->ctx, s->pos, true}, name,
				            false);
		return true;
	}
	for (int pass = 0; pass < 3 && !found; pass++) {
		for (int i = 0; i < o->n; i++) {
			const struct outcol *oc = &o->c[i];
			bool match = pass == 0   ? !oc->star && same(oc->name, name)
			             : pass == 1 ? oc->star
			                         : !oc->star && !oc->name;

			if (!match)
				continue;
			found = true;
			if (!dry)
				emit_outcol(cx, oc, s, name, false);
		}
	}
	return found;
}

static void rte_column(struct cx *cx, struct scope *sc, struct rte *rt, const char *name,
                       const struct sink *s);

/* An unqualified column among items [first, first+n) of sc; false if none can have it. */
static bool resolve_in(struct cx *cx, struct scope *sc, int first, int n, const char *name,
                       const struct sink *s)
{
	struct rte *one = NULL;
	int nrel = 0, nsub = 0;

	for (int i = first; i < first + n; i++) {
		struct rte *rt = &sc->r[i];

		if (rt->kind == RK_REL) {
			nrel++;
			one = rt;
		} else if (rt->kind == RK_SUB &&
		           sub_column(cx, rt->outs, rt->colnames, name, s, true)) {
			nsub++;
			sub_column(cx, rt->outs, rt->colnames, name, s, false);
		}
	}
	if (nrel == 1 && nsub == 0 && !has_rels(sc->parent))
		rte_column(cx, sc, one, name, s);
	else if (nrel) /* several relations could have it (or an outer query): any of them */
		sink_ref(cx, s, &(struct pref){NULL, NULL, name, false, false});
	return nrel + nsub > 0;
}

/* An unqualified column: the innermost query with an item that can have it. */
static void resolve_unqual(struct cx *cx, struct scope *sc, const char *name, const struct sink *s)
{
	for (; sc; sc = sc->parent) {
		if (resolve_in(cx, sc, 0, sc->n, name, s))
			return;
	}
	/* no FROM item at all: a PL/pgSQL variable, an output alias, ... */
	sink_ref(cx, s, &(struct pref){NULL, NULL, name, false, false});
}

static void rte_column(struct cx *cx, struct scope *sc, struct rte *rt, const char *name,
                       const struct sink *s)
{
	if (rt->kind == RK_REL)
		sink_ref(
		    cx, s,
		    &(struct pref){rt->schema, rt->rel, rt->renamed ? NULL : name, false, false});
	else if (rt->kind == RK_SUB)
		sub_column(cx, rt->outs, rt->colnames, name, s, false);
	else if (!resolve_in(cx, sc, rt->first, rt->n, name, s))
		sink_ref(cx, s, &(struct pref){NULL, NULL, name, false, false});
}

/* Every column of an item as one value (t, t.* inside an expression). */
static void rte_wholerow(struct cx *cx, struct scope *sc, struct rte *rt, const struct sink *s)
{
	if (rt->kind == RK_REL) {
		sink_ref(cx, s, &(struct pref){rt->schema, rt->rel, NULL, false, true});
	} else if (rt->kind == RK_SUB) {
		for (int i = 0; i < rt->outs->n; i++)
			emit_outcol(cx, &rt->outs->c[i], s, NULL, true);
	} else {
		for (int i = rt->first; i < rt->first + rt->n; i++) {
			if (sc->r[i].kind != RK_JOIN)
				rte_wholerow(cx, sc, &sc->r[i], s);
		}
	}
}

/* The innermost scope that has FROM items (what a bare * expands to). */
static struct scope *star_scope(struct scope *sc)
{
	while (sc && !sc->n && sc->parent)
		sc = sc->parent;
	return sc;
}

/* ColumnRef in an expression: [[catalog.]schema.]table.column, column, t.*, t, *. */
static void on_colref(struct cx *cx, struct scope *sc, json_t *cr, const struct sink *s)
{
	json_t *f = json_object_get(cr, "fields");
	size_t n = json_array_size(f);
	bool star = n && json_object_get(json_array_get(f, n - 1), "A_Star") != NULL;
	const char *col = star || !n ? NULL : sval(json_array_get(f, n - 1));
	const char *rel = n >= 2 ? sval(json_array_get(f, n - 2)) : NULL;
	const char *schema = n >= 3 ? sval(json_array_get(f, n - 3)) : NULL;
	struct scope *ss = star_scope(sc);
	struct rte *rt;

	if (n == 1 && star) {
		for (int i = 0; ss && i < ss->n; i++) {
			if (ss->r[i].kind != RK_JOIN)
				rte_wholerow(cx, ss, &ss->r[i], s);
		}
	} else if (n == 1 && col) {
		resolve_unqual(cx, sc, col, s);
		/* PostgreSQL prefers a column of that name, but without the catalog
		 * `t` may as well be the whole row of t: both are recorded */
		rt = find_rte(sc, NULL, col);
		if (rt)
			rte_wholerow(cx, sc, rt, s);
	} else if (rel) {
		rt = find_rte(sc, schema, rel);
		if (rt && star)
			rte_wholerow(cx, sc, rt, s);
		else if (rt)
			rte_column(cx, sc, rt, col, s);
		else
			sink_ref(cx, s, &(struct pref){schema, rel, col, false, star});
	}
}

/* ---- expressions -------------------------------------------------------------- */

static void walk_expr(struct cx *cx, struct scope *sc, json_t *v, const struct sink *s);
static void walk_select(struct cx *cx, struct scope *parent, json_t *sel, struct outs *out);

/* A sub-select in an expression: its outputs feed the expression; EXISTS only tests. */
static void on_sublink(struct cx *cx, struct scope *sc, json_t *sl, const struct sink *s)
{
	struct outs o = {0};
	struct sink d = derived(s);
	const char *type = jstr(sl, "subLinkType");

	walk_select(cx, sc, unwrap(json_object_get(sl, "subselect"), "SelectStmt"), &o);
	emit_all(cx, &o, type && strcmp(type, "EXISTS_SUBLINK") == 0 ? &PRED : &d);
	walk_expr(cx, sc, json_object_get(sl, "testexpr"), &d);
}

/* Arguments are computed into the value; ORDER BY, FILTER and OVER only steer it. */
static void on_funccall(struct cx *cx, struct scope *sc, json_t *fc, const struct sink *s)
{
	struct sink d = derived(s);

	walk_expr(cx, sc, json_object_get(fc, "args"), &d);
	walk_expr(cx, sc, json_object_get(fc, "agg_order"), &PRED);
	walk_expr(cx, sc, json_object_get(fc, "agg_filter"), &PRED);
	walk_expr(cx, sc, json_object_get(fc, "over"), &PRED);
}

static void walk_expr_object(struct cx *cx, struct scope *sc, json_t *v, const struct sink *s)
{
	const char *key;
	json_t *child;

	json_object_foreach(v, key, child)
	{
		if (strcmp(key, "ColumnRef") == 0) {
			on_colref(cx, sc, child, s);
		} else if (strcmp(key, "SubLink") == 0) {
			on_sublink(cx, sc, child, s);
		} else if (strcmp(key, "FuncCall") == 0) {
			on_funccall(cx, sc, child, s);
		} else if (strcmp(key, "SelectStmt") == 0) {
			struct outs o = {0};
			struct sink d = derived(s);

			walk_select(cx, sc, child, &o);
			emit_all(cx, &o, &d);
		} else if (isupper((unsigned char)key[0]) && json_is_object(child)) {
			/* any other node wraps the reference in a computation */
			struct sink d = derived(s);

			walk_expr(cx, sc, child, &d);
		} else if (json_is_object(child) || json_is_array(child)) {
			walk_expr(cx, sc, child, s);
		}
	}
}

static void walk_expr(struct cx *cx, struct scope *sc, json_t *v, const struct sink *s)
{
	size_t i;
	json_t *it;

	if (!v || !deeper(cx))
		return;
	if (json_is_array(v))
		json_array_foreach(v, i, it) walk_expr(cx, sc, it, s);
	else if (json_is_object(v))
		walk_expr_object(cx, sc, v, s);
	cx->depth--;
}

/* ---- FROM ----------------------------------------------------------------------- */

static void add_from(struct cx *cx, struct scope *sc, json_t *item);

static void add_rangevar(struct cx *cx, struct scope *sc, json_t *rv)
{
	const char *rel = jstr(rv, "relname");
	const char *schema = jstr(rv, "schemaname");
	json_t *alias = json_object_get(rv, "alias");
	const char *name = jstr(alias, "aliasname");
	json_t *colnames = json_object_get(alias, "colnames");
	struct cte *cte = !schema && rel ? find_cte(sc, rel) : NULL;
	struct rte *rt;

	if (!rel)
		return;
	rt = add_rte(cx, sc, cte ? RK_SUB : RK_REL, name ? name : rel);
	if (!rt)
		return;
	if (cte) {
		rt->outs = cte->outs;
		rt->colnames = json_array_size(colnames) ? colnames : cte->colnames;
	} else {
		rt->schema = schema;
		rt->rel = rel;
		rt->renamed = json_array_size(colnames) > 0;
	}
}

/* A FROM item whose columns come out of code (functions, XMLTABLE): one opaque output. */
static void add_opaque(struct cx *cx, struct scope *sc, json_t *node, const char *name)
{
	json_t *alias = json_object_get(node, "alias");
	struct outs *o = cx_alloc(cx, sizeof(*o));
	struct outcol *oc = o ? new_outcol(cx, o, NULL, true) : NULL;
	struct rte *rt;

	if (!oc)
		return;
	walk_expr(cx, sc, node, &(struct sink){oc, 0, 0, true});
	rt = add_rte(cx, sc, RK_SUB, jstr(alias, "aliasname") ? jstr(alias, "aliasname") : name);
	if (rt)
		rt->outs = o;
}

static const char *function_name(json_t *rf)
{
	json_t *items = json_object_get(
	    json_object_get(json_array_get(json_object_get(rf, "functions"), 0), "List"), "items");
	json_t *names =
	    json_object_get(json_object_get(json_array_get(items, 0), "FuncCall"), "funcname");

	return sval(json_array_get(names, json_array_size(names) - 1));
}

static void add_subselect(struct cx *cx, struct scope *sc, json_t *rs)
{
	json_t *alias = json_object_get(rs, "alias");
	struct outs *o = cx_alloc(cx, sizeof(*o));
	struct rte *rt;

	if (!o)
		return;
	walk_select(cx, sc, unwrap(json_object_get(rs, "subquery"), "SelectStmt"), o);
	rt = add_rte(cx, sc, RK_SUB, jstr(alias, "aliasname"));
	if (rt) {
		rt->outs = o;
		rt->colnames = json_object_get(alias, "colnames");
	}
}

static void add_join(struct cx *cx, struct scope *sc, json_t *j)
{
	int first = sc->n;
	const char *alias = jstr(json_object_get(j, "alias"), "aliasname");
	size_t i;
	json_t *it;
	struct rte *rt;

	add_from(cx, sc, json_object_get(j, "larg"));
	add_from(cx, sc, json_object_get(j, "rarg"));
	walk_expr(cx, sc, json_object_get(j, "quals"), &PRED);
	json_array_foreach(json_object_get(j, "usingClause"), i, it)
	{
		if (sval(it) && !resolve_in(cx, sc, first, sc->n - first, sval(it), &PRED))
			sink_ref(cx, &PRED, &(struct pref){NULL, NULL, sval(it), false, false});
	}
	if (!alias)
		alias = jstr(json_object_get(j, "join_using_alias"), "aliasname");
	rt = add_rte(cx, sc, RK_JOIN, alias);
	if (rt) {
		rt->first = first;
		rt->n = sc->n - 1 - first;
	}
}

static void add_from(struct cx *cx, struct scope *sc, json_t *item)
{
	json_t *n;

	if (!item || !deeper(cx))
		return;
	if ((n = json_object_get(item, "RangeVar")))
		add_rangevar(cx, sc, n);
	else if ((n = json_object_get(item, "RangeSubselect")))
		add_subselect(cx, sc, n);
	else if ((n = json_object_get(item, "JoinExpr")))
		add_join(cx, sc, n);
	else if ((n = json_object_get(item, "RangeFunction")))
		add_opaque(cx, sc, n, function_name(n));
	else if ((n = json_object_get(item, "RangeTableSample"))) {
		add_from(cx, sc, json_object_get(n, "relation"));
		walk_expr(cx, sc, json_object_get(n, "args"), &PRED);
		walk_expr(cx, sc, json_object_get(n, "repeatable"), &PRED);
	} else {
		add_opaque(cx, sc, item, NULL); /* XMLTABLE, JSON_TABLE, ... */
	}
	cx->depth--;
}

/* ---- queries -------------------------------------------------------------------- */

static void stmt_outs(struct cx *cx, struct scope *parent, json_t *wrapped, struct outs *out);

static void add_ctes(struct cx *cx, struct scope *sc, json_t *with)
{
	size_t i;
	json_t *it;

	json_array_foreach(json_object_get(with, "ctes"), i, it)
	{
		json_t *c = json_object_get(it, "CommonTableExpr");
		const char *name = jstr(c, "ctename");
		struct outs *o = cx_alloc(cx, sizeof(*o));
		struct cte *e;

		if (!name || !o || !grow(cx, (void **)&sc->c, &sc->capc, sc->nc, sizeof(*sc->c)))
			continue;
		/* visible to itself (WITH RECURSIVE) and to later CTEs */
		e = &sc->c[sc->nc++];
		e->name = name;
		e->outs = o;
		e->colnames = json_object_get(c, "aliascolnames");
		stmt_outs(cx, sc, json_object_get(c, "ctequery"), o);
	}
}

/* A star in a target list: one output per known column, a star output per relation. */
static void star_expand(struct cx *cx, struct scope *sc, struct rte *rt, struct outs *out)
{
	struct outcol *oc;

	if (rt->kind == RK_REL) {
		oc = new_outcol(cx, out, NULL, true);
		if (oc)
			push_pref(cx, oc, &(struct pref){rt->schema, rt->rel, NULL, false, false});
	} else if (rt->kind == RK_SUB) {
		for (int i = 0; i < rt->outs->n; i++) {
			const struct outcol *src = &rt->outs->c[i];
			json_t *cn = json_array_get(rt->colnames, (size_t)i);
			const char *name = cn && !star_before(rt->outs, i) ? sval(cn) : src->name;

			oc = new_outcol(cx, out, name, src->star);
			for (int k = 0; oc && k < src->n; k++)
				push_pref(cx, oc, &src->p[k]);
		}
	} else {
		for (int i = rt->first; i < rt->first + rt->n; i++) {
			if (sc->r[i].kind != RK_JOIN)
				star_expand(cx, sc, &sc->r[i], out);
		}
	}
}

static void star_target(struct cx *cx, struct scope *sc, json_t *f, struct outs *out)
{
	size_t n = json_array_size(f);
	const char *rel = n >= 2 ? sval(json_array_get(f, n - 2)) : NULL;
	const char *schema = n >= 3 ? sval(json_array_get(f, n - 3)) : NULL;
	struct scope *ss = star_scope(sc);
	struct rte *rt;
	struct outcol *oc;

	if (n == 1) {
		for (int i = 0; ss && i < ss->n; i++) {
			if (ss->r[i].kind != RK_JOIN)
				star_expand(cx, ss, &ss->r[i], out);
		}
	} else if (rel && (rt = find_rte(sc, schema, rel))) {
		star_expand(cx, sc, rt, out);
	} else if (rel && (oc = new_outcol(cx, out, NULL, true))) {
		push_pref(cx, oc, &(struct pref){schema, rel, NULL, false, false});
	}
}

/* A target list (or RETURNING list) into outputs: plain columns stay plain. */
static void targets(struct cx *cx, struct scope *sc, json_t *list, struct outs *out)
{
	size_t i;
	json_t *it;

	json_array_foreach(list, i, it)
	{
		json_t *rt = json_object_get(it, "ResTarget");
		json_t *val = json_object_get(rt, "val");
		json_t *cr = json_object_get(val, "ColumnRef");
		json_t *f = json_object_get(cr, "fields");
		size_t n = json_array_size(f);
		const char *name = jstr(rt, "name");
		struct outcol *oc;

		if (cr && json_object_get(json_array_get(f, n - 1), "A_Star")) {
			star_target(cx, sc, f, out);
			continue;
		}
		if (!name && cr)
			name = sval(json_array_get(f, n - 1));
		oc = new_outcol(cx, out, name, false);
		if (oc)
			walk_expr(cx, sc, val, &(struct sink){oc, 0, 0, false});
	}
}

/*
 * ORDER BY / GROUP BY / DISTINCT ON items: a bare name may mean an output
 * column, a number means one by position (which literal is not known here:
 * cache keys ignore literals, so every output counts).
 */
static void order_items(struct cx *cx, struct scope *sc, json_t *list, const struct outs *out)
{
	size_t i;
	json_t *it;

	json_array_foreach(list, i, it)
	{
		json_t *sb = json_object_get(it, "SortBy");
		json_t *node = sb ? json_object_get(sb, "node") : it;
		json_t *f = json_object_get(json_object_get(node, "ColumnRef"), "fields");

		if (json_object_get(node, "A_Const")) {
			emit_all(cx, out, &PRED);
			continue;
		}
		if (json_array_size(f) == 1 && sval(json_array_get(f, 0))) {
			for (int k = 0; k < out->n; k++) {
				if (same(out->c[k].name, sval(json_array_get(f, 0))))
					emit_outcol(cx, &out->c[k], &PRED, NULL, false);
			}
		}
		walk_expr(cx, sc, node, &PRED);
	}
}

/* UNION / INTERSECT / EXCEPT: output i carries both branches' column i, computed. */
static void merge_setop(struct cx *cx, const struct outs *a, const struct outs *b, struct outs *out)
{
	bool aligned = a->n == b->n && !star_before(a, a->n) && !star_before(b, b->n);
	struct outcol *oc = NULL;
	const struct outs *side[2] = {a, b};

	for (int i = 0; i < a->n || i < b->n; i++) {
		if (aligned || !oc)
			oc = new_outcol(cx, out, i < a->n ? a->c[i].name : NULL, !aligned);
		for (int k = 0; k < 2; k++) {
			for (int j = 0; oc && i < side[k]->n && j < side[k]->c[i].n; j++) {
				struct pref q = side[k]->c[i].p[j];

				q.derived = true;
				push_pref(cx, oc, &q);
			}
		}
	}
}

static void values_lists(struct cx *cx, struct scope *sc, json_t *lists, struct outs *out)
{
	size_t i, k;
	json_t *row, *it;

	json_array_foreach(lists, i, row)
	{
		json_array_foreach(json_object_get(json_object_get(row, "List"), "items"), k, it)
		{
			while (out->n <= (int)k && new_outcol(cx, out, NULL, false))
				;
			if (out->n > (int)k)
				walk_expr(cx, sc, it, &(struct sink){&out->c[k], 0, 0, true});
		}
	}
}

static void walk_plain_select(struct cx *cx, struct scope *sc, json_t *sel, struct outs *out)
{
	size_t i;
	json_t *it;

	json_array_foreach(json_object_get(sel, "fromClause"), i, it) add_from(cx, sc, it);
	targets(cx, sc, json_object_get(sel, "targetList"), out);
	walk_expr(cx, sc, json_object_get(sel, "whereClause"), &PRED);
	walk_expr(cx, sc, json_object_get(sel, "havingClause"), &PRED);
	walk_expr(cx, sc, json_object_get(sel, "windowClause"), &PRED);
	order_items(cx, sc, json_object_get(sel, "groupClause"), out);
	order_items(cx, sc, json_object_get(sel, "distinctClause"), out);
}

static void walk_select(struct cx *cx, struct scope *parent, json_t *sel, struct outs *out)
{
	struct scope sc = {.parent = parent};
	const char *op = jstr(sel, "op");

	if (!sel || !deeper(cx))
		return;
	add_ctes(cx, &sc, json_object_get(sel, "withClause"));
	if (op && strcmp(op, "SETOP_NONE") != 0) {
		struct outs a = {0}, b = {0};

		walk_select(cx, &sc, json_object_get(sel, "larg"), &a);
		walk_select(cx, &sc, json_object_get(sel, "rarg"), &b);
		merge_setop(cx, &a, &b, out);
	} else if (json_object_get(sel, "valuesLists")) {
		values_lists(cx, &sc, json_object_get(sel, "valuesLists"), out);
	} else {
		walk_plain_select(cx, &sc, sel, out);
	}
	order_items(cx, &sc, json_object_get(sel, "sortClause"), out);
	walk_expr(cx, &sc, json_object_get(sel, "limitCount"), &PRED);
	walk_expr(cx, &sc, json_object_get(sel, "limitOffset"), &PRED);
	cx->depth--;
}

/* ---- data-modifying statements ------------------------------------------------- */

/* SET x = <value> / VALUES: the value is stored. */
static void set_list(struct cx *cx, struct scope *sc, json_t *list)
{
	size_t i;
	json_t *it;

	json_array_foreach(list, i, it)
	{
		json_t *rt = json_object_get(it, "ResTarget");

		walk_expr(cx, sc, rt ? json_object_get(rt, "val") : it, &WRITE);
	}
}

static void walk_insert(struct cx *cx, struct scope *sc, json_t *ins, struct outs *out)
{
	json_t *rv = json_object_get(ins, "relation");
	json_t *oc = json_object_get(ins, "onConflictClause");
	struct outs so = {0};

	add_rangevar(cx, sc, rv);
	walk_select(cx, sc, unwrap(json_object_get(ins, "selectStmt"), "SelectStmt"), &so);
	emit_outs(cx, &so, CR_WRITE);
	if (oc) {
		int n = sc->n;
		struct rte *rt =
		    add_rte(cx, sc, RK_REL, "excluded"); /* the row proposed for insertion */

		if (rt) {
			rt->schema = jstr(rv, "schemaname");
			rt->rel = jstr(rv, "relname");
		}
		set_list(cx, sc, json_object_get(oc, "targetList"));
		walk_expr(cx, sc, json_object_get(oc, "whereClause"), &PRED);
		walk_expr(cx, sc, json_object_get(oc, "infer"), &PRED);
		sc->n = n; /* excluded is not visible to RETURNING */
	}
}

static void walk_merge(struct cx *cx, struct scope *sc, json_t *m)
{
	size_t i;
	json_t *it;

	add_from(cx, sc, json_object_get(m, "sourceRelation"));
	walk_expr(cx, sc, json_object_get(m, "joinCondition"), &PRED);
	json_array_foreach(json_object_get(m, "mergeWhenClauses"), i, it)
	{
		json_t *w = json_object_get(it, "MergeWhenClause");

		walk_expr(cx, sc, json_object_get(w, "condition"), &PRED);
		set_list(cx, sc, json_object_get(w, "targetList"));
		set_list(cx, sc, json_object_get(w, "values"));
	}
}

/* INSERT / UPDATE / DELETE / MERGE; out gets the RETURNING columns. */
static void walk_dml(struct cx *cx, struct scope *parent, const char *kind, json_t *n,
                     struct outs *out)
{
	struct scope sc = {.parent = parent};
	size_t i;
	json_t *it;

	add_ctes(cx, &sc, json_object_get(n, "withClause"));
	if (strcmp(kind, "InsertStmt") == 0) {
		walk_insert(cx, &sc, n, out);
	} else {
		add_rangevar(cx, &sc, json_object_get(n, "relation"));
		json_array_foreach(json_object_get(n, "fromClause"), i, it) add_from(cx, &sc, it);
		json_array_foreach(json_object_get(n, "usingClause"), i, it) add_from(cx, &sc, it);
		if (strcmp(kind, "MergeStmt") == 0)
			walk_merge(cx, &sc, n);
		else
			set_list(cx, &sc, json_object_get(n, "targetList")); /* UPDATE SET */
		walk_expr(cx, &sc, json_object_get(n, "whereClause"), &PRED);
	}
	targets(cx, &sc, json_object_get(n, "returningList"), out);
}

static bool is_dml(const char *kind)
{
	return strcmp(kind, "InsertStmt") == 0 || strcmp(kind, "UpdateStmt") == 0 ||
	       strcmp(kind, "DeleteStmt") == 0 || strcmp(kind, "MergeStmt") == 0;
}

static void walk_fallback(struct cx *cx, json_t *v);

/* One query-returning statement node (kind names it) into its result columns. */
static void kind_outs(struct cx *cx, struct scope *parent, const char *kind, json_t *n,
                      struct outs *out)
{
	if (strcmp(kind, "SelectStmt") == 0)
		walk_select(cx, parent, n, out);
	else if (is_dml(kind))
		walk_dml(cx, parent, kind, n, out);
	else
		walk_fallback(cx, n);
}

/* A statement whose result columns are stored or handed to code: all writes. */
static void written(struct cx *cx, const char *kind, json_t *n)
{
	struct outs o = {0};

	kind_outs(cx, NULL, kind, n, &o);
	emit_outs(cx, &o, CR_WRITE);
}

/* A wrapped statement ({"SelectStmt": {...}}: a CTE body, a COPY query) into its columns. */
static void stmt_outs(struct cx *cx, struct scope *parent, json_t *wrapped, struct outs *out)
{
	const char *kind;
	json_t *n;

	json_object_foreach(wrapped, kind, n) kind_outs(cx, parent, kind, n, out);
}

static void written_wrapped(struct cx *cx, json_t *wrapped)
{
	const char *kind;
	json_t *n;

	json_object_foreach(wrapped, kind, n) written(cx, kind, n);
}

static void fallback_object(struct cx *cx, json_t *v)
{
	const char *key;
	json_t *child;

	json_object_foreach(v, key, child)
	{
		if (strcmp(key, "SelectStmt") == 0 || is_dml(key)) {
			bool was = cx->nested;

			cx->nested = true;
			written(cx, key, child);
			cx->nested = was;
		} else if (strcmp(key, "ColumnRef") == 0) {
			on_colref(cx, NULL, child, &PRED);
		} else {
			walk_fallback(cx, child);
		}
	}
}

/*
 * Statements not understood in detail (DDL, CALL, rules, BEGIN ATOMIC
 * bodies): queries inside them feed code or storage, so they are writes;
 * loose column references (CHECK, index expressions, policies) only test.
 */
static void walk_fallback(struct cx *cx, json_t *v)
{
	size_t i;
	json_t *child;

	if (!v || !deeper(cx))
		return;
	if (json_is_array(v))
		json_array_foreach(v, i, child) walk_fallback(cx, child);
	else if (json_is_object(v))
		fallback_object(cx, v);
	cx->depth--;
}

/* ---- top level ------------------------------------------------------------------ */

static void walk_top(struct cx *cx, json_t *wrapped)
{
	const char *kind;
	json_t *n;

	json_object_foreach(wrapped, kind, n)
	{
		struct outs o = {0};

		if (strcmp(kind, "SelectStmt") == 0) {
			walk_select(cx, NULL, n, &o);
			/* SELECT INTO stores the result */
			emit_outs(cx, &o, json_object_get(n, "intoClause") ? CR_WRITE : CR_OUTPUT);
		} else if (is_dml(kind)) {
			walk_dml(cx, NULL, kind, n, &o);
			emit_outs(cx, &o, CR_RETURNING);
		} else if (strcmp(kind, "CopyStmt") == 0 ||
		           strcmp(kind, "CreateTableAsStmt") == 0 ||
		           strcmp(kind, "ViewStmt") == 0) {
			written_wrapped(cx, json_object_get(n, "query"));
		} else if (strcmp(kind, "ExplainStmt") == 0 || strcmp(kind, "PrepareStmt") == 0 ||
		           strcmp(kind, "DeclareCursorStmt") == 0) {
			walk_top(cx, json_object_get(n, "query")); /* same result columns */
		} else if (strcmp(kind, "DoStmt") != 0) {
			/* DO bodies come back as nested texts from the classifier walk */
			walk_fallback(cx, n);
		}
	}
}

void inspect_cols_stmt(struct inspect_acc *acc, struct json_t *stmt, bool nested)
{
	struct cx cx = {.acc = acc, .nested = nested};

	if (json_is_object(stmt))
		walk_top(&cx, stmt);
	for (int i = 0; i < cx.nallocs; i++)
		free(cx.allocs[i]);
	free(cx.allocs);
}

void inspect_cols_positions_unknown(struct inspect_acc *acc)
{
	for (int i = 0; i < acc->colrefs.n; i++) {
		if (acc->colrefs.v[i].output_pos > 0)
			acc->colrefs.v[i].output_pos = -1;
	}
}

void colvec_finish(struct colvec *cv, struct inspect_colref **out, int *n, bool *truncated)
{
	*out = cv->n ? cv->v : NULL;
	*n = cv->n;
	*truncated = cv->truncated;
	if (!cv->n)
		free(cv->v);
	cv->v = NULL;
	cv->n = cv->cap = 0;
	cv->truncated = false;
}

void colrefs_free(struct inspect_colref *v, int n)
{
	for (int i = 0; i < n; i++) {
		free(v[i].schema);
		free(v[i].table);
		free(v[i].column);
	}
	free(v);
}

void colvec_free(struct colvec *cv)
{
	colrefs_free(cv->v, cv->n);
	cv->v = NULL;
	cv->n = cv->cap = 0;
}
