/*
 * list.h - intrusive circular doubly linked lists.
 *
 * Owns nothing: a list_head is embedded in the object that is listed, so moving
 * an object between state lists (idle -> active ...) never allocates. The pool's
 * state is encoded by which list each socket sits in, as in PgBouncer.
 */
#ifndef PV_LIST_H
#define PV_LIST_H

#include <stddef.h>
#include <stdbool.h>

struct list_head {
	struct list_head *next, *prev;
};

#define LIST_HEAD_INIT(name) {&(name), &(name)}

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void list_init(struct list_head *h)
{
	h->next = h;
	h->prev = h;
}

static inline bool list_empty(const struct list_head *h)
{
	return h->next == h;
}

/* Is this node on some list?  Nodes are list_init()ed when unlinked. */
static inline bool list_linked(const struct list_head *n)
{
	return n->next != n;
}

static inline void list_add_between(struct list_head *n, struct list_head *prev,
				    struct list_head *next)
{
	n->prev = prev;
	n->next = next;
	prev->next = n;
	next->prev = n;
}

static inline void list_prepend(struct list_head *h, struct list_head *n)
{
	list_add_between(n, h, h->next);
}

static inline void list_append(struct list_head *h, struct list_head *n)
{
	list_add_between(n, h->prev, h);
}

static inline void list_del(struct list_head *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

static inline struct list_head *list_first(const struct list_head *h)
{
	return list_empty(h) ? NULL : h->next;
}

static inline size_t list_count(const struct list_head *h)
{
	size_t n = 0;
	for (const struct list_head *p = h->next; p != h; p = p->next)
		n++;
	return n;
}

#define list_for_each(pos, head) for (pos = (head)->next; pos != (head); pos = pos->next)

/* Safe against removal of pos. */
#define list_for_each_safe(pos, tmp, head)                                                         \
	for (pos = (head)->next, tmp = pos->next; pos != (head); pos = tmp, tmp = pos->next)

#endif
