/*
 * websocket.c - the one part of a WebSocket handshake egressd checks
 * (RFC 6455 section 4): after a 101 the bytes are relayed raw, past every
 * per-request decision, so a 101 is believed only when it answers the
 * client's own key.  An origin that can be made to send any status (an
 * endpoint like httpbin's /status/101) and then reads the next request as
 * HTTP would otherwise have egressd relay requests no rule decided.
 */
#include "http.h"

#include <mbedtls/sha1.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

bool http_websocket_key(const struct http_msg *m, char *key)
{
    const struct http_header *h = http_header_find(m, "sec-websocket-key");
    if (h == NULL || h->value_len != HTTP_WS_KEY_LEN)
        return false;
    memcpy(key, h->value, HTTP_WS_KEY_LEN);
    key[HTTP_WS_KEY_LEN] = '\0';
    return true;
}

bool http_websocket_accepted(const char *key, const struct http_msg *r)
{
    const struct http_header *up = http_header_find(r, "upgrade");
    const struct http_header *acc = http_header_find(r, "sec-websocket-accept");
    unsigned char in[HTTP_WS_KEY_LEN + sizeof(WS_GUID)], sum[20];
    char want[32];
    struct sbuf b;
    if (up == NULL || acc == NULL || !http_list_has(up->value, up->value_len, "websocket"))
        return false;
    memcpy(in, key, HTTP_WS_KEY_LEN);
    memcpy(in + HTTP_WS_KEY_LEN, WS_GUID, sizeof(WS_GUID) - 1);
    if (mbedtls_sha1_ret(in, HTTP_WS_KEY_LEN + sizeof(WS_GUID) - 1, sum) != 0)
        return false;
    sbuf_init(&b, want, sizeof(want));
    http_base64_encode(&b, sum, sizeof(sum));
    return !b.cut && acc->value_len == b.len && memcmp(acc->value, want, b.len) == 0;
}
