/* kubectl-pulltrace: image pull progress in the terminal and in CI/CD
 * pipelines. Runs as a kubectl plugin (`kubectl pulltrace ...`, found on PATH
 * by its name) or on its own. This file parses the command line and hands
 * over to the command. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/config.h"

/* The name under which kubectl runs a plugin's completion (see kubectl_complete()). */
#define PT_CLI_KUBECTL_COMPLETE "kubectl_complete-pulltrace"

enum cmd { CMD_NONE, CMD_GET, CMD_TOP, CMD_WATCH, CMD_HISTORY, CMD_STATS, CMD_COMPLETION, CMD_VERSION, CMD_HELP };
#define C_GET (1u << CMD_GET)
#define C_TOP (1u << CMD_TOP)
#define C_WATCH (1u << CMD_WATCH)
#define C_HISTORY (1u << CMD_HISTORY)
#define C_STATS (1u << CMD_STATS)
#define C_LIST (C_GET | C_HISTORY | C_STATS)
#define C_CONN (C_GET | C_TOP | C_WATCH | C_HISTORY | C_STATS)

enum opt_id {
  O_KUBECONFIG = 256, O_CONTEXT, O_PT_NS, O_PT_SVC, O_SERVER, O_INSECURE, O_REQ_TIMEOUT, O_NODE, O_IMAGE,
  O_STATE, O_NO_HEADERS, O_GROUP_BY, O_TIMEOUT, O_POD, O_SINCE, O_UNTIL, O_LIMIT,
};

struct flag {
  struct option opt;
  unsigned cmds;
};

