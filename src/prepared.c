/*
 * prepared.c - protocol-level prepared statements shared across pooled
 * server connections, and the per-server pipeline of outstanding requests.
 */
#include "prepared.h"
#include "client.h"
#include "log.h"
#include "pool.h"
#include "proto.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What to do with the response to a queued request. */
enum ps_act {
	ACT_FORWARD,
	ACT_SKIP, /* pgvigil's own request (injected Parse, eviction Close) */
	ACT_FAKE, /* answered by pgvigil; synthesize when it reaches the head */
};

struct ps_pending {
	char type;
	uint8_t act;
	/* Parse only: the statement and the client's name for it, to undo both if
	 * PostgreSQL rejects or skips the Parse. */
	struct ps_stmt *stmt;
	char *name;
	/* Result layouts (only while ps_layouts_needed): */
	uint8_t kind;	/* Describe / Close: 'S' or 'P' */
	bool lost;	/* a name could not be kept: forget all portals when it completes */
	bool resolved;	/* Execute: layout looked up */
	uint16_t nfmts; /* Bind: result-format codes */
	uint8_t *fmts;
	char *portal;		  /* Bind, Describe P, Execute, Close P */
	struct ps_layout *layout; /* Execute: its result's layout, once resolved */
};

/* A portal the server holds (per transaction), with the layout of its result. */
struct ps_portal {
	char *name;
	struct ps_stmt *stmt; /* named statement, for a Describe answered after the Bind */
	struct ps_layout *layout;
	uint8_t *fmts;
	uint16_t nfmts;
};

/* One distinct Parse body; shared by every client and server that uses it. */
struct ps_stmt {
	struct ps_stmt *next;
	uint64_t hash;
	uint64_t id;
	int refs;
	/* RowDescription from a Describe of it, valid for the pool hashed in layout_owner */
	struct ps_layout *layout;
	uint64_t layout_owner;
	size_t len;
	uint8_t body[]; /* query\0 int16 nparams int32[nparams] */
};

struct ps_name {
	struct ps_name *next;
	struct ps_stmt *stmt;
	char name[];
};

struct ps_client {
	struct ps_name **buckets;
	size_t size, count;
};

struct ps_held {
	struct ps_held *next;
	struct list_head lru; /* most recently used first */
	struct ps_stmt *stmt;
};

struct ps_server {
	struct ps_held **buckets;
	size_t size, count;
	struct list_head lru;
	struct ps_pending *q; /* ring buffer */
	size_t qhead, qcount, qcap;
	/* An error arrived before the client's Sync: PostgreSQL ignores every message up
	 * to that Sync, so they pass through untracked. */
	bool discarding;
	/* Result layouts: portals, the unnamed statement, the simple Query's result set. */
	struct ps_portal *portals;
	size_t nportals, portals_cap;
	struct ps_layout *unnamed;
	struct ps_layout *query;
	/*
	 * Layouts without a Describe from the client: the portal whose layout is
	 * known or described since its Bind (NULL: none), the statement last
	 * described, and whether the unnamed statement was described since its Parse.
	 */
	char *described;
	const struct ps_stmt *desc_stmt;
	bool desc_unnamed;
};

#define NAME_PREFIX "PGVIGIL_"

static void q_pop(struct ps_server *ps);
static struct ps_pending *q_head(struct ps_server *ps);

static struct ps_stmt **cache;
static size_t cache_size, cache_count;
static uint64_t next_stmt_id;

