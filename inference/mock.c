/*
 * mock.c - canned answers for mock:// routes, to try egressd out with no
 * backend at all.  Each protocol gets a small well-formed answer in its own
 * shape; a request with "stream": true gets it as server-sent events, sent
 * as several pieces like a real stream.  The usage they report is recorded
 * as a backend's would be, so that budgets count mock routes too.
 */
#include "infer_int.h"

#include <stdio.h>
#include <string.h>

#define MOCK_TEXT "Hello from the egressd mock backend."

static const char *const pieces[] = {"Hello", " from the", " egressd mock", " backend."};
#define N_PIECES (sizeof(pieces) / sizeof(pieces[0]))

/* What a mock answer sends, with the usage it reports noted like a backend's. */
struct mock {
    struct reply *rp;
    struct usage *u;
};

static int send_json(struct mock *m, const char *body)
{
    usage_scan(m->u, body, strlen(body));
    return reply_whole(m->rp, 200, "OK", "Content-Type: application/json\r\n", body, strlen(body));
}

static int openai_json(struct mock *m, enum protocol proto, const char *model)
{
    char body[1500];
    switch (proto) {
    case PROTO_OPENAI_EMBEDDINGS:
        snprintf(body, sizeof(body),
                 "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
                 "\"embedding\":[0.0125,-0.5,0.25]}],\"model\":\"%s\","
                 "\"usage\":{\"prompt_tokens\":3,\"total_tokens\":3}}",
                 model);
        break;
    case PROTO_MODEL_DISCOVERY:
        snprintf(body, sizeof(body),
                 "{\"object\":\"list\",\"data\":[{\"id\":\"mock-model\",\"object\":\"model\","
                 "\"created\":0,\"owned_by\":\"egressd\"}]}");
        break;
    case PROTO_OPENAI_COMPLETIONS:
        snprintf(body, sizeof(body),
                 "{\"id\":\"cmpl-mock\",\"object\":\"text_completion\",\"created\":0,"
                 "\"model\":\"%s\",\"choices\":[{\"text\":\"" MOCK_TEXT "\",\"index\":0,"
                 "\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                 "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}",
                 model);
        break;
    case PROTO_OPENAI_RESPONSES:
        snprintf(body, sizeof(body),
                 "{\"id\":\"resp_mock\",\"object\":\"response\",\"created_at\":0,"
                 "\"status\":\"completed\",\"model\":\"%s\",\"output\":[{\"type\":\"message\","
                 "\"id\":\"msg_mock\",\"status\":\"completed\",\"role\":\"assistant\","
                 "\"content\":[{\"type\":\"output_text\",\"text\":\"" MOCK_TEXT
                 "\",\"annotations\":[]}]}],"
                 "\"usage\":{\"input_tokens\":5,\"output_tokens\":7,\"total_tokens\":12}}",
                 model);
        break;
    default:
        snprintf(body, sizeof(body),
                 "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":0,"
                 "\"model\":\"%s\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                 "\"content\":\"" MOCK_TEXT "\"},\"finish_reason\":\"stop\"}],"
                 "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}",
                 model);
        break;
    }
    return send_json(m, body);
}

static int anthropic_json(struct mock *m, const char *model)
{
    char body[1200];
    snprintf(body, sizeof(body),
             "{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\","
             "\"content\":[{\"type\":\"text\",\"text\":\"" MOCK_TEXT "\"}],"
             "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
             "\"usage\":{\"input_tokens\":5,\"output_tokens\":7}}",
             model);
    return send_json(m, body);
}

static int sse(struct mock *m, const char *event)
{
    usage_scan(m->u, event, strlen(event));
    return reply_piece(m->rp, event, strlen(event));
}

static int openai_stream(struct mock *m, const char *model)
{
    char ev[1024];
    for (size_t i = 0; i < N_PIECES; i++) {
        snprintf(ev, sizeof(ev),
                 "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
                 "\"created\":0,\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{%s"
                 "\"content\":\"%s\"},\"finish_reason\":null}]}\n\n",
                 model, i == 0 ? "\"role\":\"assistant\"," : "", pieces[i]);
        if (sse(m, ev))
            return -1;
    }
    snprintf(ev, sizeof(ev),
             "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":0,"
             "\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
             "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n"
             "data: [DONE]\n\n",
             model);
    return sse(m, ev) || reply_end(m->rp);
}

static int anthropic_stream(struct mock *m, const char *model)
{
    char ev[1024];
    snprintf(ev, sizeof(ev),
             "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
             "\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\","
             "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
             "\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n"
             "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
             "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
             model);
    if (sse(m, ev))
        return -1;
    for (size_t i = 0; i < N_PIECES; i++) {
        snprintf(ev, sizeof(ev),
                 "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                 "\"delta\":{\"type\":\"text_delta\",\"text\":\"%s\"}}\n\n",
                 pieces[i]);
        if (sse(m, ev))
            return -1;
    }
    return sse(m, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}"
                  "\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
                  "{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
                  "\"usage\":{\"output_tokens\":7}}\n\n"
                  "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") ||
           reply_end(m->rp);
}

int mock_respond(struct reply *rp, enum protocol proto, const char *model, bool stream,
                 struct usage *u)
{
    struct mock m = {rp, u};
    char esc[300];
    json_escape(esc, sizeof(esc), model && *model ? model : "mock-model");
    bool streams = stream && (proto == PROTO_OPENAI_CHAT || proto == PROTO_ANTHROPIC_MESSAGES);
    if (streams && reply_head(rp, 200, "OK",
                              "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n", -1))
        return -1;
    if (proto == PROTO_ANTHROPIC_MESSAGES)
        return streams ? anthropic_stream(&m, esc) : anthropic_json(&m, esc);
    return streams ? openai_stream(&m, esc) : openai_json(&m, proto, esc);
}

bool mock_answer(struct exchange *x)
{
    const char *model = route_model_for(x->route, x->has_model ? x->rec.model : NULL);
    x->rec.status = 200;
    x->rec.bytes_up = x->body.len;
    bool ok =
        mock_respond(&x->rp, x->proto, model ? model : x->rec.model, x->stream, &x->rec.usage) == 0;
    return ok && x->minor == 1 && !x->client_close;
}
