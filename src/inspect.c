/*
 * inspect.c - statement classification entry point (include/inspect.h):
 * class names, building refcounted results from the tree walk
 * (src/inspect_walk.c), the libpg_query fingerprint, and a bounded LRU cache
 * keyed by the exact statement text.
 *
 * Only the event loop thread calls in here, so the cache has no locks.
 * libpg_query keeps a per-thread memory context; nothing here needs init.
 */
#include "inspect.h"
#include "inspect_walk.h"
#include "util.h"

#include <pg_query.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CACHE_ENTRIES 4096
/*
 * Texts longer than this are classified every time instead of cached, so the
 * cache's memory stays bounded by entries x this size.
 */
#define CACHE_MAX_TEXT    (64 * 1024)
#define CACHE_MAX_ENTRIES (1u << 22)

static const struct {
	const char *name;
	uint32_t bit;
} class_names[] = {
    {"select", SC_SELECT},
    {"insert", SC_INSERT},
    {"update", SC_UPDATE},
    {"delete", SC_DELETE},
    {"merge", SC_MERGE},
    {"truncate", SC_TRUNCATE},
    {"ddl", SC_DDL},
    {"drop", SC_DROP},
    {"alter", SC_ALTER},
    {"create_function", SC_CREATE_FUNCTION},
    {"do", SC_DO},
    {"call", SC_CALL},
    {"copy", SC_COPY},
    {"copy_program", SC_COPY_PROGRAM},
    {"grant", SC_GRANT},
    {"set_sensitive", SC_SET_SENSITIVE},
    {"set", SC_SET},
    {"transaction", SC_TRANSACTION},
    {"prepare", SC_PREPARE},
    {"execute", SC_EXECUTE},
    {"explain", SC_EXPLAIN},
    {"dynamic_sql", SC_DYNAMIC_SQL},
    {"other", SC_OTHER},
    {"revoke", SC_GRANT}, /* alias; inspect_class_name() finds "grant" first */
};

#define N_CLASS_NAMES (sizeof(class_names) / sizeof(class_names[0]))

uint32_t inspect_class_from_name(const char *name)
{
	for (size_t i = 0; name && i < N_CLASS_NAMES; i++) {
		if (strcmp(name, class_names[i].name) == 0)
			return class_names[i].bit;
	}
	return 0;
}

const char *inspect_class_name(uint32_t single_bit)
{
	for (size_t i = 0; i < N_CLASS_NAMES; i++) {
		if (class_names[i].bit == single_bit)
			return class_names[i].name;
	}
	return NULL;
}

/* ---- results ------------------------------------------------------------------ */

