/*
 * mask.c - the result rewriter and the statement-time masking check
 * (include/mask.h says what this module owns).
 *
 * Column masks are matched by provenance, not by name: each result set's
 * RowDescription (tracked per server by prepared.c, for simple Queries,
 * described statements and portals) names the table OID and column number of
 * every plain column, which mask_catalog.c maps to a mask rule. A plan per
 * client caches the decision per layout; it is looked up at the first DataRow
 * of each result and kept for the rest of its rows, so a row of a result
 * without masked columns costs a pointer test.
 */
#include "mask.h"

#include "client.h"
#include "governance.h"
#include "hooks.h"
#include "inspect.h"
#include "log.h"
#include "mask_catalog.h"
#include "mask_copy.h"
#include "mask_derived.h"
#include "mask_value.h"
#include "oidc.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "record_events.h"
#include "sbuf.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Built-in type OIDs whose text form is the value itself (masked as text). */
#define OID_NAME    19
#define OID_TEXT    25
#define OID_JSON    114
#define OID_XML     142
#define OID_BPCHAR  1042
#define OID_VARCHAR 1043
#define OID_UNKNOWN 705
#define OID_JSONB   3802
/* User-defined types (domains over text, citext, enums) start here. */
#define FIRST_USER_OID 16384

enum col_act {
	CA_NONE,
	CA_COLUMN,  /* a masked table column (rule) */
	CA_DERIVED, /* an output column computed from one (derived: mask) */
	CA_DETECT,  /* content detectors only */
};

struct col_plan {
	uint8_t act;
	uint8_t format; /* 0 text, 1 binary */
	uint32_t type_oid;
	const struct mask_rule *rule; /* CA_COLUMN */
};

/* What to do with the DataRows of one layout, for one client. */
struct mask_plan {
	struct ps_layout *layout; /* a reference: the address cannot be reused while cached */
	unsigned generation;	  /* policy generation it was built under */
	uint64_t derived_lo;	  /* derived positions it was built with */
	bool any;		  /* some column needs work */
	uint16_t ncols;
	uint16_t cap; /* columns allocated: a plan is refilled in place for the next layout */
	struct col_plan cols[];
};

/* A COPY TO STDOUT of a table with masked columns, from statement to ReadyForQuery. */
struct mask_copy {
	struct copy_opts o;
	struct ps_layout *layout; /* the probe's RowDescription: the COPY's columns */
	bool probe_pending;	  /* the probe's RowDescription and CommandComplete are ours */
	bool active;		  /* CopyOutResponse seen: CopyData messages are rows */
	struct mask_plan *plan;	  /* per column, with the COPY's format */
	bool *want;
	struct copy_codec cc;
	struct pv_socket *client;
};

/* derived: mask in the extended protocol: positions of a statement / portal, by name. */
struct named_pos {
	char *name;
	uint64_t pos;
};

struct pos_map {
	struct named_pos *v;
	size_t n, cap;
};

/* Names a client may have with derived positions at once (statements, portals each). */
#define MAX_DERIVED_NAMES 1024

/*
 * A Bind forwarded and not answered yet (derived: mask). Its portal takes the
 * statement's positions at its BindComplete, not when the client sends it: a
 * pipelining client may bind the same portal name again before the rows of
 * the first binding arrive, and those rows must keep their own positions.
 */
struct pending_bind {
	char *portal; /* NULL: the unnamed portal (no allocation for the common case) */
	uint64_t pos;
};

struct bind_queue {
	struct pending_bind *v;
	size_t head, n, cap; /* pending: v[head..n) */
	size_t with_pos;     /* pending entries with positions */
	/*
	 * An error came while Binds were pending: the server skips the rest of
	 * that pipeline up to its Sync, so some entries will get no
	 * BindComplete and the later answers are matched to older entries.
	 */
	bool skewed;
};

/* Binds a client may have unanswered at once; more closes it (fail closed). */
#define MAX_PENDING_BINDS 4096

struct mask_client {
	struct mask_plan *plan;
	/*
	 * The plan of the DataRows the server is sending now, decided at the first
	 * row of a result and forgotten at any other message: rows in an unbroken
	 * run belong to one result (each result ends with its own message), so the
	 * rest of them cost a pointer test. NULL: the next DataRow decides.
	 */
	struct mask_plan *rows_plan;
	const struct pv_socket *rows_server; /* the server those rows come from */
	unsigned rows_generation;	     /* and the policy they were decided under */
	struct mask_copy *copy;
	struct pos_map stmt_pos;   /* Parse name -> derived positions */
	struct pos_map portal_pos; /* Bind portal -> its statement's positions */
	struct bind_queue binds;   /* Binds not answered yet, in the order sent */
	struct pv_buf out;   /* scratch for rebuilt messages */
	uint64_t derived_lo; /* derived: mask positions of the Queries in flight */
	bool touched;	     /* the statements in flight read a table with masked columns */
	bool copy_text;	     /* CopyOutResponse said text/csv */
};

/* Bumped whenever a policy is installed: plans hold rule pointers of one policy. */
static unsigned generation;

static const struct mask_spec redact_spec = {.method = MM_REDACT};

/* ---- per-client state ---------------------------------------------------------- */

