/*
 * fuzz_proto.c - libFuzzer target for the protocol codec (src/proto.c).
 *
 * The input is used three ways:
 *  1. as a stream of regular messages: proto_frame() walks it and every
 *     complete message is taken apart with the field readers the pooler uses
 *     for that message type (ErrorResponse, ParameterStatus, Authentication,
 *     ReadyForQuery, DataRow, RowDescription);
 *  2. as a startup packet: proto_frame_startup() + proto_parse_startup_params();
 *  3. as a source of NUL-free strings that are built into messages with the
 *     msg_* builders and must frame and parse back to the same fields.
 * Any broken invariant calls __builtin_trap() so libFuzzer records a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

#define MAX_PARAMS 64

/* Reader state must stay inside its buffer, and `bad` must be sticky. */
static void check_reader(const struct pkt_reader *r, bool was_bad)
{
	CHECK(r->pos <= r->len);
	CHECK(reader_left(r) == r->len - r->pos);
	if (was_bad)
		CHECK(r->bad);
}

/* A string from read_string() lies inside the reader's buffer, NUL-terminated there. */
static const char *checked_string(struct pkt_reader *r)
{
	bool was_bad = r->bad;
	size_t before = r->pos;
	const char *s = read_string(r);

	check_reader(r, was_bad);
	if (!s) {
		CHECK(r->bad);
		return NULL;
	}
	CHECK(!was_bad);
	CHECK((const uint8_t *)s == r->data + before);
	CHECK(memchr(s, 0, r->len - before) != NULL);
	CHECK(r->pos == before + strlen(s) + 1);
	return s;
}

static const uint8_t *checked_bytes(struct pkt_reader *r, size_t n)
{
	bool was_bad = r->bad;
	size_t before = r->pos;
	const uint8_t *p = read_bytes(r, n);

	check_reader(r, was_bad);
	if (!p) {
		CHECK(r->bad);
		return NULL;
	}
	CHECK(!was_bad);
	CHECK(p == r->data + before);
	CHECK(n <= r->len - before);
	CHECK(r->pos == before + n);
	return p;
}

static uint32_t checked_u32(struct pkt_reader *r)
{
	bool was_bad = r->bad;
	size_t before = r->pos;
	uint32_t v = read_u32(r);

	check_reader(r, was_bad);
	if (r->bad)
		CHECK(v == 0);
	else
		CHECK(r->pos == before + 4);
	return v;
}

static uint16_t checked_u16(struct pkt_reader *r)
{
	bool was_bad = r->bad;
	size_t before = r->pos;
	uint16_t v = read_u16(r);

	check_reader(r, was_bad);
	if (r->bad)
		CHECK(v == 0);
	else
		CHECK(r->pos == before + 2);
	return v;
}

static uint8_t checked_u8(struct pkt_reader *r)
{
	bool was_bad = r->bad;
	size_t before = r->pos;
	uint8_t v = read_u8(r);

	check_reader(r, was_bad);
	if (r->bad)
		CHECK(v == 0);
	else
		CHECK(r->pos == before + 1);
	return v;
}

/* An error field is NULL or a NUL-terminated string inside body. */
static void check_in_body(const char *s, const uint8_t *body, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	if (!s)
		return;
	CHECK(p >= body && p < body + len);
	CHECK(memchr(p, 0, len - (size_t)(p - body)) != NULL);
}

static void read_message(const struct pkt *p)
{
	struct pkt_reader r;
	const uint8_t *body = pkt_body(p);
	size_t blen = pkt_body_len(p);

	reader_init_pkt(&r, p);
	CHECK(r.data == body && r.len == blen && r.pos == 0 && !r.bad);

	switch (p->type) {
	case 'E':
	case 'N': {
		struct error_fields ef;
		if (proto_parse_error(body, blen, &ef)) {
			check_in_body(ef.severity, body, blen);
			check_in_body(ef.sqlstate, body, blen);
			check_in_body(ef.message, body, blen);
		}
		break;
	}
	case 'S':
		checked_string(&r);
		checked_string(&r);
		break;
	case 'R':
		checked_u32(&r);
		checked_bytes(&r, reader_left(&r));
		CHECK(r.bad || reader_left(&r) == 0);
		break;
	case 'Z':
		checked_u8(&r);
		break;
	case 'D': {
		uint16_t n = checked_u16(&r);
		for (uint16_t i = 0; i < n && !r.bad; i++) {
			uint32_t clen = checked_u32(&r);
			if (r.bad)
				break;
			if (clen != UINT32_MAX) /* -1 is SQL NULL */
				checked_bytes(&r, clen);
		}
		break;
	}
	case 'T': {
		uint16_t n = checked_u16(&r);
		for (uint16_t i = 0; i < n && !r.bad; i++) {
			checked_string(&r);
			checked_bytes(&r, 18);
		}
		break;
	}
	default:
		/* Exercise the generic readers on unknown types too. */
		checked_string(&r);
		checked_u32(&r);
		break;
	}
	/* Reading past a failure must keep failing. */
	if (r.bad) {
		CHECK(checked_u8(&r) == 0 && r.bad);
		CHECK(checked_bytes(&r, 0) == NULL);
	}
}