static uint64_t hash_bytes(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* --- global statement cache ----------------------------------------------------- */

static bool cache_grow(void)
{
	size_t nsize = cache_size ? cache_size * 2 : 256;
	struct ps_stmt **nb = calloc(nsize, sizeof(*nb));
	if (!nb)
		return false;
	for (size_t i = 0; i < cache_size; i++) {
		struct ps_stmt *e = cache[i];
		while (e) {
			struct ps_stmt *next = e->next;
			e->next = nb[e->hash & (nsize - 1)];
			nb[e->hash & (nsize - 1)] = e;
			e = next;
		}
	}
	free(cache);
	cache = nb;
	cache_size = nsize;
	return true;
}

/* Find or add the statement for a Parse body; returns it with one more reference. */
static struct ps_stmt *stmt_get(const uint8_t *body, size_t len)
{
	uint64_t h = hash_bytes(body, len);
	struct ps_stmt *e;

	if ((cache_count + 1 > cache_size * 2 || !cache) && !cache_grow() && !cache)
		return NULL;
	for (e = cache[h & (cache_size - 1)]; e; e = e->next) {
		if (e->hash == h && e->len == len && memcmp(e->body, body, len) == 0) {
			e->refs++;
			return e;
		}
	}
	e = malloc(sizeof(*e) + len);
	if (!e)
		return NULL;
	e->hash = h;
	e->id = ++next_stmt_id;
	e->refs = 1;
	e->layout = NULL;
	e->layout_owner = 0;
	e->len = len;
	memcpy(e->body, body, len);
	e->next = cache[h & (cache_size - 1)];
	cache[h & (cache_size - 1)] = e;
	cache_count++;
	return e;
}

static void stmt_put(struct ps_stmt *st)
{
	struct ps_stmt **pp;
	if (--st->refs > 0)
		return;
	for (pp = &cache[st->hash & (cache_size - 1)]; *pp; pp = &(*pp)->next) {
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	}
	cache_count--;
	ps_layout_put(st->layout);
	free(st);
}

/* --- per-client names ---------------------------------------------------------------- */

static struct ps_name **name_slot(struct ps_client *pc, const char *name)
{
	uint64_t h = hash_bytes(name, strlen(name));
	struct ps_name **pp = &pc->buckets[h & (pc->size - 1)];
	while (*pp && strcmp((*pp)->name, name) != 0)
		pp = &(*pp)->next;
	return pp;
}

static bool client_map_grow(struct ps_client *pc)
{
	size_t nsize = pc->size ? pc->size * 2 : 16;
	struct ps_name **nb = calloc(nsize, sizeof(*nb));
	if (!nb)
		return false;
	for (size_t i = 0; i < pc->size; i++) {
		struct ps_name *e = pc->buckets[i];
		while (e) {
			struct ps_name *next = e->next;
			uint64_t h = hash_bytes(e->name, strlen(e->name));
			e->next = nb[h & (nsize - 1)];
			nb[h & (nsize - 1)] = e;
			e = next;
		}
	}
	free(pc->buckets);
	pc->buckets = nb;
	pc->size = nsize;
	return true;
}

static struct ps_client *client_state(struct pv_socket *c)
{
	if (!c->ps_client) {
		c->ps_client = calloc(1, sizeof(*c->ps_client));
		if (c->ps_client && !client_map_grow(c->ps_client)) {
			free(c->ps_client);
			c->ps_client = NULL;
		}
	}
	return c->ps_client;
}

static struct ps_stmt *client_lookup(struct pv_socket *c, const char *name)
{
	struct ps_client *pc = c->ps_client;
	struct ps_name *e;
	if (!pc)
		return NULL;
	e = *name_slot(pc, name);
	return e ? e->stmt : NULL;
}

static bool client_add(struct ps_client *pc, const char *name, struct ps_stmt *st)
{
	size_t n = strlen(name);
	struct ps_name *e, **slot;
	if (pc->count + 1 > pc->size * 2 && !client_map_grow(pc))
		return false;
	e = malloc(sizeof(*e) + n + 1);
	if (!e)
		return false;
	memcpy(e->name, name, n + 1);
	e->stmt = st;
	slot = name_slot(pc, name);
	e->next = *slot;
	*slot = e;
	pc->count++;
	return true;
}

static void client_remove(struct ps_client *pc, const char *name)
{
	struct ps_name **slot = name_slot(pc, name), *e = *slot;
	if (!e)
		return;
	*slot = e->next;
	stmt_put(e->stmt);
	free(e);
	pc->count--;
}

static void client_clear(struct ps_client *pc)
{
	for (size_t i = 0; i < pc->size; i++) {
		struct ps_name *e = pc->buckets[i];
		while (e) {
			struct ps_name *next = e->next;
			stmt_put(e->stmt);
			free(e);
			e = next;
		}
		pc->buckets[i] = NULL;
	}
	pc->count = 0;
}

void ps_client_free(struct pv_socket *c)
{
	if (!c->ps_client)
		return;
	client_clear(c->ps_client);
	free(c->ps_client->buckets);
	free(c->ps_client);
	c->ps_client = NULL;
}

int ps_client_count(const struct pv_socket *c)
{
	return c->ps_client ? (int)c->ps_client->count : 0;
}

/* --- per-server statements and pipeline ----------------------------------------------- */

static struct ps_server *server_state(struct pv_socket *s)
{
	struct ps_server *ps = s->ps_server;
	if (ps)
		return ps;
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	ps->size = 64;
	ps->buckets = calloc(ps->size, sizeof(*ps->buckets));
	ps->qcap = 16;
	ps->q = malloc(ps->qcap * sizeof(*ps->q));
	if (!ps->buckets || !ps->q) {
		free(ps->buckets);
		free(ps->q);
		free(ps);
		return NULL;
	}
	list_init(&ps->lru);
	s->ps_server = ps;
	return ps;
}

static struct ps_held **held_slot(struct ps_server *ps, const struct ps_stmt *st)
{
	struct ps_held **pp = &ps->buckets[st->id & (ps->size - 1)];
	while (*pp && (*pp)->stmt != st)
		pp = &(*pp)->next;
	return pp;
}

/* Record that the server holds st (h: fresh, zeroed). */
static void held_link(struct ps_server *ps, struct ps_held *h, struct ps_stmt *st)
{
	h->stmt = st;
	st->refs++;
	h->next = ps->buckets[st->id & (ps->size - 1)];
	ps->buckets[st->id & (ps->size - 1)] = h;
	list_prepend(&ps->lru, &h->lru);
	ps->count++;
}

static void held_remove(struct ps_server *ps, struct ps_held *h)
{
	struct ps_held **slot = held_slot(ps, h->stmt);
	*slot = h->next;
	list_del(&h->lru);
	stmt_put(h->stmt);
	free(h);
	ps->count--;
}

/* --- result layouts: portals and statements ------------------------------------------ */

bool ps_layouts_needed;

static void set_layout(struct ps_layout **slot, struct ps_layout *l)
{
	ps_layout_put(*slot);
	*slot = l;
}

/* Statement layouts are shared per pool: the same text can name other tables elsewhere. */
static uint64_t owner_key(const struct pv_socket *s)
{
	const struct pv_pool *pool = s->pool;
	uint64_t h;
	if (!pool || !pool->db || !pool->user)
		return 0;
	h = hash_bytes(pool->db->name, strlen(pool->db->name) + 1);
	return h ^ (hash_bytes(pool->user->name, strlen(pool->user->name)) * 31);
}

static struct ps_layout *stmt_layout(const struct pv_socket *s, const struct ps_stmt *st)
{
	return st->layout && st->layout_owner == owner_key(s) ? st->layout : NULL;
}

static void portal_release(struct ps_portal *pt)
{
	free(pt->name);
	free(pt->fmts);
	if (pt->stmt)
		stmt_put(pt->stmt);
	ps_layout_put(pt->layout);
}

static struct ps_portal *portal_find(struct ps_server *ps, const char *name)
{
	for (size_t i = 0; name && i < ps->nportals; i++)
		if (strcmp(ps->portals[i].name, name) == 0)
			return &ps->portals[i];
	return NULL;
}

static void portal_remove(struct ps_server *ps, const char *name)
{
	struct ps_portal *pt = portal_find(ps, name);
	if (!pt)
		return;
	portal_release(pt);
	*pt = ps->portals[--ps->nportals];
}

/* PostgreSQL drops every portal at transaction end. */
static void portals_clear(struct ps_server *ps)
{
	while (ps->nportals)
		portal_release(&ps->portals[--ps->nportals]);
}

static struct ps_portal *portal_add(struct ps_server *ps, const char *name)
{
	struct ps_portal *pt;
	char *copy;
	portal_remove(ps, name); /* a Bind replaces the unnamed portal */
	if (ps->nportals == ps->portals_cap) {
		size_t ncap = ps->portals_cap ? ps->portals_cap * 2 : 4;
		struct ps_portal *np = realloc(ps->portals, ncap * sizeof(*np));
		if (!np)
			return NULL;
		ps->portals = np;
		ps->portals_cap = ncap;
	}
	if (!(copy = strdup(name)))
		return NULL;
	pt = &ps->portals[ps->nportals++];
	*pt = (struct ps_portal){.name = copy};
	return pt;
}

/* BindComplete: the portal exists, with its statement's layout in Bind's formats. */
static void bind_done(struct pv_socket *s, struct ps_pending *h)
{
	struct ps_server *ps = s->ps_server;
	struct ps_layout *base = h->stmt ? stmt_layout(s, h->stmt) : ps->unnamed;
	struct ps_portal *pt;

	if (h->lost || !h->portal || !(pt = portal_add(ps, h->portal))) {
		portals_clear(ps); /* which portal changed is unknown: none is known */
		return;
	}
	pt->layout = base ? ps_layout_with_formats(base, h->fmts, h->nfmts) : NULL;
	if (!pt->layout && h->stmt) {
		/* A Describe of the statement may still come: resolve at Execute. */
		pt->stmt = h->stmt;
		pt->fmts = h->fmts;
		pt->nfmts = h->nfmts;
		h->stmt = NULL;
		h->fmts = NULL;
	}
}

/* RowDescription ('T') or NoData ('n') answering a Describe. */
static void describe_done(struct pv_socket *s, struct ps_pending *h, const struct pkt *p)
{
	struct ps_server *ps = s->ps_server;
	struct ps_layout *l = p->type == 'T' ? ps_layout_new(pkt_body(p), pkt_body_len(p)) : NULL;
	struct ps_portal *pt;

	if (h->kind == 'S' && h->stmt) {
		set_layout(&h->stmt->layout, l);
		h->stmt->layout_owner = owner_key(s);
	} else if (h->kind == 'S') {
		set_layout(&ps->unnamed, l);
	} else if (!h->lost && (pt = portal_find(ps, h->portal)) != NULL) {
		set_layout(&pt->layout, l);
	} else {
		ps_layout_put(l);
	}
}

/* The head request is answered: learn what it changed on the server. */
static void track_response(struct pv_socket *s, struct ps_pending *h, const struct pkt *p)
{
	struct ps_server *ps = s->ps_server;
	switch (h->type) {
	case 'P':
		if (!h->stmt) /* a new unnamed statement */
			set_layout(&ps->unnamed, NULL);
		break;
	case 'B':
		bind_done(s, h);
		break;
	case 'D':
		describe_done(s, h, p);
		break;
	case 'C':
		if (h->kind == 'S' && !h->stmt) /* the unnamed statement */
			set_layout(&ps->unnamed, NULL);
		else if (h->kind == 'P' && (h->lost || !h->portal))
			portals_clear(ps);
		else if (h->kind == 'P')
			portal_remove(ps, h->portal);
		break;
	default:
		break;
	}
}

static struct ps_layout *portal_layout(const struct pv_socket *s, struct ps_portal *pt)
{
	struct ps_layout *base;
	if (pt->layout || !pt->stmt || !(base = stmt_layout(s, pt->stmt)))
		return pt->layout;
	pt->layout = ps_layout_with_formats(base, pt->fmts, pt->nfmts);
	return pt->layout;
}

const struct ps_layout *ps_current_layout(const struct pv_socket *server)
{
	struct ps_server *ps = server->ps_server;
	struct ps_pending *h;
	struct ps_portal *pt;

	if (!ps_layouts_needed || !ps || !(h = q_head(ps)))
		return NULL;
	if (h->type == 'Q')
		return ps->query;
	if (h->type != 'E' || h->lost)
		return NULL;
	if (!h->resolved) {
		pt = portal_find(ps, h->portal);
		h->layout = pt ? ps_layout_ref(portal_layout(server, pt)) : NULL;
		h->resolved = true;
	}
	return h->layout;
}

bool ps_current_is_execute(const struct pv_socket *server)
{
	struct ps_server *ps = server->ps_server;
	struct ps_pending *h = ps ? q_head(ps) : NULL;

	return h && h->type == 'E';
}

const char *ps_current_portal(const struct pv_socket *server)
{
	struct ps_server *ps = server->ps_server;
	struct ps_pending *h = ps && ps_layouts_needed ? q_head(ps) : NULL;

	return h && h->type == 'E' && !h->lost ? h->portal : NULL;
}

const struct ps_layout *ps_statement_layout(const struct pv_socket *client,
					    const struct pv_socket *server, const char *name)
{
	struct ps_stmt *st;
	if (!ps_layouts_needed)
		return NULL;
	if (!name[0])
		return server->ps_server ? server->ps_server->unnamed : NULL;
	st = client_lookup((struct pv_socket *)client, name);
	return st ? stmt_layout(server, st) : NULL;
}

/* Forget what the server's transaction (or DISCARD ALL) dropped. */
static void layouts_reset(struct ps_server *ps, bool statements)
{
	portals_clear(ps);
	if (statements)
		set_layout(&ps->unnamed, NULL);
}

void ps_server_forget_all(struct pv_socket *s)
{
	struct ps_server *ps = s->ps_server;
	struct list_head *it, *tmp;
	if (!ps)
		return;
	list_for_each_safe(it, tmp, &ps->lru)
	held_remove(ps, container_of(it, struct ps_held, lru));
	layouts_reset(ps, true);
}

void ps_server_free(struct pv_socket *s)
{
	if (!s->ps_server)
		return;
	while (s->ps_server->qcount)
		q_pop(s->ps_server);
	ps_server_forget_all(s);
	set_layout(&s->ps_server->query, NULL);
	free(s->ps_server->described);
	free(s->ps_server->portals);
	free(s->ps_server->buckets);
	free(s->ps_server->q);
	free(s->ps_server);
	s->ps_server = NULL;
}

int ps_server_count(const struct pv_socket *s)
{
	return s->ps_server ? (int)s->ps_server->count : 0;
}

int ps_pending_count(const struct pv_socket *s)
{
	return s->ps_server ? (int)s->ps_server->qcount : 0;
}

/* Queue a request; st and name (Parse only) are kept to undo a rejected Parse. */
static bool q_push_entry(struct ps_server *ps, char type, enum ps_act act, struct ps_stmt *st,
			 const char *name)
{
	char *copy = NULL;

	if (ps->qcount == ps->qcap) {
		size_t ncap = ps->qcap * 2;
		struct ps_pending *nq = malloc(ncap * sizeof(*nq));
		if (!nq)
			return false;
		for (size_t i = 0; i < ps->qcount; i++)
			nq[i] = ps->q[(ps->qhead + i) % ps->qcap];
		free(ps->q);
		ps->q = nq;
		ps->qhead = 0;
		ps->qcap = ncap;
	}
	if (name && !(copy = strdup(name)))
		return false;
	if (st)
		st->refs++;
	ps->q[(ps->qhead + ps->qcount) % ps->qcap] =
		(struct ps_pending){.type = type, .act = (uint8_t)act, .stmt = st, .name = copy};
	ps->qcount++;
	return true;
}

static bool q_push(struct ps_server *ps, char type, enum ps_act act)
{
	return q_push_entry(ps, type, act, NULL, NULL);
}

static struct ps_pending *q_head(struct ps_server *ps)
{
	return ps->qcount ? &ps->q[ps->qhead] : NULL;
}

/* The i-th request from the head (i < qcount). */
static struct ps_pending *q_at(struct ps_server *ps, size_t i)
{
	return &ps->q[(ps->qhead + i) % ps->qcap];
}

static struct ps_pending *q_tail(struct ps_server *ps)
{
	return &ps->q[(ps->qhead + ps->qcount - 1) % ps->qcap];
}

/* Layouts: the kind and portal name the request just queued names. */
static void note_portal(struct ps_server *ps, uint8_t kind, const char *portal)
{
	struct ps_pending *t = q_tail(ps);
	t->kind = kind;
	if (ps_layouts_needed && portal && !(t->portal = strdup(portal)))
		t->lost = true;
}

/* Layouts: Bind's portal and result-format codes; r is just after the statement name. */
static void note_bind(struct ps_server *ps, const char *portal, struct pkt_reader r)
{
	struct ps_pending *t = q_tail(ps);
	const uint8_t *codes;
	uint16_t n;

	if (!ps_layouts_needed)
		return;
	note_portal(ps, 0, portal);
	n = read_u16(&r);
	read_bytes(&r, (size_t)n * 2); /* parameter formats */
	for (n = read_u16(&r); n > 0 && !r.bad; n--) {
		uint32_t len = read_u32(&r);
		if (len != 0xffffffffu)
			read_bytes(&r, len);
	}
	n = read_u16(&r);
	codes = read_bytes(&r, (size_t)n * 2);
	if (r.bad || (n && !(t->fmts = malloc((size_t)n * 2)))) {
		t->lost = true;
		return;
	}
	if (n)
		memcpy(t->fmts, codes, (size_t)n * 2);
	t->nfmts = n;
}

static void q_pop(struct ps_server *ps)
{
	struct ps_pending *h = &ps->q[ps->qhead];
	if (h->stmt)
		stmt_put(h->stmt);
	free(h->name);
	free(h->portal);
	free(h->fmts);
	ps_layout_put(h->layout);
	*h = (struct ps_pending){0};
	ps->qhead = (ps->qhead + 1) % ps->qcap;
	ps->qcount--;
}

/* Synthesize the responses pgvigil answers itself once everything before them is answered. */
static void emit_fakes(struct pv_socket *s)
{
	struct ps_server *ps = s->ps_server;
	struct ps_pending *h;
	while (ps && (h = q_head(ps)) != NULL && h->act == ACT_FAKE) {
		/* ParseComplete '1' or CloseComplete '3': type byte + length 4 */
		uint8_t msg[5] = {h->type == 'P' ? '1' : '3', 0, 0, 0, 4};
		q_pop(ps);
		if (s->link)
			sbuf_queue(s->link, msg, sizeof(msg));
	}
}

bool ps_server_wants_tracking(const struct pv_socket *server)
{
	/* Masking needs the result layouts, which this tracking keeps: also in session mode. */
	return G.cf->max_prepared_statements > 0 &&
	       (pool_effective_mode(server->pool) != POOL_SESSION || ps_layouts_needed);
}

/* --- messages to the server ----------------------------------------------------------- */

static void internal_name(const struct ps_stmt *st, char *buf, size_t len)
{
	snprintf(buf, len, NAME_PREFIX "%" PRIu64, st->id);
}

/* The entry keeps st: if PostgreSQL skips the Close, the server still holds it. */
static bool send_close(struct pv_socket *s, struct ps_stmt *st)
{
	char name[32];
	struct pv_buf out;
	struct pkt_builder b;
	bool ok;
	internal_name(st, name, sizeof(name));
	buf_init(&out);
	build_begin(&b, &out, 'C');
	build_u8(&b, 'S');
	build_string(&b, name);
	ok = build_end(&b) && sbuf_queue(s, out.data, out.len) &&
	     q_push_entry(s->ps_server, 'C', ACT_SKIP, st, NULL);
	buf_free(&out);
	return ok;
}

/* Make room under max_prepared_statements by closing the least recently used statement. */
static bool evict_if_full(struct pv_socket *s)
{
	struct ps_server *ps = s->ps_server;
	while (ps->count >= (size_t)G.cf->max_prepared_statements && !list_empty(&ps->lru)) {
		struct ps_held *h = container_of(ps->lru.prev, struct ps_held, lru);
		if (!send_close(s, h->stmt))
			return false;
		held_remove(ps, h);
	}
	return true;
}

/*
 * Send Parse for st under its internal name and remember the server has it;
 * name is the client's name for it (NULL for a Parse pgvigil injects).
 */
static bool server_prepare(struct pv_socket *s, struct ps_stmt *st, enum ps_act act,
			   const char *client_name)
{
	struct ps_server *ps = s->ps_server;
	struct ps_held *h;
	char name[32];
	struct pv_buf out;
	struct pkt_builder b;
	bool ok;

	if (!evict_if_full(s))
		return false;
	h = calloc(1, sizeof(*h));
	if (!h)
		return false;
	internal_name(st, name, sizeof(name));
	buf_init(&out);
	build_begin(&b, &out, 'P');
	build_string(&b, name);
	build_bytes(&b, st->body, st->len);
	ok = build_end(&b) && sbuf_queue(s, out.data, out.len) &&
	     q_push_entry(ps, 'P', act, st, client_name);
	buf_free(&out);
	if (!ok) {
		free(h);
		return false;
	}
	held_link(ps, h, st);
	s->pool->stats.server_parse_count++;
	return true;
}

/* true if the server has st (and mark it recently used). */
static bool server_has(struct pv_socket *s, struct ps_stmt *st)
{
	struct ps_held *h = *held_slot(s->ps_server, st);
	if (!h)
		return false;
	list_del(&h->lru);
	list_prepend(&s->ps_server->lru, &h->lru);
	return true;
}

static bool ensure_on_server(struct pv_socket *s, struct ps_stmt *st)
{
	return server_has(s, st) || server_prepare(s, st, ACT_SKIP, NULL);
}

/* Re-send a message with the statement name replaced: head | internal name | tail. */
static bool send_renamed(struct pv_socket *s, uint8_t type, const uint8_t *head, size_t head_len,
			 const struct ps_stmt *st, const uint8_t *tail, size_t tail_len)
{
	char name[32];
	struct pv_buf out;
	struct pkt_builder b;
	bool ok;
	internal_name(st, name, sizeof(name));
	buf_init(&out);
	build_begin(&b, &out, type);
	build_bytes(&b, head, head_len);
	build_string(&b, name);
	build_bytes(&b, tail, tail_len);
	ok = build_end(&b) && sbuf_queue(s, out.data, out.len);
	buf_free(&out);
	return ok;
}

/* --- client messages -------------------------------------------------------------- */

bool ps_client_needs_full(const struct pkt *p)
{
	return p->type == 'P' || p->type == 'B' || p->type == 'D' || p->type == 'C' ||
	       (p->type == 'E' && ps_layouts_needed);
}

static enum pkt_action oom(struct pv_socket *c)
{
	client_fatal(c, "53200", "out of memory");
	return PKT_STOP;
}

static enum pkt_action bad_message(struct pv_socket *c)
{
	client_fatal(c, "08P01", "invalid message format");
	return PKT_STOP;
}

static enum pkt_action forward_tracked(struct pv_socket *s, char type)
{
	return q_push(s->ps_server, type, ACT_FORWARD) ? PKT_FORWARD : oom(s->link);
}

/* Remember (a copy of) the portal just described; NULL forgets. false: out of memory. */
static bool set_described(struct ps_server *ps, const char *portal)
{
	free(ps->described);
	ps->described = portal ? strdup(portal) : NULL;
	return !portal || ps->described;
}

/* Bind of portal: its layout will be known (known) or must be described before Execute. */
static bool note_bound(struct ps_server *ps, const char *portal, bool known)
{
	if (!ps_layouts_needed)
		return true;
	return set_described(ps, known ? portal : NULL);
}

/*
 * Masking must know the columns of every row an Execute returns. When the
 * client did not describe the portal after binding it, pgvigil does: a
 * Describe of the portal goes first, its answer is recorded as the portal's
 * layout and not forwarded (the client sees nothing extra).
 */
static bool describe_before_execute(struct pv_socket *s, const char *portal)
{
	struct ps_server *ps = s->ps_server;
	struct pv_buf out;
	struct pkt_builder b;
	bool ok;

	if (ps->described && strcmp(ps->described, portal) == 0)
		return true;
	buf_init(&out);
	build_begin(&b, &out, 'D');
	build_u8(&b, 'P');
	build_string(&b, portal);
	ok = build_end(&b) && sbuf_queue(s, out.data, out.len) && q_push(ps, 'D', ACT_SKIP);
	buf_free(&out);
	if (ok)
		note_portal(ps, 'P', portal);
	return ok && set_described(ps, portal);
}

static enum pkt_action client_parse(struct pv_socket *c, struct pv_socket *s, struct pkt *p)
{
	struct pkt_reader r;
	const char *name;
	struct ps_client *pc;
	struct ps_stmt *st;

	reader_init_pkt(&r, p);
	name = read_string(&r);
	if (!name || reader_left(&r) < 3)
		return bad_message(c);
	if (!name[0]) {
		s->ps_server->desc_unnamed = false;
		return forward_tracked(s, 'P');
	}
	c->pool->stats.client_parse_count++;
	if (client_lookup(c, name)) {
		client_fatal(c, "08P01", "prepared statement name is already in use");
		return PKT_STOP;
	}
	pc = client_state(c);
	st = pc ? stmt_get(r.data + r.pos, reader_left(&r)) : NULL;
	if (!st)
		return oom(c);
	if (!client_add(pc, name, st)) {
		stmt_put(st);
		return oom(c);
	}
	if (server_has(s, st)) {
		if (!q_push_entry(s->ps_server, 'P', ACT_FAKE, st, name))
			return oom(c);
		emit_fakes(s);
		return PKT_CONSUMED;
	}
	return server_prepare(s, st, ACT_FORWARD, name) ? PKT_CONSUMED : oom(c);
}

static struct ps_stmt *known_stmt(struct pv_socket *c, const char *name)
{
	struct ps_stmt *st = client_lookup(c, name);
	if (!st)
		client_fatal(c, "08P01", "prepared statement did not exist");
	return st;
}

static enum pkt_action client_bind(struct pv_socket *c, struct pv_socket *s, struct pkt *p)
{
	struct pkt_reader r;
	const char *portal, *name;
	size_t head_len;
	struct ps_stmt *st;

	reader_init_pkt(&r, p);
	portal = read_string(&r);
	head_len = r.pos;
	name = read_string(&r);
	if (!portal || !name)
		return bad_message(c);
	if (!name[0]) {
		if (!q_push(s->ps_server, 'B', ACT_FORWARD) ||
		    !note_bound(s->ps_server, portal, s->ps_server->desc_unnamed))
			return oom(c);
		note_bind(s->ps_server, portal, r);
		return PKT_FORWARD;
	}
	c->pool->stats.bind_count++;
	if (!(st = known_stmt(c, name)))
		return PKT_STOP;
	if (!note_bound(s->ps_server, portal, stmt_layout(s, st) || s->ps_server->desc_stmt == st))
		return oom(c);
	if (!ensure_on_server(s, st) ||
	    !send_renamed(s, 'B', r.data, head_len, st, r.data + r.pos, reader_left(&r)) ||
	    !q_push_entry(s->ps_server, 'B', ACT_FORWARD, ps_layouts_needed ? st : NULL, NULL))
		return oom(c);
	note_bind(s->ps_server, portal, r);
	return PKT_CONSUMED;
}

/* Describe and Close bodies: a kind byte ('S' statement / 'P' portal) and a name. */
static bool read_kind_name(const struct pkt *p, uint8_t *kind, const char **name)
{
	struct pkt_reader r;
	reader_init_pkt(&r, p);
	*kind = read_u8(&r);
	*name = read_string(&r);
	return *name && reader_left(&r) == 0;
}

static enum pkt_action client_describe(struct pv_socket *c, struct pv_socket *s, struct pkt *p)
{
	uint8_t kind;
	const char *name;
	struct ps_stmt *st;

	if (!read_kind_name(p, &kind, &name))
		return bad_message(c);
	if (kind != 'S' || !name[0]) {
		if (!q_push(s->ps_server, 'D', ACT_FORWARD))
			return oom(c);
		note_portal(s->ps_server, kind, kind == 'P' ? name : NULL);
		if (kind == 'P' && ps_layouts_needed && !set_described(s->ps_server, name))
			return oom(c);
		if (kind == 'S')
			s->ps_server->desc_unnamed = true;
		return PKT_FORWARD;
	}
	if (!(st = known_stmt(c, name)))
		return PKT_STOP;
	s->ps_server->desc_stmt = st;
	if (!ensure_on_server(s, st) || !send_renamed(s, 'D', &kind, 1, st, NULL, 0) ||
	    !q_push_entry(s->ps_server, 'D', ACT_FORWARD, ps_layouts_needed ? st : NULL, NULL))
		return oom(c);
	note_portal(s->ps_server, kind, NULL);
	return PKT_CONSUMED;
}

static enum pkt_action client_close_msg(struct pv_socket *c, struct pv_socket *s, struct pkt *p)
{
	uint8_t kind;
	const char *name;

	if (!read_kind_name(p, &kind, &name))
		return bad_message(c);
	if (kind != 'S' || !name[0]) {
		if (!q_push(s->ps_server, 'C', ACT_FORWARD))
			return oom(c);
		note_portal(s->ps_server, kind, kind == 'P' ? name : NULL);
		return PKT_FORWARD;
	}
	/* The server keeps the statement for other clients; only this client's name goes. */
	if (c->ps_client)
		client_remove(c->ps_client, name);
	if (!q_push(s->ps_server, 'C', ACT_FAKE))
		return oom(c);
	emit_fakes(s);
	return PKT_CONSUMED;
}

static enum pkt_action client_execute(struct pv_socket *c, struct pv_socket *s, struct pkt *p)
{
	struct pkt_reader r;
	const char *portal = NULL;

	if (!ps_layouts_needed)
		return q_push(s->ps_server, 'E', ACT_FORWARD) ? PKT_FORWARD : oom(c);
	if (pkt_complete(p)) {
		reader_init_pkt(&r, p);
		portal = read_string(&r);
	}
	if (portal && !describe_before_execute(s, portal))
		return oom(c);
	if (!q_push(s->ps_server, 'E', ACT_FORWARD))
		return oom(c);
	if (portal)
		note_portal(s->ps_server, 0, portal);
	else
		q_tail(s->ps_server)->lost = true;
	return PKT_FORWARD;
}

enum pkt_action ps_client_msg(struct pv_socket *c, struct pv_socket *s, struct pkt *p)
{
	if (!server_state(s))
		return oom(c);
	if (s->ps_server->discarding) {
		/* PostgreSQL ignores all of it until Sync; nothing will answer. */
		if (p->type != 'S')
			return PKT_FORWARD;
		s->ps_server->discarding = false;
		return forward_tracked(s, 'S');
	}
	switch (p->type) {
	case 'P':
		return client_parse(c, s, p);
	case 'B':
		return client_bind(c, s, p);
	case 'D':
		return client_describe(c, s, p);
	case 'C':
		return client_close_msg(c, s, p);
	case 'E':
		return client_execute(c, s, p);
	case 'S':
	case 'Q':
	case 'F':
		return forward_tracked(s, (char)p->type);
	default:
		return PKT_FORWARD;
	}
}

/* --- server responses ---------------------------------------------------------------- */

static bool tag_drops_statements(struct pkt *p)
{
	const char *tag = (const char *)pkt_body(p);
	size_t n = pkt_body_len(p);
	return (n == sizeof("DISCARD ALL") && memcmp(tag, "DISCARD ALL", n) == 0) ||
	       (n == sizeof("DEALLOCATE ALL") && memcmp(tag, "DEALLOCATE ALL", n) == 0);
}

/* The response completing the head request: forward or drop it, then emit fakes behind it. */
static enum pkt_action respond(struct pv_socket *s, struct pkt *p, char expect)
{
	struct ps_server *ps = s->ps_server;
	struct ps_pending *h = q_head(ps);
	enum ps_act act;

	if (!h || h->type != expect) {
		/* Out of step: never guess, forward and let the client judge. */
		slog_warning(s, "unexpected response '%c' to pipeline head '%c'", p->type,
			     h ? h->type : '-');
		return PKT_FORWARD;
	}
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	act = (enum ps_act)h->act;
	if (ps_layouts_needed)
		track_response(s, h, p);
	q_pop(ps);
	if (act == ACT_FORWARD)
		sbuf_forward_current(s, p);
	emit_fakes(s);
	return PKT_CONSUMED;
}

/*
 * A Parse that failed, or that PostgreSQL skipped after an error, created
 * nothing: forget that the server holds the statement and the client's name.
 */
static void undo_parse(struct pv_socket *s, const struct ps_pending *h)
{
	struct ps_held *held;
	struct pv_socket *c = s->link;

	if (h->type != 'P' || !h->stmt)
		return;
	if (h->act != ACT_FAKE && (held = *held_slot(s->ps_server, h->stmt)) != NULL)
		held_remove(s->ps_server, held);
	if (h->name && c && client_lookup(c, h->name) == h->stmt)
		client_remove(c->ps_client, h->name);
}

/*
 * An eviction Close that PostgreSQL skipped closed nothing: the server still
 * holds the statement, and a Parse of it under the same name would fail. If
 * that cannot be recorded (out of memory), the server's statements are
 * unknown: it is closed instead of going back to the pool.
 */
static void undo_close(struct pv_socket *s, const struct ps_pending *h)
{
	struct ps_server *ps = s->ps_server;
	struct ps_held *held;

	if (h->type != 'C' || h->act != ACT_SKIP || !h->stmt || *held_slot(ps, h->stmt))
		return;
	if (!(held = calloc(1, sizeof(*held)))) {
		s->close_needed = true;
		return;
	}
	held_link(ps, held, h->stmt);
}

/*
 * After an error PostgreSQL skips everything up to Sync: so do the queue and
 * the answers pgvigil would have synthesized (and its own injected Parse,
 * Describe and Close: nothing will answer them). The error can overtake the
 * client's Sync (PostgreSQL reports at once); then the rest of the client's
 * pipeline up to its Sync passes untracked. Only the first Sync: batches
 * behind it run normally. Idempotent (the head is then that Sync, or the
 * queue is empty and discarding set), so a second call for the same message
 * changes nothing.
 */
void ps_server_error(struct pv_socket *s)
{
	struct ps_server *ps = s->ps_server;
	struct ps_pending *h = ps ? q_head(ps) : NULL;
	size_t n = 0;

	if (!h || h->type == 'Q' || h->type == 'F')
		return;
	while (n < ps->qcount && q_at(ps, n)->type != 'S')
		n++;
	/*
	 * Undone newest first: the server's statements return to what they were
	 * before the first skipped request (an eviction Close followed by a Parse
	 * of the same statement leaves it held).
	 */
	for (size_t i = n; i-- > 0;) {
		h = q_at(ps, i);
		undo_parse(s, h);
		undo_close(s, h);
		if (h->type == 'P' && !h->stmt) /* PostgreSQL dropped the unnamed statement */
			set_layout(&ps->unnamed, NULL);
	}
	while (n-- > 0)
		q_pop(ps);
	portals_clear(ps); /* the transaction failed */
	if (!q_head(ps))
		ps->discarding = true;
}

/* RowDescription of a simple Query's next result set. */
static enum pkt_action query_result(struct pv_socket *s, struct pkt *p)
{
	if (!ps_layouts_needed)
		return PKT_FORWARD;
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	set_layout(&s->ps_server->query, ps_layout_new(pkt_body(p), pkt_body_len(p)));
	return PKT_FORWARD;
}

/* ReadyForQuery ends the head Query/Sync; outside a transaction no portal is left. */
static enum pkt_action ready(struct pv_socket *s, struct pkt *p)
{
	struct ps_server *ps = s->ps_server;
	struct ps_pending *h = q_head(ps);

	if (ps_layouts_needed) {
		if (!pkt_complete(p))
			return PKT_NEED_FULL;
		if (h->type == 'Q') { /* a Query runs in the unnamed statement and portal */
			set_layout(&ps->query, NULL);
			set_layout(&ps->unnamed, NULL);
			portal_remove(ps, "");
		}
		if (pkt_body_len(p) < 1 || pkt_body(p)[0] != 'T')
			portals_clear(ps);
	}
	q_pop(ps);
	return PKT_FORWARD;
}

enum pkt_action ps_server_msg(struct pv_socket *s, struct pkt *p)
{
	struct ps_server *ps = s->ps_server;
	struct ps_pending *h = ps ? q_head(ps) : NULL;

	if (!h)
		return PKT_FORWARD;
	switch (p->type) {
	case '1':
		return respond(s, p, 'P');
	case '2':
		return respond(s, p, 'B');
	case '3':
		return respond(s, p, 'C');
	case 'T':
		if (h->type == 'Q')
			return query_result(s, p);
		return h->type == 'D' ? respond(s, p, 'D') : PKT_FORWARD;
	case 'n':
		return h->type == 'D' ? respond(s, p, 'D') : PKT_FORWARD;
	case 'C':
		if (!pkt_complete(p))
			return PKT_NEED_FULL;
		if (tag_drops_statements(p)) {
			ps_server_forget_all(s);
			if (s->link && s->link->ps_client)
				client_clear(s->link->ps_client);
		}
		if (h->type == 'Q')
			set_layout(&ps->query, NULL);
		return h->type == 'E' ? respond(s, p, 'E') : PKT_FORWARD;
	case 'I':
	case 's':
		return h->type == 'E' ? respond(s, p, 'E') : PKT_FORWARD;
	case 'Z':
		return ready(s, p);
	default:
		return PKT_FORWARD;
	}
}

void ps_after_forward(struct pv_socket *s)
{
	emit_fakes(s);
}
