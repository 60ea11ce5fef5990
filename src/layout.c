/*
 * layout.c - result layouts: immutable, refcounted copies of a RowDescription
 * (see prepared.h), parsed once so a later stage can look columns up per
 * DataRow without touching the protocol again.
 */
#include "prepared.h"
#include "proto.h"

#include <stdlib.h>
#include <string.h>

/* Bytes after a column's name: table oid, attnum, type oid, typlen, typmod, format. */
#define COL_FIXED_LEN 18
#define COL_FORMAT_OFF 16

static bool read_column(struct pkt_reader *r, struct ps_layout_col *col)
{
	const char *name = read_string(r);
	col->name = name;
	col->table_oid = read_u32(r);
	col->attnum = (int16_t)read_u16(r);
	col->type_oid = read_u32(r);
	col->typlen = (int16_t)read_u16(r);
	col->typmod = (int32_t)read_u32(r);
	col->format = (int16_t)read_u16(r);
	return name && !r->bad && (col->format == 0 || col->format == 1);
}

struct ps_layout *ps_layout_new(const uint8_t *body, size_t len)
{
	struct pkt_reader r;
	struct ps_layout *l;
	uint16_t n;
	uint8_t *copy;

	reader_init(&r, body, len);
	n = read_u16(&r);
	/* every column needs at least its name terminator and the fixed fields */
	if (r.bad || (size_t)n * (COL_FIXED_LEN + 1) > reader_left(&r))
		return NULL;
	l = malloc(sizeof(*l) + n * sizeof(l->cols[0]) + len);
	if (!l)
		return NULL;
	copy = (uint8_t *)&l->cols[n];
	memcpy(copy, body, len);
	reader_init(&r, copy, len);
	(void)read_u16(&r);
	for (uint16_t i = 0; i < n; i++) {
		if (!read_column(&r, &l->cols[i])) {
			free(l);
			return NULL;
		}
	}
	if (reader_left(&r) != 0) {
		free(l);
		return NULL;
	}
	l->refs = 1;
	l->ncols = n;
	l->body = copy;
	l->body_len = len;
	return l;
}

struct ps_layout *ps_layout_ref(const struct ps_layout *l)
{
	/* The reference count is the only thing that changes in a layout. */
	struct ps_layout *m = (struct ps_layout *)l;
	if (m)
		m->refs++;
	return m;
}

void ps_layout_put(struct ps_layout *l)
{
	if (l && --l->refs == 0)
		free(l);
}

/* The format Bind's result-format codes give column i (-1: invalid Bind). */
static int bind_format(const uint8_t *codes, uint16_t ncodes, uint16_t i)
{
	size_t at;
	int f;
	if (ncodes == 0)
		return 0;
	if (ncodes != 1 && i >= ncodes)
		return -1;
	at = ncodes == 1 ? 0 : (size_t)i * 2;
	f = (codes[at] << 8) | codes[at + 1];
	return f == 0 || f == 1 ? f : -1;
}

static bool formats_match(const struct ps_layout *base, const uint8_t *codes, uint16_t ncodes)
{
	for (uint16_t i = 0; i < base->ncols; i++)
		if (bind_format(codes, ncodes, i) != base->cols[i].format)
			return false;
	return true;
}

struct ps_layout *ps_layout_with_formats(const struct ps_layout *base, const uint8_t *codes,
					 uint16_t ncodes)
{
	uint8_t *tmp;
	struct ps_layout *l;

	if (!base || (ncodes > 1 && ncodes != base->ncols))
		return NULL; /* PostgreSQL rejects such a Bind */
	if (formats_match(base, codes, ncodes))
		return ps_layout_ref(base);
	tmp = malloc(base->body_len);
	if (!tmp)
		return NULL;
	memcpy(tmp, base->body, base->body_len);
	for (uint16_t i = 0; i < base->ncols; i++) {
		const struct ps_layout_col *c = &base->cols[i];
		size_t off = (size_t)((const uint8_t *)c->name - base->body) + strlen(c->name) + 1 +
			     COL_FORMAT_OFF;
		int f = bind_format(codes, ncodes, i);
		if (f < 0) {
			free(tmp);
			return NULL;
		}
		tmp[off] = 0;
		tmp[off + 1] = (uint8_t)f;
	}
	l = ps_layout_new(tmp, base->body_len);
	free(tmp);
	return l;
}
