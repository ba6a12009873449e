/*
 * secrets.c - what the rest of egressd may ask about the secrets of a
 * loaded policy (DESIGN section 11): each one's placeholder and value to
 * swap, whether a destination and caller are ones its value may go to, and
 * the names --print-env hands its placeholder out under.  Loading them is
 * secretkeys.c's.
 */
#include "policy_int.h"

#include <string.h>

size_t policy_secret_count(const struct policy *p)
{
    return p->n_secrets;
}

void policy_secret_view(const struct policy *p, size_t i, struct secret_view *out)
{
    const struct secret *s = &p->secrets[i];
    *out = (struct secret_view){.name = s->name,
                                .placeholder = s->placeholder,
                                .value = s->value,
                                .placeholder_len = strlen(s->placeholder),
                                .value_len = s->value_len,
                                .in_body = s->in_body};
}

const char *policy_secret_refusal(const struct policy *p, size_t i, const struct host *h,
                                  uint16_t port, const struct identity *id)
{
    const struct rule *bind = &p->secrets[i].bind;
    if (!rule_names_destination(bind, h, port))
        return "it is not bound to this host and port";
    if (rule_admits_caller(bind, id))
        return NULL;
    if (id == NULL || id->n == 0)
        return "it is bound to programs, and the calling one is not known";
    return id->unresolved ? id->unresolved : "it is not bound to the calling program";
}

const char *policy_secret_env(const struct policy *p, size_t i, size_t j)
{
    return j < p->secrets[i].n_env ? p->secrets[i].env[j] : NULL;
}

const struct secret *secret_find(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_secrets; i++)
        if (strcmp(p->secrets[i].name, name) == 0)
            return &p->secrets[i];
    return NULL;
}
