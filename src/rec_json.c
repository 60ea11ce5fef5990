/*
 * rec_json.c - the JSON text of recorded events (include/recorder_file.h): the
 * growable byte buffer, a serializer byte-identical to jansson's compact sorted
 * output, events and arrays built as text on the event loop (rec_event_*,
 * rec_jarray_*), the envelope, and the chunks the writer joins into a line.
 * Pure functions on their arguments (the key cache is per thread); split from
 * recorder_file.c, which owns the files and the chain. The format is specified
 * in doc/recordings.md.
 */
#include "recorder_file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* --- serialization ---------------------------------------------------------------------- */

/*
 * Why our own serializer: json_dumps(JSON_SORT_KEYS) allocates a key array and
 * a growing string per call and the envelope keys had to be added to the
 * object first (more allocations, on the writer thread, of objects made on the
 * loop). This writes the same bytes straight into the reused batch buffer.
 */
#define REC_STR_(x) #x
#define REC_STR(x)  REC_STR_(x)

/* rb_reserve when b must grow (or has failed before). */
static bool rb_grow(struct rec_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + more <= b->cap)
		return true;
	cap = b->cap ? b->cap * 2 : 256;
	while (cap < b->len + more)
		cap *= 2;
	p = b->borrowed ? malloc(cap) : realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	if (b->borrowed && b->len)
		memcpy(p, b->p, b->len);
	b->borrowed = false;
	b->p = p;
	b->cap = cap;
	return true;
}

/* Room for `more` bytes; false (latched in oom) when out of memory. Every append asks. */
static inline bool rb_reserve(struct rec_buf *b, size_t more)
{
	return (!b->oom && b->len + more <= b->cap) || rb_grow(b, more);
}

