/*
 * varcache.h - tracked session parameters (client_encoding, DateStyle,
 * TimeZone, standard_conforming_strings, application_name and
 * track_extra_parameters).
 *
 * Each client and server keeps the values it believes are in force. When a
 * client is linked to a server whose values differ, one "SET k='v';..." query
 * brings the server in line before the client's request is forwarded, so many
 * clients with different settings can share one server connection.
 */
#ifndef PV_VARCACHE_H
#define PV_VARCACHE_H

#include <stdbool.h>
#include "util.h"

#define VAR_MAX 16 /* 5 fixed + extras */

/*
 * A socket's tracked values. Thousands of idle clients mostly carry the same
 * handful of values, so the values live in one shared, reference-counted,
 * immutable set (interned by content, see varcache.c) and a socket holds just
 * a pointer to it: 8 bytes per socket instead of a private copy of every
 * string. NULL means "no value known" for every parameter.
 */
struct varset;
struct varcache {
	struct varset *set;
};

/*
 * Interned strings: one reference-counted copy per distinct text, shared by
 * every holder (varcache values, client startup user/database names...).
 * pv_strintern returns the shared copy with one more reference (NULL on OOM
 * or for a NULL argument); pv_strrelease drops one (NULL is a no-op). The
 * result must never be written to or passed to free().
 */
const char *pv_strintern(const char *s);
void pv_strrelease(const char *s);

/* (Re)build the list of tracked names from track_extra_parameters. */
void varcache_setup(const char *track_extra_parameters);
int varcache_count(void);
const char *varcache_name(int i);
/* Index of a tracked name (case-insensitive), or -1. */
int varcache_index(const char *name);

/* Set a value by name; returns false if the name is not tracked or on OOM. */
bool varcache_set(struct varcache *vc, const char *name, const char *value);
/* Set value i (NULL = unknown); false on OOM (the old value stays). */
bool varcache_set_at(struct varcache *vc, int i, const char *value);
const char *varcache_get(const struct varcache *vc, int i);
void varcache_clear(struct varcache *vc);
void varcache_copy(struct varcache *dst, const struct varcache *src);
/* Take defaults' value wherever vc has none; false on OOM (vc unchanged). */
bool varcache_fill_missing(struct varcache *vc, const struct varcache *defaults);

/*
 * Append to sql the SET statements needed to make server match client.
 * Returns true if anything needs setting. Values the client never set are
 * left alone.
 */
bool varcache_diff_sql(const struct varcache *client, const struct varcache *server,
		       struct pv_buf *sql);

#endif
