/*
 * mask_copy.c - COPY TO STDOUT statements and CopyData codecs for masking
 * (include/mask_copy.h says what this module owns).
 *
 * PostgreSQL writes COPY TO output one row per CopyData message, ending in
 * '\n' (text, csv); binary output puts the file header in front of the first
 * row's message and the trailer (-1) in a message of its own. The codecs
 * rely on exactly that and report anything else as malformed, so the caller
 * fails closed instead of guessing.
 */
#include "mask_copy.h"

#include <jansson.h>
#include <pg_query.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BINARY_SIGNATURE     "PGCOPY\n\377\r\n\0"
#define BINARY_SIGNATURE_LEN 11

/* ---- the statement ------------------------------------------------------------------- */

static const char *jstr(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* A DefElem's value as text: String, Integer, Boolean, or no value (a flag: "true"). */
static const char *opt_value(json_t *arg, char *buf, size_t len)
{
	json_t *v;

	if (!arg)
		return "true";
	if ((v = json_object_get(arg, "String")) != NULL)
		return jstr(v, "sval") ? jstr(v, "sval") : "";
	if ((v = json_object_get(arg, "Boolean")) != NULL)
		return json_is_true(json_object_get(v, "boolval")) ? "true" : "false";
	if ((v = json_object_get(arg, "Integer")) != NULL) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(json_object_get(v, "ival")));
		return buf;
	}
	return NULL;
}

static bool truthy(const char *v)
{
	return strcasecmp(v, "true") == 0 || strcasecmp(v, "on") == 0 || strcmp(v, "1") == 0 ||
	       strcasecmp(v, "match") == 0;
}

/* One option; false for what the codecs do not handle (multi-byte delimiters...). */
static bool apply_option(struct copy_opts *o, const char *name, const char *v)
{
	if (strcmp(name, "format") == 0) {
		if (strcasecmp(v, "text") == 0)
			o->format = COPY_TEXT;
		else if (strcasecmp(v, "csv") == 0)
			o->format = COPY_CSV;
		else if (strcasecmp(v, "binary") == 0)
			o->format = COPY_BINARY;
		else
			return false;
	} else if (strcmp(name, "header") == 0) {
		o->header = truthy(v);
	} else if (strcmp(name, "delimiter") == 0 || strcmp(name, "quote") == 0 ||
	           strcmp(name, "escape") == 0) {
		if (strlen(v) != 1)
			return false;
		*(name[0] == 'd' ? &o->delim : name[0] == 'q' ? &o->quote : &o->escape) = v[0];
	} else if (strcmp(name, "null") == 0) {
		free(o->null_str);
		if (!(o->null_str = strdup(v)))
			return false;
	} else if (strcmp(name, "encoding") == 0) {
		/* rows arrive in the client encoding; delimiters are single ASCII bytes */
	} else {
		return false;
	}
	return true;
}

static bool read_options(struct copy_opts *o, json_t *list)
{
	size_t i;
	json_t *it;
	bool escape_set = false, delim_set = false;
	char buf[32];

	json_array_foreach(list, i, it)
	{
		json_t *de = json_object_get(it, "DefElem");
		const char *name = jstr(de, "defname");
		const char *v = opt_value(json_object_get(de, "arg"), buf, sizeof(buf));

		/* FORCE_QUOTE takes * or a column list: only quoting, which is ours for masked fields */
		if (name && strcmp(name, "force_quote") == 0)
			continue;
		if (!name || !v || !apply_option(o, name, v))
			return false;
		escape_set |= strcmp(name, "escape") == 0;
		delim_set |= strcmp(name, "delimiter") == 0;
	}
	if (!delim_set)
		o->delim = o->format == COPY_CSV ? ',' : '\t';
	if (!escape_set)
		o->escape = o->quote;
	if (!o->null_str && !(o->null_str = strdup(o->format == COPY_CSV ? "" : "\\N")))
		return false;
	return true;
}

