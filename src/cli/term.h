/* What the terminal on stdout can do, so that every command has the same
 * manners: colours only on a terminal and never with NO_COLOR (no-color.org)
 * or TERM=dumb; widths from the terminal (COLUMNS when it is not one);
 * Unicode bars only in a UTF-8 locale. */
#ifndef PT_CLI_TERM_H
#define PT_CLI_TERM_H

#include <stdbool.h>

enum pt_color { PT_C_RESET, PT_C_BOLD, PT_C_DIM, PT_C_RED, PT_C_GREEN, PT_C_YELLOW, PT_C_CYAN, PT_C_REVERSE };

struct pt_term {
  bool tty;   /* stdout is a terminal */
  bool color;
  bool utf8;
  int width, height; /* cells; 80 x 24 when unknown */
};

/* Reads the environment and stdout's terminal; calls setlocale(LC_CTYPE, ""). */
void pt_term_detect(struct pt_term *t);
/* Re-reads the size (after SIGWINCH). */
void pt_term_size(struct pt_term *t);
/* The escape sequence for c, or "" without colours. */
const char *pt_term_sgr(const struct pt_term *t, enum pt_color c);

#endif
