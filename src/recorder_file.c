/*
 * recorder_file.c - the recorder's files: event serialization and the hash
 * chain, file naming, the .partial -> .jsonl life cycle, rotation by size and
 * interval, retention by age and total bytes, fsync policy and the repair of a
 * file left half-written by a crash. Runs on the recorder thread only, except
 * the rec_event_* builders (the event loop's, touching no writer state) and
 * rec_serialize_* (pure); the format is specified in doc/recordings.md.
 */
#include "recorder_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define REC_PREFIX          "pgvigil-"
#define REC_SUFFIX          ".jsonl"
#define REC_PARTIAL         ".partial"
#define REC_RETENTION_EVERY (60 * USEC_PER_SEC)
#define REC_HASH_SUFFIX_LEN (sizeof(",\"hash\":\"\"}") - 1 + REC_HASH_HEX_LEN)
#define REC_BATCH_BYTES     (256 * 1024) /* one write() per this much, at most */

static const char zero_hash[REC_HASH_HEX_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* --- hashing ---------------------------------------------------------------------------- */

bool rec_hash_hex(const char *key, const void *data, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const char hex[] = "0123456789abcdef";

	if (key) {
		if (!HMAC(EVP_sha256(), key, (int)strlen(key), data, len, md, &mdlen))
			return false;
	} else if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL)) {
		return false;
	}
	if (mdlen != REC_HASH_HEX_LEN / 2)
		return false;
	for (unsigned int i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[REC_HASH_HEX_LEN] = '\0';
	return true;
}

