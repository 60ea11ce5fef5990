/*
 * record_desc.c - how statements and values are written into recorded events
 * (record_desc.h says what this owns). Split from record_events.c, which
 * decides when events are made; this file decides what a statement, a value
 * or a set of Bind parameters looks like in one.
 */
#include "record_desc.h"
#include "inspect.h"
#include "proto.h"
#include "sqlcomment.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static json_t *hex_json(const uint8_t *v, size_t len, size_t cap)
{
	size_t n = len * 2 + 2 > cap ? (cap > 2 ? (cap - 2) / 2 : 0) : len;
	char *buf = malloc(n * 2 + 3);
	json_t *j;

	if (!buf)
		return NULL;
	buf[0] = '\\';
	buf[1] = 'x';
	hex_encode(v, n, buf + 2);
	j = json_stringn(buf, n * 2 + 2);
	free(buf);
	return j;
}

/* How many of len bytes fit in cap without cutting a UTF-8 character in two. */
static size_t utf8_cut(const uint8_t *v, size_t len, size_t cap)
{
	size_t n = len > cap ? cap : len;

	while (n > 0 && n < len && (v[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* Text capped at cap bytes (cut on a character boundary); hex when not UTF-8. */
json_t *rec_text_json(const uint8_t *v, size_t len, size_t cap)
{
	size_t n = utf8_cut(v, len, cap);
	json_t *j;

	j = json_stringn((const char *)v, n);
	return j ? j : hex_json(v, len, cap);
}

/* text_json straight into an event member (no JSON object on the hot path). */
void rec_text_set(struct rec_event *ev, const char *key, const uint8_t *v, size_t len, size_t cap)
{
	size_t n = utf8_cut(v, len, cap);

	if (!rec_event_strn(ev, key, (const char *)v, n))
		rec_event_json(ev, key, hex_json(v, len, cap));
}

static int64_t be_int(const uint8_t *v, size_t len)
{
	uint64_t x = 0;
	for (size_t i = 0; i < len; i++)
		x = (x << 8) | v[i];
	if (len < 8 && (v[0] & 0x80))
		x |= ~UINT64_C(0) << (len * 8);
	return (int64_t)x;
}

#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23

/* --- statement metadata ----------------------------------------------------------- */

static const char *class_of(const struct inspect_result *res)
{
	if (!res || res->parse_error)
		return "unparsable";
	for (int i = 0; i < 32; i++)
		if (res->classes & (1u << i))
			return inspect_class_name(1u << i) ? inspect_class_name(1u << i) : "other";
	return "other";
}

/*
 * A DDL text that names a password (CREATE/ALTER ROLE ... PASSWORD '...')
 * keeps its string literals out of the record.
 */
static char *redact_literals(const char *sql, size_t len)
{
	char *out = malloc(len + 1);
	size_t n = 0;
	bool in = false;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (sql[i] == '\'') {
			if (!in)
				memcpy(out + n, "'***", 4), n += 4;
			in = !in;
			if (!in)
				out[n++] = '\'';
		} else if (!in) {
			out[n++] = sql[i];
		}
	}
	out[n] = '\0';
	return out;
}

bool rec_mentions_secret(const char *s, size_t len)
{
	static const char *const words[] = {"password", "secret", "token"};
	for (size_t w = 0; w < 3; w++) {
		size_t wl = strlen(words[w]);
		for (size_t i = 0; i + wl <= len; i++)
			if (strncasecmp(s + i, words[w], wl) == 0)
				return true;
	}
	return false;
}

/* text, fingerprint, class, tags and context of a statement into ev. */
void rec_describe_sql(struct rec_event *ev, const char *sql, size_t len)
{
	struct inspect_result *res = inspect_classify(sql, len);
	char fp[17];
	json_t *tags;

	if (res && (res->classes & (SC_DDL | SC_ALTER)) && rec_mentions_secret(sql, len)) {
		char *red = redact_literals(sql, len);
		rec_event_str(ev, "text", red);
		free(red);
	} else {
		rec_text_set(ev, "text", (const uint8_t *)sql, len, len);
	}
	if (res && !res->parse_error) {
		/* %016llx without printf (every statement) */
		for (int i = 15; i >= 0; i--)
			fp[15 - i] = "0123456789abcdef"[(res->fingerprint >> (4 * i)) & 15];
		fp[16] = '\0';
		rec_event_str(ev, "fingerprint", fp);
	}
	rec_event_str(ev, "class", class_of(res));
	if (res && res->n_statements > 1)
		rec_event_int(ev, "statements", res->n_statements);
	if (res)
		inspect_release(res);
	tags = sqlcomment_tags(sql, len);
	if (tags) {
		rec_event_json(ev, "context", sqlcomment_context(tags));
		rec_event_json(ev, "tags", tags);
	}
}

/*
 * Descriptions of repeated texts (loop thread only). describe_sql is a function
 * of the text alone (classification, redaction, sqlcommenter tags), so the
 * serialized members it makes are kept per exact text and copied into the next
 * statement event with the same text: pgbench -M extended (and any client with
 * prepared statements) re-sends one text per statement, and escaping it,
 * classifying it (the literal-free key) and scanning it for tags every time
 * was most of the statement event's cost. The key is the whole text (hash,
 * then length and bytes compared), so a text that differs in a literal is
 * never served another's description: the recorded text is always the one
 * that ran. A text is cached the second time it comes (desc_seen), so texts
 * that differ only in literals (simple protocol) do not churn the cache.
 */
#define DESC_SLOTS    256  /* direct-mapped by hash */
#define DESC_MAX_TEXT 4096 /* longer texts are described each time */

struct desc_entry {
	uint64_t hash;
	size_t len;
	char *sql;              /* the exact text described; NULL: empty entry */
	struct rec_event *desc; /* its text, fingerprint, class, statements, context, tags */
};

static struct desc_entry desc_cache[DESC_SLOTS];
static uint64_t desc_seen[DESC_SLOTS]; /* per slot: hash of the last text not cached */

/* 64-bit hash of a text, 8 bytes a step (only picks the slot: equality is memcmp). */
static uint64_t desc_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ n, w;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	w = 0;
	memcpy(&w, s + i, n - i);
	h = (h ^ w) * 0x100000001b3ULL;
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ULL;
	return h ^ (h >> 32);
}

/* On reload and stop: what describes a text may change with the configuration. */
void rec_desc_clear(void)
{
	for (size_t i = 0; i < DESC_SLOTS; i++) {
		free(desc_cache[i].sql);
		rec_event_free(desc_cache[i].desc);
	}
	memset(desc_cache, 0, sizeof(desc_cache));
	memset(desc_seen, 0, sizeof(desc_seen));
}

/* Describe sql into a new cache entry for slot e (the old one is replaced); false: not cached. */
static bool desc_insert(struct desc_entry *e, uint64_t h, const char *sql, size_t len)
{
	struct rec_event *d = rec_event_new();
	char *copy = malloc(len + 1);

	if (d && copy)
		rec_describe_sql(d, sql, len);
	if (!d || !copy || !rec_event_ok(d)) {
		rec_event_free(d);
		free(copy);
		return false;
	}
	memcpy(copy, sql, len);
	copy[len] = '\0';
	free(e->sql);
	rec_event_free(e->desc);
	*e = (struct desc_entry){h, len, copy, d};
	return true;
}

/* describe_sql, copied from the cache when this exact text was described before. */
void rec_describe_cached(struct rec_event *ev, const char *sql, size_t len)
{
	struct desc_entry *e;
	uint64_t h;

	if (len > DESC_MAX_TEXT) {
		rec_describe_sql(ev, sql, len);
		return;
	}
	h = desc_hash(sql, len);
	e = &desc_cache[h % DESC_SLOTS];
	if (e->sql && e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0) {
		rec_event_merge(ev, e->desc);
		return;
	}
	if (desc_seen[h % DESC_SLOTS] != h) {
		desc_seen[h % DESC_SLOTS] = h; /* first time: cache it if it comes again */
		rec_describe_sql(ev, sql, len);
		return;
	}
	if (desc_insert(e, h, sql, len))
		rec_event_merge(ev, e->desc);
	else
		rec_describe_sql(ev, sql, len);
}

/* --- Bind parameters ------------------------------------------------------------ */

static uint16_t param_format(const uint8_t *fmts, uint16_t nfmt, uint16_t i)
{
	if (nfmt == 0)
		return 0;
	return (uint16_t)((fmts[nfmt == 1 ? 0 : 2 * i] << 8) | fmts[(nfmt == 1 ? 0 : 2 * i) + 1]);
}

/*
 * One parameter into the array as the JSON value text_json (or, binary, its
 * type where the layout is known, else hex) makes, same bytes, written as text: a Bind came with
 * every extended-protocol statement, and a jansson array of strings cost several allocations each.
 * A value that cannot be made (out of memory) is left out, as before.
 */
static void param_hex(struct rec_jarray *a, const uint8_t *v, size_t len, size_t cap)
{
	json_t *j = hex_json(v, len, cap); /* rare: keeps the one hex renderer */

	if (j)
		(void)rec_jarray_strn(a, json_string_value(j), json_string_length(j));
	json_decref(j);
}

static void param_text(struct rec_jarray *a, const uint8_t *v, size_t len, size_t cap)
{
	size_t n = utf8_cut(v, len, cap);

	if (!rec_jarray_strn(a, (const char *)v, n))
		param_hex(a, v, len, cap);
}

static void param_binary(struct rec_jarray *a, uint32_t oid, const uint8_t *v, size_t len,
                         size_t cap)
{
	if (oid == OID_BOOL && len == 1)
		rec_jarray_bool(a, v[0] != 0);
	else if ((oid == OID_INT2 && len == 2) || (oid == OID_INT4 && len == 4) ||
	         (oid == OID_INT8 && len == 8))
		rec_jarray_int(a, be_int(v, len));
	else
		param_hex(a, v, len, cap);
}

/* Bind parameters as a JSON array (text): text as strings, binary by type where known. */
char *rec_bind_params(struct pkt_reader *r, const uint32_t *oids, size_t n_oids, size_t cap,
                      size_t *outlen)
{
	uint16_t nfmt = read_u16(r), n;
	const uint8_t *fmts = read_bytes(r, (size_t)nfmt * 2);
	struct rec_jarray arr = {0};

	n = read_u16(r);
	if (nfmt > 1 && nfmt != n)
		return rec_jarray_finish(&arr, outlen);
	for (uint16_t i = 0; !r->bad && i < n; i++) {
		int32_t len = (int32_t)read_u32(r);
		const uint8_t *v = len > 0 ? read_bytes(r, (size_t)len) : (const uint8_t *)"";
		uint32_t oid = oids && i < n_oids ? oids[i] : 0;
		if (r->bad)
			break;
		if (len < 0)
			rec_jarray_null(&arr);
		else if (param_format(fmts, nfmt, i) == 1)
			param_binary(&arr, oid, v, (size_t)len, cap);
		else
			param_text(&arr, v, (size_t)len, cap);
	}
	return rec_jarray_finish(&arr, outlen);
}
