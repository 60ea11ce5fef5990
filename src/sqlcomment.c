/*
 * sqlcomment.c - sqlcommenter tags of a statement and the agent context among
 * them (include/sqlcomment.h), for the session recorder.
 */
#include "sqlcomment.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* URL-decode [s, s+len) into a JSON string (sqlcommenter encodes keys and values). */
static json_t *url_decoded(const char *s, size_t len)
{
	char *out = malloc(len + 1);
	size_t n = 0;
	json_t *j;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			out[n++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else if (s[i] == '\\' && i + 1 < len) {
			out[n++] = s[++i];
		} else {
			out[n++] = s[i];
		}
	}
	j = json_stringn(out, n);
	free(out);
	return j;
}

/* One key='value' pair at *pp (up to end); false when malformed. */
static bool comment_pair(const char **pp, const char *end, json_t *tags)
{
	const char *p = *pp, *k, *ke, *v;
	json_t *key, *val;

	while (p < end && isspace((unsigned char)*p))
		p++;
	k = p;
	while (p < end && *p != '=')
		p++;
	ke = p;
	while (ke > k && isspace((unsigned char)ke[-1]))
		ke--;
	if (p >= end || ke == k || ++p >= end || *p != '\'')
		return false;
	v = ++p;
	while (p < end && *p != '\'')
		p += *p == '\\' && p + 1 < end ? 2 : 1;
	if (p >= end)
		return false;
	key = url_decoded(k, (size_t)(ke - k));
	val = url_decoded(v, (size_t)(p - v));
	if (key && val)
		json_object_set(tags, json_string_value(key), val);
	json_decref(key);
	json_decref(val);
	p++;
	while (p < end && isspace((unsigned char)*p))
		p++;
	if (p < end && *p != ',')
		return false;
	*pp = p < end ? p + 1 : p;
	return true;
}

json_t *sqlcomment_tags(const char *sql, size_t len)
{
	const char *end, *start = NULL, *p;
	json_t *tags;

	while (len && (isspace((unsigned char)sql[len - 1]) || sql[len - 1] == ';'))
		len--;
	if (len < 4 || sql[len - 1] != '/' || sql[len - 2] != '*')
		return NULL;
	end = sql + len - 2;
	for (size_t i = (size_t)(end - sql) - 1; i-- > 0;)
		if (sql[i] == '/' && sql[i + 1] == '*') {
			start = sql + i + 2;
			break;
		}
	if (!start || !(tags = json_object()))
		return NULL;
	for (p = start; p < end;)
		if (!comment_pair(&p, end, tags))
			break;
	if (json_object_size(tags) == 0) {
		json_decref(tags);
		return NULL;
	}
	return tags;
}

json_t *sqlcomment_context(json_t *tags)
{
	json_t *ctx = json_object(), *v;
	const char *k;

	if (!ctx)
		return NULL;
	json_object_foreach(tags, k, v)
	{
		if (strcmp(k, "traceparent") == 0 || strcmp(k, "tracestate") == 0 ||
		    strncmp(k, "prompt", 6) == 0 || strncmp(k, "agent", 5) == 0)
			json_object_set(ctx, k, v);
	}
	return ctx;
}
