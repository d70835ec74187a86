/* The JSON writer: its text is what jansson reads back, times are those of
 * pt_time_format, reals keep a fraction, strings are escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/clock.h"
#include "core/json_writer.h"

static void test_times_match_the_clock_format(void **state)
{
  /* 1970, leap days, century years, 2038 and beyond, milliseconds. */
  const double times[] = {1.0, 86399.999, 951782400.5, 951868799.25, 978307200.0, 1709164800.123,
                          2147483647.0, 2147483648.001, 4102444800.0, 253402300799.0};
  for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
    struct pt_buf b;
    struct pt_jsonw w;
    pt_buf_init(&b);
    pt_jsonw_init(&w, &b);
    pt_jsonw_time(&w, times[i]);
    char want[64], quoted[70];
    snprintf(quoted, sizeof(quoted), "\"%s\"", pt_time_format(times[i], want, sizeof(want)));
    assert_string_equal(b.data, quoted);
    pt_buf_close(&b);
  }
  /* A day at a time over 60 years: every date of the calendar. */
  for (double t = 0.5; t < 60 * 365.25 * 86400; t += 86400 + 3601) {
    struct pt_buf b;
    struct pt_jsonw w;
    pt_buf_init(&b);
    pt_jsonw_init(&w, &b);
    pt_jsonw_time(&w, t);
    char want[64], quoted[70];
    snprintf(quoted, sizeof(quoted), "\"%s\"", pt_time_format(t, want, sizeof(want)));
    if (strcmp(b.data, quoted) != 0)
      fail_msg("%.3f: %s != %s", t, b.data, quoted);
    pt_buf_close(&b);
  }
}

/* What the writer writes, pt_time_parse reads back (to the millisecond), and
 * it computes what timegm() does, also for days that roll over. */
static void test_times_round_trip(void **state)
{
  for (double t = 0.25; t < 80 * 365.25 * 86400; t += 86400 * 3 + 3599.5) {
    struct pt_buf b;
    struct pt_jsonw w;
    pt_buf_init(&b);
    pt_jsonw_init(&w, &b);
    pt_jsonw_time(&w, t);
    b.data[b.len - 1] = '\0'; /* the closing quote */
    double back;
    assert_int_equal(pt_time_parse(b.data + 1, &back), 0);
    if (back < t - 0.001 || back > t + 0.001)
      fail_msg("%s: %.3f != %.3f", b.data + 1, back, t);
    pt_buf_close(&b);
  }
  double v;
  assert_int_equal(pt_time_parse("2026-02-31T00:00:60Z", &v), 0);
  struct tm tm = {.tm_year = 126, .tm_mon = 1, .tm_mday = 31, .tm_sec = 60};
  assert_true(v == (double)timegm(&tm));
  assert_int_equal(pt_time_parse("1969-12-31T23:59:59.5+01:00", &v), 0);
  assert_true(v == -3600.5);
}

static void test_document(void **state)
{
  struct pt_buf b;
  struct pt_jsonw w;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  pt_jsonw_object_open(&w);
  pt_jsonw_key(&w, "s");
  pt_jsonw_string(&w, "a\"b\\c\n\t\x01/é");
  pt_jsonw_key(&w, "n");
  pt_jsonw_string(&w, NULL);
  pt_jsonw_key(&w, "i");
  pt_jsonw_int(&w, -9223372036854775807LL - 1);
  pt_jsonw_key(&w, "r");
  pt_jsonw_array_open(&w);
  pt_jsonw_real2(&w, 100.0);
  pt_jsonw_real2(&w, 12.5);
  pt_jsonw_real2(&w, 0.005);
  pt_jsonw_real2(&w, -3.14159);
  pt_jsonw_real2(&w, 1e15);
  pt_jsonw_real(&w, 0);
  pt_jsonw_real(&w, 1.0 / 0.0);
  pt_jsonw_array_close(&w);
  pt_jsonw_key(&w, "b");
  pt_jsonw_bool(&w, true);
  pt_jsonw_key(&w, "t");
  pt_jsonw_time(&w, 0);
  pt_jsonw_key(&w, "e");
  pt_jsonw_object_open(&w);
  pt_jsonw_object_close(&w);
  pt_jsonw_key(&w, "raw");
  pt_jsonw_raw(&w, "[1,2]", 5);
  pt_jsonw_object_close(&w);
  assert_false(b.oom);
  assert_string_equal(b.data, "{\"s\":\"a\\\"b\\\\c\\n\\t\\u0001/é\",\"n\":null,\"i\":-9223372036854775808,"
                              "\"r\":[100.0,12.5,0.01,-3.14,1e+15,0.0,null],\"b\":true,\"t\":null,"
                              "\"e\":{},\"raw\":[1,2]}");
  json_error_t err;
  json_t *v = json_loadb(b.data, b.len, 0, &err);
  if (!v)
    fail_msg("jansson: %s", err.text);
  assert_string_equal(json_string_value(json_object_get(v, "s")), "a\"b\\c\n\t\x01/é");
  assert_true(json_is_real(json_array_get(json_object_get(v, "r"), 0)));
  json_decref(v);
  pt_buf_close(&b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_times_match_the_clock_format),
    cmocka_unit_test(test_times_round_trip),
    cmocka_unit_test(test_document),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