static const struct flag flags[] = {
  {{"kubeconfig", required_argument, NULL, O_KUBECONFIG}, C_CONN},
  {{"context", required_argument, NULL, O_CONTEXT}, C_CONN},
  {{"namespace", required_argument, NULL, 'n'}, C_CONN},
  {{"pulltrace-namespace", required_argument, NULL, O_PT_NS}, C_CONN},
  {{"pulltrace-service", required_argument, NULL, O_PT_SVC}, C_CONN},
  {{"server", required_argument, NULL, O_SERVER}, C_CONN},
  {{"insecure-skip-tls-verify", no_argument, NULL, O_INSECURE}, C_CONN},
  {{"request-timeout", required_argument, NULL, O_REQ_TIMEOUT}, C_CONN},
  {{"all-namespaces", no_argument, NULL, 'A'}, C_LIST | C_TOP},
  {{"node", required_argument, NULL, O_NODE}, C_LIST | C_TOP},
  {{"image", required_argument, NULL, O_IMAGE}, C_LIST | C_TOP},
  {{"state", required_argument, NULL, O_STATE}, C_GET | C_HISTORY},
  {{"output", required_argument, NULL, 'o'}, C_LIST},
  {{"no-headers", no_argument, NULL, O_NO_HEADERS}, C_LIST},
  {{"pod", required_argument, NULL, O_POD}, C_HISTORY | C_STATS},
  {{"since", required_argument, NULL, O_SINCE}, C_HISTORY | C_STATS},
  {{"until", required_argument, NULL, O_UNTIL}, C_HISTORY | C_STATS},
  {{"limit", required_argument, NULL, O_LIMIT}, C_HISTORY},
  {{"group-by", required_argument, NULL, O_GROUP_BY}, C_TOP},
  {{"selector", required_argument, NULL, 'l'}, C_WATCH},
  {{"timeout", required_argument, NULL, O_TIMEOUT}, C_WATCH},
  {{"help", no_argument, NULL, 'h'}, ~0u},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

static const char conn_help[] =
  "Connection flags:\n"
  "      --kubeconfig=FILE              kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)\n"
  "      --context=NAME                 kubeconfig context (default: its current-context)\n"
  "  -n, --namespace=NS                 namespace of the pods asked about (default: the context's)\n"
  "      --pulltrace-namespace=NS       where pulltrace-server runs (default: " PT_CLI_DEFAULT_NAMESPACE ")\n"
  "      --pulltrace-service=[SCHEME:]NAME[:PORT]\n"
  "                                     its Service (default: " PT_CLI_DEFAULT_SERVICE ", as the\n"
  "                                     chart names it); https:NAME:PORT when the server\n"
  "                                     serves TLS (the chart's tls.enabled)\n"
  "      --server=URL                   talk to pulltrace-server at URL instead of through the\n"
  "                                     API server's service proxy\n"
  "      --insecure-skip-tls-verify     do not check the API server's certificate\n"
  "      --request-timeout=DURATION     for each request (default: 30s)\n";

static void usage_main(FILE *f)
{
  fprintf(f,
          "kubectl-pulltrace shows container image pulls on the nodes of a Kubernetes cluster,\n"
          "live, from a Pulltrace server. It runs as `kubectl pulltrace` or on its own.\n\n"
          "Commands:\n"
          "  get pulls     list pulls (kubectl-style table, or -o wide|json|yaml)\n"
          "  top           live full-screen view of the pulls, grouped by image or node\n"
          "  watch         wait until the image pulls of pods are done (for CI/CD pipelines)\n"
          "  history       finished pulls from the server's history (PULLTRACE_DATA_DIR)\n"
          "  stats         per image: pulls, failures, duration percentiles, bytes (from the history)\n"
          "  completion    print a shell completion script (bash)\n"
          "  version       print the version\n\n"
          "Use \"kubectl pulltrace COMMAND --help\" for a command's flags.\n\n%s", conn_help);
}

static void usage(enum cmd c, FILE *f)
{
  switch (c) {
  case CMD_GET:
    fprintf(f,
            "List image pulls.\n\n"
            "Usage: kubectl pulltrace get pulls [flags]\n\n"
            "Flags:\n"
            "  -A, --all-namespaces     pulls of pods in every namespace, and pulls no pod is known for\n"
            "      --node=NAME          only pulls on this node\n"
            "      --image=TEXT         only pulls whose image contains TEXT\n"
            "      --state=STATE[,...]  pulling, stalled, completed, failed, lost\n"
            "  -o, --output=FORMAT      wide, json or yaml (json and yaml are the REST API's document)\n"
            "      --no-headers         no header line in the table\n\n%s", conn_help);
    break;
  case CMD_TOP:
    fprintf(f,
            "A live full-screen view of the pulls, refreshed from the server's event stream.\n\n"
            "Usage: kubectl pulltrace top [flags]\n\n"
            "Flags:\n"
            "  -A, --all-namespaces     every namespace (the default unless -n is given)\n"
            "      --node=NAME          only pulls on this node\n"
            "      --image=TEXT         only pulls whose image contains TEXT\n"
            "      --group-by=KEY       image (default) or node\n\n"
            "Keys: g group by image/node, s sort (started, progress, speed, eta, name),\n"
            "      / filter (Enter applies, Esc clears), c show/hide completed, q or Ctrl-C quit.\n\n%s",
            conn_help);
    break;
  case CMD_WATCH:
    fprintf(f,
            "Wait until every image pull that the given pods need is done: `kubectl rollout\n"
            "status` for image pulls. One progress bar per pull on a terminal, timestamped lines\n"
            "otherwise.\n\n"
            "Usage: kubectl pulltrace watch (TYPE/NAME | -l SELECTOR) [flags]\n"
            "  TYPE: pod (po), deployment (deploy), statefulset (sts), daemonset (ds),\n"
            "        replicaset (rs), job, replicationcontroller (rc)\n\n"
            "Flags:\n"
            "  -l, --selector=SELECTOR  pods matching this label selector (as kubectl's -l)\n"
            "      --timeout=DURATION   give up after this long (e.g. 5m; default: no limit)\n\n"
            "Exit status: 0 every image is pulled (or was already present), 1 a pull failed\n"
            "(kubelet's message is printed), 2 --timeout passed, 3 any other error.\n\n%s", conn_help);
    break;
  case CMD_HISTORY:
    fprintf(f,
            "List the pulls the server's history keeps (finished ones and those in flight),\n"
            "newest first. Needs pulltrace-server with PULLTRACE_DATA_DIR.\n\n"
            "Usage: kubectl pulltrace history [flags]\n\n"
            "Flags:\n"
            "  -A, --all-namespaces     pulls of pods in every namespace, and pulls no pod is known for\n"
            "      --node=NAME          only pulls on this node\n"
            "      --image=TEXT         only pulls whose image contains TEXT\n"
            "      --pod=[NS/]NAME      only pulls for this pod\n"
            "      --state=STATE[,...]  completed, failed, lost (or pulling, stalled)\n"
            "      --since=TIME         started at or after TIME (RFC 3339, or a duration ago: 24h)\n"
            "      --until=TIME         started before TIME\n"
            "      --limit=N            at most N pulls (default: all, read page by page)\n"
            "  -o, --output=FORMAT      wide, json or yaml (json and yaml are the REST API's document)\n"
            "      --no-headers         no header line in the table\n\n%s", conn_help);
    break;
  case CMD_STATS:
    fprintf(f,
            "Per image, the pulls that ended in a window: how many, how many failed and why,\n"
            "duration percentiles, bytes downloaded, the share found cached. Needs\n"
            "pulltrace-server with PULLTRACE_DATA_DIR.\n\n"
            "Usage: kubectl pulltrace stats [flags]\n\n"
            "Flags:\n"
            "  -A, --all-namespaces     pulls of pods in every namespace, and pulls no pod is known for\n"
            "      --node=NAME          only pulls on this node\n"
            "      --image=TEXT         only images containing TEXT\n"
            "      --pod=[NS/]NAME      only pulls for this pod\n"
            "      --since=TIME         the window's start (default: 24h ago)\n"
            "      --until=TIME         the window's end (default: now)\n"
            "  -o, --output=FORMAT      wide (adds the failures by reason), json or yaml\n"
            "      --no-headers         no header line in the table\n\n%s", conn_help);
    break;
  case CMD_COMPLETION:
    fprintf(f, "Print a completion script.\n\nUsage: kubectl-pulltrace completion bash\n\n"
               "  source <(kubectl-pulltrace completion bash)\n\n"
               "For `kubectl pulltrace <Tab>` (kubectl's own completion, kubectl 1.26 and later),\n"
               "link the binary as " PT_CLI_KUBECTL_COMPLETE " on the PATH:\n\n"
               "  ln -s kubectl-pulltrace /usr/local/bin/" PT_CLI_KUBECTL_COMPLETE "\n");
    break;
  default:
    usage_main(f);
  }
}

void pt_cli_error(const struct pt_cli *cli, const char *fmt, ...)
{
  bool color = cli->term.color && isatty(STDERR_FILENO);
  fprintf(stderr, "%serror:%s ", color ? "\033[31m" : "", color ? "\033[0m" : "");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static const char completion_bash[] =
  "# bash completion for kubectl-pulltrace: source <(kubectl-pulltrace completion bash)\n"
  "_kubectl_pulltrace() {\n"
  "  local cur prev words cword\n"
  "  _init_completion -n =: 2>/dev/null || { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; "
  "words=(\"${COMP_WORDS[@]}\"); cword=$COMP_CWORD; }\n"
  "  local conn='--kubeconfig --context --namespace -n --pulltrace-namespace --pulltrace-service --server "
  "--insecure-skip-tls-verify --request-timeout --help'\n"
  "  local cmd='' i\n"
  "  for ((i = 1; i < cword; i++)); do\n"
  "    case ${words[i]} in get|top|watch|history|stats|completion|version) cmd=${words[i]}; break;; esac\n"
  "  done\n"
  "  case $prev in\n"
  "    -o|--output) COMPREPLY=($(compgen -W 'wide json yaml' -- \"$cur\")); return;;\n"
  "    --state) COMPREPLY=($(compgen -W 'pulling stalled completed failed lost' -- \"$cur\")); return;;\n"
  "    --group-by) COMPREPLY=($(compgen -W 'image node' -- \"$cur\")); return;;\n"
  "    --kubeconfig) COMPREPLY=($(compgen -f -- \"$cur\")); return;;\n"
  "    --context) COMPREPLY=($(compgen -W \"$(kubectl config get-contexts -o name 2>/dev/null)\" -- \"$cur\")); "
  "return;;\n"
  "    -n|--namespace|--pulltrace-namespace|--pulltrace-service|--server|--request-timeout|--node|--image|"
  "-l|--selector|--timeout|--pod|--since|--until|--limit) return;;\n"
  "  esac\n"
  "  case $cmd in\n"
  "    '') COMPREPLY=($(compgen -W 'get top watch history stats completion version --help' -- \"$cur\"));;\n"
  "    get)\n"
  "      if [[ $cur == -* ]]; then\n"
  "        COMPREPLY=($(compgen -W \"$conn -A --all-namespaces --node --image --state -o --output --no-headers\" "
  "-- \"$cur\"))\n"
  "      else COMPREPLY=($(compgen -W 'pulls' -- \"$cur\")); fi;;\n"
  "    top) COMPREPLY=($(compgen -W \"$conn -A --all-namespaces --node --image --group-by\" -- \"$cur\"));;\n"
  "    watch)\n"
  "      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W \"$conn -l --selector --timeout\" -- \"$cur\"))\n"
  "      else COMPREPLY=($(compgen -W 'pod/ deployment/ statefulset/ daemonset/ replicaset/ job/ "
  "replicationcontroller/' -- \"$cur\")); compopt -o nospace 2>/dev/null; fi;;\n"
  "    history) COMPREPLY=($(compgen -W \"$conn -A --all-namespaces --node --image --pod --state --since --until "
  "--limit -o --output --no-headers\" -- \"$cur\"));;\n"
  "    stats) COMPREPLY=($(compgen -W \"$conn -A --all-namespaces --node --image --pod --since --until -o --output "
  "--no-headers\" -- \"$cur\"));;\n"
  "    completion) COMPREPLY=($(compgen -W 'bash' -- \"$cur\"));;\n"
  "  esac\n"
  "}\n"
  "complete -F _kubectl_pulltrace kubectl-pulltrace\n";

/* kubectl's own completion (`kubectl pulltrace <Tab>`, kubectl 1.26 and
 * later) runs `kubectl_complete-pulltrace ARGS... WORD` from the PATH and
 * reads one candidate a line, then ":DIRECTIVE" (cobra's: 2 no space after it,
 * 4 no file names). Installed as a link to this binary, it answers with the
 * bash completion above, so that both ways complete the same words. */
static const char kubectl_complete_bash[] =
  "COMP_WORDS=(kubectl-pulltrace \"$@\"); COMP_CWORD=$#\n"
  "COMPREPLY=()\n"
  "_kubectl_pulltrace\n"
  "d=4\n"
  "case ${COMP_WORDS[COMP_CWORD-1]} in --kubeconfig) d=0;; esac\n"
  "for c in \"${COMPREPLY[@]}\"; do printf '%s\\n' \"$c\"; [[ $c == */ ]] && d=$((d | 2)); done\n"
  "echo \":$d\"\n";

static int kubectl_complete(int argc, char **argv)
{
  size_t n = sizeof(completion_bash) + sizeof(kubectl_complete_bash);
  char *script = malloc(n);
  char **av = calloc((size_t)argc + 5, sizeof(*av));
  if (!script || !av) {
    fprintf(stderr, "error: out of memory\n");
    return PT_EXIT_FAILED;
  }
  snprintf(script, n, "%s%s", completion_bash, kubectl_complete_bash);
  int k = 0;
  av[k++] = "bash";
  av[k++] = "--norc";
  av[k++] = "-c";
  av[k++] = script;
  av[k++] = PT_CLI_KUBECTL_COMPLETE; /* $0 */
  for (int i = 1; i < argc; i++)
    av[k++] = argv[i];
  execvp("bash", av);
  fprintf(stderr, "error: %s needs bash: %s\n", PT_CLI_KUBECTL_COMPLETE, strerror(errno));
  free(script);
  free(av);
  return PT_EXIT_FAILED;
}

static enum cmd command_of(const char *w)
{
  static const struct {
    const char *name;
    enum cmd c;
  } cmds[] = {{"get", CMD_GET}, {"top", CMD_TOP}, {"watch", CMD_WATCH}, {"history", CMD_HISTORY},
              {"stats", CMD_STATS}, {"completion", CMD_COMPLETION},
              {"version", CMD_VERSION}, {"help", CMD_HELP}};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    if (strcmp(w, cmds[i].name) == 0)
      return cmds[i].c;
  return CMD_NONE;
}

static const char *flag_name(int id)
{
  for (size_t i = 0; i < NFLAGS; i++)
    if (flags[i].opt.val == id)
      return flags[i].opt.name;
  return "?";
}

int main(int argc, char **argv)
{
  const char *self = strrchr(argv[0], '/');
  if (strcmp(self ? self + 1 : argv[0], PT_CLI_KUBECTL_COMPLETE) == 0)
    return kubectl_complete(argc, argv);
  struct pt_cli cli = {0};
  pt_term_detect(&cli.term);
  struct option longopts[NFLAGS + 1];
  for (size_t i = 0; i < NFLAGS; i++)
    longopts[i] = flags[i].opt;
  memset(&longopts[NFLAGS], 0, sizeof(longopts[0]));
  int seen[NFLAGS] = {0};
  bool help = false;
  int opt, idx;
  /* The first bad flag. Reported once the command is known: a bad flag of
   * watch is its exit status 3, never 1 (a failed pull, for a pipeline). */
  char bad[512] = "";
  opterr = 0;
  /* GNU getopt permutes: flags may come before, between or after the words. */
  while ((opt = getopt_long(argc, argv, ":n:Ao:l:h", longopts, &idx)) != -1) {
    if (bad[0])
      continue;
    for (size_t i = 0; i < NFLAGS; i++)
      if (flags[i].opt.val == opt)
        seen[i] = 1;
    double d = 0;
    switch (opt) {
    case O_KUBECONFIG: cli.conn.kubeconfig = optarg; break;
    case O_CONTEXT: cli.conn.context = optarg; break;
    case 'n': cli.conn.namespace = optarg; break;
    case O_PT_NS: cli.conn.pt_namespace = optarg; break;
    case O_PT_SVC: cli.conn.pt_service = optarg; break;
    case O_SERVER: cli.conn.server = optarg; break;
    case O_INSECURE: cli.conn.insecure = true; break;
    case O_REQ_TIMEOUT:
      if (pt_duration_parse(optarg, &d) || d <= 0)
        snprintf(bad, sizeof(bad), "--request-timeout: invalid duration \"%s\" (e.g. 30s, 2m)", optarg);
      cli.conn.request_timeout_ms = (long)(d * 1000);
      break;
    case 'A': cli.all_namespaces = true; break;
    case O_NODE: cli.node = optarg; break;
    case O_IMAGE: cli.image = optarg; break;
    case O_STATE: cli.state = optarg; break;
    case 'o': cli.output = optarg; break;
    case O_NO_HEADERS: cli.no_headers = true; break;
    case O_GROUP_BY: cli.group_by = optarg; break;
    case 'l': cli.selector = optarg; break;
    case O_TIMEOUT:
      if (pt_duration_parse(optarg, &d))
        snprintf(bad, sizeof(bad), "--timeout: invalid duration \"%s\" (e.g. 90s, 5m, 1h)", optarg);
      cli.timeout_s = d;
      break;
    case O_POD: cli.pod = optarg; break;
    case O_SINCE: cli.since = optarg; break;
    case O_UNTIL: cli.until = optarg; break;
    case O_LIMIT: {
      char *end;
      cli.limit = strtol(optarg, &end, 10);
      if (*end || cli.limit <= 0)
        snprintf(bad, sizeof(bad), "--limit: \"%s\" is not a positive number", optarg);
      break;
    }
    case 'h': help = true; break;
    case ':':
      snprintf(bad, sizeof(bad), "flag %s needs a value", argv[optind - 1]);
      break;
    default:
      snprintf(bad, sizeof(bad), "unknown flag %s", argv[optind - 1]);
      break;
    }
  }
  char **words = argv + optind;
  int nwords = argc - optind;
  enum cmd c = nwords ? command_of(words[0]) : CMD_NONE;
  if (bad[0]) {
    bool known = c != CMD_NONE && c != CMD_HELP;
    pt_cli_error(&cli, "%s\nSee 'kubectl pulltrace %s%s--help'.", bad, known ? words[0] : "", known ? " " : "");
    return c == CMD_WATCH ? PT_EXIT_ERROR : PT_EXIT_FAILED;
  }
  if (nwords && c == CMD_NONE) {
    pt_cli_error(&cli, "unknown command \"%s\"\nSee 'kubectl pulltrace --help'.", words[0]);
    return PT_EXIT_FAILED;
  }
  if (c == CMD_HELP) {
    c = nwords > 1 ? command_of(words[1]) : CMD_NONE;
    help = true;
  }
  if (help || c == CMD_NONE) {
    usage(c, help ? stdout : stderr);
    return help ? PT_EXIT_OK : PT_EXIT_FAILED;
  }
  int fail = c == CMD_WATCH ? PT_EXIT_ERROR : PT_EXIT_FAILED;
  for (size_t i = 0; i < NFLAGS; i++) {
    if (seen[i] && !(flags[i].cmds & (1u << c))) {
      pt_cli_error(&cli, "flag --%s does not apply to \"%s\"\nSee 'kubectl pulltrace %s --help'.",
                   flag_name(flags[i].opt.val), words[0], words[0]);
      return fail;
    }
  }
  cli.args = words + 1;
  cli.nargs = nwords - 1;
  switch (c) {
  case CMD_GET:
    if (cli.nargs != 1 || (strcmp(cli.args[0], "pulls") != 0 && strcmp(cli.args[0], "pull") != 0)) {
      pt_cli_error(&cli, "usage: kubectl pulltrace get pulls [flags]\nSee 'kubectl pulltrace get --help'.");
      return PT_EXIT_FAILED;
    }
    return pt_cmd_get(&cli);
  case CMD_TOP:
    if (cli.nargs) {
      pt_cli_error(&cli, "top takes no arguments\nSee 'kubectl pulltrace top --help'.");
      return PT_EXIT_FAILED;
    }
    return pt_cmd_top(&cli);
  case CMD_WATCH:
    return pt_cmd_watch(&cli);
  case CMD_HISTORY:
  case CMD_STATS:
    if (cli.nargs) {
      pt_cli_error(&cli, "%s takes no arguments\nSee 'kubectl pulltrace %s --help'.", words[0], words[0]);
      return PT_EXIT_FAILED;
    }
    return c == CMD_HISTORY ? pt_cmd_history(&cli) : pt_cmd_stats(&cli);
  case CMD_COMPLETION:
    if (cli.nargs != 1 || strcmp(cli.args[0], "bash") != 0) {
      pt_cli_error(&cli, "usage: kubectl-pulltrace completion bash");
      return PT_EXIT_FAILED;
    }
    fputs(completion_bash, stdout);
    return PT_EXIT_OK;
  case CMD_VERSION:
    printf("kubectl-pulltrace %s\n", PT_VERSION);
    return PT_EXIT_OK;
  default:
    return PT_EXIT_FAILED;
  }
}
