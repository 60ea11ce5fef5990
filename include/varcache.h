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

struct varcache {
	char *values[VAR_MAX]; /* malloc'd or NULL (unknown) */
};

/* (Re)build the list of tracked names from track_extra_parameters. */
void varcache_setup(const char *track_extra_parameters);
int varcache_count(void);
const char *varcache_name(int i);
/* Index of a tracked name (case-insensitive), or -1. */
int varcache_index(const char *name);

/* Set a value by name; returns false if the name is not tracked or on OOM. */
bool varcache_set(struct varcache *vc, const char *name, const char *value);
void varcache_set_at(struct varcache *vc, int i, const char *value);
const char *varcache_get(const struct varcache *vc, int i);
void varcache_clear(struct varcache *vc);
void varcache_copy(struct varcache *dst, const struct varcache *src);

/*
 * Append to sql the SET statements needed to make server match client.
 * Returns true if anything needs setting. Values the client never set are
 * left alone.
 */
bool varcache_diff_sql(const struct varcache *client, const struct varcache *server,
		       struct pv_buf *sql);

#endif