static void free_strs(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void result_free(struct inspect_result *r)
{
	free_strs(r->tables, r->n_tables);
	free_strs(r->functions, r->n_functions);
	free_strs(r->prepared_names, r->n_prepared_names);
	free_strs(r->executed_names, r->n_executed_names);
	colrefs_free(r->colrefs, r->n_colrefs);
	free(r);
}

void inspect_release(struct inspect_result *r)
{
	if (r && --r->refs == 0)
		result_free(r);
}

static void acc_free(struct inspect_acc *acc)
{
	strvec_free(&acc->tables);
	strvec_free(&acc->functions);
	strvec_free(&acc->prepared);
	strvec_free(&acc->executed);
}

static struct inspect_result *result_from_acc(struct inspect_acc *acc)
{
	struct inspect_result *r = calloc(1, sizeof(*r));

	if (!r || acc->oom) {
		free(r);
		acc_free(acc);
		colvec_free(&acc->colrefs);
		return NULL;
	}
	r->classes = acc->classes;
	r->parse_error = acc->parse_error;
	r->without_where = acc->without_where;
	r->n_statements = acc->n_statements;
	r->refs = 1;
	strvec_finish(&acc->tables, &r->tables, &r->n_tables);
	strvec_finish(&acc->functions, &r->functions, &r->n_functions);
	strvec_finish(&acc->prepared, &r->prepared_names, &r->n_prepared_names);
	strvec_finish(&acc->executed, &r->executed_names, &r->n_executed_names);
	colvec_finish(&acc->colrefs, &r->colrefs, &r->n_colrefs, &r->colrefs_truncated);
	return r;
}

static uint64_t fingerprint(const char *sql)
{
	PgQueryFingerprintResult fr = pg_query_fingerprint(sql);
	uint64_t fp = fr.error ? 0 : fr.fingerprint;

	pg_query_free_fingerprint_result(fr);
	return fp;
}

/*
 * The server reads a Query string up to its NUL, and rejects a message with
 * bytes after it; so trailing NULs are dropped and an inner NUL makes the text
 * unparsable rather than letting the part after it go unseen.
 */
static struct inspect_result *classify_uncached(const char *sql, size_t len)
{
	struct inspect_acc acc = {0};
	struct inspect_result *r;
	char *text;

	while (len > 0 && sql[len - 1] == '\0')
		len--;
	text = malloc(len + 1);
	if (!text)
		return NULL;
	memcpy(text, sql, len);
	text[len] = '\0';
	if (memchr(text, '\0', len))
		acc.parse_error = true;
	else
		inspect_walk_text(&acc, text, 0);
	r = result_from_acc(&acc);
	if (r && !r->parse_error)
		r->fingerprint = fingerprint(text);
	free(text);
	return r;
}

/* ---- literal-free cache keys ---------------------------------------------------- */

/*
 * Statements that differ only in their literals classify the same, so the
 * cache is keyed by the text with every literal replaced by a marker: that
 * keeps `WHERE aid = 42` and `WHERE aid = 43` off the parser. The lexer below
 * is deliberately narrower than PostgreSQL's: anything it is not sure about
 * (dollar quotes, escape strings, backslashes, a number glued to a word)
 * makes it give up, and the exact text is used as the key instead. Two texts
 * may share a key only if they differ in literal contents and comments, never
 * in a token the grammar could read differently.
 */
#define KEY_STRING   '\x01' /* '...' */
#define KEY_INT      '\x02' /* at most 9 digits: fits every integer-only grammar slot */
#define KEY_NUMERIC  '\x03' /* longer integers, decimals, exponents */
#define KEY_MAX_INT_DIGITS 9
#define KEY_STACK_BYTES    1024

static bool ident_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || c >= 0x80;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Length of the comment at s[i] ("--" to end of line, nested C comments); 0 if unterminated. */
static size_t comment_len(const char *s, size_t len, size_t i)
{
	size_t j = i + 2;
	int depth = 1;

	if (s[i] == '-') {
		while (j < len && s[j] != '\n' && s[j] != '\r')
			j++;
		return j - i;
	}
	while (j + 1 < len) {
		if (s[j] == '/' && s[j + 1] == '*') {
			depth++;
			j += 2;
		} else if (s[j] == '*' && s[j + 1] == '/') {
			j += 2;
			if (--depth == 0)
				return j - i;
		} else {
			j++;
		}
	}
	return 0;
}

/* End (exclusive) of the quoted token at s[i] (q = ' or "); 0 if unterminated or a backslash is inside a string. */
static size_t quoted_end(const char *s, size_t len, size_t i, char q)
{
	for (size_t j = i + 1; j < len; j++) {
		if (q == '\'' && s[j] == '\\')
			return 0; /* meaning depends on standard_conforming_strings */
		if (s[j] != q)
			continue;
		if (j + 1 < len && s[j + 1] == q) {
			j++;
			continue;
		}
		return j + 1;
	}
	return 0;
}

/* End of the number at s[i], or 0 when it runs into something the key must not hide. */
static size_t number_end(const char *s, size_t len, size_t i, bool *integer)
{
	size_t j = i;

	while (j < len && is_digit(s[j]))
		j++;
	*integer = j - i <= KEY_MAX_INT_DIGITS;
	if (j < len && s[j] == '.') {
		*integer = false;
		for (j++; j < len && is_digit(s[j]);)
			j++;
	}
	if (j + 1 < len && (s[j] == 'e' || s[j] == 'E')) {
		size_t k = j + 1;

		if (s[k] == '+' || s[k] == '-')
			k++;
		if (k < len && is_digit(s[k])) {
			*integer = false;
			for (j = k; j < len && is_digit(s[j]);)
				j++;
		}
	}
	if (j < len && (ident_char(s[j]) || s[j] == '.'))
		return 0;
	return j;
}

/*
 * Bytes the loop below may treat specially; any other byte is copied to the
 * key as it is, so runs of them are copied at once (most of a statement's
 * text: keywords, names, spaces, operators). This is every statement's cost
 * when rules or the recorder classify by key.
 */
static const bool key_special[256] = {
    ['-'] = true, ['/'] = true, ['"'] = true, ['\''] = true, ['$'] = true,
    ['0'] = true, ['1'] = true, ['2'] = true, ['3'] = true, ['4'] = true,
    ['5'] = true, ['6'] = true, ['7'] = true, ['8'] = true, ['9'] = true,
};

bool inspect_literal_key(const char *s, size_t len, char *out, size_t *out_len)
{
	unsigned char prev = ' ';
	size_t i = 0, o = 0, end;
	bool integer;

	/* A marker byte anywhere (even inside quotes) could make two keys meet. */
	for (size_t k = 0; k < len; k++) {
		if ((unsigned char)s[k] <= KEY_NUMERIC)
			return false;
	}
	while (i < len) {
		unsigned char c = s[i];

		if (!key_special[c]) {
			size_t j = i + 1;

			while (j < len && !key_special[(unsigned char)s[j]])
				j++;
			memcpy(out + o, s + i, j - i);
			o += j - i;
			prev = (unsigned char)s[j - 1];
			i = j;
			continue;
		}
		if (i + 1 < len && ((c == '-' && s[i + 1] == '-') || (c == '/' && s[i + 1] == '*'))) {
			/* A comment is whitespace to the grammar (sqlcommenter tags vary per call). */
			if ((end = comment_len(s, len, i)) == 0)
				return false;
			end += i;
			c = ' ';
		} else if (c == '"') {
			if ((end = quoted_end(s, len, i, '"')) == 0)
				return false;
			memcpy(out + o, s + i, end - i);
			o += end - i;
			i = end;
			prev = '"';
			continue;
		} else if (c == '\'') {
			/* E'..', B'..', X'..', N'..', U&'..' carry their own escape rules: give up. */
			if (ident_char(prev) || prev == '&' || (end = quoted_end(s, len, i, '\'')) == 0)
				return false;
			out[o++] = KEY_STRING;
			prev = c;
			i = end;
			continue;
		} else if (c == '$' && !ident_char(prev) && !(i + 1 < len && is_digit(s[i + 1]))) {
			return false; /* a dollar-quoted string */
		} else if (is_digit(c) && !ident_char(prev) && prev != '.') {
			if ((end = number_end(s, len, i, &integer)) == 0)
				return false;
			out[o++] = integer ? KEY_INT : KEY_NUMERIC;
			prev = c;
			i = end;
			continue;
		} else {
			end = i + 1;
		}
		out[o++] = (char)c;
		prev = c;
		i = end;
	}
	*out_len = o;
	return true;
}

/*
 * Only results that did not read a literal may be shared by every text with
 * the same key: DO and function bodies are string literals, and
 * set_config('search_path', ...) is classified by its first argument.
 */
static bool literal_sensitive(const struct inspect_result *r)
{
	if (r->classes & (SC_DO | SC_CREATE_FUNCTION))
		return true;
	for (int i = 0; i < r->n_functions; i++) {
		const char *f = r->functions[i];

		if (strcmp(f, "set_config") == 0 || strcmp(f, "pg_catalog.set_config") == 0)
			return true;
	}
	return false;
}

/* ---- cache ------------------------------------------------------------------ */

struct centry {
	struct centry *hnext;               /* hash chain */
	struct centry *lru_prev, *lru_next; /* most recently used at head */
	uint64_t hash;
	size_t len;
	bool literal_key; /* text is an inspect_literal_key(), not a client's text */
	struct inspect_result *res; /* the cache holds one reference */
	char text[];
};

static struct {
	struct centry **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
	size_t limit;
	bool limit_set;
	struct centry *lru_head, *lru_tail;
	uint64_t key[2]; /* hash key: texts come from clients, so chains must not be predictable */
	bool keyed;
	uint64_t hits, misses;
} cache;

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = ROTL(v[1], 13);
	v[1] ^= v[0];
	v[0] = ROTL(v[0], 32);
	v[2] += v[3];
	v[3] = ROTL(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = ROTL(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = ROTL(v[1], 17);
	v[1] ^= v[2];
	v[2] = ROTL(v[2], 32);
}

static void sip_absorb(uint64_t v[4], uint64_t m)
{
	v[3] ^= m;
	sip_round(v);
	v[0] ^= m;
}

/* SipHash-1-3 (keyed, flooding-resistant) over the text. */
static uint64_t text_hash(const char *s, size_t len)
{
	uint64_t v[4] = {cache.key[0] ^ 0x736f6d6570736575ULL, cache.key[1] ^ 0x646f72616e646f6dULL,
	                 cache.key[0] ^ 0x6c7967656e657261ULL,
	                 cache.key[1] ^ 0x7465646279746573ULL};
	const unsigned char *p = (const unsigned char *)s;
	uint64_t m;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&m, p + i, 8);
		sip_absorb(v, m);
	}
	m = (uint64_t)len << 56;
	for (size_t k = 0; i + k < len; k++)
		m |= (uint64_t)p[i + k] << (8 * k);
	sip_absorb(v, m);
	v[2] ^= 0xff;
	sip_round(v);
	sip_round(v);
	sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static void lru_unlink(struct centry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		cache.lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		cache.lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct centry *e)
{
	e->lru_prev = NULL;
	e->lru_next = cache.lru_head;
	if (cache.lru_head)
		cache.lru_head->lru_prev = e;
	cache.lru_head = e;
	if (!cache.lru_tail)
		cache.lru_tail = e;
}

static struct centry **bucket_of(uint64_t hash)
{
	return &cache.buckets[hash & (cache.nbuckets - 1)];
}

static void entry_remove(struct centry *e)
{
	struct centry **pp = bucket_of(e->hash);

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(e);
	cache.count--;
	inspect_release(e->res); /* freed now unless a caller still holds it */
	free(e);
}

/*
 * The last text classified and its result (one reference held). Rules,
 * masking and the recorder each classify the same statement in turn; the
 * literal-free key costs more than comparing the text again, so the second
 * and third ask share the first one's answer. Same meaning as a cache entry
 * under the exact text, so it goes whenever the cache does.
 */
static struct {
	char *text;
	size_t len, cap;
	struct inspect_result *res;
} last;

static void last_clear(void)
{
	inspect_release(last.res);
	last.res = NULL;
	last.len = 0;
}

static struct inspect_result *last_find(const char *sql, size_t len)
{
	if (!last.res || len == 0 || len != last.len || memcmp(sql, last.text, len) != 0)
		return NULL;
	cache.hits++;
	last.res->refs++;
	return last.res;
}

static void last_set(const char *sql, size_t len, struct inspect_result *r)
{
	if (len == 0)
		return;
	if (len > last.cap) {
		char *t = realloc(last.text, len);
		if (!t) {
			last_clear(); /* no memo is only slower */
			return;
		}
		last.text = t;
		last.cap = len;
	}
	r->refs++;
	inspect_release(last.res);
	memcpy(last.text, sql, len);
	last.len = len;
	last.res = r;
}

static void cache_clear(void)
{
	last_clear();
	while (cache.lru_tail)
		entry_remove(cache.lru_tail);
	free(cache.buckets);
	cache.buckets = NULL;
	cache.nbuckets = 0;
}

static size_t cache_limit(void)
{
	return cache.limit_set ? cache.limit : DEFAULT_CACHE_ENTRIES;
}

/* Lazily allocate buckets (2 per entry, power of two) and the hash key. */
static bool cache_ready(void)
{
	size_t n = 16;

	if (cache.buckets)
		return true;
	if (!cache.keyed && !random_bytes(cache.key, sizeof(cache.key)))
		return false;
	cache.keyed = true;
	while (n < 2 * cache_limit())
		n *= 2;
	cache.buckets = calloc(n, sizeof(*cache.buckets));
	cache.nbuckets = cache.buckets ? n : 0;
	return cache.buckets != NULL;
}

static struct centry *cache_find(const char *sql, size_t len, uint64_t hash, bool literal_key)
{
	for (struct centry *e = *bucket_of(hash); e; e = e->hnext) {
		if (e->hash == hash && e->len == len && e->literal_key == literal_key &&
		    memcmp(e->text, sql, len) == 0)
			return e;
	}
	return NULL;
}

static void cache_insert(const char *sql, size_t len, uint64_t hash, bool literal_key,
                         struct inspect_result *r)
{
	struct centry *e = malloc(sizeof(*e) + len);
	struct centry **b;

	if (!e)
		return; /* not cached; the caller still gets its result */
	while (cache.count >= cache_limit() && cache.lru_tail)
		entry_remove(cache.lru_tail);
	memcpy(e->text, sql, len);
	e->len = len;
	e->hash = hash;
	e->literal_key = literal_key;
	e->res = r;
	r->refs++;
	b = bucket_of(hash);
	e->hnext = *b;
	*b = e;
	lru_push_front(e);
	cache.count++;
}

static struct inspect_result *cache_hit(struct centry *e)
{
	cache.hits++;
	lru_unlink(e);
	lru_push_front(e);
	e->res->refs++;
	return e->res;
}

/*
 * Look up the literal-free key first, then the exact text (where results that
 * depend on a literal are kept); classify on a miss and cache under the key
 * the result allows.
 */
struct inspect_result *inspect_classify(const char *sql, size_t len)
{
	char small[KEY_STACK_BYTES], *key;
	struct inspect_result *r;
	struct centry *e;
	uint64_t khash = 0, hash;
	size_t klen = 0;
	bool keyed;

	if (cache_limit() == 0 || len > CACHE_MAX_TEXT || !cache_ready()) {
		cache.misses++;
		return classify_uncached(sql, len);
	}
	if ((r = last_find(sql, len)))
		return r;
	/* A key is never longer than its text; most texts fit on the stack. */
	key = len <= sizeof(small) ? small : malloc(len);
	keyed = key && inspect_literal_key(sql, len, key, &klen);
	e = NULL;
	if (keyed) {
		khash = text_hash(key, klen);
		e = cache_find(key, klen, khash, true);
	}
	if (!e) {
		hash = text_hash(sql, len);
		e = cache_find(sql, len, hash, false);
	}
	if (e) {
		r = cache_hit(e);
	} else {
		cache.misses++;
		r = classify_uncached(sql, len);
		if (r && keyed && !literal_sensitive(r))
			cache_insert(key, klen, khash, true, r);
		else if (r)
			cache_insert(sql, len, hash, false, r);
	}
	if (key != small)
		free(key);
	if (r)
		last_set(sql, len, r);
	return r;
}

void inspect_set_cache_size(size_t entries)
{
	cache_clear();
	cache.limit = entries < CACHE_MAX_ENTRIES ? entries : CACHE_MAX_ENTRIES;
	cache.limit_set = true;
}

void inspect_cache_stats(uint64_t *hits, uint64_t *misses)
{
	if (hits)
		*hits = cache.hits;
	if (misses)
		*misses = cache.misses;
}
