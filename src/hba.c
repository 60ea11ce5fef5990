/*
 * hba.c - auth_hba_file / auth_ident_file parsing and HBA rule matching
 * (the format is described in include/hba.h).
 *
 * Both files are read whole (bounded size), split into lines, and each line
 * into fields of comma-separated tokens. Everything the evaluator needs is
 * resolved at parse time (@file includes, addresses, masks), so hba_match()
 * does no I/O and no allocation: it runs on the event loop for every login.
 */
#include "hba.h"
#include "log.h"
#include "pool.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HBA_MAX_FILE          (16u * 1024 * 1024)
#define HBA_MAX_LINE          8192
#define HBA_MAX_FIELDS        16
#define HBA_MAX_TOKENS        4096 /* per field */
#define HBA_MAX_INCLUDE_DEPTH 8    /* @file inside @file ... */

struct tok {
	char *s;
	bool quoted;
};

struct field {
	struct tok *toks;
	size_t n, cap;
};

struct fields {
	struct field f[HBA_MAX_FIELDS];
	size_t n;
};

/* Where an error is reported: the top-level file and line being parsed. */
struct hparser {
	const char *origin;
	int line;
	char *err;
	size_t errlen;
};

static bool fail(struct hparser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(struct hparser *ps, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, ps->errlen, "%s:%d: %s", ps->origin, ps->line, msg);
	return false;
}

/* --- reading files ------------------------------------------------------------ */

/* Whole file into a NUL-terminated buffer; NULL + errno-style reason in why. */
static char *read_whole(const char *path, size_t *len, char *why, size_t whylen)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > HBA_MAX_FILE) {
		snprintf(why, whylen, "not a regular file or larger than %u bytes", HBA_MAX_FILE);
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(why, whylen, "out of memory");
		close(fd);
		return NULL;
	}
	while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	*len = got;
	return buf;
}

/* --- tokenizing ------------------------------------------------------------------ */

static void fields_free(struct fields *fs)
{
	for (size_t i = 0; i < HBA_MAX_FIELDS; i++) {
		for (size_t j = 0; j < fs->f[i].n; j++)
			free(fs->f[i].toks[j].s);
		free(fs->f[i].toks);
	}
	memset(fs, 0, sizeof(*fs));
}

static bool field_push(struct hparser *ps, struct field *f, const char *s, size_t n, bool quoted)
{
	char *copy;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 4;
		struct tok *t;
		if (cap > HBA_MAX_TOKENS)
			return fail(ps, "too many names in one field");
		t = realloc(f->toks, cap * sizeof(*t));
		if (!t)
			return fail(ps, "out of memory");
		f->toks = t;
		f->cap = cap;
	}
	copy = malloc(n + 1);
	if (!copy)
		return fail(ps, "out of memory");
	memcpy(copy, s, n);
	copy[n] = '\0';
	f->toks[f->n].s = copy;
	f->toks[f->n].quoted = quoted;
	f->n++;
	return true;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* A quoted token: "..." where "" stands for one quote. *pp points after the opening quote. */
static bool read_quoted(struct hparser *ps, const char **pp, char *out, size_t *outn)
{
	const char *p = *pp;
	size_t n = 0;
	for (;;) {
		if (!*p)
			return fail(ps, "unterminated quoted string");
		if (*p == '"') {
			if (p[1] != '"')
				break;
			p++;
		}
		out[n++] = *p++;
	}
	*pp = p + 1;
	*outn = n;
	return true;
}

/*
 * Split one line (NUL-terminated, at most HBA_MAX_LINE bytes) into fields.
 * Fields are separated by blanks; a field is a comma-separated token list.
 */
