/* Machine-readable output of API documents: -o json (indented like kubectl's)
 * and -o yaml (libyaml's emitter; strings that YAML would read as another
 * type — numbers, booleans, null, timestamps — are double-quoted, so the YAML
 * reads back as the same JSON). */
#ifndef PT_CLI_OUTPUT_H
#define PT_CLI_OUTPUT_H

#include <jansson.h>
#include <stdio.h>

int pt_output_json(const json_t *doc, FILE *out);
/* Returns 0 or -EIO (the emitter's error is printed on stderr). */
int pt_output_yaml(const json_t *doc, FILE *out);

#endif
