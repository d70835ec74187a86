/* The commands of kubectl-pulltrace and what they share: the parsed flags
 * and the terminal. main.c parses; each command lives in its own file. */
#ifndef PT_CLI_CLI_H
#define PT_CLI_CLI_H

#include <stdbool.h>

#include "cli/conn.h"
#include "cli/term.h"

/* Exit statuses (documented in docs/cli.md and --help). */
#define PT_EXIT_OK 0
#define PT_EXIT_FAILED 1  /* an error; for watch: a failed pull */
#define PT_EXIT_TIMEOUT 2 /* watch: --timeout passed */
#define PT_EXIT_ERROR 3   /* watch: anything else that went wrong (flags, connection) */

struct pt_cli {
  struct pt_term term;
  struct pt_conn_options conn;
  bool all_namespaces, no_headers;
  const char *output;   /* NULL (table), "wide", "json", "yaml" */
  const char *node, *image, *state;
  const char *selector; /* watch -l */
  const char *group_by; /* top: "image" or "node" */
  double timeout_s;     /* watch: 0 = none */
  char **args;          /* the operands after the command words */
  int nargs;
};

int pt_cmd_get(struct pt_cli *cli);
int pt_cmd_top(struct pt_cli *cli);
int pt_cmd_watch(struct pt_cli *cli);

/* Prints "error: ..." on stderr, in red on a terminal. */
void pt_cli_error(const struct pt_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