static bool split_line(struct hparser *ps, const char *line, struct fields *fs)
{
	char tok[HBA_MAX_LINE + 1];
	const char *p = line;

	memset(fs, 0, sizeof(*fs));
	for (;;) {
		struct field *f;
		while (is_blank(*p))
			p++;
		if (!*p || *p == '#')
			return true;
		if (fs->n == HBA_MAX_FIELDS)
			return fail(ps, "too many fields");
		f = &fs->f[fs->n++];
		for (;;) {
			size_t n = 0;
			bool quoted = *p == '"';
			if (quoted) {
				p++;
				if (!read_quoted(ps, &p, tok, &n))
					return false;
			} else {
				while (*p && !is_blank(*p) && *p != ',' && *p != '#' && *p != '"')
					tok[n++] = *p++;
			}
			if (!quoted && n == 0)
				return fail(ps, "empty name in list");
			if (!field_push(ps, f, tok, n, quoted))
				return false;
			if (*p != ',')
				break;
			p++;
			while (is_blank(*p))
				p++;
		}
		if (*p && !is_blank(*p) && *p != '#')
			return fail(ps, "unexpected character '%c'", *p);
	}
}

/*
 * Call fn for each non-empty line of text (a NUL byte inside is an error).
 * ps->line is kept current so errors name the line.
 */
typedef bool (*line_fn)(struct hparser *ps, struct fields *fs, void *arg);

static bool for_each_line(struct hparser *ps, const char *text, size_t len, line_fn fn, void *arg)
{
	const char *p = text, *end = text + len;
	char line[HBA_MAX_LINE + 1];

	ps->line = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct fields fs;
		bool ok;

		ps->line++;
		if (n > HBA_MAX_LINE)
			return fail(ps, "line too long");
		if (memchr(p, '\0', n))
			return fail(ps, "NUL byte in file");
		memcpy(line, p, n);
		line[n] = '\0';
		p += n + 1;
		ok = split_line(ps, line, &fs);
		if (ok && fs.n > 0)
			ok = fn(ps, &fs, arg);
		fields_free(&fs);
		if (!ok)
			return false;
	}
	return true;
}

/* --- names and @file ------------------------------------------------------------- */

static void names_free(struct hba_names *n)
{
	for (size_t i = 0; i < n->count; i++)
		free(n->names[i]);
	free(n->names);
	memset(n, 0, sizeof(*n));
}

static bool names_push(struct hparser *ps, struct hba_names *n, const char *s)
{
	char **v;
	char *copy;
	/* Bounded like a field, with room for several @files. */
	if (n->count >= (size_t)HBA_MAX_TOKENS * 16)
		return fail(ps, "too many names");
	v = realloc(n->names, (n->count + 1) * sizeof(*v));
	if (!v)
		return fail(ps, "out of memory");
	n->names = v;
	copy = strdup(s);
	if (!copy)
		return fail(ps, "out of memory");
	n->names[n->count++] = copy;
	return true;
}

struct names_ctx {
	struct hba_names *names;
	bool is_db;
	int depth;
};

static bool names_add(struct hparser *ps, struct names_ctx *nc, const struct tok *t);

static bool include_line(struct hparser *ps, struct fields *fs, void *arg)
{
	for (size_t i = 0; i < fs->n; i++)
		for (size_t j = 0; j < fs->f[i].n; j++)
			if (!names_add(ps, arg, &fs->f[i].toks[j]))
				return false;
	return true;
}

/* Resolve `name` against the directory of `origin` (PostgreSQL does the same). */
static void include_path(const char *origin, const char *name, char *out, size_t len)
{
	const char *slash = strrchr(origin, '/');
	if (name[0] == '/' || !slash)
		snprintf(out, len, "%s", name);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - origin), origin, name);
}

/*
 * @file: splice the words of another file into the list. Errors inside it are
 * reported as "included-file:line", the place that actually is wrong.
 */
static bool include_file(struct hparser *ps, struct names_ctx *nc, const char *name)
{
	char path[4096], why[160];
	struct hparser sub = *ps;
	struct names_ctx inner = *nc;
	size_t len;
	char *text;
	bool ok;

	if (!*name)
		return fail(ps, "empty file name after @");
	if (nc->depth >= HBA_MAX_INCLUDE_DEPTH)
		return fail(ps, "@file includes nested too deeply");
	include_path(ps->origin, name, path, sizeof(path));
	text = read_whole(path, &len, why, sizeof(why));
	if (!text)
		return fail(ps, "could not read @file \"%s\": %s", path, why);
	sub.origin = path;
	inner.depth++;
	ok = for_each_line(&sub, text, len, include_line, &inner);
	free(text);
	return ok;
}

