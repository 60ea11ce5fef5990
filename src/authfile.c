/*
 * authfile.c - the auth_file (userlist.txt) parser and the name -> secret map.
 *
 * Format, one entry per line:  "user" "secret" [anything else is ignored]
 * Inside quotes "" stands for one '"'. Lines whose first non-blank character
 * is ';' are comments, blank lines are skipped, and any other line that does
 * not start with '"' makes the whole file "broken": parsing stops and the
 * caller gets NULL plus "origin:line: reason" (so a RELOAD keeps the old map).
 *
 * Entries live in an array sorted by name so lookups are a binary search
 * (auth files with 100k users are real). When a user is listed twice the
 * later line wins, as if the lines had been applied in order.
 */
#include "authfile.h"
#include "scram.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Refuse absurd files instead of trying to malloc them. */
#define AUTHFILE_MAX_SIZE (256u * 1024 * 1024)

struct authfile {
	struct auth_entry *entries; /* sorted by name, unique */
	size_t count;
	bool have_stat;
	struct stat st;
};

/* An entry while parsing: remembers its line order for "later line wins". */
struct pending {
	struct auth_entry e;
	size_t order;
};

struct parser {
	const char *p;
	const char *end;
	size_t line;
	const char *origin;
	char *err;
	size_t errlen;
	struct pending *items;
	size_t n, cap;
};

static void set_err(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct parser *ps, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!ps->err || ps->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, ps->errlen, "%s:%zu: %s", ps->origin, ps->line, msg);
}

static void entry_free(struct auth_entry *e)
{
	if (e->secret) {
		OPENSSL_cleanse(e->secret, strlen(e->secret));
		free(e->secret);
	}
	free(e->name);
	e->name = e->secret = NULL;
}

enum secret_kind secret_kind_of(const char *secret)
{
	struct scram_secret s;
	size_t i;

	if (!secret)
		return SECRET_PLAIN;
	if (strncmp(secret, "md5", 3) == 0 && strlen(secret) == 35) {
		/* PostgreSQL only treats lowercase hex as an md5 hash. */
		for (i = 3; i < 35; i++)
			if (!strchr("0123456789abcdef", secret[i]))
				return SECRET_PLAIN;
		return SECRET_MD5;
	}
	/* A string that merely looks like SCRAM but does not parse is a plaintext password. */
	if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0 && scram_parse_secret(secret, &s)) {
		OPENSSL_cleanse(&s, sizeof(s));
		return SECRET_SCRAM;
	}
	return SECRET_PLAIN;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static void skip_blanks(struct parser *ps)
{
	while (ps->p < ps->end && is_blank(*ps->p))
		ps->p++;
}

/* Move past the end of the current line (the '\n' itself included). */
static void skip_line(struct parser *ps)
{
	const char *nl = memchr(ps->p, '\n', (size_t)(ps->end - ps->p));

	ps->p = nl ? nl + 1 : ps->end;
}

/*
 * Read one "quoted" field starting at ps->p (which is a '"'). Returns a
 * malloc'd unescaped copy, or NULL with ps->err set (or on allocation failure,
 * also with err set). A field may not span lines or contain NUL bytes.
 */
static char *read_quoted(struct parser *ps, const char *what)
{
	const char *s = ps->p + 1;
	char *out, *o;

	/* Unescaped length <= raw length, so the raw span bounds the allocation. */
	const char *q = s;
	while (q < ps->end) {
		if (*q == '"') {
			if (q + 1 < ps->end && q[1] == '"') {
				q += 2;
				continue;
			}
			break;
		}
		if (*q == '\n' || *q == '\0')
			break;
		q++;
	}
	if (q >= ps->end || *q != '"') {
		set_err(ps, "broken auth file: unterminated %s", what);
		return NULL;
	}
	out = malloc((size_t)(q - s) + 1);
	if (!out) {
		set_err(ps, "out of memory");
		return NULL;
	}
	for (o = out; s < q; s++) {
		*o++ = *s;
		if (*s == '"')
			s++; /* second quote of a "" pair */
	}
	*o = '\0';
	ps->p = q + 1;
	return out;
}

static bool push_entry(struct parser *ps, char *name, char *secret)
{
	struct pending *n;

	if (ps->n == ps->cap) {
		size_t ncap = ps->cap ? ps->cap * 2 : 64;
		if (ncap > SIZE_MAX / sizeof(*n))
			return false;
		n = realloc(ps->items, ncap * sizeof(*n));
		if (!n)
			return false;
		ps->items = n;
		ps->cap = ncap;
	}
	n = &ps->items[ps->n];
	n->e.name = name;
	n->e.secret = secret;
	n->e.kind = secret_kind_of(secret);
	n->order = ps->n;
	ps->n++;
	return true;
}

/* Parse the line at ps->p (already past leading blanks and known to start with '"'). */
static bool parse_entry(struct parser *ps)
{
	char *name, *secret;

	name = read_quoted(ps, "user name");
	if (!name)
		return false;
	skip_blanks(ps);
	if (ps->p >= ps->end || *ps->p != '"') {
		free(name);
		set_err(ps, "broken auth file: missing password for user");
		return false;
	}
	secret = read_quoted(ps, "password");
	if (!secret) {
		free(name);
		return false;
	}
	if (!push_entry(ps, name, secret)) {
		set_err(ps, "out of memory");
		free(name);
		OPENSSL_cleanse(secret, strlen(secret));
		free(secret);
		return false;
	}
	/* Anything after the second field is ignored. */
	skip_line(ps);
	ps->line++;
	return true;
}

