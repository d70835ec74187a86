#include "cli/output.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

int pt_output_json(const json_t *doc, FILE *out)
{
  if (json_dumpf(doc, out, JSON_INDENT(4) | JSON_REAL_PRECISION(15)) != 0)
    return -EIO;
  fputc('\n', out);
  return 0;
}

/* Whether a plain scalar s would be read back (YAML 1.1 or 1.2 core schema)
 * as something other than this string. */
static int needs_quotes(const char *s)
{
  static const char *const words[] = {"null", "~", "true", "false", "yes", "no", "on", "off", "y", "n",
                                      ".inf", "-.inf", "+.inf", ".nan"};
  if (!*s)
    return 1;
  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
    if (strcasecmp(s, words[i]) == 0)
      return 1;
  char *end;
  strtod(s, &end);
  if (*end == '\0')
    return 1;
  /* Sexagesimal (1:20) and timestamps (2026-11-21...) of YAML 1.1, octal and hex. */
  const char *p = s + (*s == '-' || *s == '+');
  if (isdigit((unsigned char)*p)) {
    size_t digits = strspn(p, "0123456789");
    if (p[digits] == ':' || (digits == 4 && p[4] == '-') || (p[0] == '0' && strchr("xXoObB", p[1])))
      return 1;
  }
  return 0;
}

static int scalar(yaml_emitter_t *em, const char *text, int quote)
{
  yaml_event_t ev;
  yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), !quote, 1,
                               quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
  return yaml_emitter_emit(em, &ev);
}

static int emit(yaml_emitter_t *em, const json_t *v)
{
  yaml_event_t ev;
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    if (!yaml_emitter_emit(em, &ev))
      return 0;
    const char *k;
    json_t *m;
    json_object_foreach((json_t *)v, k, m) {
      if (!scalar(em, k, needs_quotes(k)) || !emit(em, m))
        return 0;
    }
    yaml_mapping_end_event_initialize(&ev);
    return yaml_emitter_emit(em, &ev);
  }
  case JSON_ARRAY: {
    /* An empty list in block style would read back as null. */
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                         json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE);
    if (!yaml_emitter_emit(em, &ev))
      return 0;
    size_t i;
    json_t *m;
    json_array_foreach((json_t *)v, i, m) {
      if (!emit(em, m))
        return 0;
    }
    yaml_sequence_end_event_initialize(&ev);
    return yaml_emitter_emit(em, &ev);
  }
  case JSON_STRING:
    return scalar(em, json_string_value(v), needs_quotes(json_string_value(v)));
  default: {
    /* Numbers as jansson writes them in JSON; true, false, null as they are. */
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    int ok = text && scalar(em, text, 0);
    free(text);
    return ok;
  }
  }
}

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
  return fwrite(buffer, 1, size, data) == size;
}

int pt_output_yaml(const json_t *doc, FILE *out)
{
  yaml_emitter_t em;
  yaml_event_t ev;
  if (!yaml_emitter_initialize(&em))
    return -ENOMEM;
  yaml_emitter_set_output(&em, write_handler, out);
  yaml_emitter_set_unicode(&em, 1);
  yaml_emitter_set_width(&em, -1);
  yaml_emitter_set_indent(&em, 2);
  int ok = 1;
  yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
  ok = ok && yaml_emitter_emit(&em, &ev);
  yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
  ok = ok && yaml_emitter_emit(&em, &ev);
  ok = ok && emit(&em, doc);
  yaml_document_end_event_initialize(&ev, 1);
  ok = ok && yaml_emitter_emit(&em, &ev);
  yaml_stream_end_event_initialize(&ev);
  ok = ok && yaml_emitter_emit(&em, &ev);
  if (!ok)
    fprintf(stderr, "error: writing YAML: %s\n", em.problem ? em.problem : "unknown");
  yaml_emitter_delete(&em);
  return ok ? 0 : -EIO;
}