static bool names_add(struct hparser *ps, struct names_ctx *nc, const struct tok *t)
{
	const char *s = t->s;
	struct hba_names *n = nc->names;

	if (t->quoted)
		return names_push(ps, n, s);
	if (strcmp(s, "all") == 0) {
		n->flags |= HBA_NAME_ALL;
		return true;
	}
	if (nc->is_db && strcmp(s, "sameuser") == 0) {
		n->flags |= HBA_NAME_SAMEUSER;
		return true;
	}
	if (nc->is_db && strcmp(s, "replication") == 0) {
		n->flags |= HBA_NAME_REPLICATION;
		return true;
	}
	if (nc->is_db && (strcmp(s, "samerole") == 0 || strcmp(s, "samegroup") == 0))
		return fail(ps, "\"%s\" is not supported", s);
	if (!nc->is_db && s[0] == '+')
		return fail(ps, "group names (\"%s\") are not supported", s);
	if (s[0] == '@')
		return include_file(ps, nc, s + 1);
	return names_push(ps, n, s);
}

static bool parse_names(struct hparser *ps, const struct field *f, struct hba_names *out,
                        bool is_db)
{
	struct names_ctx nc = {out, is_db, 0};
	for (size_t i = 0; i < f->n; i++)
		if (!names_add(ps, &nc, &f->toks[i]))
			return false;
	return true;
}

/* --- one HBA line ------------------------------------------------------------------ */

/* The single unquoted token of field i, or NULL (with an error) if it is a list. */
static const char *single(struct hparser *ps, const struct fields *fs, size_t i, const char *what)
{
	if (i >= fs->n)
		return fail(ps, "missing %s", what), NULL;
	if (fs->f[i].n != 1)
		return fail(ps, "%s cannot be a list", what), NULL;
	return fs->f[i].toks[0].s;
}

static bool parse_conn(struct hparser *ps, const char *s, enum hba_conn *out)
{
	static const struct {
		const char *name;
		enum hba_conn conn;
	} types[] = {{"local", HBA_LOCAL},
	             {"host", HBA_HOST},
	             {"hostssl", HBA_HOSTSSL},
	             {"hostnossl", HBA_HOSTNOSSL}};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(s, types[i].name) == 0) {
			*out = types[i].conn;
			return true;
		}
	return fail(ps, "invalid connection type \"%s\"", s);
}

static bool parse_method(struct hparser *ps, const char *s, enum auth_type *out)
{
	static const struct {
		const char *name;
		enum auth_type method;
	} methods[] = {{"trust", AUTH_TRUST},
	               {"reject", AUTH_REJECT},
	               {"md5", AUTH_MD5},
	               {"password", AUTH_PLAIN},
	               {"peer", AUTH_PEER},
	               {"cert", AUTH_CERT},
	               {"scram-sha-256", AUTH_SCRAM_SHA_256},
	               {"oidc", AUTH_OIDC}};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(s, methods[i].name) == 0) {
			*out = methods[i].method;
			return true;
		}
	return fail(ps, "invalid or unsupported authentication method \"%s\"", s);
}

static int parse_family(const char *s, uint8_t out[16])
{
	if (inet_pton(AF_INET, s, out) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, out) == 1)
		return AF_INET6;
	return 0;
}

static void prefix_mask(int bits, size_t n, uint8_t mask[16])
{
	memset(mask, 0, 16);
	for (size_t i = 0; i < n; i++) {
		int b = bits - (int)i * 8;
		mask[i] = b >= 8 ? 0xff : b <= 0 ? 0 : (uint8_t)(0xff << (8 - b));
	}
}