static void rb_put(struct rec_buf *b, const char *s, size_t n)
{
	if (!rb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void rb_putc(struct rec_buf *b, char c)
{
	rb_put(b, &c, 1);
}

static void rb_putu(struct rec_buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	rb_put(b, tmp + i, sizeof(tmp) - i);
}

static void rb_puti(struct rec_buf *b, json_int_t v)
{
	if (v < 0) {
		rb_putc(b, '-');
		rb_putu(b, (uint64_t)0 - (uint64_t)v);
	} else {
		rb_putu(b, (uint64_t)v);
	}
}

/*
 * Whether any of 8 bytes is one JSON escapes (< 0x20, ", \), all at once: the
 * classic "has a byte less than / equal to" word tricks, exact for the question
 * "is there any" (which is all that is asked).
 */
static inline bool word_needs_escape(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');

	return (((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high;
}

/* A JSON string exactly as jansson escapes it without flags: ", \, and controls only. */
static void ser_string(struct rec_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t run = 0, i = 0;

	if (!rb_reserve(b, n + 2)) /* the usual string needs no escape: one reservation */
		return;
	/* the usual string: nothing to escape, found eight bytes a step, one copy */
	for (uint64_t w; i + 8 <= n && (memcpy(&w, s + i, 8), !word_needs_escape(w));)
		i += 8;
	while (i < n && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
		i++;
	if (i == n) {
		b->p[b->len] = '"';
		memcpy(b->p + b->len + 1, s, n);
		b->p[b->len + 1 + n] = '"';
		b->len += n + 2;
		return;
	}
	rb_putc(b, '"');
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6];
		size_t elen = 2;

		if (c >= 0x20 && c != '"' && c != '\\') /* the usual byte: nothing else to do */
			continue;
		memcpy(esc,
		       "\\\0"
		       "00\0\0",
		       6);
		rb_put(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			esc[1] = 'u';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
		}
		rb_put(b, esc, elen);
	}
	rb_put(b, s + run, n - run);
	rb_putc(b, '"');
}

/*
 * An object member: a JSON value, a C string to quote or raw JSON text; or
 * (chunk) raw text that is the whole member, "key":value, as built events and
 * the envelope keep them.
 */
struct member {
	const char *key;
	json_t *val;
	const char *str;
	const char *raw;
	size_t rawlen;
	bool chunk;
};

static void ser_value(struct rec_buf *b, json_t *v);

/* Insertion sort: objects here have a handful of keys; falls back to qsort for many. */
static int cmp_member(const void *a, const void *b)
{
	return strcmp(((const struct member *)a)->key, ((const struct member *)b)->key);
}

/*
 * Sorting: an event has ~16 members (its own and the envelope's), sorted for
 * every event. Moving 40-byte members and calling strcmp for keys that share
 * a first letter (session, seq, stmt, statement_name) was most of the sort's
 * cost, so the sort moves 16-byte (prefix, index) pairs and compares the
 * keys' first 8 bytes as one number: big-endian and zero-padded, so numbers
 * order as strcmp orders the keys, except that equal numbers with a non-zero
 * last byte need the rest of the keys compared.
 */
struct key_order {
	uint64_t prefix;
	size_t idx;
};

static inline uint64_t key_prefix(const char *k)
{
	uint64_t p = 0;
	int i = 0;

	for (; i < 8 && k[i]; i++)
		p = (p << 8) | (unsigned char)k[i];
	return i == 0 ? 0 : p << (8 * (8 - i)); /* (a shift by 64 would be undefined) */
}

/*
 * What the writer and the loop need of a key, per key pointer: built events
 * use a few dozen string literals as keys, each tens of thousands of times a
 * second, and measuring, checking and prefixing them each time was a tenth of
 * the recording's instructions (callgrind). Direct-mapped, per thread (the loop
 * and the writer each keep their own), keyed by the pointer: only for keys of
 * built events, which are string literals by contract (include/recorder.h), never
 * for a jansson object's keys, whose memory is reused for other keys.
 */
struct key_info {
	const char *key;
	uint64_t prefix;
	uint32_t len;
	bool plain;    /* needs no escaping */
	bool reserved; /* an envelope key: never set by the caller */
};

static bool reserved_key(const char *k);

static const struct key_info *key_info_of(const char *k)
{
	static _Thread_local struct key_info cache[256];
	struct key_info *e = &cache[((uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15ULL) >> 56];

	if (e->key != k) {
		size_t n = strlen(k);
		bool plain = n < UINT32_MAX;

		for (size_t i = 0; i < n && plain; i++)
			plain = (unsigned char)k[i] >= 0x20 && k[i] != '"' && k[i] != '\\';
		*e = (struct key_info){k, key_prefix(k), (uint32_t)n, plain, reserved_key(k)};
	}
	return e;
}

/* Key a (prefix pa) after key b (prefix pb) in strcmp order. */
static inline bool key_after(uint64_t pa, const char *a, uint64_t pb, const char *b)
{
	if (pa != pb)
		return pa > pb;
	return (pa & 0xff) && strcmp(a + 8, b + 8) > 0;
}

/* The order of m by key into ord (n entries, n <= 32 + 5). */
static void sort_members(const struct member *m, size_t n, struct key_order *ord)
{
	for (size_t i = 0; i < n; i++) {
		struct key_order x = {key_prefix(m[i].key), i};
		size_t j = i;

		for (; j > 0 &&
		       key_after(ord[j - 1].prefix, m[ord[j - 1].idx].key, x.prefix, m[i].key);
		     j--)
			ord[j] = ord[j - 1];
		ord[j] = x;
	}
}

static bool put_key_text(struct rec_buf *b, const char *key, size_t n);

/* A key that needs no escaping (all of ours): "key": copied in one go. */
static bool put_plain_key(struct rec_buf *b, const char *key)
{
	size_t n = strlen(key);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)key[i] < 0x20 || key[i] == '"' || key[i] == '\\')
			return false;
	return put_key_text(b, key, n);
}

/* "key": for a key of n bytes that needs no escaping. */
static bool put_key_text(struct rec_buf *b, const char *key, size_t n)
{
	if (!rb_reserve(b, n + 3))
		return true; /* oom is latched */
	b->p[b->len] = '"';
	memcpy(b->p + b->len + 1, key, n);
	b->p[b->len + 1 + n] = '"';
	b->p[b->len + 2 + n] = ':';
	b->len += n + 3;
	return true;
}

static void ser_member(struct rec_buf *b, const struct member *m)
{
	if (m->chunk) {
		rb_put(b, m->raw, m->rawlen);
		return;
	}
	if (!put_plain_key(b, m->key)) {
		ser_string(b, m->key, strlen(m->key));
		rb_putc(b, ':');
	}
	if (m->val)
		ser_value(b, m->val);
	else if (m->str)
		ser_string(b, m->str, strlen(m->str));
	else
		rb_put(b, m->raw, m->rawlen);
}

static void ser_members(struct rec_buf *b, struct member *m, size_t n)
{
	struct key_order ord[REC_EVENT_MEMBERS + 5];

	rb_putc(b, '{');
	if (n > sizeof(ord) / sizeof(ord[0])) { /* big jansson objects: sort the members */
		qsort(m, n, sizeof(*m), cmp_member);
		for (size_t i = 0; i < n; i++) {
			if (i)
				rb_putc(b, ',');
			ser_member(b, &m[i]);
		}
	} else {
		sort_members(m, n, ord);
		for (size_t i = 0; i < n; i++) {
			if (i)
				rb_putc(b, ',');
			ser_member(b, &m[ord[i].idx]);
		}
	}
	rb_putc(b, '}');
}

/* A built event's member (or an envelope member) as its whole text, "key":value. */
struct chunk {
	uint64_t prefix; /* key_prefix of key */
	const char *key;
	const char *p;
	size_t n;
};

/*
 * Chunks (a built event's members and its envelope), sorted and joined into
 * an object with one reservation: the writer's per-event work is then a sort
 * of small integers and one copy per member.
 */
static void put_chunks(struct rec_buf *b, const struct chunk *c, size_t n)
{
	uint8_t ord[REC_EVENT_MEMBERS + 5];
	size_t total = 2 + (n ? n - 1 : 0);
	char *p;

	for (size_t i = 0; i < n; i++) {
		size_t j = i;

		total += c[i].n;
		for (; j > 0 &&
		       key_after(c[ord[j - 1]].prefix, c[ord[j - 1]].key, c[i].prefix, c[i].key);
		     j--)
			ord[j] = ord[j - 1];
		ord[j] = (uint8_t)i;
	}
	if (!rb_reserve(b, total))
		return;
	p = b->p + b->len;
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		const struct chunk *x = &c[ord[i]];

		if (i)
			*p++ = ',';
		memcpy(p, x->p, x->n);
		p += x->n;
	}
	*p++ = '}';
	b->len = (size_t)(p - b->p);
}

static bool reserved_key(const char *k)
{
	/* every member of every event asks: by first byte, then one comparison */
	switch (k[0]) {
	case 'v':
		return k[1] == '\0';
	case 's':
		return strcmp(k, "seq") == 0;
	case 't':
		return k[1] == 's' ? k[2] == '\0' : strcmp(k, "type") == 0;
	case 'p':
		return strcmp(k, "prev") == 0;
	case 'h':
		return strcmp(k, "hash") == 0;
	default:
		return false;
	}
}

/*
 * An object's members plus `extra` envelope members (NULL for nested
 * objects, whose keys are never reserved), sorted and written.
 */
static void ser_object(struct rec_buf *b, json_t *obj, const struct member *extra, size_t nextra)
{
	struct member stack[32], *m = stack;
	size_t cap = json_object_size(obj) + nextra, n = 0;
	const char *k;
	json_t *v;

	if (cap > sizeof(stack) / sizeof(stack[0]) && !(m = malloc(cap * sizeof(*m)))) {
		b->oom = true;
		return;
	}
	json_object_foreach(obj, k, v)
	{
		if (!extra || !reserved_key(k))
			m[n++] = (struct member){k, v, NULL, NULL, 0, false};
	}
	for (size_t i = 0; i < nextra; i++)
		m[n++] = extra[i];
	ser_members(b, m, n);
	if (m != stack)
		free(m);
}

/* A real: jansson's own formatting, so the bytes match json_dumps. */
static void ser_real(struct rec_buf *b, json_t *v)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

	if (!s) {
		b->oom = true;
		return;
	}
	rb_put(b, s, strlen(s));
	free(s);
}

static void ser_value(struct rec_buf *b, json_t *v)
{
	size_t i;
	json_t *e;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		ser_object(b, v, NULL, 0);
		break;
	case JSON_ARRAY:
		rb_putc(b, '[');
		json_array_foreach(v, i, e)
		{
			if (i)
				rb_putc(b, ',');
			ser_value(b, e);
		}
		rb_putc(b, ']');
		break;
	case JSON_STRING:
		ser_string(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		rb_puti(b, json_integer_value(v));
		break;
	case JSON_REAL:
		ser_real(b, v);
		break;
	case JSON_TRUE:
		rb_put(b, "true", 4);
		break;
	case JSON_FALSE:
		rb_put(b, "false", 5);
		break;
	case JSON_NULL:
		rb_put(b, "null", 4);
		break;
	}
}

/*
 * The envelope's members as chunks ("key":value) in env->text: the key-value
 * text of v, seq, ts, type and prev.
 */
struct envelope {
	struct rec_buf b; /* starts in text; a very long type (jansson events) grows it */
	char text[256];
	struct chunk c[5];
};

/*
 * format_ts costs a gmtime_r and a strftime; events come thousands a second,
 * so the date and time down to the second are kept per thread.
 */
static size_t ts_text(usec_t ts, char *out)
{
	static _Thread_local time_t last_sec = -1;
	static _Thread_local char base[32];
	time_t sec = (time_t)(ts / USEC_PER_SEC);
	unsigned us = (unsigned)(ts % USEC_PER_SEC);
	size_t n;

	if (sec != last_sec || ts < 0) {
		struct tm tm;

		gmtime_r(&sec, &tm);
		strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
		last_sec = sec;
	}
	/* "<base>.<6 digits>Z" without printf: this runs for every event */
	n = strnlen(base, 20);

	out[0] = '"';
	memcpy(out + 1, base, n);
	out[n + 1] = '.';
	for (int i = 6; i >= 1; i--, us /= 10)
		out[n + 1 + i] = (char)('0' + us % 10);
	memcpy(out + n + 8, "Z\"", 3);
	return n + 10;
}

/* false when out of memory; release with envelope_done. */
static bool envelope_of(struct envelope *env, const char *type, usec_t ts, uint64_t seq,
                        const char *prev)
{
	static const char version[] = "\"v\":" REC_STR(REC_FORMAT_VERSION);
	static const char *const keys[5] = {"v", "seq", "ts", "type", "prev"};
	struct rec_buf *b = &env->b;
	size_t at[6];

	*b = (struct rec_buf){env->text, 0, sizeof(env->text), false, true};
	at[0] = 0;
	rb_put(b, version, sizeof(version) - 1);
	at[1] = b->len;
	rb_put(b, "\"seq\":", 6);
	rb_putu(b, seq);
	at[2] = b->len;
	rb_put(b, "\"ts\":", 5);
	if (rb_reserve(b, 64))
		b->len += ts_text(ts, b->p + b->len);
	at[3] = b->len;
	rb_put(b, "\"type\":", 7);
	ser_string(b, type, strlen(type));
	at[4] = b->len;
	rb_put(b, "\"prev\":\"", 8);
	rb_put(b, prev, REC_HASH_HEX_LEN);
	rb_putc(b, '"');
	at[5] = b->len;
	for (int i = 0; i < 5; i++) /* pointers only now: the text may have moved while growing */
		env->c[i] = (struct chunk){key_info_of(keys[i])->prefix, keys[i], b->p + at[i],
		                           at[i + 1] - at[i]};
	return !b->oom;
}

static void envelope_done(struct envelope *env)
{
	if (!env->b.borrowed)
		free(env->b.p);
}

bool rec_serialize_event(struct rec_buf *b, json_t *fields, const char *type, usec_t ts,
                         uint64_t seq, const char *prev)
{
	struct envelope env;
	struct member m[5];
	bool ok = envelope_of(&env, type, ts, seq, prev);

	for (int i = 0; ok && i < 5; i++)
		m[i] = (struct member){env.c[i].key, NULL, NULL, env.c[i].p, env.c[i].n, true};
	if (ok)
		ser_object(b, fields, m, 5);
	envelope_done(&env);
	return ok && !b->oom;
}

bool rec_serialize_built(struct rec_buf *b, const struct rec_event *e, const char *type, usec_t ts,
                         uint64_t seq, const char *prev)
{
	struct chunk c[REC_EVENT_MEMBERS + 5];
	struct envelope env;
	size_t n = 0;

	if (!envelope_of(&env, type, ts, seq, prev)) {
		envelope_done(&env);
		return false;
	}
	for (size_t i = 0; i < e->n; i++)
		c[n++] = (struct chunk){e->m[i].prefix, e->m[i].key, e->text.p + e->m[i].off,
		                        e->m[i].len};
	for (size_t i = 0; i < 5; i++)
		c[n++] = env.c[i];
	put_chunks(b, c, n);
	envelope_done(&env);
	return !b->oom;
}

/* --- events built as text (on the event loop) -------------------------------------------- */

/* One allocation per event: the text starts in the event itself (most events fit). */
struct rec_event *rec_event_new(void)
{
	struct rec_event *e = malloc(sizeof(*e));

	if (!e)
		return NULL;
	e->text = (struct rec_buf){e->inline_text, 0, sizeof(e->inline_text), false, true};
	e->n = 0;
	e->keybits = 0;
	e->failed = false;
	e->ts = 0;
	return e;
}

void rec_event_reset(struct rec_event *e)
{
	if (!e->text.borrowed)
		free(e->text.p);
	e->text = (struct rec_buf){e->inline_text, 0, sizeof(e->inline_text), false, true};
	e->n = 0;
	e->keybits = 0;
	e->failed = false;
	e->ts = 0;
}

void rec_event_free(struct rec_event *e)
{
	if (!e)
		return;
	if (!e->text.borrowed)
		free(e->text.p);
	free(e);
}

/*
 * Start the member `key`: its "key": goes into e->text now, its value is what
 * is appended after it until member_end. The member is kept as that whole
 * chunk, so that writing the event is copying chunks (put_chunks). NULL: the
 * member is not set (the event failed, or the key is reserved).
 */
static const struct key_info *member_begin(struct rec_event *e, const char *key, size_t *start)
{
	const struct key_info *ki;

	if (e->failed || (ki = key_info_of(key))->reserved)
		return NULL;
	*start = e->text.len;
	if (ki->plain) {
		put_key_text(&e->text, key, ki->len);
	} else {
		ser_string(&e->text, key, ki->len);
		rb_putc(&e->text, ':');
	}
	return ki;
}

/*
 * The chunk from start to the end of e->text is the member key (prefix: its
 * key_prefix). Setting a key again replaces it: keybits (one bit per key, by
 * its prefix) spares the search for a key set before in the usual case.
 */
static void member_end(struct rec_event *e, const char *key, uint64_t prefix, size_t start)
{
	uint64_t bit = UINT64_C(1) << ((prefix * 0x9E3779B97F4A7C15ULL) >> 58);
	size_t i = e->n;

	if (e->text.oom || e->text.len > UINT32_MAX) {
		e->failed = true;
		return;
	}
	if (e->keybits & bit)
		for (i = 0; i < e->n && (e->m[i].prefix != prefix || strcmp(e->m[i].key, key) != 0);
		     i++)
			;
	if (i == REC_EVENT_MEMBERS) {
		e->failed = true;
		return;
	}
	e->n += i == e->n;
	e->keybits |= bit;
	e->m[i].key = key; /* a replaced member stays in text, unused */
	e->m[i].prefix = prefix;
	e->m[i].off = (uint32_t)start;
	e->m[i].len = (uint32_t)(e->text.len - start);
}

/* Raw JSON text as the value of key. */
static void member_raw(struct rec_event *e, const char *key, const char *raw, size_t n)
{
	const struct key_info *ki;
	size_t start;

	if (!(ki = member_begin(e, key, &start)))
		return;
	rb_put(&e->text, raw, n);
	member_end(e, key, ki->prefix, start);
}

bool rec_event_ok(const struct rec_event *e)
{
	return e && !e->failed;
}

void rec_event_merge(struct rec_event *dst, const struct rec_event *src)
{
	if (src->failed) {
		dst->failed = true;
		return;
	}
	for (size_t i = 0; i < src->n && !dst->failed; i++) { /* whole chunks: "key":value */
		size_t start = dst->text.len;

		rb_put(&dst->text, src->text.p + src->m[i].off, src->m[i].len);
		member_end(dst, src->m[i].key, src->m[i].prefix, start);
	}
}

void rec_event_nest(struct rec_event *dst, const char *key, const struct rec_event *src,
                    const char *const *skip)
{
	struct chunk c[REC_EVENT_MEMBERS];
	const struct key_info *ki;
	size_t n = 0, start;

	if (src->failed) {
		dst->failed = true;
		return;
	}
	if (!(ki = member_begin(dst, key, &start)))
		return;
	for (size_t i = 0; i < src->n; i++) {
		const char *const *k = skip;

		while (*k && strcmp(*k, src->m[i].key) != 0)
			k++;
		if (!*k)
			c[n++] = (struct chunk){src->m[i].prefix, src->m[i].key,
			                        src->text.p + src->m[i].off, src->m[i].len};
	}
	put_chunks(&dst->text, c, n);
	member_end(dst, key, ki->prefix, start);
}

void rec_event_set_ts(struct rec_event *e, usec_t ts)
{
	e->ts = ts;
}

/* Valid UTF-8 as jansson accepts it: no overlongs, surrogates or code points past U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], need, cp;
		uint64_t w;

		/* ASCII, the usual text, eight bytes a step */
		if (n - i >= 8 && (memcpy(&w, s + i, 8), (w & 0x8080808080808080ULL) == 0)) {
			i += 8;
			continue;
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			need = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			need = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			need = 3, cp = c & 0x07;
		else
			return false;
		if (n - i <= need)
			return false;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += need + 1;
	}
	return true;
}