/* "name" with embedded quotes doubled: safe whatever the identifier holds. */
static bool append_ident(struct pv_buf *b, const char *name)
{
	if (!buf_append(b, "\"", 1))
		return false;
	for (const char *p = name; *p; p++)
		if (!buf_append(b, p, 1) || (*p == '"' && !buf_append(b, "\"", 1)))
			return false;
	return buf_append(b, "\"", 1);
}

static bool build_probe(json_t *copy, struct pv_buf *probe)
{
	json_t *rel = json_object_get(copy, "relation"), *cols = json_object_get(copy, "attlist");
	const char *schema = jstr(rel, "schemaname"), *name = jstr(rel, "relname");
	size_t i;
	json_t *it;
	bool ok = buf_append(probe, "SELECT ", 7);

	if (!name)
		return false;
	if (json_array_size(cols) == 0)
		ok = ok && buf_append(probe, "*", 1);
	json_array_foreach(cols, i, it)
	{
		const char *col = jstr(json_object_get(it, "String"), "sval");
		ok = ok && col && (i == 0 || buf_append(probe, ", ", 2)) && append_ident(probe, col);
	}
	ok = ok && buf_append(probe, " FROM ", 6);
	if (schema)
		ok = ok && append_ident(probe, schema) && buf_append(probe, ".", 1);
	return ok && append_ident(probe, name) && buf_append(probe, " LIMIT 0", 8);
}

bool copy_parse(const char *sql, struct copy_opts *o, struct pv_buf *probe)
{
	PgQueryParseResult pr = pg_query_parse(sql);
	json_t *root = pr.error ? NULL : json_loads(pr.parse_tree, 0, NULL);
	json_t *stmts = json_object_get(root, "stmts");
	json_t *copy = json_object_get(json_object_get(json_array_get(stmts, 0), "stmt"), "CopyStmt");
	size_t start = probe->len;
	bool ok;

	memset(o, 0, sizeof(*o));
	o->quote = '"';
	ok = json_array_size(stmts) == 1 && copy && json_object_get(copy, "relation") &&
	     !json_object_get(copy, "query") && !json_is_true(json_object_get(copy, "is_from")) &&
	     !json_object_get(copy, "filename") && !json_is_true(json_object_get(copy, "is_program")) &&
	     read_options(o, json_object_get(copy, "options")) && build_probe(copy, probe);
	json_decref(root);
	pg_query_free_parse_result(pr);
	if (!ok) {
		copy_opts_free(o);
		probe->len = start;
	}
	return ok;
}

void copy_opts_free(struct copy_opts *o)
{
	free(o->null_str);
	o->null_str = NULL;
}

/* ---- text format ----------------------------------------------------------------------- */

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Undo COPY text escapes of one field into out. */
static bool text_decode(const uint8_t *s, size_t n, struct pv_buf *out)
{
	static const char ctl_from[] = "bfnrtv", ctl_to[] = "\b\f\n\r\t\v";

	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		const char *ctl;

		if (c != '\\' || i + 1 == n) {
			if (!buf_append(out, &c, 1))
				return false;
			continue;
		}
		c = s[++i];
		if ((ctl = memchr(ctl_from, c, 6)) != NULL) {
			c = (uint8_t)ctl_to[ctl - ctl_from];
		} else if (c >= '0' && c <= '7') {
			int v = c - '0';
			for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
				v = v * 8 + (s[++i] - '0');
			c = (uint8_t)v;
		} else if (c == 'x' && i + 1 < n && hexval(s[i + 1]) >= 0) {
			int v = hexval(s[++i]);
			if (i + 1 < n && hexval(s[i + 1]) >= 0)
				v = v * 16 + hexval(s[++i]);
			c = (uint8_t)v;
		}
		if (!buf_append(out, &c, 1))
			return false;
	}
	return true;
}

static bool text_encode(const uint8_t *s, size_t n, char delim, struct pv_buf *out)
{
	static const char ctl[] = "\b\f\n\r\t\v", esc[] = "bfnrtv";

	for (size_t i = 0; i < n; i++) {
		const char *p = s[i] ? memchr(ctl, s[i], 6) : NULL;
		char pair[2] = {'\\', 0};

		if (p)
			pair[1] = esc[p - ctl];
		else if (s[i] == '\\' || s[i] == (uint8_t)delim)
			pair[1] = (char)s[i];
		if (pair[1] ? !buf_append(out, pair, 2) : !buf_append(out, s + i, 1))
			return false;
	}
	return true;
}