/* "addr/bits" in one field. */
static bool parse_cidr(struct hparser *ps, struct hba_rule *r, const char *s)
{
	char addr[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	char *end;
	long bits;
	size_t n;

	if ((size_t)(slash - s) >= sizeof(addr))
		return fail(ps, "invalid IP address \"%s\"", s);
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	r->family = parse_family(addr, r->addr);
	if (!r->family)
		return fail(ps, "invalid IP address \"%s\"", addr);
	n = r->family == AF_INET ? 4 : 16;
	errno = 0;
	bits = strtol(slash + 1, &end, 10);
	if (!slash[1] || *end || errno || bits < 0 || bits > (long)(n * 8))
		return fail(ps, "invalid CIDR mask in address \"%s\"", s);
	prefix_mask((int)bits, n, r->mask);
	return true;
}

/*
 * The ADDRESS field (and a MASK field after a bare address). Returns the
 * index of the field after them, 0 on error.
 */
static size_t parse_address(struct hparser *ps, const struct fields *fs, size_t i,
                            struct hba_rule *r)
{
	const char *s = single(ps, fs, i, "IP address");
	const char *m;
	uint8_t mask[16];

	if (!s)
		return 0;
	if (strcmp(s, "all") == 0 && !fs->f[i].toks[0].quoted) {
		r->addr_all = true;
		return i + 1;
	}
	if (strcmp(s, "samehost") == 0 || strcmp(s, "samenet") == 0)
		return fail(ps, "\"%s\" is not supported", s), 0;
	if (strchr(s, '/'))
		return parse_cidr(ps, r, s) ? i + 1 : 0;
	r->family = parse_family(s, r->addr);
	if (!r->family)
		return fail(ps, "invalid IP address \"%s\" (host names are not supported)", s), 0;
	m = single(ps, fs, i + 1, "IP mask");
	if (!m)
		return 0;
	if (parse_family(m, mask) != r->family)
		return fail(ps, "invalid IP mask \"%s\"", m), 0;
	memcpy(r->mask, mask, sizeof(mask));
	return i + 2;
}

static bool parse_options(struct hparser *ps, const struct fields *fs, size_t i, struct hba_rule *r)
{
	for (; i < fs->n; i++) {
		const char *s = single(ps, fs, i, "option");
		const char *eq;
		if (!s)
			return false;
		eq = strchr(s, '=');
		if (!eq || eq == s)
			return fail(ps, "invalid option \"%s\" (expected name=value)", s);
		if (strncmp(s, "map=", 4) == 0) {
			if (r->method != AUTH_PEER && r->method != AUTH_CERT)
				return fail(ps, "map is only allowed with peer and cert");
			free(r->map);
			r->map = strdup(eq + 1);
			if (!r->map)
				return fail(ps, "out of memory");
		} else if (strncmp(s, "clientcert=", 11) != 0) {
			/* clientcert= is accepted (the cert method always requires one). */
			return fail(ps, "unsupported option \"%.*s\"", (int)(eq - s), s);
		}
	}
	return true;
}

static void rule_free(struct hba_rule *r)
{
	names_free(&r->dbs);
	names_free(&r->users);
	free(r->map);
}

static bool parse_rule(struct hparser *ps, const struct fields *fs, struct hba_rule *r)
{
	const char *s = single(ps, fs, 0, "connection type");
	size_t i = 3;

	memset(r, 0, sizeof(*r));
	r->line = ps->line;
	if (!s || !parse_conn(ps, s, &r->conn))
		return false;
	if (fs->n < 4)
		return fail(ps, "end-of-line before authentication method");
	if (!parse_names(ps, &fs->f[1], &r->dbs, true) ||
	    !parse_names(ps, &fs->f[2], &r->users, false))
		return false;
	if (r->conn == HBA_LOCAL)
		r->addr_all = true;
	else if (!(i = parse_address(ps, fs, 3, r)))
		return false;
	s = single(ps, fs, i, "authentication method");
	if (!s || !parse_method(ps, s, &r->method))
		return false;
	for (size_t k = 0; !r->addr_all && k < 16; k++)
		r->addr[k] &= r->mask[k];
	return parse_options(ps, fs, i + 1, r);
}

static bool hba_line(struct hparser *ps, struct fields *fs, void *arg)
{
	struct hba *h = arg;
	struct hba_rule *rules = realloc(h->rules, (h->count + 1) * sizeof(*rules));
	if (!rules)
		return fail(ps, "out of memory");
	h->rules = rules;
	if (!parse_rule(ps, fs, &h->rules[h->count])) {
		rule_free(&h->rules[h->count]);
		return false;
	}
	h->count++;
	return true;
}

struct hba *hba_parse(const char *text, size_t len, const char *origin, char *err, size_t errlen)
{
	struct hparser ps = {origin ? origin : "<buffer>", 0, err, errlen};
	struct hba *h = calloc(1, sizeof(*h));

	if (!h) {
		snprintf(err, errlen, "%s: out of memory", ps.origin);
		return NULL;
	}
	if (!for_each_line(&ps, text, len, hba_line, h)) {
		hba_free(h);
		return NULL;
	}
	return h;
}

struct hba *hba_load(const char *path, char *err, size_t errlen)
{
	char why[160];
	size_t len;
	char *text = read_whole(path, &len, why, sizeof(why));
	struct hba *h;

	if (!text) {
		snprintf(err, errlen, "%s: %s", path, why);
		return NULL;
	}
	h = hba_parse(text, len, path, err, errlen);
	free(text);
	return h;
}

void hba_free(struct hba *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->count; i++)
		rule_free(&h->rules[i]);
	free(h->rules);
	free(h);
}

