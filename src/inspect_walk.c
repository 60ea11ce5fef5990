/*
 * inspect_walk.c - walks libpg_query's JSON parse trees (jansson) and
 * collects statement classes, tables, functions, WHERE-less writes and
 * PREPARE/EXECUTE names into a struct inspect_acc.
 *
 * The walk is generic: every object of the tree is visited, so a RangeVar or a
 * FuncCall is found wherever the grammar put it (CTEs, subqueries, JOINs,
 * EXPLAIN, PREPARE, MERGE, rule actions ...). Node-specific work is limited to
 * what a generic walk cannot know: which class a statement node is, WHERE
 * clauses, COPY PROGRAM, sensitive SETs, DROP object lists, and code hidden in
 * strings (DO blocks, function bodies), which is parsed again: SQL bodies with
 * pg_query_parse, PL/pgSQL with pg_query_parse_plpgsql, whose embedded SQL
 * expressions are classified recursively. Anything that cannot be parsed sets
 * parse_error so the rules fail closed.
 */
#include "inspect_walk.h"

#include <ctype.h>
#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Nesting of texts inside texts (DO -> statement in its body -> DO ...) and of
 * the JSON tree. Both bound the recursion (and so the event loop's stack);
 * deeper input is treated as unparsable.
 */
#define MAX_TEXT_DEPTH 4
#define MAX_TREE_DEPTH 1000

struct walk {
	struct inspect_acc *acc;
	const char *text; /* the text being walked (for CREATE FUNCTION substrings) */
	size_t stmt_off;  /* current top-level statement within text */
	size_t stmt_len;
	int text_depth;
	bool expr; /* walking a made-up "SELECT <expression>" */
};

static void walk_value(struct walk *w, json_t *v, int depth, bool stmt_pos);

/* ---- string vectors ------------------------------------------------------ */

static void strvec_add_owned(struct inspect_acc *acc, struct strvec *sv, char *s)
{
	if (!s) {
		acc->oom = true;
		return;
	}
	if (sv->n == sv->cap) {
		int cap = sv->cap ? sv->cap * 2 : 8;
		char **nv = realloc(sv->v, (size_t)cap * sizeof(*nv));

		if (!nv) {
			free(s);
			acc->oom = true;
			return;
		}
		sv->v = nv;
		sv->cap = cap;
	}
	sv->v[sv->n++] = s;
}

static void strvec_add(struct inspect_acc *acc, struct strvec *sv, const char *s)
{
	strvec_add_owned(acc, sv, strdup(s));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void strvec_finish(struct strvec *sv, char ***out, int *n)
{
	int k = 0;

	if (sv->n > 1)
		qsort(sv->v, (size_t)sv->n, sizeof(*sv->v), cmp_str);
	for (int i = 0; i < sv->n; i++) {
		if (k > 0 && strcmp(sv->v[k - 1], sv->v[i]) == 0)
			free(sv->v[i]);
		else
			sv->v[k++] = sv->v[i];
	}
	*out = k ? sv->v : NULL;
	*n = k;
	if (!k)
		free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

void strvec_free(struct strvec *sv)
{
	for (int i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

/* "a" + "." + "b" (b may be NULL: "a.*" marks a whole schema). */
static char *join2(const char *a, const char *b)
{
	size_t la = strlen(a), lb = b ? strlen(b) : 1;
	char *s = malloc(la + lb + 2);

	if (!s)
		return NULL;
	memcpy(s, a, la);
	s[la] = '.';
	memcpy(s + la + 1, b ? b : "*", lb + 1);
	return s;
}

/* ---- small JSON helpers ---------------------------------------------------- */

static const char *jstr(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* {"String":{"sval":"x"}} -> "x" */
static const char *string_node(json_t *node)
{
	return jstr(json_object_get(node, "String"), "sval");
}

/* A DefElem's string argument by defname, from a list of {"DefElem":...}. */
static json_t *defelem_arg(json_t *list, const char *name)
{
	size_t i;
	json_t *it;

	json_array_foreach(list, i, it)
	{
		json_t *de = json_object_get(it, "DefElem");
		const char *dn = jstr(de, "defname");

		if (dn && strcmp(dn, name) == 0)
			return json_object_get(de, "arg");
	}
	return NULL;
}

/* ---- embedded texts --------------------------------------------------------- */

/* How walk_text treats its text. */
enum {
	WT_MUST_PARSE = 1, /* a syntax error sets parse_error */
	WT_EXPR = 2,       /* "SELECT <expression>" made up here: not a SELECT statement */
};

static bool walk_text(struct inspect_acc *acc, const char *sql, int depth, int flags);

/* Classify text found inside the tree (function body, PL/pgSQL statement). */
static void walk_nested_text(struct walk *w, const char *sql, int flags)
{
	if (w->text_depth + 1 > MAX_TEXT_DEPTH) {
		w->acc->parse_error = true;
		return;
	}
	walk_text(w->acc, sql, w->text_depth + 1, flags | WT_MUST_PARSE);
}

static char *concat(const char *a, const char *b, size_t blen)
{
	size_t la = strlen(a);
	char *s = malloc(la + blen + 1);

	if (!s)
		return NULL;
	memcpy(s, a, la);
	memcpy(s + la, b, blen);
	s[la + blen] = '\0';
	return s;
}

/*
 * Where a PL/pgSQL assignment's target ends: PostgreSQL 15 keeps "x := expr"
 * (or "x.f[i] = expr") as the expression text and parses it with a grammar mode
 * libpg_query does not expose, so the target is skipped by hand and the rest is
 * parsed as SELECT <rest>.
 */
static const char *assignment_rhs(const char *q)
{
	bool quoted = false;
	int brackets = 0;

	for (const char *p = q; *p; p++) {
		if (*p == '"')
			quoted = !quoted;
		else if (quoted)
			continue;
		else if (*p == '[')
			brackets++;
		else if (*p == ']')
			brackets--;
		else if (brackets == 0 && p[0] == ':' && p[1] == '=')
			return p + 2;
		else if (brackets == 0 && p[0] == '=')
			return p + 1;
	}
	return NULL;
}

/*
 * A PLpgSQL_expr's text is a statement (execsql, PERFORM, FOR ... IN query),
 * a bare expression (IF cond, RAISE args, EXECUTE's string) or an assignment;
 * try them in that order and classify the first form the grammar accepts.
 */
static void walk_pl_expr(struct walk *w, const char *q, bool assign)
{
	const char *rhs = assign ? assignment_rhs(q) : NULL;
	char *sel;

	if (!assign && w->text_depth + 1 <= MAX_TEXT_DEPTH &&
	    walk_text(w->acc, q, w->text_depth + 1, 0))
		return;
	sel = rhs ? concat("SELECT ", rhs, strlen(rhs)) : concat("SELECT ", q, strlen(q));
	if (!sel) {
		w->acc->oom = true;
		return;
	}
	walk_nested_text(w, sel, WT_EXPR); /* parse_error when this form fails too */
	free(sel);
}

static void walk_pl(struct walk *w, json_t *v, int depth, bool assign);

static void walk_pl_object(struct walk *w, json_t *v, int depth, bool assign)
{
	const char *key;
	json_t *child;

	json_object_foreach(v, key, child)
	{
		/* Dynamic SQL is opaque: mark it, but still look at the expression
		 * building it (format(), quote_ident(), functions it calls). */
		if (strcmp(key, "PLpgSQL_stmt_dynexecute") == 0 ||
		    strcmp(key, "PLpgSQL_stmt_dynfors") == 0 || strcmp(key, "dynquery") == 0)
			w->acc->classes |= SC_DYNAMIC_SQL;
		if (strcmp(key, "PLpgSQL_expr") == 0) {
			const char *q = jstr(child, "query");

			if (q)
				walk_pl_expr(w, q, assign);
			continue;
		}
		walk_pl(w, child, depth + 1, assign || strcmp(key, "PLpgSQL_stmt_assign") == 0);
	}
}

static void walk_pl(struct walk *w, json_t *v, int depth, bool assign)
{
	size_t i;
	json_t *it;

	if (depth > MAX_TREE_DEPTH) {
		w->acc->parse_error = true;
		return;
	}
	if (json_is_array(v))
		json_array_foreach(v, i, it) walk_pl(w, it, depth + 1, assign);
	else if (json_is_object(v))
		walk_pl_object(w, v, depth, assign);
}

/* Parse CREATE FUNCTION text with the PL/pgSQL parser and walk what it found. */
static void walk_plpgsql_source(struct walk *w, const char *create_fn)
{
	PgQueryPlpgsqlParseResult pr;
	json_t *root;

	if (w->text_depth + 1 > MAX_TEXT_DEPTH) {
		w->acc->parse_error = true;
		return;
	}
	pr = pg_query_parse_plpgsql(create_fn);
	root = pr.error || !pr.plpgsql_funcs ? NULL : json_loads(pr.plpgsql_funcs, 0, NULL);
	if (!root) {
		w->acc->parse_error = true;
	} else {
		struct walk inner = *w;

		inner.text_depth++;
		inner.expr = false;
		walk_pl(&inner, root, 0, false);
		json_decref(root);
	}
	pg_query_free_plpgsql_parse_result(pr);
}

/*
 * pg_query_parse_plpgsql only accepts CREATE FUNCTION text, so a DO body is
 * wrapped in one, with a dollar-quote tag that does not occur in the body.
 */
static void walk_do_body(struct walk *w, const char *body)
{
	static const char head[] = "CREATE FUNCTION pgvigil_do() RETURNS void LANGUAGE plpgsql AS ";
	char tag[32];
	char *src;
	size_t len;

	for (unsigned n = 0;; n++) {
		snprintf(tag, sizeof(tag), "$pgv%u$", n);
		if (!strstr(body, tag))
			break;
	}
	len = sizeof(head) + 2 * strlen(tag) + strlen(body) + 1;
	src = malloc(len);
	if (!src) {
		w->acc->oom = true;
		return;
	}
	snprintf(src, len, "%s%s%s%s", head, tag, body, tag);
	walk_plpgsql_source(w, src);
	free(src);
}

static void on_do(struct walk *w, json_t *n)
{
	json_t *args = json_object_get(n, "args");
	const char *lang = string_node(defelem_arg(args, "language"));
	const char *body = string_node(defelem_arg(args, "as"));

	w->acc->classes |= SC_DO;
	if (!body)
		return;
	if (!lang || strcasecmp(lang, "plpgsql") == 0)
		walk_do_body(w, body);
	else
		w->acc->classes |= SC_DYNAMIC_SQL; /* other languages: opaque code */
}

/* The current top-level statement as its own NUL-terminated string. */
static char *current_stmt_text(struct walk *w)
{
	size_t total = strlen(w->text);
	size_t off = w->stmt_off <= total ? w->stmt_off : total;
	size_t len = w->stmt_len && off + w->stmt_len <= total ? w->stmt_len : total - off;

	return concat("", w->text + off, len);
}

static void on_create_function(struct walk *w, json_t *n)
{
	json_t *opts = json_object_get(n, "options");
	const char *lang = string_node(defelem_arg(opts, "language"));
	json_t *as = json_object_get(json_object_get(defelem_arg(opts, "as"), "List"), "items");
	const char *body = string_node(json_array_get(as, 0));

	w->acc->classes |= SC_CREATE_FUNCTION | SC_DDL;
	if (!body)
		return; /* no string body: BEGIN ATOMIC is walked as part of the tree */
	if (json_array_size(as) == 1 && (!lang || strcasecmp(lang, "sql") == 0)) {
		walk_nested_text(w, body, 0);
	} else if (json_array_size(as) == 1 && strcasecmp(lang, "plpgsql") == 0) {
		char *src = current_stmt_text(w);

		if (!src)
			w->acc->oom = true;
		else
			walk_plpgsql_source(w, src);
		free(src);
	} else {
		w->acc->classes |= SC_DYNAMIC_SQL; /* C, plpython, ...: opaque code */
	}
}

/* ---- statement nodes -------------------------------------------------------- */

static void add_table(struct walk *w, const char *schema, const char *rel)
{
	struct inspect_acc *acc = w->acc;

	if (schema)
		strvec_add_owned(acc, &acc->tables, join2(schema, rel));
	else
		strvec_add(acc, &acc->tables, rel);
}

static void on_rangevar(struct walk *w, json_t *rv)
{
	add_table(w, jstr(rv, "schemaname"), jstr(rv, "relname"));
}

static bool sensitive_setting(const char *name)
{
	return name && (strcasecmp(name, "search_path") == 0 || strcasecmp(name, "role") == 0 ||
	                strcasecmp(name, "session_authorization") == 0);
}

/*
 * set_config('search_path', ...) changes the same settings as SET; when the
 * name is not a literal it could be any of them.
 */
static void on_set_config(struct walk *w, json_t *fc)
{
	json_t *a0 = json_object_get(json_array_get(json_object_get(fc, "args"), 0), "A_Const");
	const char *name = jstr(json_object_get(a0, "sval"), "sval");

	w->acc->classes |= SC_SET;
	if (!name || sensitive_setting(name))
		w->acc->classes |= SC_SET_SENSITIVE;
}

/* FuncCall: names lower-cased, joined by '.'. */
static void on_funccall(struct walk *w, json_t *fc)
{
	json_t *names = json_object_get(fc, "funcname");
	size_t i, len = 0, pos = 0;
	json_t *it;
	char *s;

	json_array_foreach(names, i, it)
	{
		const char *p = string_node(it);

		len += (p ? strlen(p) : 0) + 1;
	}
	s = malloc(len + 1);
	if (!s) {
		w->acc->oom = true;
		return;
	}
	json_array_foreach(names, i, it)
	{
		const char *p = string_node(it);

		if (i)
			s[pos++] = '.';
		for (; p && *p; p++)
			s[pos++] = (char)tolower((unsigned char)*p);
	}
	s[pos] = '\0';
	if (strcmp(s, "set_config") == 0 || strcmp(s, "pg_catalog.set_config") == 0)
		on_set_config(w, fc);
	strvec_add_owned(w->acc, &w->acc->functions, s);
}

static void on_set(struct walk *w, json_t *n)
{
	const char *kind = jstr(n, "kind");

	w->acc->classes |= SC_SET;
	/* RESET ALL also resets role and search_path. */
	if (sensitive_setting(jstr(n, "name")) || (kind && strcmp(kind, "VAR_RESET_ALL") == 0))
		w->acc->classes |= SC_SET_SENSITIVE;
}

static void on_write(struct walk *w, json_t *n, uint32_t cls)
{
	w->acc->classes |= cls;
	if (!json_object_get(n, "whereClause"))
		w->acc->without_where = true;
}

static bool in_words(const char *word, const char *const *words)
{
	for (; *words; words++) {
		if (strcmp(word, *words) == 0)
			return true;
	}
	return false;
}

/* [catalog.][schema.]name as a name list: add "schema.name" or "name". */
static void add_name_list(struct walk *w, json_t *items, size_t skip_last)
{
	size_t k = json_array_size(items);
	const char *rel, *schema;

	if (k <= skip_last)
		return;
	k -= skip_last;
	rel = string_node(json_array_get(items, k - 1));
	schema = k > 1 ? string_node(json_array_get(items, k - 2)) : NULL;
	if (rel)
		add_table(w, schema, rel);
}

/*
 * DROP names relations as name lists; a trigger, rule or policy as the list of
 * its table plus its own name (DROP TRIGGER guard ON audit.log touches
 * audit.log); a schema is marked "schema.*".
 */
static void on_drop(struct walk *w, json_t *n)
{
	static const char *const rels[] = {"OBJECT_TABLE",
	                                   "OBJECT_VIEW",
	                                   "OBJECT_MATVIEW",
	                                   "OBJECT_FOREIGN_TABLE",
	                                   "OBJECT_SEQUENCE",
	                                   "OBJECT_INDEX",
	                                   NULL};
	static const char *const on_rel[] = {"OBJECT_TRIGGER", "OBJECT_RULE", "OBJECT_POLICY",
	                                     NULL};
	const char *type = jstr(n, "removeType");
	size_t i;
	json_t *it;

	w->acc->classes |= SC_DROP | SC_DDL;
	if (!type)
		return;
	json_array_foreach(json_object_get(n, "objects"), i, it)
	{
		json_t *items = json_object_get(json_object_get(it, "List"), "items");

		if (strcmp(type, "OBJECT_SCHEMA") == 0 && string_node(it))
			add_table(w, string_node(it), NULL);
		else if (in_words(type, rels))
			add_name_list(w, items, 0);
		else if (in_words(type, on_rel))
			add_name_list(w, items, 1);
	}
}

static void on_rename(struct walk *w, json_t *n)
{
	const char *type = jstr(n, "renameType");

	w->acc->classes |= SC_ALTER | SC_DDL;
	if (type && strcmp(type, "OBJECT_SCHEMA") == 0 && jstr(n, "subname"))
		add_table(w, jstr(n, "subname"), NULL);
}

static void on_grant(struct walk *w, json_t *n)
{
	const char *targ = jstr(n, "targtype");
	size_t i;
	json_t *it;

	w->acc->classes |= SC_GRANT;
	if (!targ || strcmp(targ, "ACL_TARGET_ALL_IN_SCHEMA") != 0)
		return;
	json_array_foreach(json_object_get(n, "objects"), i, it)
	{
		if (string_node(it))
			add_table(w, string_node(it), NULL);
	}
}

static void on_name(struct walk *w, json_t *n, struct strvec *sv, uint32_t cls)
{
	w->acc->classes |= cls;
	if (jstr(n, "name"))
		strvec_add(w->acc, sv, jstr(n, "name"));
}

/* Classes of statement nodes that need no extra work. */
static const struct {
	const char *name;
	uint32_t classes;
} plain_nodes[] = {
    {"InsertStmt", SC_INSERT},
    {"MergeStmt", SC_MERGE},
    {"TruncateStmt", SC_TRUNCATE},
    {"GrantRoleStmt", SC_GRANT},
    {"AlterDefaultPrivilegesStmt", SC_GRANT | SC_ALTER | SC_DDL},
    {"CallStmt", SC_CALL},
    {"TransactionStmt", SC_TRANSACTION},
    {"ExplainStmt", SC_EXPLAIN},
    {"IndexStmt", SC_DDL},
    {"ViewStmt", SC_DDL},
    {"DefineStmt", SC_DDL},
    {"CompositeTypeStmt", SC_DDL},
    {"RuleStmt", SC_DDL},
    {"CommentStmt", SC_DDL},
    {"SecLabelStmt", SC_DDL},
    {"ImportForeignSchemaStmt", SC_DDL},
    {"ReassignOwnedStmt", SC_ALTER | SC_DDL},
};

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

static bool has_suffix(const char *s, const char *suf)
{
	size_t ls = strlen(s), lf = strlen(suf);

	return ls >= lf && strcmp(s + ls - lf, suf) == 0;
}

static uint32_t plain_class(const char *name)
{
	for (size_t i = 0; i < sizeof(plain_nodes) / sizeof(plain_nodes[0]); i++) {
		if (strcmp(name, plain_nodes[i].name) == 0)
			return plain_nodes[i].classes;
	}
	if (!has_suffix(name, "Stmt"))
		return 0;
	if (has_prefix(name, "Drop"))
		return SC_DROP | SC_DDL;
	if (has_prefix(name, "Alter"))
		return SC_ALTER | SC_DDL;
	if (has_prefix(name, "Create"))
		return SC_DDL;
	return 0;
}

/* Node-specific work; returns false for nodes that need none. */
static bool on_special(struct walk *w, const char *name, json_t *n, bool stmt_pos)
{
	struct inspect_acc *acc = w->acc;

	if (strcmp(name, "SelectStmt") == 0) {
		acc->classes |= stmt_pos ? SC_SELECT : 0;
		acc->classes |= json_object_get(n, "intoClause") ? SC_DDL : 0; /* SELECT INTO */
	} else if (strcmp(name, "DeleteStmt") == 0) {
		on_write(w, n, SC_DELETE);
	} else if (strcmp(name, "UpdateStmt") == 0) {
		on_write(w, n, SC_UPDATE);
	} else if (strcmp(name, "CopyStmt") == 0) {
		acc->classes |=
		    SC_COPY |
		    (json_is_true(json_object_get(n, "is_program")) ? SC_COPY_PROGRAM : 0);
	} else if (strcmp(name, "VariableSetStmt") == 0) {
		on_set(w, n);
	} else if (strcmp(name, "PrepareStmt") == 0) {
		on_name(w, n, &acc->prepared, SC_PREPARE);
	} else if (strcmp(name, "ExecuteStmt") == 0) {
		on_name(w, n, &acc->executed, SC_EXECUTE);
	} else if (strcmp(name, "DropStmt") == 0) {
		on_drop(w, n);
	} else if (strcmp(name, "RenameStmt") == 0) {
		on_rename(w, n);
	} else if (strcmp(name, "GrantStmt") == 0) {
		on_grant(w, n);
	} else if (strcmp(name, "DoStmt") == 0) {
		on_do(w, n);
	} else if (strcmp(name, "CreateFunctionStmt") == 0) {
		on_create_function(w, n);
	} else {
		return false;
	}
	return true;
}

/*
 * Fields holding a whole statement. Only there does a SelectStmt make the
 * text a SELECT; sub-selects in expressions, INSERT ... SELECT/VALUES or
 * read-only CTEs do not. (Data-modifying statements count wherever they are.)
 */
static bool statement_field(const char *node, const char *field, bool inherited)
{
	if (strcmp(node, "List") == 0)
		return inherited;
	return strcmp(field, "query") == 0 || strcmp(field, "sql_body") == 0 ||
	       strcmp(field, "actions") == 0;
}

/*
 * RangeVar and FuncCall are recognised by their fields, not their wrapper,
 * because typed fields (DeleteStmt.relation, CallStmt.funccall) hold them bare.
 */
static void on_struct(struct walk *w, json_t *obj)
{
	if (json_is_string(json_object_get(obj, "relname")))
		on_rangevar(w, obj);
	if (json_is_array(json_object_get(obj, "funcname")) && json_object_get(obj, "funcformat"))
		on_funccall(w, obj);
}

static void walk_node(struct walk *w, const char *name, json_t *n, int depth, bool stmt_pos)
{
	const char *key;
	json_t *child;

	on_struct(w, n);
	if (!on_special(w, name, n, stmt_pos))
		w->acc->classes |= plain_class(name);
	json_object_foreach(n, key, child)
	{
		walk_value(w, child, depth + 1, statement_field(name, key, stmt_pos));
	}
}

static void walk_object(struct walk *w, json_t *v, int depth, bool stmt_pos)
{
	const char *key;
	json_t *child;

	on_struct(w, v);
	json_object_foreach(v, key, child)
	{
		/* Node wrappers are the only keys starting with an upper-case letter. */
		if (isupper((unsigned char)key[0]) && json_is_object(child))
			walk_node(w, key, child, depth + 1, stmt_pos);
		else
			walk_value(w, child, depth + 1, false);
	}
}

static void walk_value(struct walk *w, json_t *v, int depth, bool stmt_pos)
{
	size_t i;
	json_t *it;

	if (depth > MAX_TREE_DEPTH) {
		w->acc->parse_error = true;
		return;
	}
	if (json_is_array(v))
		json_array_foreach(v, i, it) walk_value(w, it, depth + 1, stmt_pos);
	else if (json_is_object(v))
		walk_object(w, v, depth, stmt_pos);
}

/* One top-level statement: {"stmt": {...}, "stmt_location": n, "stmt_len": n}. */
static void walk_raw_stmt(struct walk *w, json_t *raw)
{
	uint32_t before = w->acc->classes;
	json_t *stmt = json_object_get(raw, "stmt");

	w->stmt_off = (size_t)json_integer_value(json_object_get(raw, "stmt_location"));
	w->stmt_len = (size_t)json_integer_value(json_object_get(raw, "stmt_len"));
	w->acc->classes = 0;
	walk_value(w, stmt, 0, !w->expr);
	/* a separate pass: column references need scopes the generic walk lacks */
	inspect_cols_stmt(w->acc, stmt, w->text_depth > 0 || w->expr);
	if (w->acc->classes == 0 && !w->expr)
		w->acc->classes = SC_OTHER; /* VACUUM, LISTEN, LOCK, LOAD, ... */
	w->acc->classes |= before;
}

/* Parse and walk sql; false (parse_error with WT_MUST_PARSE) when it does not parse. */
static bool walk_text(struct inspect_acc *acc, const char *sql, int depth, int flags)
{
	PgQueryParseResult pr = pg_query_parse(sql);
	json_t *root = pr.error ? NULL : json_loads(pr.parse_tree, 0, NULL);
	struct walk w = {.acc = acc, .text = sql, .text_depth = depth, .expr = flags & WT_EXPR};
	json_t *stmts = json_object_get(root, "stmts");
	bool ok = root != NULL;
	size_t i;
	json_t *raw;

	if (!ok) {
		/* syntax error, or a tree too deep for jansson */
		acc->parse_error = acc->parse_error || (flags & WT_MUST_PARSE);
	} else {
		json_array_foreach(stmts, i, raw) walk_raw_stmt(&w, raw);
		if (depth == 0)
			acc->n_statements = (int)json_array_size(stmts);
		if (depth == 0 && json_array_size(stmts) > 1)
			inspect_cols_positions_unknown(acc);
		json_decref(root);
	}
	pg_query_free_parse_result(pr);
	return ok;
}

void inspect_walk_text(struct inspect_acc *acc, const char *sql, int depth)
{
	walk_text(acc, sql, depth, WT_MUST_PARSE);
}