/* End of the text field starting at s[i]: the next unescaped delimiter or the newline. */
static size_t text_field_end(const uint8_t *s, size_t n, size_t i, char delim)
{
	for (; i < n; i++) {
		if (s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == (uint8_t)delim || s[i] == '\n')
			return i;
	}
	return n;
}

/* ---- csv format ----------------------------------------------------------------------- */

/* End of the csv field at s[i]; quoted content decoded into val when val is not NULL. */
static size_t csv_field_end(const struct copy_opts *o, const uint8_t *s, size_t n, size_t i,
                            struct pv_buf *val, bool *quoted, bool *bad, bool *oom)
{
	*quoted = i < n && s[i] == (uint8_t)o->quote;
	if (!*quoted) {
		size_t start = i;
		while (i < n && s[i] != (uint8_t)o->delim && s[i] != '\n')
			i++;
		if (val && !buf_append(val, s + start, i - start))
			*oom = true;
		return i;
	}
	for (i++; i < n; i++) {
		uint8_t c = s[i];

		if (c == (uint8_t)o->escape && i + 1 < n &&
		    (s[i + 1] == (uint8_t)o->quote || s[i + 1] == (uint8_t)o->escape) &&
		    !(o->escape == o->quote && c == (uint8_t)o->quote && s[i + 1] != (uint8_t)o->quote)) {
			c = s[++i];
		} else if (c == (uint8_t)o->quote) {
			return i + 1;
		}
		if (val && !buf_append(val, &c, 1))
			*oom = true;
	}
	*bad = true; /* unterminated quote */
	return n;
}