static struct mask_client *mc_of(struct pv_socket *c, bool create)
{
	if (!c->mask && create) {
		c->mask = calloc(1, sizeof(*c->mask));
		if (c->mask)
			buf_init(&c->mask->out);
	}
	return c->mask;
}

static void plan_free(struct mask_plan *p)
{
	if (!p)
		return;
	ps_layout_put(p->layout);
	free(p);
}

static void copy_free(struct mask_copy *cs)
{
	if (!cs)
		return;
	copy_opts_free(&cs->o);
	ps_layout_put(cs->layout);
	plan_free(cs->plan);
	free(cs->want);
	free(cs);
}

static void pos_map_free(struct pos_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].name);
	free(m->v);
	*m = (struct pos_map){0};
}

static struct named_pos *pos_find(struct pos_map *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].name, name) == 0)
			return &m->v[i];
	return NULL;
}

static uint64_t pos_get(struct pos_map *m, const char *name)
{
	struct named_pos *e = pos_find(m, name);
	return e ? e->pos : 0;
}

/* Set name's positions (0 removes it). false: out of memory or too many names. */
static bool pos_set(struct pos_map *m, const char *name, uint64_t pos)
{
	struct named_pos *e = pos_find(m, name);

	if (e && pos) {
		e->pos = pos;
		return true;
	}
	if (e) {
		free(e->name);
		*e = m->v[--m->n];
		return true;
	}
	if (!pos)
		return true;
	if (m->n == MAX_DERIVED_NAMES)
		return false;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		struct named_pos *v = realloc(m->v, cap * sizeof(*v));
		if (!v)
			return false;
		m->v = v;
		m->cap = cap;
	}
	if (!(m->v[m->n].name = strdup(name)))
		return false;
	m->v[m->n++].pos = pos;
	return true;
}

static const char *portal_name(const struct pending_bind *b)
{
	return b->portal ? b->portal : "";
}

static void binds_clear(struct bind_queue *q)
{
	for (size_t i = q->head; i < q->n; i++)
		free(q->v[i].portal);
	q->head = q->n = q->with_pos = 0;
	q->skewed = false;
}

static bool binds_push(struct bind_queue *q, const char *portal, uint64_t pos)
{
	char *copy = NULL;

	if (q->n - q->head >= MAX_PENDING_BINDS)
		return false;
	if (q->n == q->cap && q->head > 0) { /* reuse the room of answered Binds */
		memmove(q->v, q->v + q->head, (q->n - q->head) * sizeof(q->v[0]));
		q->n -= q->head;
		q->head = 0;
	}
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 8;
		struct pending_bind *v = realloc(q->v, cap * sizeof(*v));
		if (!v)
			return false;
		q->v = v;
		q->cap = cap;
	}
	if (portal[0] && !(copy = strdup(portal)))
		return false;
	q->v[q->n++] = (struct pending_bind){copy, pos};
	q->with_pos += pos != 0;
	return true;
}

/* Positions of the Binds of portal still unanswered, together. */
static uint64_t binds_pending_pos(const struct bind_queue *q, const char *portal)
{
	uint64_t pos = 0;

	for (size_t i = q->head; i < q->n; i++)
		if (strcmp(portal_name(&q->v[i]), portal) == 0)
			pos |= q->v[i].pos;
	return pos;
}

void mask_client_free(struct pv_socket *c)
{
	if (!c->mask)
		return;
	pos_map_free(&c->mask->stmt_pos);
	pos_map_free(&c->mask->portal_pos);
	binds_clear(&c->mask->binds);
	free(c->mask->binds.v);
	copy_free(c->mask->copy);
	plan_free(c->mask->plan);
	buf_free(&c->mask->out);
	free(c->mask);
	c->mask = NULL;
}

/* ---- plans ----------------------------------------------------------------------- */

static bool text_like(uint32_t oid)
{
	return oid == OID_TEXT || oid == OID_VARCHAR || oid == OID_BPCHAR || oid == OID_NAME ||
	       oid == OID_UNKNOWN || oid == OID_JSON || oid == OID_JSONB || oid == OID_XML ||
	       oid >= FIRST_USER_OID;
}

/* Fill p (room for l->ncols columns, holding no layout) for layout l. */
static void plan_fill(struct mask_plan *p, const struct pv_socket *c, const struct ps_layout *l,
                      uint64_t derived_lo)
{
	uint32_t detect = mask_detectors(c->identity, NULL);

	memset(p->cols, 0, l->ncols * sizeof(p->cols[0]));
	p->layout = ps_layout_ref(l);
	p->generation = generation;
	p->derived_lo = derived_lo;
	p->any = false;
	p->ncols = l->ncols;
	for (uint16_t i = 0; i < l->ncols; i++) {
		const struct ps_layout_col *col = &l->cols[i];
		const struct mask_rule *r = mask_column_rule(c->pool->db, col->table_oid, col->attnum);
		struct col_plan *cp = &p->cols[i];

		cp->format = (uint8_t)col->format;
		cp->type_oid = col->type_oid;
		if (r && !mask_rule_exempt(r, c->identity)) {
			cp->act = CA_COLUMN;
			cp->rule = r;
		} else if (r) {
			/* the column's own rule exempts this identity: detectors are for the rest */
		} else if (i < 64 && (derived_lo & (1ull << i))) {
			cp->act = CA_DERIVED;
		} else if (detect && (cp->format == 0 || text_like(cp->type_oid))) {
			cp->act = CA_DETECT;
		}
		if (cp->act != CA_NONE)
			p->any = true;
	}
}