bool rec_event_strn(struct rec_event *e, const char *key, const char *s, size_t n)
{
	const struct key_info *ki;
	size_t start;

	if (!utf8_valid((const unsigned char *)s, n))
		return false;
	if ((ki = member_begin(e, key, &start))) {
		ser_string(&e->text, s, n);
		member_end(e, key, ki->prefix, start);
	}
	return true;
}

void rec_event_str(struct rec_event *e, const char *key, const char *s)
{
	/* invalid UTF-8 leaves the key absent, as json_string would */
	if (!s)
		rec_event_null(e, key);
	else
		(void)rec_event_strn(e, key, s, strlen(s));
}

void rec_event_int(struct rec_event *e, const char *key, int64_t v)
{
	const struct key_info *ki;
	size_t start;

	if (!(ki = member_begin(e, key, &start)))
		return;
	rb_puti(&e->text, (json_int_t)v);
	member_end(e, key, ki->prefix, start);
}

void rec_event_bool(struct rec_event *e, const char *key, bool v)
{
	member_raw(e, key, v ? "true" : "false", v ? 4 : 5);
}

void rec_event_null(struct rec_event *e, const char *key)
{
	member_raw(e, key, "null", 4);
}

void rec_event_json(struct rec_event *e, const char *key, json_t *v)
{
	const struct key_info *ki;
	size_t start;

	if (!v)
		return;
	if ((ki = member_begin(e, key, &start))) {
		ser_value(&e->text, v);
		member_end(e, key, ki->prefix, start);
	}
	json_decref(v);
}