/* --- matching -------------------------------------------------------------------- */

static bool name_listed(const struct hba_names *n, const char *name)
{
	for (size_t i = 0; i < n->count; i++)
		if (strcmp(n->names[i], name) == 0)
			return true;
	return false;
}

/* PostgreSQL: `all` does not cover replication connections, only `replication` does. */
static bool db_matches(const struct hba_names *n, const char *db, const char *user, bool repl)
{
	if (repl)
		return (n->flags & HBA_NAME_REPLICATION) != 0;
	if (n->flags & HBA_NAME_ALL)
		return true;
	if ((n->flags & HBA_NAME_SAMEUSER) && strcmp(db, user) == 0)
		return true;
	return name_listed(n, db);
}

static bool user_matches(const struct hba_names *n, const char *user)
{
	return (n->flags & HBA_NAME_ALL) || name_listed(n, user);
}

static bool addr_matches(const struct hba_rule *r, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam;
	size_t n;

	if (r->addr_all)
		return true;
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		fam = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *in6 =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		/* A v4-mapped client (::ffff:a.b.c.d) matches IPv4 rules. */
		if (IN6_IS_ADDR_V4MAPPED(in6) && r->family == AF_INET) {
			memcpy(a, in6->s6_addr + 12, 4);
			fam = AF_INET;
		} else {
			memcpy(a, in6->s6_addr, 16);
			fam = AF_INET6;
		}
	} else {
		return false;
	}
	if (fam != r->family)
		return false;
	n = fam == AF_INET ? 4 : 16;
	for (size_t i = 0; i < n; i++)
		if ((a[i] & r->mask[i]) != r->addr[i])
			return false;
	return true;
}

static bool conn_matches(enum hba_conn conn, bool is_unix, bool is_tls)
{
	switch (conn) {
	case HBA_LOCAL:
		return is_unix;
	case HBA_HOST:
		return !is_unix;
	case HBA_HOSTSSL:
		return !is_unix && is_tls;
	case HBA_HOSTNOSSL:
		return !is_unix && !is_tls;
	}
	return false;
}

const struct hba_rule *hba_match(const struct hba *h, bool is_unix, bool is_tls,
                                 const struct sockaddr *addr, const char *db, const char *user,
                                 bool is_replication)
{
	if (!h || !db || !user)
		return NULL;
	for (size_t i = 0; i < h->count; i++) {
		const struct hba_rule *r = &h->rules[i];
		if (conn_matches(r->conn, is_unix, is_tls) &&
		    db_matches(&r->dbs, db, user, is_replication) &&
		    user_matches(&r->users, user) && (is_unix || addr_matches(r, addr)))
			return r;
	}
	return NULL;
}

/* --- ident maps ------------------------------------------------------------------ */