static void fuzz_stream(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		struct pkt p;
		enum frame_result fr = proto_frame(data + off, size - off, &p);

		if (fr == FRAME_NEED_MORE) {
			CHECK(size - off < MSG_HDR_LEN);
			break;
		}
		if (fr == FRAME_BAD)
			break;
		CHECK(fr == FRAME_OK);
		CHECK(p.hdr == data + off);
		CHECK(p.type == data[off]);
		CHECK(p.len >= MSG_HDR_LEN);
		CHECK(p.avail <= p.len && p.avail <= size - off);
		/* A regular message's body always starts after type + length. */
		CHECK(pkt_body(&p) == p.hdr + MSG_HDR_LEN);
		CHECK(pkt_body_len(&p) == p.len - MSG_HDR_LEN);
		if (!pkt_complete(&p)) {
			CHECK(p.avail == size - off);
			break;
		}
		CHECK(p.avail == p.len);
		read_message(&p);
		off += p.len;
	}
}

static void fuzz_startup(const uint8_t *data, size_t size)
{
	struct pkt p;
	struct startup_param params[MAX_PARAMS];
	const uint8_t *body;
	size_t blen;
	int n;

	if (proto_frame_startup(data, size, &p) != FRAME_OK)
		return;
	CHECK(p.type == 0 && p.hdr == data);
	CHECK(p.len >= 8 && p.len <= STARTUP_MAX_LEN);
	CHECK(p.avail <= p.len && p.avail <= size);
	if (!pkt_complete(&p))
		return;
	CHECK(pkt_body(&p) == data + 4 && pkt_body_len(&p) == p.len - 4);
	body = pkt_body(&p) + 4;
	blen = pkt_body_len(&p) - 4;
	n = proto_parse_startup_params(body, blen, params, MAX_PARAMS);
	CHECK(n >= -1 && n <= MAX_PARAMS);
	for (int i = 0; i < n; i++) {
		check_in_body(params[i].key, body, blen);
		check_in_body(params[i].value, body, blen);
		CHECK(params[i].key[0] != '\0');
	}
	/* A successful parse accounts for every byte: pairs plus the final NUL. */
	if (n >= 0) {
		size_t used = 1;
		for (int i = 0; i < n; i++)
			used += strlen(params[i].key) + 1 + strlen(params[i].value) + 1;
		CHECK(used == blen);
	}
}

/* --- round trip ------------------------------------------------------------ */

/* Up to `max` NUL-free slices of the input, each copied and NUL-terminated. */
static int split_strings(const uint8_t *data, size_t size, char **out, int max)
{
	int n = 0;
	size_t start = 0;

	while (n < max) {
		const uint8_t *nul = memchr(data + start, 0, size - start);
		size_t end = nul ? (size_t)(nul - data) : size;
		char *s = malloc(end - start + 1);
		if (!s)
			break;
		memcpy(s, data + start, end - start);
		s[end - start] = '\0';
		out[n++] = s;
		if (!nul)
			break;
		start = end + 1;
	}
	for (int i = n; i < max; i++)
		out[i] = NULL;
	return n;
}

/* The only message in buf frames with the given type and exactly buf->len bytes. */
static void frame_one(const struct pv_buf *buf, uint8_t type, struct pkt *p)
{
	CHECK(proto_frame(buf->data, buf->len, p) == FRAME_OK);
	CHECK(p->type == type);
	CHECK(p->len == buf->len);
	CHECK(pkt_complete(p));
}