static struct mask_plan *plan_build(const struct pv_socket *c, const struct ps_layout *l,
                                    uint64_t derived_lo)
{
	struct mask_plan *p = malloc(sizeof(*p) + l->ncols * sizeof(p->cols[0]));

	if (!p)
		return NULL;
	p->cap = l->ncols;
	plan_fill(p, c, l, derived_lo);
	return p;
}

/*
 * Derived positions of the rows the server is sending: a simple Query's (kept
 * until ReadyForQuery), or those of the portal an Execute runs. false when
 * the portal cannot be told and some portal has positions (fail closed).
 */
static bool derived_for(struct pv_socket *s, struct mask_client *mc, uint64_t *pos)
{
	const char *portal;

	*pos = mc->derived_lo;
	if (mc->portal_pos.n == 0 && mc->binds.with_pos == 0)
		return true;
	if (!ps_current_is_execute(s))
		return true;
	if (!(portal = ps_current_portal(s)))
		return false;
	*pos |= pos_get(&mc->portal_pos, portal);
	/*
	 * After an error the answers are matched to older entries, so the
	 * running Bind's own positions may still be queued: the unanswered Binds
	 * of the portal count too (they only add masking) until the queue is
	 * known to be empty.
	 */
	if (mc->binds.skewed)
		*pos |= binds_pending_pos(&mc->binds, portal);
	return true;
}

/* The plan for the layout the server is sending rows of; NULL on allocation failure. */
static struct mask_plan *plan_for(struct pv_socket *c, struct mask_client *mc,
                                  const struct ps_layout *l, uint64_t derived)
{
	struct mask_plan *p = mc->plan;

	if (p && p->layout == l && p->generation == generation && p->derived_lo == derived)
		return p;
	/* every simple Query brings a new layout: keep the allocation when it fits */
	if (p && p->cap >= l->ncols) {
		ps_layout_put(p->layout);
		plan_fill(p, c, l, derived);
		return p;
	}
	plan_free(p);
	mc->plan = plan_build(c, l, derived);
	return mc->plan;
}

/* ---- values ---------------------------------------------------------------------- */

/*
 * One masked value: text-like values get the method; text-format values of
 * other built-in types (numbers, dates...) become NULL, since a client parses
 * them by type and "****" is no integer.
 */
static bool mask_value(const struct col_plan *cp, const struct mask_spec *spec, const char *in,
                       size_t len, struct pv_buf *out, bool *is_null)
{
	if (cp->format == 1)
		return mask_binary_value(spec, cp->type_oid, in, len, out, is_null);
	if (cp->type_oid == OID_JSON || cp->type_oid == OID_JSONB)
		return mask_json_text_value(spec, in, len, out, is_null);
	if (!text_like(cp->type_oid)) {
		*is_null = true;
		return true;
	}
	return mask_text_value(spec, in, len, out, is_null);
}

/*
 * Content detectors on one value. A match inside a text-like value is
 * replaced in place; a value of another type (a bigint holding a card
 * number) cannot be partly rewritten and becomes NULL, as does binary jsonb.
 */
static bool detect_value(const struct col_plan *cp, const struct pv_socket *c, const char *in,
                         size_t len, struct pv_buf *out, bool *is_null)
{
	const struct mask_spec *spec;
	uint32_t bits = mask_detectors(c->identity, &spec);
	bool changed = false, keep = text_like(cp->type_oid) &&
	                             !(cp->format == 1 && cp->type_oid == OID_JSONB);
	size_t start = out->len - out->pos; /* see out_mark() */

	if (!bits || !spec)
		return buf_append(out, in, len);
	if (!mask_scan_text(bits, spec, in, len, out, &changed))
		return false;
	if (changed && !keep) {
		out->len = out->pos + start;
		*is_null = true;
	}
	return true;
}

