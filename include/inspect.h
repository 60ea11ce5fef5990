/*
 * inspect.h - statement classification with PostgreSQL's own grammar
 * (libpg_query), for the governance rules.
 *
 * Owns: turning SQL text into a classification (statement classes, tables,
 * functions, whether UPDATE/DELETE lack a WHERE, a fingerprint), including
 * what hides inside EXPLAIN, data-modifying CTEs, COPY, PREPARE, DO blocks and
 * function bodies; and a bounded cache so repeated texts are not re-parsed.
 * It makes no decisions (rules.c does) and does no I/O.
 */
#ifndef PV_INSPECT_H
#define PV_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Statement classes (a statement can have several: EXPLAIN ANALYZE DELETE = explain|delete). */
enum stmt_class {
	SC_SELECT = 1u << 0,
	SC_INSERT = 1u << 1,
	SC_UPDATE = 1u << 2,
	SC_DELETE = 1u << 3,
	SC_MERGE = 1u << 4,
	SC_TRUNCATE = 1u << 5,
	SC_DDL = 1u << 6,	/* CREATE / ALTER / DROP / RENAME / COMMENT ... */
	SC_DROP = 1u << 7,	/* also SC_DDL */
	SC_ALTER = 1u << 8,	/* also SC_DDL (incl. RENAME) */
	SC_CREATE_FUNCTION = 1u << 9, /* also SC_DDL */
	SC_DO = 1u << 10,
	SC_CALL = 1u << 11,
	SC_COPY = 1u << 12,
	SC_COPY_PROGRAM = 1u << 13, /* also SC_COPY */
	SC_GRANT = 1u << 14,	    /* GRANT / REVOKE */
	SC_SET_SENSITIVE = 1u << 15, /* SET/RESET search_path, role, session_authorization */
	SC_SET = 1u << 16,
	SC_TRANSACTION = 1u << 17, /* BEGIN / COMMIT / ROLLBACK / SAVEPOINT */
	SC_PREPARE = 1u << 18,
	SC_EXECUTE = 1u << 19,
	SC_EXPLAIN = 1u << 20,
	SC_DYNAMIC_SQL = 1u << 21, /* EXECUTE inside PL/pgSQL: opaque */
	SC_OTHER = 1u << 22,
};

/*
 * Where a column reference sits, for masking (issue 8 item 4). PostgreSQL
 * names a result column's source table and column in RowDescription only for
 * a plain column reference, so the rewriter can mask OUTPUT and RETURNING
 * references by catalog; everything else must be found here.
 */
enum colref_ctx {
	CR_OUTPUT = 1u << 0,	/* plain column or star in the top-level target list */
	CR_DERIVED = 1u << 1,	/* inside an expression, call, set operation, sub-select, VALUES */
	CR_PREDICATE = 1u << 2, /* WHERE, JOIN, GROUP/ORDER BY, HAVING, window, DISTINCT ON, LIMIT */
	CR_WHOLEROW = 1u << 3,	/* whole-row reference (t, t.* inside an expression) */
	CR_WRITE = 1u << 4,	/* flows into storage or code: INSERT SELECT, CTAS, views, COPY (q), DO */
	CR_RETURNING = 1u << 5, /* plain column in RETURNING */
};

/*
 * One column reference, aliases resolved through FROM, JOIN, subqueries and
 * CTEs. table NULL: an unqualified column that could come from several
 * relations (any table of the statement). column NULL: all columns of table
 * (whole row, or a column renamed by an alias list); "*" for a plain star
 * output. Names are as PostgreSQL folds them (lower case unless quoted).
 */
struct inspect_colref {
	char *schema; /* as written, or NULL */
	char *table;
	char *column;
	uint8_t ctx;	    /* OR of enum colref_ctx */
	int16_t output_pos; /* CR_DERIVED: 1-based top-level output column; 0 none; -1 unknown */
};

/* At most this many distinct references are kept; beyond, colrefs_truncated. */
#define INSPECT_MAX_COLREFS 256

/* One classified SQL text (all statements of a multi-statement string merged). */
struct inspect_result {
	uint32_t classes;	 /* OR of enum stmt_class */
	bool parse_error;	 /* the parser rejected the text: rules use `unparsable` */
	bool without_where;	 /* some UPDATE/DELETE has no WHERE clause */
	int n_statements;
	uint64_t fingerprint;	 /* libpg_query fingerprint of the whole text (0 if unparsable) */
	char **tables;		 /* "schema.table" as written, or "table" when unqualified */
	int n_tables;
	char **functions;	 /* function names called, lower case, schema-qualified if written */
	int n_functions;
	char **prepared_names;	 /* PREPARE name(s) defined by this text */
	int n_prepared_names;
	char **executed_names;	 /* EXECUTE name(s) used by this text */
	int n_executed_names;
	struct inspect_colref *colrefs; /* literal-independent, so cached with the rest */
	int n_colrefs;
	bool colrefs_truncated; /* more than INSPECT_MAX_COLREFS: treat as touching everything */
	int refs;		 /* cache reference count; use inspect_release() */
};

/* Map a rule's class word ("ddl", "delete", "create_function", ...) to bits; 0 if unknown. */
uint32_t inspect_class_from_name(const char *name);
const char *inspect_class_name(uint32_t single_bit);

/*
 * Classify len bytes of SQL (need not be NUL-terminated). The result comes from
 * a bounded cache when the same text was seen recently; release it with
 * inspect_release(). Returns NULL only on allocation failure.
 */
struct inspect_result *inspect_classify(const char *sql, size_t len);
void inspect_release(struct inspect_result *r);

/*
 * The cache key for a text: sql with each literal replaced by a marker byte
 * and each comment by a space, written to out (room for len bytes: a key is
 * never longer) with its length in *out_len. false when the text has
 * something the key could hide (dollar quotes, escape strings, backslashes,
 * marker bytes, ...): then only the exact text is a key. Exposed for tests.
 */
bool inspect_literal_key(const char *sql, size_t len, char *out, size_t *out_len);

/* Cache size (entries); 0 disables caching. Statistics for SHOW POLICY / bench. */
void inspect_set_cache_size(size_t entries);
void inspect_cache_stats(uint64_t *hits, uint64_t *misses);

#endif