static void roundtrip(const uint8_t *data, size_t size)
{
	char *s[4];
	const char *a, *b, *c, *d;
	struct pv_buf buf;
	struct pkt p;
	struct pkt_reader r;
	struct error_fields ef;
	int n = split_strings(data, size, s, 4);

	a = s[0] ? s[0] : "";
	b = s[1] ? s[1] : "";
	c = s[2] ? s[2] : "";
	d = s[3] ? s[3] : "";
	buf_init(&buf);

	/* ParameterStatus */
	CHECK(msg_param_status(&buf, a, b));
	frame_one(&buf, 'S', &p);
	reader_init_pkt(&r, &p);
	CHECK(strcmp(checked_string(&r), a) == 0);
	CHECK(strcmp(checked_string(&r), b) == 0);
	CHECK(!r.bad && reader_left(&r) == 0);
	buf_reset(&buf);

	/* ErrorResponse / NoticeResponse */
	CHECK(msg_error(&buf, a, b, c));
	frame_one(&buf, 'E', &p);
	CHECK(proto_parse_error(pkt_body(&p), pkt_body_len(&p), &ef));
	CHECK(ef.severity && strcmp(ef.severity, a) == 0);
	CHECK(ef.sqlstate && strcmp(ef.sqlstate, b) == 0);
	CHECK(ef.message && strcmp(ef.message, c) == 0);
	buf_reset(&buf);
	CHECK(msg_notice(&buf, d, a));
	frame_one(&buf, 'N', &p);
	CHECK(proto_parse_error(pkt_body(&p), pkt_body_len(&p), &ef));
	CHECK(ef.severity && strcmp(ef.severity, "NOTICE") == 0);
	CHECK(ef.sqlstate && strcmp(ef.sqlstate, d) == 0);
	CHECK(ef.message && strcmp(ef.message, a) == 0);
	buf_reset(&buf);

	/* Query, CommandComplete: one string each */
	CHECK(msg_query(&buf, c));
	frame_one(&buf, 'Q', &p);
	reader_init_pkt(&r, &p);
	CHECK(strcmp(checked_string(&r), c) == 0 && reader_left(&r) == 0);
	buf_reset(&buf);
	CHECK(msg_command_complete(&buf, d));
	frame_one(&buf, 'C', &p);
	reader_init_pkt(&r, &p);
	CHECK(strcmp(checked_string(&r), d) == 0 && reader_left(&r) == 0);
	buf_reset(&buf);

	/* Authentication request with raw extra bytes (the whole input) */
	CHECK(msg_auth_request(&buf, 10, data, size));
	frame_one(&buf, 'R', &p);
	reader_init_pkt(&r, &p);
	CHECK(checked_u32(&r) == 10);
	CHECK(reader_left(&r) == size);
	CHECK(size == 0 || memcmp(checked_bytes(&r, size), data, size) == 0);
	buf_reset(&buf);

	/* SASLInitialResponse */
	CHECK(msg_sasl_initial(&buf, a, data, size));
	frame_one(&buf, 'p', &p);
	reader_init_pkt(&r, &p);
	CHECK(strcmp(checked_string(&r), a) == 0);
	CHECK(checked_u32(&r) == size && reader_left(&r) == size);
	buf_reset(&buf);

	/* several messages back to back frame one after another */
	CHECK(msg_ready(&buf, size ? (char)data[0] : 'I'));
	CHECK(msg_backend_key(&buf, (const uint8_t *)"12345678"));
	CHECK(msg_param_status(&buf, b, c));
	{
		size_t off = 0;
		const uint8_t types[] = {'Z', 'K', 'S'};
		for (int i = 0; i < 3; i++) {
			CHECK(proto_frame(buf.data + off, buf.len - off, &p) == FRAME_OK);
			CHECK(p.type == types[i] && pkt_complete(&p));
			off += p.len;
		}
		CHECK(off == buf.len);
	}
	buf_reset(&buf);

	/* StartupMessage built from the non-empty slices as key/value pairs */
	{
		struct pkt_builder bl;
		struct startup_param params[4];
		int np = 0, got;

		build_begin_startup(&bl, &buf);
		build_u32(&bl, PROTO_V3);
		for (int i = 0; i + 1 < n; i += 2) {
			if (s[i][0] == '\0')
				continue;
			build_string(&bl, s[i]);
			build_string(&bl, s[i + 1]);
			np++;
		}
		build_u8(&bl, 0);
		CHECK(build_end(&bl));
		if (buf.len <= STARTUP_MAX_LEN) {
			CHECK(proto_frame_startup(buf.data, buf.len, &p) == FRAME_OK);
			CHECK(p.len == buf.len && pkt_complete(&p));
			got = proto_parse_startup_params(pkt_body(&p) + 4, pkt_body_len(&p) - 4, params,
							 4);
			CHECK(got == np);
			for (int i = 0, k = 0; i + 1 < n; i += 2) {
				if (s[i][0] == '\0')
					continue;
				CHECK(strcmp(params[k].key, s[i]) == 0);
				CHECK(strcmp(params[k].value, s[i + 1]) == 0);
				k++;
			}
		}
		buf_reset(&buf);
	}

	/* CancelRequest */
	CHECK(msg_cancel_request(&buf, (const uint8_t *)"abcdefgh"));
	CHECK(proto_frame_startup(buf.data, buf.len, &p) == FRAME_OK);
	CHECK(p.len == 16 && buf.len == 16 && pkt_complete(&p));
	reader_init_pkt(&r, &p);
	CHECK(checked_u32(&r) == PROTO_CANCEL);
	CHECK(memcmp(checked_bytes(&r, 8), "abcdefgh", 8) == 0);

	buf_free(&buf);
	for (int i = 0; i < 4; i++)
		free(s[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_stream(data, size);
	fuzz_startup(data, size);
	roundtrip(data, size);
	return 0;
}