static void put_be32_at(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Positions in an output buffer are kept relative to its unsent data:
 * buf_reserve may compact the buffer (moving pos to 0) when it grows, which
 * would move anything remembered as an absolute offset.
 */
static size_t out_mark(const struct pv_buf *out)
{
	return out->len - out->pos;
}

static uint8_t *out_at(struct pv_buf *out, size_t mark)
{
	return out->data + out->pos + mark;
}

static void out_cut(struct pv_buf *out, size_t mark)
{
	out->len = out->pos + mark;
}

/* buf_append without the call when the bytes fit (the per-column hot path). */
static inline bool out_put(struct pv_buf *out, const void *d, size_t n)
{
	if (n == 0)
		return true;
	if (n > out->cap - out->len)
		return buf_append(out, d, n);
	memcpy(out->data + out->len, d, n);
	out->len += n;
	return true;
}

/* A message built at mark start (type byte, length, body): set its length; returns it. */
static uint32_t patch_msg_len(struct pv_buf *out, size_t start)
{
	uint32_t n = (uint32_t)(out_mark(out) - start - 1);

	put_be32_at(out_at(out, start) + 1, n);
	return n;
}

/* Append one masked, non-NULL column (length + bytes, or -1) to the row being rebuilt. */
static bool put_col(struct pv_buf *out, const struct col_plan *cp, const struct pv_socket *c,
                    const uint8_t *v, uint32_t len, bool *changed)
{
	static const uint8_t hdr[4];
	size_t lenpos = out_mark(out);
	bool is_null = false, ok;
	uint32_t n;

	if (!out_put(out, hdr, 4))
		return false;
	if (cp->act == CA_COLUMN) {
		ok = mask_value(cp, &cp->rule->spec, (const char *)v, len, out, &is_null);
		mask_rule_hit(cp->rule);
	} else if (cp->act == CA_DERIVED) {
		ok = mask_value(cp, &redact_spec, (const char *)v, len, out, &is_null);
	} else {
		ok = detect_value(cp, c, (const char *)v, len, out, &is_null);
	}
	if (!ok)
		return false;
	if (is_null)
		out_cut(out, lenpos + 4);
	n = is_null ? 0xffffffffu : (uint32_t)(out_mark(out) - lenpos - 4);
	put_be32_at(out_at(out, lenpos), n);
	if (cp->act != CA_DETECT || is_null || n != len || memcmp(out_at(out, lenpos) + 4, v, len) != 0)
		*changed = true;
	return true;
}

static uint32_t be32_at(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Rebuild a DataRow body at the end of out: runs of columns left as they are
 * are copied in one piece, masked ones rewritten. false on allocation
 * failure; *bad when the row does not match its layout. The columns are
 * walked by hand (bounds checked against len): this runs once per row.
 */
static bool rebuild_row(struct pv_buf *out, const struct mask_plan *plan,
                        const struct pv_socket *c, const uint8_t *body, size_t len, bool *changed,
                        bool *bad)
{
	const uint8_t *run = body; /* first byte not yet copied */
	size_t pos = 2;

	if (len < 2 || (uint16_t)(body[0] << 8 | body[1]) != plan->ncols) {
		*bad = true;
		return true;
	}
	for (uint16_t i = 0; i < plan->ncols; i++) {
		const uint8_t *col = body + pos;
		uint32_t vlen;

		if (len - pos < 4) {
			*bad = true;
			return true;
		}
		vlen = be32_at(col);
		pos += 4;
		if (vlen == 0xffffffffu) /* NULL: nothing to mask */
			continue;
		if (vlen > len - pos) {
			*bad = true;
			return true;
		}
		pos += vlen;
		if (plan->cols[i].act == CA_NONE)
			continue;
		if (!out_put(out, run, (size_t)(col - run)) ||
		    !put_col(out, &plan->cols[i], c, col + 4, vlen, changed))
			return false;
		run = body + pos;
	}
	*bad = pos != len;
	return out_put(out, run, (size_t)(body + len - run));
}

/* ---- messages ---------------------------------------------------------------------- */

static enum pkt_action fail_closed(struct pv_socket *s, const char *why)
{
	struct pv_socket *c = s->link;

	slog_warning(c, "masking: %s", why);
	client_fatal(c, "XX000", "pgvigil masking: %s", why);
	return PKT_STOP;
}

/* Queue a rebuilt message to the client in place of the server's. */
static enum pkt_action send_instead(struct pv_socket *s, struct pv_buf *out)
{
	if (!sbuf_queue_from(s, s->link, out->data, out->len))
		return fail_closed(s, "out of memory");
	return PKT_CONSUMED;
}

/* A DataRow of a result whose plan says some column needs work. */
static enum pkt_action rewrite_row(struct pv_socket *s, const struct mask_plan *plan,
                                   struct pkt *p)
{
	struct pv_socket *c = s->link;
	struct pv_buf *out;
	bool changed = false, bad = false, ok;
	size_t start;
	uint32_t n;

	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	/* built straight into the client's output queue: no copy of the row in between */
	if (!(out = sbuf_out_begin(c)))
		return PKT_DROP;
	start = out_mark(out);
	ok = buf_reserve(out, p->len + 64) && out_put(out, "D\0\0\0\0", 5) &&
	     rebuild_row(out, plan, c, pkt_body(p), pkt_body_len(p), &changed, &bad);
	if (!ok || bad || !changed) {
		out_cut(out, start);
		if (!ok)
			return fail_closed(s, "out of memory");
		return bad ? fail_closed(s, "a row does not match its RowDescription") : PKT_FORWARD;
	}
	n = patch_msg_len(out, start);
	/* the recorder gets the row as the client does: masked (before the queue can move) */
	record_result_row(c, out_at(out, start) + 5, n - 4);
	sbuf_out_commit(s, c);
	return PKT_CONSUMED;
}

/* The first DataRow of a result: look its layout up and decide for the whole result. */
static enum pkt_action first_row(struct pv_socket *s, struct pkt *p)
{
	struct pv_socket *c = s->link;
	struct mask_client *mc = mc_of(c, true);
	const struct ps_layout *l = ps_current_layout(s);
	struct mask_plan *plan;
	uint64_t derived;

	if (!mc)
		return fail_closed(s, "out of memory");
	mc->rows_plan = NULL; /* plan_for may replace the plan it points to */
	if (!l)
		return fail_closed(s, "the columns of this result are unknown, so it cannot be masked");
	if (!derived_for(s, mc, &derived))
		return fail_closed(s, "the portal of this result is unknown, so it cannot be masked");
	if (!(plan = plan_for(c, mc, l, derived)))
		return fail_closed(s, "out of memory");
	mc->rows_plan = plan;
	mc->rows_server = s;
	mc->rows_generation = generation;
	return plan->any ? rewrite_row(s, plan, p) : PKT_FORWARD;
}

static enum pkt_action on_datarow(struct pv_socket *s, struct pkt *p)
{
	struct mask_client *mc = s->link->mask;
	const struct mask_plan *plan;

	if (!mc || !(plan = mc->rows_plan) || mc->rows_server != s ||
	    mc->rows_generation != generation)
		return first_row(s, p);
	/* a later row of the result first_row decided for */
	return plan->any ? rewrite_row(s, plan, p) : PKT_FORWARD;
}

/*
 * Replace what PostgreSQL quotes in messages, "..." and "=(...)" (a failed
 * cast, a duplicate key): those are where values are echoed.
 */
static bool scrub_echoes(const char *in, size_t len, struct pv_buf *out)
{
	for (size_t i = 0; i < len; i++) {
		char close = 0;
		const char *end;

		if (in[i] == '"')
			close = '"';
		else if (in[i] == '(' && i > 0 && in[i - 1] == '=')
			close = ')';
		if (!buf_append(out, in + i, 1))
			return false;
		if (!close)
			continue;
		end = memchr(in + i + 1, close, len - i - 1);
		if (!buf_append(out, "****", 4))
			return false;
		if (!end) /* unterminated: the rest may be the value */
			return true;
		if (!buf_append(out, &close, 1))
			return false;
		i = (size_t)(end - in);
	}
	return true;
}

/* Is this ErrorResponse/NoticeResponse field one that can carry data? */
static bool field_may_echo(uint8_t code)
{
	return code == 'M' || code == 'D' || code == 'H' || code == 'W' || code == 'q';
}

/* One field's text, scrubbed, NUL-terminated, appended to out. */
static bool scrub_field(bool touched, uint32_t bits, const struct mask_spec *spec, const char *v,
                        struct pv_buf *out)
{
	struct pv_buf tmp;
	bool changed, ok = true;

	buf_init(&tmp);
	if (touched) {
		ok = scrub_echoes(v, strlen(v), &tmp) && buf_append(&tmp, "", 1);
		v = ok ? (const char *)tmp.data : v;
	}
	if (ok && bits && spec)
		ok = mask_scan_text(bits, spec, v, strlen(v), out, &changed);
	else if (ok)
		ok = buf_append(out, v, strlen(v));
	ok = ok && buf_append(out, "", 1);
	buf_free(&tmp);
	return ok;
}

/*
 * Data exceptions (22: a failed cast quotes the input), integrity violations
 * (23: "Key (c)=(v)", "Failing row contains (...)") and PL/pgSQL RAISE (P0).
 */
static bool sqlstate_quotes_values(const struct pkt *p)
{
	struct pkt_reader r;

	reader_init_pkt(&r, p);
	for (uint8_t code = read_u8(&r); code && !r.bad; code = read_u8(&r)) {
		const char *v = read_string(&r);

		if (v && code == 'C')
			return strncmp(v, "22", 2) == 0 || strncmp(v, "23", 2) == 0 ||
			       strncmp(v, "P0", 2) == 0;
	}
	return false;
}

/* ErrorResponse / NoticeResponse: scrub fields that could echo a masked value. */
static enum pkt_action on_error_notice(struct pv_socket *s, struct pkt *p)
{
	struct pv_socket *c = s->link;
	struct mask_client *mc = mc_of(c, true);
	const struct mask_spec *spec;
	uint32_t bits = mask_detectors(c->identity, &spec);
	struct pkt_reader r;
	struct pkt_builder b;

	bool echo;

	if (!mc)
		return fail_closed(s, "out of memory");
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	/*
	 * A prepared statement executed again is not seen by the statement check
	 * (touched is not set), so the error classes that quote values are
	 * scrubbed whenever masking is on.
	 */
	echo = mc->touched || sqlstate_quotes_values(p);
	if (!echo && !bits)
		return PKT_FORWARD;
	reader_init_pkt(&r, p);
	buf_reset(&mc->out);
	build_begin(&b, &mc->out, p->type);
	for (uint8_t code = read_u8(&r); code && !r.bad && !b.failed; code = read_u8(&r)) {
		const char *v = read_string(&r);

		if (!v)
			break;
		build_u8(&b, code);
		if (!field_may_echo(code))
			build_string(&b, v);
		else if (!scrub_field(echo, bits, spec, v, &mc->out))
			b.failed = true;
	}
	build_u8(&b, 0);
	if (r.bad)
		return fail_closed(s, "malformed error message from the server");
	if (!build_end(&b))
		return fail_closed(s, "out of memory");
	return send_instead(s, &mc->out);
}

/* NotificationResponse: the payload goes through the detectors. */
static enum pkt_action on_notification(struct pv_socket *s, struct pkt *p)
{
	struct pv_socket *c = s->link;
	struct mask_client *mc = mc_of(c, true);
	const struct mask_spec *spec;
	uint32_t bits = mask_detectors(c->identity, &spec);
	struct pkt_reader r;
	struct pkt_builder b;
	const char *channel, *payload;
	uint32_t pid;
	bool changed = false;

	if (!bits || !spec)
		return PKT_FORWARD;
	if (!mc)
		return fail_closed(s, "out of memory");
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	reader_init_pkt(&r, p);
	pid = read_u32(&r);
	channel = read_string(&r);
	payload = read_string(&r);
	if (!channel || !payload)
		return PKT_FORWARD;
	buf_reset(&mc->out);
	build_begin(&b, &mc->out, 'A');
	build_u32(&b, pid);
	build_string(&b, channel);
	if (!b.failed && (!mask_scan_text(bits, spec, payload, strlen(payload), &mc->out, &changed) ||
	                  !buf_append(&mc->out, "", 1)))
		b.failed = true;
	if (!build_end(&b))
		return fail_closed(s, "out of memory");
	return changed ? send_instead(s, &mc->out) : PKT_FORWARD;
}

/* ---- COPY TO STDOUT of a table with masked columns ---- */

/* The probe's RowDescription (kept as the COPY's layout) and CommandComplete: not the client's. */
static enum pkt_action on_probe_result(struct pv_socket *s, struct pkt *p)
{
	struct mask_client *mc = s->link->mask;
	struct mask_copy *cs = mc ? mc->copy : NULL;

	if (!cs || !cs->probe_pending)
		return PKT_FORWARD;
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (p->type == 'T') {
		if (cs->layout)
			return fail_closed(s, "unexpected result before a masked COPY");
		if (!(cs->layout = ps_layout_new(pkt_body(p), pkt_body_len(p))))
			return fail_closed(s, "out of memory");
		return PKT_CONSUMED;
	}
	if (!cs->layout)
		return fail_closed(s, "unexpected result before a masked COPY");
	cs->probe_pending = false;
	return PKT_CONSUMED;
}

/* One field of a COPY row, for copy_rewrite(). */
static bool copy_mask_field(void *arg, int col, const uint8_t *v, size_t len, struct pv_buf *out,
                            bool *is_null)
{
	struct mask_copy *cs = arg;
	const struct col_plan *cp = &cs->plan->cols[col];

	if (cp->act == CA_COLUMN) {
		mask_rule_hit(cp->rule);
		return mask_value(cp, &cp->rule->spec, (const char *)v, len, out, is_null);
	}
	return detect_value(cp, cs->client, (const char *)v, len, out, is_null);
}

/* CopyOutResponse: which columns the rows carry masked, in the COPY's format. */
static bool copy_activate(struct pv_socket *c, struct mask_copy *cs)
{
	uint16_t n = cs->layout->ncols;

	if (!(cs->plan = plan_build(c, cs->layout, 0)) || !(cs->want = calloc(n + 1u, sizeof(bool))))
		return false;
	for (uint16_t i = 0; i < n; i++) {
		cs->plan->cols[i].format = cs->o.format == COPY_BINARY ? 1 : 0;
		cs->want[i] = cs->plan->cols[i].act == CA_COLUMN || cs->plan->cols[i].act == CA_DETECT;
	}
	cs->cc = (struct copy_codec){.o = &cs->o, .ncols = n, .want = cs->want,
	                             .mask = copy_mask_field, .arg = cs,
	                             .header_pending = cs->o.format == COPY_BINARY || cs->o.header};
	cs->client = c;
	cs->active = true;
	return true;
}

static enum pkt_action copy_row(struct pv_socket *s, struct mask_client *mc, struct pkt *p)
{
	struct pv_socket *c = s->link;
	struct pv_buf *out;
	bool bad = false, ok;
	size_t start;

	if (!mc->copy->plan->any)
		return PKT_FORWARD;
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (!(out = sbuf_out_begin(c)))
		return PKT_DROP;
	start = out_mark(out);
	ok = buf_reserve(out, p->len + 64) && buf_append(out, "d\0\0\0\0", 5) &&
	     copy_rewrite(&mc->copy->cc, pkt_body(p), pkt_body_len(p), out, &bad);
	if (!ok || bad) {
		out_cut(out, start);
		return fail_closed(s, ok ? "COPY data does not match its format" : "out of memory");
	}
	patch_msg_len(out, start);
	sbuf_out_commit(s, c);
	return PKT_CONSUMED;
}

/*
 * Statement time: `COPY table TO STDOUT` of a table with masked columns is
 * sent as "<probe>; <the COPY>" so its columns can be known (mask_copy.h).
 */
static bool copy_start(struct mask_client *mc, const char *sql, struct pv_buf *rewrite)
{
	struct mask_copy *cs;

	if (mc->copy) /* one at a time: the probe's answer must be unambiguous */
		return false;
	if (!(cs = calloc(1, sizeof(*cs))))
		return false;
	if (!copy_parse(sql, &cs->o, rewrite)) {
		free(cs);
		return false;
	}
	if (!buf_append(rewrite, "; ", 2) || !buf_append(rewrite, sql, strlen(sql))) {
		copy_free(cs);
		rewrite->len = 0;
		return false;
	}
	cs->probe_pending = true;
	mc->copy = cs;
	return true;
}

/* COPY TO STDOUT data: text and csv rows go through the detectors. */
static enum pkt_action on_copy_data(struct pv_socket *s, struct pkt *p)
{
	struct pv_socket *c = s->link;
	struct mask_client *mc = mc_of(c, true);
	const struct mask_spec *spec;
	uint32_t bits = mask_detectors(c->identity, &spec);
	struct pkt_builder b;
	bool changed = false;

	if (mc && mc->copy && mc->copy->active)
		return copy_row(s, mc, p);
	if (!bits || !spec || !mc || !mc->copy_text)
		return PKT_FORWARD;
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	buf_reset(&mc->out);
	build_begin(&b, &mc->out, 'd');
	if (!b.failed && !mask_scan_text(bits, spec, (const char *)pkt_body(p), pkt_body_len(p),
	                                 &mc->out, &changed))
		b.failed = true;
	if (!build_end(&b))
		return fail_closed(s, "out of memory");
	return changed ? send_instead(s, &mc->out) : PKT_FORWARD;
}

static enum pkt_action on_copy_out(struct pv_socket *s, struct pkt *p)
{
	struct mask_client *mc = mc_of(s->link, true);
	struct mask_copy *cs;
	struct pkt_reader r;

	if (!mc)
		return fail_closed(s, "out of memory");
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	mc->copy_text = pkt_body_len(p) >= 1 && pkt_body(p)[0] == 0;
	if (!(cs = mc->copy))
		return PKT_FORWARD;
	reader_init_pkt(&r, p);
	read_u8(&r);
	if (!cs->layout || cs->probe_pending || read_u16(&r) != cs->layout->ncols || r.bad)
		return fail_closed(s, "the columns of this COPY are unknown, so it cannot be masked");
	return copy_activate(s->link, cs) ? PKT_FORWARD : fail_closed(s, "out of memory");
}

/* BindComplete: the oldest unanswered Bind's portal now has its statement's positions. */
static enum pkt_action on_bind_complete(struct pv_socket *s)
{
	struct mask_client *mc = s->link->mask;
	struct bind_queue *q = mc ? &mc->binds : NULL;
	struct pending_bind b;
	bool ok;

	if (!q || q->head == q->n)
		return PKT_FORWARD;
	b = q->v[q->head++];
	q->with_pos -= b.pos != 0;
	if (q->head == q->n)
		q->head = q->n = 0;
	ok = pos_set(&mc->portal_pos, portal_name(&b), b.pos);
	free(b.portal);
	return ok ? PKT_FORWARD : fail_closed(s, "too many portals with masked derived columns");
}

/* An ErrorResponse: Binds pending now may never be answered (struct bind_queue). */
static void note_error(struct pv_socket *s)
{
	struct mask_client *mc = s->link->mask;

	if (mc && mc->binds.head != mc->binds.n)
		mc->binds.skewed = true;
}

/* ReadyForQuery that ends the last request in flight: the statements' marks end too. */
static void on_ready(struct pv_socket *s)
{
	struct mask_client *mc = s->link->mask;

	/*
	 * Nothing else queued on the server (prepared.h): every Bind sent has
	 * been answered or skipped after an error, so what is left in the Bind
	 * queue can never be answered.
	 */
	if (mc && ps_pending_count(s) <= 1)
		binds_clear(&mc->binds);
	if (mc && s->expect_rfq <= 1) {
		mc->derived_lo = 0;
		mc->touched = false;
		copy_free(mc->copy);
		mc->copy = NULL;
	}
}

static enum pkt_action mask_server_msg(struct pv_socket *s, struct pkt *p)
{
	if (s->replication) /* raw replication data: grants decide who may stream it */
		return PKT_FORWARD;
	if (p->type == 'D')
		return on_datarow(s, p);
	/* any other message may end the result: the next DataRow decides again */
	if (s->link->mask)
		s->link->mask->rows_plan = NULL;
	switch (p->type) {
	case 'E':
		note_error(s);
		return on_error_notice(s, p);
	case 'N':
		return on_error_notice(s, p);
	case 'A':
		return on_notification(s, p);
	case 'T':
	case 'C':
		return on_probe_result(s, p);
	case 'H':
		return on_copy_out(s, p);
	case 'd':
		return on_copy_data(s, p);
	case '2':
		return on_bind_complete(s);
	case 'Z':
		on_ready(s);
		return PKT_FORWARD;
	default:
		return PKT_FORWARD;
	}
}

void mask_install(const struct gov_policy *pol)
{
	bool on = pol && pol->n_masks > 0;

	generation++;
	pv_hooks.server_msg = on ? mask_server_msg : NULL;
	ps_layouts_needed = on;
}

/* ---- statement-time check ------------------------------------------------------------ */

/*
 * The masked columns the client's identity sees, gathered with one walk of
 * the catalog per statement check: the check asks about every table and
 * column reference, and a catalog walk per question was most of its cost.
 * More than NAMES_MAX such columns: every question walks the catalog again.
 */
#define NAMES_MAX 64

struct masked_name {
	const char *schema, *table, *column; /* the catalog's strings: valid for this check */
};

struct names_ctx {
	const struct pv_socket *c;
	struct masked_name v[NAMES_MAX];
	size_t n;
	bool overflow;
	const char *schema, *table, *column; /* a question, when overflow */
	bool found;
};

static bool name_eq(const char *want, const char *have)
{
	/* the first byte settles most mismatches without a call */
	return !want || (want[0] == have[0] && strcmp(want, have) == 0);
}

static void find_masked(void *arg, const char *schema, const char *table, const char *column,
                        const struct mask_rule *r)
{
	struct names_ctx *n = arg;

	if (n->found || mask_rule_exempt(r, n->c->identity))
		return;
	if (name_eq(n->schema, schema) && name_eq(n->table, table) && name_eq(n->column, column))
		n->found = true;
}

static void gather_masked(void *arg, const char *schema, const char *table, const char *column,
                          const struct mask_rule *r)
{
	struct names_ctx *n = arg;

	if (n->overflow || mask_rule_exempt(r, n->c->identity))
		return;
	if (n->n == NAMES_MAX) {
		n->overflow = true;
		return;
	}
	n->v[n->n++] = (struct masked_name){schema, table, column};
}

static void names_gather(struct names_ctx *n, const struct pv_socket *c)
{
	n->c = c;
	n->n = 0;
	n->overflow = false;
	mask_catalog_foreach(c->pool->db, gather_masked, n);
}

static bool ask(struct names_ctx *n, const char *schema, const char *table, const char *column)
{
	if (n->overflow) {
		n->schema = schema;
		n->table = table;
		n->column = column;
		n->found = false;
		mask_catalog_foreach(n->c->pool->db, find_masked, n);
		return n->found;
	}
	for (size_t i = 0; i < n->n; i++) {
		const struct masked_name *m = &n->v[i];

		if (name_eq(table, m->table) && name_eq(column, m->column) &&
		    name_eq(schema, m->schema))
			return true;
	}
	return false;
}

static bool is_masked_cb(void *arg, const char *schema, const char *table, const char *column)
{
	return ask(arg, schema, table, column);
}

static bool table_has_masked_cb(void *arg, const char *schema, const char *table)
{
	return ask(arg, schema, table, NULL);
}

/* Does the statement name a table (as written: "t" or "s.t") with a masked column? */
static bool reads_masked_table(struct names_ctx *n, const struct inspect_result *res)
{
	for (int i = 0; i < res->n_tables; i++) {
		const char *t = res->tables[i], *dot = strchr(t, '.');
		char schema[256];

		if (!dot) {
			if (ask(n, NULL, t, NULL))
				return true;
			continue;
		}
		if ((size_t)(dot - t) >= sizeof(schema))
			return true; /* cannot tell: assume it does */
		memcpy(schema, t, (size_t)(dot - t));
		schema[dot - t] = '\0';
		if (ask(n, schema, dot + 1, NULL))
			return true;
	}
	return false;
}

bool mask_statement_check(struct pv_socket *c, const struct inspect_result *res, const char *sql,
                          const char *parse_name, struct pv_buf *rewrite, char *text,
                          size_t textlen)
{
	struct names_ctx nc;
	struct mask_names names = {is_masked_cb, table_has_masked_cb, &nc};
	struct mask_verdict v;
	struct mask_client *mc;
	bool derived_mask = mask_derived_mask(), query = parse_name == NULL;

	if (!res || !mask_policy_active())
		return false;
	names_gather(&nc, c);
	/* a statement name defined again loses the positions of the old statement */
	if (!query && c->mask)
		pos_set(&c->mask->stmt_pos, parse_name, 0);
	if (res->classes & SC_DDL)
		mask_catalog_invalidate(c->pool->db); /* new views or columns may need masks */
	if (!reads_masked_table(&nc, res) && !res->parse_error)
		return false;
	if (!(mc = mc_of(c, true))) {
		snprintf(text, textlen, "pgvigil masking: out of memory");
		return true;
	}
	mc->touched = true;
	if ((res->classes & SC_COPY) && query && copy_start(mc, sql, rewrite))
		return false;
	if (res->classes & SC_COPY) {
		snprintf(text, textlen, "COPY of a table with masked columns is refused here (only "
		                        "COPY table [(columns)] TO STDOUT as a simple Query is masked)");
		return true;
	}
	mask_check_statement(res, &names, derived_mask ? MASK_DERIVED_MASK : MASK_DERIVED_DENY,
	                     mask_predicates_deny(), &v);
	if (v.deny) {
		snprintf(text, textlen, "%s", v.reason);
		return true;
	}
	if (!query) {
		/* kept by name: the statement may be bound and executed long after */
		if (!pos_set(&mc->stmt_pos, parse_name, v.mask_positions_lo)) {
			snprintf(text, textlen, "pgvigil masking: too many statements with masked "
			                        "derived columns");
			return true;
		}
		return false;
	}
	mc->derived_lo |= v.mask_positions_lo;
	return false;
}

bool mask_note_bind(struct pv_socket *c, const struct pkt *p)
{
	struct mask_client *mc = c->mask;
	struct pkt_reader r;
	const char *portal, *stmt;

	/*
	 * Every Bind is queued, with positions or not, from the client's first
	 * one: the queue must answer BindCompletes in order, and a Bind missing
	 * from it would make the next BindComplete apply a later Bind too early.
	 */
	if (!mc && !(mc = mc_of(c, true)))
		return false;
	reader_init_pkt(&r, p);
	portal = read_string(&r);
	stmt = read_string(&r);
	if (!portal || !stmt)
		return true; /* malformed: the server refuses it */
	return binds_push(&mc->binds, portal, pos_get(&mc->stmt_pos, stmt));
}
