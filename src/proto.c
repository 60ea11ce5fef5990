/*
 * proto.c - PostgreSQL protocol v3 framing, field reading and message building.
 */
#include "proto.h"

#include <string.h>

enum frame_result proto_frame(const uint8_t *data, size_t avail, struct pkt *out)
{
	uint32_t len;

	if (avail < MSG_HDR_LEN)
		return FRAME_NEED_MORE;
	len = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 | data[4];
	/* The length counts itself; below 4 it cannot describe any message. */
	if (len < 4 || len > UINT32_MAX - 1)
		return FRAME_BAD;
	/*
	 * No message type is 0, and struct pkt uses type 0 to mean "startup
	 * packet": accepting it would shift pkt_body() back over a length byte.
	 */
	if (data[0] == 0)
		return FRAME_BAD;
	out->type = data[0];
	out->len = len + 1;
	out->hdr = data;
	out->avail = avail < out->len ? avail : out->len;
	return FRAME_OK;
}

enum frame_result proto_frame_startup(const uint8_t *data, size_t avail, struct pkt *out)
{
	uint32_t len;

	if (avail < 4)
		return FRAME_NEED_MORE;
	len = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
	/* length + protocol code is the smallest valid startup packet */
	if (len < 8 || len > STARTUP_MAX_LEN)
		return FRAME_BAD;
	out->type = 0;
	out->len = len;
	out->hdr = data;
	out->avail = avail < len ? avail : len;
	return FRAME_OK;
}

void reader_init(struct pkt_reader *r, const uint8_t *data, size_t len)
{
	r->data = data;
	r->len = len;
	r->pos = 0;
	r->bad = false;
}

void reader_init_pkt(struct pkt_reader *r, const struct pkt *p)
{
	reader_init(r, pkt_body(p), pkt_body_len(p));
}

static bool reader_has(struct pkt_reader *r, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		return false;
	}
	return true;
}

uint8_t read_u8(struct pkt_reader *r)
{
	if (!reader_has(r, 1))
		return 0;
	return r->data[r->pos++];
}

uint16_t read_u16(struct pkt_reader *r)
{
	uint16_t v;
	if (!reader_has(r, 2))
		return 0;
	v = (uint16_t)(r->data[r->pos] << 8 | r->data[r->pos + 1]);
	r->pos += 2;
	return v;
}