static bool is_hex_hash(const char *s)
{
	for (int i = 0; i < REC_HASH_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

bool rec_split_line(const char *line, size_t len, char **body, size_t *bodylen, char *hash)
{
	const char *suf;

	if (len < REC_HASH_SUFFIX_LEN + 2)
		return false;
	suf = line + len - REC_HASH_SUFFIX_LEN;
	if (memcmp(suf, ",\"hash\":\"", 9) != 0 || memcmp(line + len - 2, "\"}", 2) != 0)
		return false;
	if (!is_hex_hash(suf + 9))
		return false;
	memcpy(hash, suf + 9, REC_HASH_HEX_LEN);
	hash[REC_HASH_HEX_LEN] = '\0';
	*bodylen = (size_t)(suf - line) + 1;
	*body = malloc(*bodylen + 1);
	if (!*body)
		return false;
	memcpy(*body, line, *bodylen - 1);
	(*body)[*bodylen - 1] = '}';
	(*body)[*bodylen] = '\0';
	return true;
}

/* --- small helpers ---------------------------------------------------------------------- */

void recw_error(struct rec_writer *w, const char *what, int err)
{
	pthread_mutex_lock(w->stats_lock);
	snprintf(w->stats->last_error, sizeof(w->stats->last_error), "%s: %s", what, strerror(err));
	w->stats->failing = true;
	pthread_mutex_unlock(w->stats_lock);
}

static void stats_written(struct rec_writer *w, size_t bytes, size_t events)
{
	pthread_mutex_lock(w->stats_lock);
	w->stats->bytes += bytes;
	w->stats->events += events;
	w->stats->failing = false;
	strlcpy_pv(w->stats->file, w->fd >= 0 ? w->name : "", sizeof(w->stats->file));
	pthread_mutex_unlock(w->stats_lock);
}

static void path_of(const struct rec_writer *w, const char *name, bool partial, char *out,
                    size_t outlen)
{
	snprintf(out, outlen, "%s/%s%s", w->cfg->directory, name, partial ? REC_PARTIAL : "");
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno;
		if (k == 0)
			return EIO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int sync_dir(const struct rec_writer *w)
{
	int fd, rc = 0;

	if (w->cfg->fsync == REC_FSYNC_NEVER)
		return 0;
	fd = open(w->cfg->directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fsync(fd) < 0)
		rc = errno;
	close(fd);
	return rc;
}

/* Queue a writer-made event (retention, recovery) to go out before the next event. */
static void add_note(struct rec_writer *w, const char *type, json_t *fields)
{
	if (!fields)
		return;
	if (json_object_set_new(fields, "type", json_string(type)) < 0 ||
	    json_object_set_new(fields, "ts_us", json_integer(now_usec())) < 0 ||
	    json_array_append_new(w->notes, fields) < 0)
		json_decref(fields);
}

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
		memcpy(esc, "\\\0" "00\0\0", 6);
		rb_put(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
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

		for (; j > 0 && key_after(ord[j - 1].prefix, m[ord[j - 1].idx].key, x.prefix, m[i].key);
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
		for (; j > 0 && key_after(c[ord[j - 1]].prefix, c[ord[j - 1]].key, c[i].prefix, c[i].key);
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
	case 'v': return k[1] == '\0';
	case 's': return strcmp(k, "seq") == 0;
	case 't': return k[1] == 's' ? k[2] == '\0' : strcmp(k, "type") == 0;
	case 'p': return strcmp(k, "prev") == 0;
	case 'h': return strcmp(k, "hash") == 0;
	default: return false;
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
	case JSON_OBJECT: ser_object(b, v, NULL, 0); break;
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
	case JSON_STRING: ser_string(b, json_string_value(v), json_string_length(v)); break;
	case JSON_INTEGER: rb_puti(b, json_integer_value(v)); break;
	case JSON_REAL: ser_real(b, v); break;
	case JSON_TRUE: rb_put(b, "true", 4); break;
	case JSON_FALSE: rb_put(b, "false", 5); break;
	case JSON_NULL: rb_put(b, "null", 4); break;
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
		for (i = 0; i < e->n && (e->m[i].prefix != prefix || strcmp(e->m[i].key, key) != 0); i++)
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

/* SHA-256 on the writer's reused context, or HMAC (rec_hash_hex) with a key. */
static bool hash_body(struct rec_writer *w, const char *body, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	static _Thread_local char pairs[256][2]; /* byte -> two hex digits, made once */
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (w->cfg->hmac_key || !w->md || !w->mdctx)
		return rec_hash_hex(w->cfg->hmac_key, body, len, out);
	if (!EVP_DigestInit_ex(w->mdctx, w->md, NULL) || !EVP_DigestUpdate(w->mdctx, body, len) ||
	    !EVP_DigestFinal_ex(w->mdctx, md, &mdlen) || mdlen != REC_HASH_HEX_LEN / 2)
		return false;
	if (!pairs[255][0])
		for (int i = 0; i < 256; i++)
			pairs[i][0] = hex[i >> 4], pairs[i][1] = hex[i & 15];
	for (unsigned int i = 0; i < mdlen; i++)
		memcpy(out + 2 * i, pairs[md[i]], 2);
	out[REC_HASH_HEX_LEN] = '\0';
	return true;
}

/*
 * Append the next event's line to the batch: the body chained to prev (the
 * hash covers the body, doc/recordings.md "Hash"), then its closing brace
 * replaced by ,"hash":"..."} and a newline. prev becomes this event's hash.
 * On failure the batch is as before.
 */
static int batch_event(struct rec_writer *w, json_t *fields, const struct rec_event *ev,
                       const char *type, usec_t ts, uint64_t seq, char *prev)
{
	struct rec_buf *b = &w->batch;
	size_t start = b->len;
	char hash[REC_HASH_HEX_LEN + 1];

	if (!(ev ? rec_serialize_built(b, ev, type, ts, seq, prev)
	         : rec_serialize_event(b, fields, type, ts, seq, prev))) {
		b->len = start;
		b->oom = false;
		return ENOMEM;
	}
	if (!hash_body(w, b->p + start, b->len - start, hash)) {
		b->len = start;
		return EIO;
	}
	b->len--; /* the body's closing brace */
	rb_put(b, ",\"hash\":\"", 9);
	rb_put(b, hash, REC_HASH_HEX_LEN);
	rb_put(b, "\"}\n", 3);
	if (b->oom) {
		b->len = start;
		b->oom = false;
		return ENOMEM;
	}
	memcpy(prev, hash, REC_HASH_HEX_LEN + 1);
	return 0;
}

/*
 * Write the batch (`events` lines ending with the hash last) and advance the
 * chain. On error the file is cut back to its previous size so it stays a
 * valid chain and a retry writes identical bytes.
 */
static int flush_batch(struct rec_writer *w, size_t events, const char *last)
{
	size_t len = w->batch.len;
	int err;

	w->batch.len = 0;
	err = w->fault && atomic_load(w->fault) ? atomic_load(w->fault)
	                                        : write_all(w->fd, w->batch.p, len);
	if (err) {
		if (ftruncate(w->fd, (off_t)w->size) < 0)
			recw_error(w, "truncate after failed write", errno);
		return err;
	}
	w->size += len;
	w->lines += events;
	w->dirty = true;
	w->next_seq += events;
	memcpy(w->prev, last, sizeof(w->prev));
	stats_written(w, len, events);
	if (w->cfg->fsync == REC_FSYNC_ALWAYS && fdatasync(w->fd) == 0)
		w->dirty = false;
	return 0;
}

/* One writer-made event (header, notes), written at once. */
static int append_event(struct rec_writer *w, json_t *ev, const char *type, usec_t ts)
{
	char prev[REC_HASH_HEX_LEN + 1];
	int err;

	memcpy(prev, w->prev, sizeof(prev));
	w->batch.len = 0;
	if ((err = batch_event(w, ev, NULL, type, ts, w->next_seq, prev)) != 0)
		return err;
	return flush_batch(w, 1, prev);
}

/* --- file life cycle -------------------------------------------------------------------- */

static int write_header(struct rec_writer *w)
{
	json_t *h = json_pack(
	    "{s:s,s:s,s:s,s:o,s:s,s:s}", "type", "file_header", "format", "pgvigil-recording",
	    "file", w->name, "prev_file", w->prev_file[0] ? json_string(w->prev_file) : json_null(),
	    "chain_head", w->prev, "hash_alg", w->cfg->hmac_key ? "hmac-sha256" : "sha256");
	int err;

	if (!h)
		return ENOMEM;
	err = append_event(w, h, "file_header", now_usec());
	json_decref(h);
	return err;
}

static int open_file(struct rec_writer *w)
{
	char stamp[32], path[PATH_MAX];
	time_t now = time(NULL);
	struct tm tm;
	int err;

	if (w->fault && atomic_load(w->fault))
		return atomic_load(w->fault);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(w->name, sizeof(w->name), REC_PREFIX "%s-%020" PRIu64 REC_SUFFIX, stamp,
	         w->next_seq);
	path_of(w, w->name, true, path, sizeof(path));
	w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
	if (w->fd < 0)
		return errno;
	w->size = w->lines = 0;
	w->opened = mono_usec();
	err = write_header(w);
	if (err) {
		close(w->fd);
		w->fd = -1;
		unlink(path);
	}
	return err;
}

static int flush_notes(struct rec_writer *w)
{
	while (json_array_size(w->notes) > 0) {
		json_t *n = json_array_get(w->notes, 0);
		usec_t ts = json_integer_value(json_object_get(n, "ts_us"));
		const char *type = json_string_value(json_object_get(n, "type"));
		int err;

		/* ts_us is bookkeeping, not part of the event (and not a reserved key) */
		json_object_del(n, "ts_us");
		err = append_event(w, n, type ? type : "note", ts);
		json_object_set_new(n, "ts_us", json_integer(ts));
		if (err)
			return err;
		json_array_remove(w->notes, 0);
	}
	return 0;
}

static int ensure_open(struct rec_writer *w)
{
	int err;

	if (w->fd < 0 && (err = open_file(w)) != 0)
		return err;
	return flush_notes(w);
}

struct rec_file {
	char name[REC_NAME_MAX];
	uint64_t seq;
	bool partial;
	off_t size;
	time_t mtime;
};

static int cmp_file(const void *a, const void *b)
{
	const struct rec_file *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Parse pgvigil-<stamp>-<seq>.jsonl[.partial]; false for foreign names. */
static bool parse_name(const char *d, struct rec_file *f)
{
	size_t len = strlen(d), sl = strlen(REC_SUFFIX);
	const char *dash;
	char *end;

	if (strncmp(d, REC_PREFIX, strlen(REC_PREFIX)) != 0 || len >= REC_NAME_MAX)
		return false;
	f->partial =
	    len > strlen(REC_PARTIAL) && strcmp(d + len - strlen(REC_PARTIAL), REC_PARTIAL) == 0;
	if (f->partial)
		len -= strlen(REC_PARTIAL);
	if (len <= sl || strncmp(d + len - sl, REC_SUFFIX, sl) != 0)
		return false;
	memcpy(f->name, d, len - sl);
	f->name[len - sl] = '\0';
	dash = strrchr(f->name, '-');
	if (!dash || dash[1] == '\0')
		return false;
	errno = 0;
	f->seq = strtoull(dash + 1, &end, 10);
	if (*end || errno)
		return false;
	memcpy(f->name + len - sl, REC_SUFFIX, sl + 1);
	return true;
}

/* The recording files in the directory, sorted by first seq. -1 on error. */
static int list_files(const struct rec_writer *w, struct rec_file **out, size_t *n)
{
	DIR *dir = opendir(w->cfg->directory);
	struct dirent *de;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (!dir)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		struct rec_file f;
		struct stat st;
		char path[PATH_MAX];

		if (!parse_name(de->d_name, &f))
			continue;
		snprintf(path, sizeof(path), "%s/%s", w->cfg->directory, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		f.size = st.st_size;
		f.mtime = st.st_mtime;
		if (*n == cap) {
			struct rec_file *g = realloc(*out, (cap ? cap * 2 : 16) * sizeof(*g));
			if (!g) {
				closedir(dir);
				return -1;
			}
			*out = g;
			cap = cap ? cap * 2 : 16;
		}
		(*out)[(*n)++] = f;
	}
	closedir(dir);
	if (*n > 1)
		qsort(*out, *n, sizeof(**out), cmp_file);
	return 0;
}

/* Close the active file: sync per policy, rename .partial to .jsonl. */
static int close_file(struct rec_writer *w)
{
	char from[PATH_MAX], to[PATH_MAX];
	int err = 0;

	if (w->fd < 0)
		return 0;
	if (w->cfg->fsync != REC_FSYNC_NEVER && fdatasync(w->fd) < 0)
		err = errno;
	close(w->fd);
	w->fd = -1;
	path_of(w, w->name, true, from, sizeof(from));
	path_of(w, w->name, false, to, sizeof(to));
	if (rename(from, to) < 0) {
		err = errno;
	} else {
		int e = sync_dir(w);
		err = e ? e : err;
	}
	strlcpy_pv(w->prev_file, w->name, sizeof(w->prev_file));
	pthread_mutex_lock(w->stats_lock);
	w->stats->file[0] = '\0';
	pthread_mutex_unlock(w->stats_lock);
	return err;
}

/* --- retention -------------------------------------------------------------------------- */

static bool expired(const struct rec_writer *w, const struct rec_file *f, uint64_t total)
{
	if (w->cfg->max_bytes && total > w->cfg->max_bytes)
		return true;
	return w->cfg->max_age && (usec_t)(time(NULL) - f->mtime) * USEC_PER_SEC > w->cfg->max_age;
}

/*
 * Delete the oldest closed files while over max_bytes or older than max_age,
 * and note the deletions as a "retention" event so verify can tell retention
 * from a removed file. The active file is never deleted.
 */
static void run_retention(struct rec_writer *w)
{
	struct rec_file *files;
	json_t *deleted;
	uint64_t total = w->fd >= 0 ? w->size : 0;
	size_t n;

	w->last_retention = mono_usec();
	if ((!w->cfg->max_bytes && !w->cfg->max_age) || list_files(w, &files, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		total += files[i].partial ? 0 : (uint64_t)files[i].size;
	deleted = json_array();
	for (size_t i = 0; deleted && i < n; i++) {
		char path[PATH_MAX];

		if (files[i].partial || !expired(w, &files[i], total))
			break;
		path_of(w, files[i].name, false, path, sizeof(path));
		if (unlink(path) < 0) {
			recw_error(w, "retention unlink", errno);
			break;
		}
		total -= (uint64_t)files[i].size;
		json_array_append_new(deleted, json_pack("{s:s,s:I}", "file", files[i].name,
		                                         "bytes", (json_int_t)files[i].size));
	}
	if (deleted && json_array_size(deleted) > 0)
		add_note(w, "retention",
		         json_pack("{s:o,s:I}", "deleted", deleted, "remaining_bytes",
		                   (json_int_t)total));
	else
		json_decref(deleted);
	free(files);
}

/* --- crash repair and chain recovery ----------------------------------------------------- */

/*
 * Scan a file for its last complete, well-formed event. good = byte offset
 * after it. Returns true when one was found (seq and hash filled).
 */
static bool last_event(const char *path, off_t *good, uint64_t *seq, char *hash)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *body, h[REC_HASH_HEX_LEN + 1];
	size_t cap = 0, blen;
	ssize_t len;
	off_t off = 0;
	bool found = false;

	*good = 0;
	if (!f)
		return false;
	while ((len = getline(&line, &cap, f)) > 0) {
		json_t *ev;

		off += len;
		if (line[len - 1] != '\n' ||
		    !rec_split_line(line, (size_t)len - 1, &body, &blen, h))
			break;
		ev = json_loadb(body, blen, 0, NULL);
		free(body);
		if (!json_is_integer(json_object_get(ev, "seq"))) {
			json_decref(ev);
			break;
		}
		*seq = (uint64_t)json_integer_value(json_object_get(ev, "seq"));
		memcpy(hash, h, sizeof(h));
		*good = off;
		found = true;
		json_decref(ev);
	}
	free(line);
	fclose(f);
	return found;
}

/* A .partial left by a crash: cut the torn tail, note it, and give it its final name. */
static void repair_partial(struct rec_writer *w, const struct rec_file *f)
{
	char from[PATH_MAX], to[PATH_MAX], hash[REC_HASH_HEX_LEN + 1];
	uint64_t seq = 0;
	off_t good;

	path_of(w, f->name, true, from, sizeof(from));
	path_of(w, f->name, false, to, sizeof(to));
	if (!last_event(from, &good, &seq, hash)) {
		unlink(from); /* crashed before its header reached the disk */
		return;
	}
	if (good < f->size) {
		if (truncate(from, good) < 0)
			return;
		add_note(w, "recovery",
		         json_pack("{s:s,s:I}", "file", f->name, "truncated_bytes",
		                   (json_int_t)(f->size - good)));
	}
	if (rename(from, to) < 0)
		recw_error(w, "rename", errno);
}

/* Continue the chain of the newest file, after repairing crashed .partial files. */
static void recover_chain(struct rec_writer *w)
{
	struct rec_file *files;
	size_t n;

	if (list_files(w, &files, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (files[i].partial)
			repair_partial(w, &files[i]);
	for (size_t i = n; i-- > 0;) {
		char path[PATH_MAX];
		off_t good;
		uint64_t seq;

		path_of(w, files[i].name, false, path, sizeof(path));
		if (last_event(path, &good, &seq, w->prev)) {
			w->next_seq = seq + 1;
			strlcpy_pv(w->prev_file, files[i].name, sizeof(w->prev_file));
			break;
		}
	}
	free(files);
}

int recw_open_dir(struct rec_writer *w, char *err, size_t errlen)
{
	struct stat st;

	w->fd = -1;
	w->next_seq = 1;
	memcpy(w->prev, zero_hash, sizeof(w->prev));
	w->prev_file[0] = '\0';
	w->last_sync = w->last_retention = mono_usec();
	w->notes = json_array();
	w->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	w->mdctx = EVP_MD_CTX_new();
	if (!w->notes || !w->md || !w->mdctx) {
		snprintf(err, errlen, "out of memory (or no SHA-256 in libcrypto)");
		return -1;
	}
	if (mkdir(w->cfg->directory, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "recording directory %s: %s", w->cfg->directory,
		         strerror(errno));
		return -1;
	}
	if (stat(w->cfg->directory, &st) == 0 && !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "recording directory %s: not a directory", w->cfg->directory);
		return -1;
	}
	if (access(w->cfg->directory, W_OK | X_OK) < 0) {
		snprintf(err, errlen, "recording directory %s: %s", w->cfg->directory,
		         strerror(errno));
		return -1;
	}
	recover_chain(w);
	run_retention(w);
	return 0;
}

/* --- writer entry points ----------------------------------------------------------------- */

static bool rotation_due(const struct rec_writer *w, usec_t mono)
{
	if (w->fd < 0 || w->lines <= 1)
		return false;
	if (w->cfg->rotate_size && w->size >= w->cfg->rotate_size)
		return true;
	return w->cfg->rotate_interval && mono - w->opened >= w->cfg->rotate_interval;
}

static void rotate(struct rec_writer *w)
{
	int err = close_file(w);

	if (err)
		recw_error(w, "close", err);
	run_retention(w);
}

/* Size rotation would be due once `bytes` more (and `lines` more events) are in the file. */
static bool size_due_after(const struct rec_writer *w, size_t bytes, size_t lines)
{
	return w->cfg->rotate_size && w->lines + lines > 1 && w->size + bytes >= w->cfg->rotate_size;
}

/*
 * Serialize events from the ring into the batch until it is full, the events
 * run out, or size rotation becomes due (the file may exceed rotate_size by
 * one event, as before batching). *k = events in the batch; last = its hash.
 */
static int fill_batch(struct rec_writer *w, const struct rec_slot *ring, size_t cap, size_t first,
                      size_t n, size_t *k, char *last)
{
	memcpy(last, w->prev, REC_HASH_HEX_LEN + 1);
	w->batch.len = 0;
	for (*k = 0; *k < n; (*k)++) {
		const struct rec_slot *s = &ring[(first + *k) % cap];
		const char *type = s->type[0] ? s->type
		                              : json_string_value(json_object_get(s->fields, "type"));
		int err;

		if (*k > 0 && (w->batch.len >= REC_BATCH_BYTES || size_due_after(w, w->batch.len, *k)))
			break;
		err = batch_event(w, s->fields, s->ev, type ? type : "", s->ts, w->next_seq + *k, last);
		if (err) {
			w->batch.len = 0;
			return err;
		}
	}
	return 0;
}

int recw_write_batch(struct rec_writer *w, const struct rec_slot *ring, size_t cap, size_t head,
                     size_t n, size_t *done)
{
	char last[REC_HASH_HEX_LEN + 1];
	int err;

	*done = 0;
	while (*done < n) {
		size_t k;

		if (rotation_due(w, mono_usec()))
			rotate(w);
		if ((err = ensure_open(w)) != 0)
			return err;
		if ((err = fill_batch(w, ring, cap, head + *done, n - *done, &k, last)) != 0)
			return err;
		if ((err = flush_batch(w, k, last)) != 0)
			return err;
		*done += k;
	}
	return 0;
}

int recw_tick(struct rec_writer *w, usec_t mono)
{
	if (w->fd >= 0 && w->dirty && w->cfg->fsync == REC_FSYNC_INTERVAL &&
	    mono - w->last_sync >= USEC_PER_SEC) {
		if (fdatasync(w->fd) == 0)
			w->dirty = false;
		w->last_sync = mono;
	}
	if (rotation_due(w, mono))
		rotate(w);
	if (mono - w->last_retention >= REC_RETENTION_EVERY)
		run_retention(w);
	if (json_array_size(w->notes) > 0)
		return ensure_open(w);
	return 0;
}

int recw_close(struct rec_writer *w)
{
	int err = 0;

	if (w->notes && json_array_size(w->notes) > 0)
		err = ensure_open(w);
	if (w->fd >= 0) {
		int e = close_file(w);
		err = err ? err : e;
	}
	return err;
}

void recw_free(struct rec_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	json_decref(w->notes);
	w->notes = NULL;
	EVP_MD_CTX_free(w->mdctx);
	w->mdctx = NULL;
	EVP_MD_free(w->md);
	w->md = NULL;
	free(w->batch.p);
	w->batch = (struct rec_buf){0};
}
