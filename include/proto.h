/*
 * proto.h - PostgreSQL protocol v3 codec.
 *
 * Owns framing (where a message starts and ends), bounds-checked reading of
 * message fields, and building messages into a pv_buf. It does no I/O and
 * makes no pooling decisions: callers hand it bytes and get fields back.
 *
 * Regular message:  type(1) | length(4, counts itself) | body
 * Startup packet:   length(4, counts itself) | code(4) | body
 */
#ifndef PV_PROTO_H
#define PV_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util.h"

#define PROTO_V3 0x00030000u
#define PROTO_CANCEL 80877102u
#define PROTO_SSL 80877103u
#define PROTO_GSSENC 80877104u
#define PROTO_MAJOR(v) ((v) >> 16)
#define PROTO_MINOR(v) ((v)&0xffff)

/* Startup-phase packets are small; PgBouncer caps them at 64 KiB too. */
#define STARTUP_MAX_LEN 65535u
#define MSG_HDR_LEN 5

/* A framed message: hdr points at the type byte (or at the length for startup packets). */
struct pkt {
	uint8_t type;	    /* 0 for startup-phase packets */
	uint32_t len;	    /* total bytes including type and length fields */
	const uint8_t *hdr; /* start of the message in the buffer */
	size_t avail;	    /* bytes of the message present in the buffer (<= len) */
};

static inline bool pkt_complete(const struct pkt *p)
{
	return p->avail >= p->len;
}
/* Body (after the header) of a complete message. */
static inline const uint8_t *pkt_body(const struct pkt *p)
{
	return p->hdr + (p->type ? MSG_HDR_LEN : 4);
}
static inline size_t pkt_body_len(const struct pkt *p)
{
	return p->len - (p->type ? MSG_HDR_LEN : 4);
}

enum frame_result {
	FRAME_OK,	/* header parsed, pkt filled */
	FRAME_NEED_MORE, /* not even a full header yet */
	FRAME_BAD,	/* impossible length */
};

/* Frame a regular message at data[0..avail). */
enum frame_result proto_frame(const uint8_t *data, size_t avail, struct pkt *out);
/* Frame a startup-phase packet (no type byte). */
enum frame_result proto_frame_startup(const uint8_t *data, size_t avail, struct pkt *out);

/* --- reading fields ---------------------------------------------------------- */

/* Sequential reader; any out-of-bounds read sets `bad` and returns zero/NULL. */
struct pkt_reader {
	const uint8_t *data;
	size_t len;
	size_t pos;
	bool bad;
};

void reader_init(struct pkt_reader *r, const uint8_t *data, size_t len);
void reader_init_pkt(struct pkt_reader *r, const struct pkt *p);
uint8_t read_u8(struct pkt_reader *r);
uint16_t read_u16(struct pkt_reader *r);
uint32_t read_u32(struct pkt_reader *r);
/* NUL-terminated string inside the message; NULL (and bad) if unterminated. */
const char *read_string(struct pkt_reader *r);
/* n raw bytes; NULL (and bad) if fewer remain. */
const uint8_t *read_bytes(struct pkt_reader *r, size_t n);
static inline size_t reader_left(const struct pkt_reader *r)
{
	return r->len - r->pos;
}

/* Iterate "key\0value\0...\0" of a StartupMessage body (after the version). */
struct startup_param {
	const char *key;
	const char *value;
};
/*
 * Parse startup parameters into out[0..max). Returns the count, or -1 when the
 * layout is invalid (missing final terminator, odd key/value, too many).
 */
int proto_parse_startup_params(const uint8_t *body, size_t len, struct startup_param *out,
			       int max);

/* --- building messages ----------------------------------------------------- */

/* Builds one message at the end of a pv_buf; failures are sticky in `failed`. */
struct pkt_builder {
	struct pv_buf *buf;
	size_t start;
	bool failed;
	bool startup; /* no type byte before the length */
};

void build_begin(struct pkt_builder *b, struct pv_buf *buf, uint8_t type);
/* Startup-phase packet (no type byte). */
void build_begin_startup(struct pkt_builder *b, struct pv_buf *buf);
void build_u8(struct pkt_builder *b, uint8_t v);
void build_u16(struct pkt_builder *b, uint16_t v);
void build_u32(struct pkt_builder *b, uint32_t v);
void build_bytes(struct pkt_builder *b, const void *p, size_t n);
void build_string(struct pkt_builder *b, const char *s); /* with terminator */
/* Patch the length; returns false if anything failed (the partial message is removed). */
bool build_end(struct pkt_builder *b);

/* Whole messages commonly synthesized by the pooler. All return false on allocation failure. */
bool msg_error(struct pv_buf *out, const char *severity, const char *sqlstate, const char *text);
bool msg_notice(struct pv_buf *out, const char *sqlstate, const char *text);
bool msg_auth_request(struct pv_buf *out, uint32_t code, const void *extra, size_t extra_len);
bool msg_param_status(struct pv_buf *out, const char *key, const char *value);
bool msg_backend_key(struct pv_buf *out, const uint8_t key[8]);
bool msg_ready(struct pv_buf *out, char status);
bool msg_command_complete(struct pv_buf *out, const char *tag);
bool msg_query(struct pv_buf *out, const char *sql);
bool msg_password(struct pv_buf *out, const void *data, size_t len);
bool msg_sasl_initial(struct pv_buf *out, const char *mech, const void *data, size_t len);
bool msg_negotiate_version(struct pv_buf *out, uint32_t newest_minor, const char *const *unsupported,
			   int n_unsupported);
bool msg_cancel_request(struct pv_buf *out, const uint8_t key[8]);

/* Fields of an ErrorResponse/NoticeResponse body. Missing fields are NULL. */
struct error_fields {
	const char *severity; /* 'S' (localized) */
	const char *sqlstate; /* 'C' */
	const char *message;  /* 'M' */
};
bool proto_parse_error(const uint8_t *body, size_t len, struct error_fields *out);

#endif