uint32_t read_u32(struct pkt_reader *r)
{
	const uint8_t *p;
	if (!reader_has(r, 4))
		return 0;
	p = r->data + r->pos;
	r->pos += 4;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

const char *read_string(struct pkt_reader *r)
{
	const uint8_t *start, *nul;
	if (r->bad || r->pos >= r->len) {
		r->bad = true;
		return NULL;
	}
	start = r->data + r->pos;
	nul = memchr(start, 0, r->len - r->pos);
	if (!nul) {
		r->bad = true;
		return NULL;
	}
	r->pos += (size_t)(nul - start) + 1;
	return (const char *)start;
}

const uint8_t *read_bytes(struct pkt_reader *r, size_t n)
{
	const uint8_t *p;
	if (!reader_has(r, n))
		return NULL;
	p = r->data + r->pos;
	r->pos += n;
	return p;
}

int proto_parse_startup_params(const uint8_t *body, size_t len, struct startup_param *out,
			       int max)
{
	struct pkt_reader r;
	int n = 0;

	/* The list ends with an empty key, which must be the very last byte. */
	if (len == 0 || body[len - 1] != 0)
		return -1;
	reader_init(&r, body, len);
	for (;;) {
		const char *key = read_string(&r);
		const char *val;
		if (!key)
			return -1;
		if (*key == 0)
			return reader_left(&r) == 0 ? n : -1;
		val = read_string(&r);
		if (!val || n >= max)
			return -1;
		out[n].key = key;
		out[n].value = val;
		n++;
	}
}

void build_begin(struct pkt_builder *b, struct pv_buf *buf, uint8_t type)
{
	static const uint8_t zero[4];
	b->buf = buf;
	b->start = buf->len;
	b->startup = false;
	b->failed = !buf_append(buf, &type, 1) || !buf_append(buf, zero, 4);
}

void build_begin_startup(struct pkt_builder *b, struct pv_buf *buf)
{
	static const uint8_t zero[4];
	b->buf = buf;
	b->start = buf->len;
	b->startup = true;
	b->failed = !buf_append(buf, zero, 4);
}

void build_bytes(struct pkt_builder *b, const void *p, size_t n)
{
	if (!b->failed && !buf_append(b->buf, p, n))
		b->failed = true;
}

void build_u8(struct pkt_builder *b, uint8_t v)
{
	build_bytes(b, &v, 1);
}

void build_u16(struct pkt_builder *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	build_bytes(b, x, 2);
}

void build_u32(struct pkt_builder *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	build_bytes(b, x, 4);
}

void build_string(struct pkt_builder *b, const char *s)
{
	build_bytes(b, s, strlen(s) + 1);
}

bool build_end(struct pkt_builder *b)
{
	size_t lenpos, len;
	uint8_t *p;

	if (b->failed) {
		/* Never leave half a message in an output queue. */
		if (b->buf->len > b->start)
			b->buf->len = b->start;
		return false;
	}
	lenpos = b->start + (b->startup ? 0 : 1);
	len = b->buf->len - lenpos;
	if (len > UINT32_MAX) {
		b->buf->len = b->start;
		return false;
	}
	p = b->buf->data + lenpos;
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	return true;
}

static bool msg_error_fields(struct pv_buf *out, uint8_t type, const char *severity,
			     const char *sqlstate, const char *text)
{
	struct pkt_builder b;
	build_begin(&b, out, type);
	build_u8(&b, 'S');
	build_string(&b, severity);
	build_u8(&b, 'V');
	build_string(&b, severity);
	build_u8(&b, 'C');
	build_string(&b, sqlstate);
	build_u8(&b, 'M');
	build_string(&b, text);
	build_u8(&b, 0);
	return build_end(&b);
}

bool msg_error(struct pv_buf *out, const char *severity, const char *sqlstate, const char *text)
{
	return msg_error_fields(out, 'E', severity, sqlstate, text);
}

bool msg_notice(struct pv_buf *out, const char *sqlstate, const char *text)
{
	return msg_error_fields(out, 'N', "NOTICE", sqlstate, text);
}

bool msg_auth_request(struct pv_buf *out, uint32_t code, const void *extra, size_t extra_len)
{
	struct pkt_builder b;
	build_begin(&b, out, 'R');
	build_u32(&b, code);
	if (extra_len)
		build_bytes(&b, extra, extra_len);
	return build_end(&b);
}

bool msg_param_status(struct pv_buf *out, const char *key, const char *value)
{
	struct pkt_builder b;
	build_begin(&b, out, 'S');
	build_string(&b, key);
	build_string(&b, value);
	return build_end(&b);
}

bool msg_backend_key(struct pv_buf *out, const uint8_t key[8])
{
	struct pkt_builder b;
	build_begin(&b, out, 'K');
	build_bytes(&b, key, 8);
	return build_end(&b);
}

bool msg_ready(struct pv_buf *out, char status)
{
	struct pkt_builder b;
	build_begin(&b, out, 'Z');
	build_u8(&b, (uint8_t)status);
	return build_end(&b);
}

bool msg_command_complete(struct pv_buf *out, const char *tag)
{
	struct pkt_builder b;
	build_begin(&b, out, 'C');
	build_string(&b, tag);
	return build_end(&b);
}

bool msg_query(struct pv_buf *out, const char *sql)
{
	struct pkt_builder b;
	build_begin(&b, out, 'Q');
	build_string(&b, sql);
	return build_end(&b);
}

bool msg_password(struct pv_buf *out, const void *data, size_t len)
{
	struct pkt_builder b;
	build_begin(&b, out, 'p');
	build_bytes(&b, data, len);
	return build_end(&b);
}

bool msg_sasl_initial(struct pv_buf *out, const char *mech, const void *data, size_t len)
{
	struct pkt_builder b;
	build_begin(&b, out, 'p');
	build_string(&b, mech);
	build_u32(&b, (uint32_t)len);
	build_bytes(&b, data, len);
	return build_end(&b);
}

bool msg_negotiate_version(struct pv_buf *out, uint32_t newest_minor, const char *const *unsupported,
			   int n_unsupported)
{
	struct pkt_builder b;
	build_begin(&b, out, 'v');
	build_u32(&b, PROTO_V3 | newest_minor);
	build_u32(&b, (uint32_t)n_unsupported);
	for (int i = 0; i < n_unsupported; i++)
		build_string(&b, unsupported[i]);
	return build_end(&b);
}

bool msg_cancel_request(struct pv_buf *out, const uint8_t key[8])
{
	struct pkt_builder b;
	build_begin_startup(&b, out);
	build_u32(&b, PROTO_CANCEL);
	build_bytes(&b, key, 8);
	return build_end(&b);
}

bool proto_parse_error(const uint8_t *body, size_t len, struct error_fields *out)
{
	struct pkt_reader r;

	memset(out, 0, sizeof(*out));
	reader_init(&r, body, len);
	for (;;) {
		uint8_t code = read_u8(&r);
		const char *val;
		if (r.bad)
			return false;
		if (code == 0)
			return true;
		val = read_string(&r);
		if (!val)
			return false;
		if (code == 'S' && !out->severity)
			out->severity = val;
		else if (code == 'V')
			out->severity = val;
		else if (code == 'C')
			out->sqlstate = val;
		else if (code == 'M')
			out->message = val;
	}
}
