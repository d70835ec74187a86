/* The commands of kubectl-pulltrace and what they share: the parsed flags
 * and the terminal. main.c parses; each command lives in its own file. */
#ifndef PT_CLI_CLI_H
#define PT_CLI_CLI_H

#include <jansson.h>
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
  const char *pod, *since, *until; /* history, stats */
  long limit;           /* history: 0 = every page */
  double timeout_s;     /* watch: 0 = none */
  char **args;          /* the operands after the command words */
  int nargs;
};

int pt_cmd_get(struct pt_cli *cli);
int pt_cmd_history(struct pt_cli *cli);
int pt_cmd_stats(struct pt_cli *cli);
int pt_cmd_top(struct pt_cli *cli);
int pt_cmd_watch(struct pt_cli *cli);

/* Appends "?name=value" or "&name=value" (escaped); nothing when value is NULL or "". */
void pt_cli_query(struct pt_buf *b, const char *name, const char *value);
/* Writes the request path (with its query) for a listing. */
typedef void (*pt_cli_path_fn)(const struct pt_cli *cli, const struct pt_conn *conn, struct pt_buf *path);
/* GETs a listing from pulltrace-server: the path build() writes, then the
 * pages after it (metadata.continue) until the end or `limit` items (limit >
 * 0), their `member` arrays joined. Returns 0 with the document in *out (and
 * the namespace in effect, a new string, when namespace is not NULL), or -1
 * after printing the error. */
int pt_cli_fetch(struct pt_cli *cli, pt_cli_path_fn build, const char *member, long limit, json_t **out,
                 char **namespace);
/* Checks -o and -A/-n of a listing command; prints the error and returns -1. */
int pt_cli_check_listing(const struct pt_cli *cli);
/* Prints doc for -o json or -o yaml; returns false for another format. */
bool pt_cli_print_document(const struct pt_cli *cli, const json_t *doc, int *rc);
/* A listing command: checks the flags, fetches, prints -o json / -o yaml or
 * calls table() with the document and the namespace in effect. Returns the
 * exit status. */
typedef void (*pt_cli_table_fn)(const struct pt_cli *cli, const json_t *doc, const char *ns);
int pt_cli_list(struct pt_cli *cli, pt_cli_path_fn build, const char *member, long limit, pt_cli_table_fn table);
/* The table of pulls (get pulls, history): ns is the namespace in effect
 * without -A; history shows durations instead of progress. */
void pt_cli_print_pulls(const struct pt_cli *cli, const json_t *pulls, const char *ns, bool history);

/* Prints "error: ..." on stderr, in red on a terminal. */
void pt_cli_error(const struct pt_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