void rec_event_raw(struct rec_event *e, const char *key, const char *json, size_t n)
{
	member_raw(e, key, json, n);
}

/* --- arrays built as text ------------------------------------------------------------------ */

/* The array's buffer as a rec_buf (its storage is always ours: never borrowed). */
static struct rec_buf jarray_buf(const struct rec_jarray *a)
{
	return (struct rec_buf){a->p, a->len, a->cap, a->oom, false};
}

static void jarray_keep(struct rec_jarray *a, const struct rec_buf *b)
{
	a->p = b->p;
	a->len = b->len;
	a->cap = b->cap;
	a->oom = b->oom;
	a->n++;
}

/* "[" before the first element, "," before the others. */
static void jarray_sep(const struct rec_jarray *a, struct rec_buf *b)
{
	rb_putc(b, a->n ? ',' : '[');
}

static void jarray_raw(struct rec_jarray *a, const char *raw, size_t n)
{
	struct rec_buf b = jarray_buf(a);

	jarray_sep(a, &b);
	rb_put(&b, raw, n);
	jarray_keep(a, &b);
}

void rec_jarray_null(struct rec_jarray *a)
{
	jarray_raw(a, "null", 4);
}

void rec_jarray_bool(struct rec_jarray *a, bool v)
{
	jarray_raw(a, v ? "true" : "false", v ? 4 : 5);
}

void rec_jarray_int(struct rec_jarray *a, int64_t v)
{
	struct rec_buf b = jarray_buf(a);

	jarray_sep(a, &b);
	rb_puti(&b, (json_int_t)v);
	jarray_keep(a, &b);
}

bool rec_jarray_strn(struct rec_jarray *a, const char *s, size_t n)
{
	struct rec_buf b;

	if (!utf8_valid((const unsigned char *)s, n))
		return false;
	b = jarray_buf(a);
	jarray_sep(a, &b);
	ser_string(&b, s, n);
	jarray_keep(a, &b);
	return true;
}

char *rec_jarray_finish(struct rec_jarray *a, size_t *len)
{
	struct rec_buf b = jarray_buf(a);
	char *out;

	rb_put(&b, a->n ? "]" : "[]", a->n ? 1 : 2);
	out = b.oom ? NULL : b.p;
	*len = out ? b.len : 0;
	if (!out)
		free(b.p);
	*a = (struct rec_jarray){0};
	return out;
}

/* --- the writer's access to the buffer ------------------------------------------------------ */

bool rec_buf_put(struct rec_buf *b, const char *s, size_t n)
{
	rb_put(b, s, n);
	return !b->oom;
}
