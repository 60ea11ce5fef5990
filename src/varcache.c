/*
 * varcache.c - tracked parameters and the SET statement that syncs them.
 */
#include "varcache.h"
#include "list.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <stdint.h>

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

/* --- interned strings and value sets --------------------------------------------- */

/*
 * Both interned strings and value sets sit in a chained hash table keyed by a
 * hash of their content and carry a reference count; the entry is freed when
 * the last holder lets go. The tables only hold distinct contents, so they
 * stay small however many sockets share them.
 */
struct ilink {
	struct ilink *next;
	uint32_t hash;
	uint32_t refs;
};

struct itab {
	struct ilink **bucket;
	size_t nbucket; /* a power of two, or 0 before the first insert */
	size_t count;
};

struct istr {
	struct ilink link;
	char str[];
};

struct varset {
	struct ilink link;
	const char *values[VAR_MAX]; /* interned, or NULL (unknown) */
};

static struct itab strtab, settab;

static uint32_t hash_bytes(uint32_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	/* FNV-1a: short keys, few entries; distribution is all that matters. */
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* Double the bucket array; on OOM keep the old one (chains just get longer). */
static void itab_grow(struct itab *t)
{
	size_t n = t->nbucket ? t->nbucket * 2 : 64;
	struct ilink **nb = calloc(n, sizeof(*nb));
	if (!nb)
		return;
	for (size_t i = 0; i < t->nbucket; i++) {
		struct ilink *e = t->bucket[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	}
	free(t->bucket);
	t->bucket = nb;
	t->nbucket = n;
}

static bool itab_insert(struct itab *t, struct ilink *e)
{
	if (t->count >= t->nbucket)
		itab_grow(t);
	if (!t->nbucket)
		return false;
	e->next = t->bucket[e->hash & (t->nbucket - 1)];
	t->bucket[e->hash & (t->nbucket - 1)] = e;
	t->count++;
	return true;
}

static void itab_remove(struct itab *t, struct ilink *e)
{
	struct ilink **pp = &t->bucket[e->hash & (t->nbucket - 1)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	t->count--;
}

static struct ilink *itab_first(const struct itab *t, uint32_t hash)
{
	return t->nbucket ? t->bucket[hash & (t->nbucket - 1)] : NULL;
}

const char *pv_strintern(const char *s)
{
	size_t len;
	uint32_t h;
	struct istr *is;

	if (!s)
		return NULL;
	len = strlen(s);
	h = hash_bytes(2166136261u, s, len);
	for (struct ilink *e = itab_first(&strtab, h); e; e = e->next) {
		is = container_of(e, struct istr, link);
		if (e->hash == h && strcmp(is->str, s) == 0) {
			e->refs++;
			return is->str;
		}
	}
	is = malloc(sizeof(*is) + len + 1);
	if (!is)
		return NULL;
	is->link.hash = h;
	is->link.refs = 1;
	memcpy(is->str, s, len + 1);
	if (!itab_insert(&strtab, &is->link)) {
		free(is);
		return NULL;
	}
	return is->str;
}

void pv_strrelease(const char *s)
{
	struct istr *is;

	if (!s)
		return;
	is = container_of(s, struct istr, str);
	if (--is->link.refs > 0)
		return;
	itab_remove(&strtab, &is->link);
	free(is);
}

/* The shared set holding these values (one more reference), NULL on OOM. */
static struct varset *varset_get(const char *const values[VAR_MAX])
{
	uint32_t h = hash_bytes(2166136261u, values, sizeof(const char *) * VAR_MAX);
	struct varset *vs;

	for (struct ilink *e = itab_first(&settab, h); e; e = e->next) {
		vs = container_of(e, struct varset, link);
		if (e->hash == h && memcmp(vs->values, values, sizeof(vs->values)) == 0) {
			e->refs++;
			return vs;
		}
	}
	vs = malloc(sizeof(*vs));
	if (!vs)
		return NULL;
	vs->link.hash = h;
	vs->link.refs = 1;
	memcpy(vs->values, values, sizeof(vs->values));
	if (!itab_insert(&settab, &vs->link)) {
		free(vs);
		return NULL;
	}
	/* The set holds its own reference on each value (the strings are already interned). */
	for (int i = 0; i < VAR_MAX; i++)
		if (vs->values[i])
			container_of(vs->values[i], struct istr, str)->link.refs++;
	return vs;
}

static void varset_release(struct varset *vs)
{
	if (!vs || --vs->link.refs > 0)
		return;
	itab_remove(&settab, &vs->link);
	for (int i = 0; i < VAR_MAX; i++)
		pv_strrelease(vs->values[i]);
	free(vs);
}

bool varcache_set_at(struct varcache *vc, int i, const char *value)
{
	const char *values[VAR_MAX] = {NULL};
	const char *v, *cur = varcache_get(vc, i);
	struct varset *ns = NULL;
	bool any = false;

	if (i < 0 || i >= VAR_MAX)
		return false;
	if (cur == value || (cur && value && strcmp(cur, value) == 0))
		return true;
	v = pv_strintern(value);
	if (value && !v)
		return false;
	if (vc->set)
		memcpy(values, vc->set->values, sizeof(values));
	values[i] = v;
	for (int k = 0; k < VAR_MAX; k++)
		any = any || values[k];
	/* No value known at all: no set, as for a fresh socket. */
	if (any && !(ns = varset_get(values))) {
		pv_strrelease(v);
		return false;
	}
	pv_strrelease(v); /* the set has its own reference */
	varset_release(vc->set);
	vc->set = ns;
	return true;
}

bool varcache_set(struct varcache *vc, const char *name, const char *value)
{
	int i = varcache_index(name);
	if (i < 0)
		return false;
	return varcache_set_at(vc, i, value);
}

const char *varcache_get(const struct varcache *vc, int i)
{
	return vc->set && i >= 0 && i < VAR_MAX ? vc->set->values[i] : NULL;
}

void varcache_clear(struct varcache *vc)
{
	varset_release(vc->set);
	vc->set = NULL;
}

void varcache_copy(struct varcache *dst, const struct varcache *src)
{
	if (dst->set == src->set)
		return;
	if (src->set)
		src->set->link.refs++;
	varset_release(dst->set);
	dst->set = src->set;
}

bool varcache_fill_missing(struct varcache *vc, const struct varcache *defaults)
{
	const char *values[VAR_MAX] = {NULL};
	struct varset *ns;

	if (!vc->set || !defaults->set) {
		if (!vc->set)
			varcache_copy(vc, defaults);
		return true;
	}
	for (int i = 0; i < VAR_MAX; i++)
		values[i] = vc->set->values[i] ? vc->set->values[i] : defaults->set->values[i];
	/* One lookup for the merged set, not one intermediate set per filled value. */
	ns = varset_get(values);
	if (!ns)
		return false;
	varset_release(vc->set);
	vc->set = ns;
	return true;
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
	if (client->set == server->set)
		return false; /* same shared set: nothing differs */
	for (int i = 0; i < n_names; i++) {
		const char *cv = varcache_get(client, i), *sv = varcache_get(server, i);
		if (!cv || (sv && strcasecmp(cv, sv) == 0))
			continue;
		if (!buf_append(sql, "SET ", 4) || !buf_append(sql, names[i], strlen(names[i])) ||
		    !buf_append(sql, "=", 1) || !append_literal(sql, cv) || !buf_append(sql, ";", 1))
			return any;
		any = true;
	}
	return any;
}