static bool csv_encode(const struct copy_opts *o, const uint8_t *s, size_t n, struct pv_buf *out)
{
	if (!buf_append(out, &o->quote, 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((s[i] == (uint8_t)o->quote || s[i] == (uint8_t)o->escape) &&
		    !buf_append(out, &o->escape, 1))
			return false;
		if (!buf_append(out, s + i, 1))
			return false;
	}
	return buf_append(out, &o->quote, 1);
}

/* ---- rows ---------------------------------------------------------------------------- */

/* One masked text/csv field: decoded value -> mask -> encoded, or the null string. */
static bool put_masked_field(struct copy_codec *cc, int col, const uint8_t *v, size_t len,
                             struct pv_buf *out)
{
	struct pv_buf masked;
	bool is_null = false, ok;

	buf_init(&masked);
	/* an empty value has no buffer behind it: never hand on a NULL pointer */
	ok = cc->mask(cc->arg, col, v ? v : (const uint8_t *)"", len, &masked, &is_null);
	if (ok && is_null)
		ok = buf_append(out, cc->o->null_str, strlen(cc->o->null_str));
	else if (ok && cc->o->format == COPY_CSV)
		ok = csv_encode(cc->o, masked.data, masked.len, out);
	else if (ok)
		ok = text_encode(masked.data, masked.len, cc->o->delim, out);
	buf_free(&masked);
	return ok;
}

/* A text or csv row: fields of wanted columns are rewritten, the rest copied. */
static bool rewrite_delimited(struct copy_codec *cc, const uint8_t *s, size_t n,
                              struct pv_buf *out, bool *bad)
{
	const struct copy_opts *o = cc->o;
	size_t i = 0, nulllen = strlen(o->null_str);
	struct pv_buf val;
	bool ok = true, oom = false;

	if (n == 0 || s[n - 1] != '\n') {
		*bad = true;
		return true;
	}
	buf_init(&val);
	for (int col = 0; ok && !*bad; col++) {
		size_t start = i, end;
		bool quoted = false, want = col < cc->ncols && cc->want[col];

		buf_reset(&val);
		if (o->format == COPY_CSV)
			end = csv_field_end(o, s, n, i, want ? &val : NULL, &quoted, bad, &oom);
		else
			end = text_field_end(s, n, i, o->delim);
		if (oom || *bad || col >= cc->ncols) {
			*bad = *bad || (!oom && col >= cc->ncols);
			ok = !oom;
			break;
		}
		if (!want || (!quoted && end - start == nulllen &&
		              memcmp(s + start, o->null_str, nulllen) == 0))
			ok = buf_append(out, s + start, end - start);
		else if (o->format == COPY_CSV)
			ok = put_masked_field(cc, col, val.data, val.len, out);
		else
			ok = text_decode(s + start, end - start, &val) &&
			     put_masked_field(cc, col, val.data, val.len, out);
		if (!ok || end >= n - 1) {
			*bad = ok && (end != n - 1 || col != cc->ncols - 1);
			break;
		}
		if (s[end] != (uint8_t)o->delim) {
			*bad = true;
			break;
		}
		ok = buf_append(out, s + end, 1);
		i = end + 1;
	}
	ok = ok && buf_append(out, "\n", 1);
	buf_free(&val);
	return ok;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool put_be32(struct pv_buf *out, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	return buf_append(out, b, 4);
}

/* One binary tuple at s[*i]; the trailer (-1) is copied as it is. */
static bool rewrite_tuple(struct copy_codec *cc, const uint8_t *s, size_t n, size_t *i,
                          struct pv_buf *out, bool *bad)
{
	size_t p = *i;
	uint16_t nf;

	if (n - p < 2)
		return *bad = true;
	nf = (uint16_t)(s[p] << 8 | s[p + 1]);
	if (!buf_append(out, s + p, 2))
		return false;
	p += 2;
	if (nf == 0xffff) {
		*i = p;
		return true;
	}
	if (nf != cc->ncols)
		return *bad = true;
	for (int col = 0; col < nf; col++) {
		uint32_t len;
		size_t lenpos = out->len;
		bool is_null = false;

		if (n - p < 4 || ((len = be32(s + p)) != 0xffffffffu && n - p - 4 < len))
			return *bad = true;
		if (len == 0xffffffffu || !cc->want[col]) {
			size_t take = 4 + (len == 0xffffffffu ? 0 : len);
			if (!buf_append(out, s + p, take))
				return false;
			p += take;
			continue;
		}
		if (!put_be32(out, 0) || !cc->mask(cc->arg, col, s + p + 4, len, out, &is_null))
			return false;
		if (is_null)
			out->len = lenpos + 4;
		len = is_null ? 0xffffffffu : (uint32_t)(out->len - lenpos - 4);
		for (int k = 0; k < 4; k++)
			out->data[lenpos + (size_t)k] = (uint8_t)(len >> (24 - 8 * k));
		p += 4 + be32(s + p);
	}
	*i = p;
	return true;
}

static bool rewrite_binary(struct copy_codec *cc, const uint8_t *s, size_t n, struct pv_buf *out,
                           bool *bad)
{
	size_t i = 0;

	if (cc->header_pending) {
		uint32_t ext;

		if (n < BINARY_SIGNATURE_LEN + 8 ||
		    memcmp(s, BINARY_SIGNATURE, BINARY_SIGNATURE_LEN) != 0 ||
		    (ext = be32(s + BINARY_SIGNATURE_LEN + 4)) > n - BINARY_SIGNATURE_LEN - 8)
			return *bad = true;
		i = BINARY_SIGNATURE_LEN + 8 + ext;
		if (!buf_append(out, s, i))
			return false;
		cc->header_pending = false;
	}
	while (i < n && !*bad)
		if (!rewrite_tuple(cc, s, n, &i, out, bad))
			return false;
	return true;
}

bool copy_rewrite(struct copy_codec *cc, const uint8_t *data, size_t len, struct pv_buf *out,
                  bool *bad)
{
	*bad = false;
	if (cc->o->format == COPY_BINARY)
		return rewrite_binary(cc, data, len, out, bad);
	if (cc->header_pending) { /* the column names line */
		cc->header_pending = false;
		return buf_append(out, data, len);
	}
	return rewrite_delimited(cc, data, len, out, bad);
}
