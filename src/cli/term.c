#include "cli/term.h"

#include <langinfo.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

void pt_term_size(struct pt_term *t)
{
  struct winsize ws;
  t->width = 80;
  t->height = 24;
  if (t->tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    t->width = ws.ws_col;
    t->height = ws.ws_row > 0 ? ws.ws_row : 24;
    return;
  }
  const char *cols = getenv("COLUMNS");
  if (cols && atoi(cols) > 0)
    t->width = atoi(cols);
}

void pt_term_detect(struct pt_term *t)
{
  setlocale(LC_CTYPE, "");
  const char *cs = nl_langinfo(CODESET);
  const char *term = getenv("TERM"), *nc = getenv("NO_COLOR");
  t->tty = isatty(STDOUT_FILENO) == 1;
  t->color = t->tty && !(nc && *nc) && !(term && strcmp(term, "dumb") == 0);
  t->utf8 = cs && (strcmp(cs, "UTF-8") == 0 || strcmp(cs, "utf8") == 0);
  pt_term_size(t);
}

const char *pt_term_sgr(const struct pt_term *t, enum pt_color c)
{
  static const char *const seq[] = {"\033[0m", "\033[1m", "\033[2m", "\033[31m",
                                    "\033[32m", "\033[33m", "\033[36m", "\033[7m"};
  return t->color ? seq[c] : "";
}
