/*
 * varcache.c - tracked parameters and the SET statement that syncs them.
 */
#include "varcache.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

static const char *const fixed_names[] = {"client_encoding", "DateStyle", "TimeZone",
					  "standard_conforming_strings", "application_name"};
static char *names[VAR_MAX];
static int n_names;

void varcache_setup(const char *extra)
{
	for (int i = 0; i < n_names; i++)
		free(names[i]);
	n_names = 0;
	for (size_t i = 0; i < sizeof(fixed_names) / sizeof(fixed_names[0]); i++)
		names[n_names++] = strdup(fixed_names[i]);
	while (extra && *extra && n_names < VAR_MAX) {
		size_t len;
		while (*extra == ',' || isspace((unsigned char)*extra))
			extra++;
		len = strcspn(extra, ", \t");
		if (len == 0)
			break;
		char *name = strndup(extra, len);
		if (name && varcache_index(name) < 0)
			names[n_names++] = name;
		else
			free(name);
		extra += len;
	}
}

int varcache_count(void)
{
	return n_names;
}

const char *varcache_name(int i)
{
	return names[i];
}

int varcache_index(const char *name)
{
	for (int i = 0; i < n_names; i++)
		if (names[i] && strcasecmp(names[i], name) == 0)
			return i;
	return -1;
}

void varcache_set_at(struct varcache *vc, int i, const char *value)
{
	char *copy = value ? strdup(value) : NULL;
	free(vc->values[i]);
	vc->values[i] = copy;
}

bool varcache_set(struct varcache *vc, const char *name, const char *value)
{
	int i = varcache_index(name);
	if (i < 0)
		return false;
	varcache_set_at(vc, i, value);
	return !value || vc->values[i] != NULL;
}

const char *varcache_get(const struct varcache *vc, int i)
{
	return vc->values[i];
}

void varcache_clear(struct varcache *vc)
{
	for (int i = 0; i < VAR_MAX; i++) {
		free(vc->values[i]);
		vc->values[i] = NULL;
	}
}

void varcache_copy(struct varcache *dst, const struct varcache *src)
{
	for (int i = 0; i < VAR_MAX; i++)
		varcache_set_at(dst, i, src->values[i]);
}

/* Quote a value as a SQL string literal ('' doubles quotes). */
static bool append_literal(struct pv_buf *sql, const char *v)
{
	if (!buf_append(sql, "'", 1))
		return false;
	for (; *v; v++) {
		if (*v == '\'' && !buf_append(sql, "'", 1))
			return false;
		if (!buf_append(sql, v, 1))
			return false;
	}
	return buf_append(sql, "'", 1);
}

bool varcache_diff_sql(const struct varcache *client, const struct varcache *server,
		       struct pv_buf *sql)
{
	bool any = false;
	for (int i = 0; i < n_names; i++) {
		const char *cv = client->values[i], *sv = server->values[i];
		if (!cv || (sv && strcasecmp(cv, sv) == 0))
			continue;
		if (!buf_append(sql, "SET ", 4) || !buf_append(sql, names[i], strlen(names[i])) ||
		    !buf_append(sql, "=", 1) || !append_literal(sql, cv) || !buf_append(sql, ";", 1))
			return any;
		any = true;
	}
	return any;
}