static bool parse_lines(struct parser *ps)
{
	while (ps->p < ps->end) {
		skip_blanks(ps);
		if (ps->p >= ps->end)
			break;
		if (*ps->p == '\n') {
			ps->p++;
			ps->line++;
			continue;
		}
		if (*ps->p == ';') {
			skip_line(ps);
			ps->line++;
			continue;
		}
		if (*ps->p != '"') {
			set_err(ps, "broken auth file");
			return false;
		}
		if (!parse_entry(ps))
			return false;
	}
	return true;
}

/* Sort by name; among equal names the later line sorts last. */
static int pending_cmp(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;
	int c = strcmp(x->e.name, y->e.name);

	if (c)
		return c;
	return x->order < y->order ? -1 : (x->order > y->order);
}

/* Sort and drop duplicates (keeping the last occurrence) into af->entries. */
static bool build_index(struct parser *ps, struct authfile *af)
{
	size_t i, k = 0;

	if (ps->n == 0)
		return true;
	qsort(ps->items, ps->n, sizeof(*ps->items), pending_cmp);
	af->entries = calloc(ps->n, sizeof(*af->entries));
	if (!af->entries)
		return false;
	for (i = 0; i < ps->n; i++) {
		if (i + 1 < ps->n && strcmp(ps->items[i].e.name, ps->items[i + 1].e.name) == 0) {
			entry_free(&ps->items[i].e);
			continue;
		}
		af->entries[k++] = ps->items[i].e;
		ps->items[i].e.name = ps->items[i].e.secret = NULL;
	}
	af->count = k;
	return true;
}

static void parser_cleanup(struct parser *ps)
{
	for (size_t i = 0; i < ps->n; i++)
		entry_free(&ps->items[i].e);
	free(ps->items);
	ps->items = NULL;
	ps->n = ps->cap = 0;
}

struct authfile *authfile_parse(const char *text, size_t len, const char *origin, char *err,
				size_t errlen)
{
	struct parser ps = {0};
	struct authfile *af;

	if (!text) { /* NULL + 0 is still undefined behaviour in C */
		text = "";
		len = 0;
	}
	ps.p = text;
	ps.end = text + len;
	ps.line = 1;
	ps.origin = origin ? origin : "auth_file";
	ps.err = err;
	ps.errlen = errlen;
	if (err && errlen)
		err[0] = '\0';
	af = calloc(1, sizeof(*af));
	if (!af) {
		set_err(&ps, "out of memory");
		return NULL;
	}
	if (!parse_lines(&ps) || !build_index(&ps, af)) {
		if (err && errlen && !err[0])
			set_err(&ps, "out of memory");
		parser_cleanup(&ps);
		authfile_free(af);
		return NULL;
	}
	parser_cleanup(&ps);
	return af;
}

static void load_err(char *err, size_t errlen, const char *path, const char *what, int e)
{
	if (!err || errlen == 0)
		return;
	if (e)
		snprintf(err, errlen, "%s: %s: %s", path, what, strerror(e));
	else
		snprintf(err, errlen, "%s: %s", path, what);
}

/* Read the whole file; the buffer is returned with its length in *lenp. */
static char *read_all(int fd, size_t size, size_t *lenp)
{
	char *buf = malloc(size ? size : 1);
	size_t got = 0;

	if (!buf)
		return NULL;
	while (got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return NULL;
		}
		if (r == 0)
			break; /* file shrank under us: parse what is there */
		got += (size_t)r;
	}
	*lenp = got;
	return buf;
}

struct authfile *authfile_load(const char *path, char *err, size_t errlen)
{
	struct authfile *af;
	struct stat st;
	char *buf;
	size_t len = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		load_err(err, errlen, path, "could not open auth file", errno);
		return NULL;
	}
	/* fstat on the open fd so the recorded identity is that of the bytes we parse. */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > AUTHFILE_MAX_SIZE) {
		load_err(err, errlen, path, "auth file is not a regular file of sane size", 0);
		close(fd);
		return NULL;
	}
	buf = read_all(fd, (size_t)st.st_size, &len);
	close(fd);
	if (!buf) {
		load_err(err, errlen, path, "could not read auth file", errno);
		return NULL;
	}
	af = authfile_parse(buf, len, path, err, errlen);
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (af) {
		af->st = st;
		af->have_stat = true;
	}
	return af;
}

void authfile_free(struct authfile *af)
{
	if (!af)
		return;
	for (size_t i = 0; i < af->count; i++)
		entry_free(&af->entries[i]);
	free(af->entries);
	free(af);
}

const struct auth_entry *authfile_find(const struct authfile *af, const char *name)
{
	size_t lo = 0, hi;

	if (!af || !name)
		return NULL;
	hi = af->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, af->entries[mid].name);
		if (c == 0)
			return &af->entries[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

size_t authfile_count(const struct authfile *af)
{
	return af ? af->count : 0;
}

bool authfile_changed(const struct authfile *af, const char *path)
{
	struct stat st;

	/* Without a recorded identity (parsed from memory) we cannot tell: say yes. */
	if (!af || !af->have_stat || stat(path, &st) < 0)
		return true;
	return st.st_dev != af->st.st_dev || st.st_ino != af->st.st_ino ||
	       st.st_mode != af->st.st_mode || st.st_uid != af->st.st_uid ||
	       st.st_gid != af->st.st_gid || st.st_size != af->st.st_size ||
	       st.st_mtim.tv_sec != af->st.st_mtim.tv_sec ||
	       st.st_mtim.tv_nsec != af->st.st_mtim.tv_nsec;
}