static bool ident_line(struct hparser *ps, struct fields *fs, void *arg)
{
	struct ident_map *m = arg;
	struct ident_entry *v, *e;

	if (fs->n != 3)
		return fail(ps, "expected 3 fields: map-name system-user pg-user");
	for (size_t i = 0; i < 3; i++)
		if (!single(ps, fs, i, "ident field"))
			return false;
	if (fs->f[1].toks[0].s[0] == '/' && !fs->f[1].toks[0].quoted)
		return fail(ps, "regular expressions are not supported in auth_ident_file");
	v = realloc(m->entries, (m->count + 1) * sizeof(*v));
	if (!v)
		return fail(ps, "out of memory");
	m->entries = v;
	e = &m->entries[m->count];
	e->map = strdup(fs->f[0].toks[0].s);
	e->sysuser = strdup(fs->f[1].toks[0].s);
	e->pguser = strdup(fs->f[2].toks[0].s);
	e->pg_all = !fs->f[2].toks[0].quoted && strcmp(e->pguser ? e->pguser : "", "all") == 0;
	m->count++;
	if (!e->map || !e->sysuser || !e->pguser)
		return fail(ps, "out of memory");
	return true;
}

struct ident_map *ident_parse(const char *text, size_t len, const char *origin, char *err,
                              size_t errlen)
{
	struct hparser ps = {origin ? origin : "<buffer>", 0, err, errlen};
	struct ident_map *m = calloc(1, sizeof(*m));

	if (!m) {
		snprintf(err, errlen, "%s: out of memory", ps.origin);
		return NULL;
	}
	if (!for_each_line(&ps, text, len, ident_line, m)) {
		ident_free(m);
		return NULL;
	}
	return m;
}

struct ident_map *ident_load(const char *path, char *err, size_t errlen)
{
	char why[160];
	size_t len;
	char *text = read_whole(path, &len, why, sizeof(why));
	struct ident_map *m;

	if (!text) {
		snprintf(err, errlen, "%s: %s", path, why);
		return NULL;
	}
	m = ident_parse(text, len, path, err, errlen);
	free(text);
	return m;
}

void ident_free(struct ident_map *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->count; i++) {
		free(m->entries[i].map);
		free(m->entries[i].sysuser);
		free(m->entries[i].pguser);
	}
	free(m->entries);
	free(m);
}

bool ident_allows(const struct ident_map *m, const char *map, const char *sysuser,
                  const char *pguser)
{
	if (!sysuser || !pguser)
		return false;
	if (!map)
		return strcmp(sysuser, pguser) == 0;
	for (size_t i = 0; m && i < m->count; i++) {
		const struct ident_entry *e = &m->entries[i];
		if (strcmp(e->map, map) == 0 && strcmp(e->sysuser, sysuser) == 0 &&
		    (e->pg_all || strcmp(e->pguser, pguser) == 0))
			return true;
	}
	return false;
}

/* --- the running set ----------------------------------------------------------------- */

static struct hba *running_hba;
static struct ident_map *running_ident;

bool hba_reload(const struct pv_config *cf, char *err, size_t errlen)
{
	struct hba *h = NULL;
	struct ident_map *m = NULL;

	/* Only auth_type = hba reads the files, as PgBouncer does. */
	if (cf->auth_type == AUTH_HBA) {
		if (!cf->auth_hba_file || !cf->auth_hba_file[0]) {
			snprintf(err, errlen, "auth_type = hba needs auth_hba_file");
			return false;
		}
		h = hba_load(cf->auth_hba_file, err, errlen);
		if (!h)
			return false;
		if (cf->auth_ident_file && cf->auth_ident_file[0]) {
			m = ident_load(cf->auth_ident_file, err, errlen);
			if (!m) {
				hba_free(h);
				return false;
			}
		}
	}
	hba_free(running_hba);
	ident_free(running_ident);
	running_hba = h;
	running_ident = m;
	return true;
}

const struct hba *hba_active(void)
{
	return running_hba;
}

const struct ident_map *ident_active(void)
{
	return running_ident;
}

/* --- TLS facts (tls.c) ------------------------------------------------------------- */

bool hba_sock_is_tls(struct pv_socket *c)
{
	return c->tls != NULL && c->tls_state == PV_TLS_OPEN;
}

bool hba_sock_cert_name(struct pv_socket *c, char *buf, size_t len)
{
	return hba_sock_is_tls(c) && tls_peer_cn(c, buf, len);
}
