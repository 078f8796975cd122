/* cursor.c - the opaque pagination cursor of GET /products: base64url of the JSON array
 * [sort, last sort key, last id]. Keyset pagination on (sort key, id) keeps pages stable
 * when products are inserted; the sort name inside refuses a cursor reused with another
 * sort. */
#include <string.h>

#include "polyshop/auth.h"
#include "polyshop/error.h"
#include "polyshop/json.h"
#include "product.h"

enum { CURSOR_TEXT_MAX = 1024 };

char *cursor_encode(ps_arena_t *a, const cursor_t *c) {
  json_t *key = product_sort_key_is_text(c->sort) ? json_string(c->key_s ? c->key_s : "")
                                                  : json_integer(c->key_i);
  json_t *arr = json_pack("[s, o, s]", product_sort_name(c->sort), key, c->id);
  char *text = ps_json_dump(a, arr);
  json_decref(arr);
  return ps_base64url_encode(a, (const unsigned char *)text, strlen(text));
}

int cursor_decode(ps_arena_t *a, const char *text, sort_t sort, cursor_t *out) {
  memset(out, 0, sizeof(*out));
  size_t tlen = strlen(text);
  if (tlen == 0 || tlen > CURSOR_TEXT_MAX) return PS_EINVAL;
  unsigned char *raw;
  size_t rawlen;
  if (ps_base64url_decode(a, text, tlen, &raw, &rawlen)) return PS_EINVAL;
  json_t *arr = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, NULL);
  int rc = PS_EINVAL;
  if (!json_is_array(arr) || json_array_size(arr) != 3) goto out;
  json_t *s = json_array_get(arr, 0), *k = json_array_get(arr, 1), *id = json_array_get(arr, 2);
  if (!json_is_string(s) || strcmp(json_string_value(s), product_sort_name(sort)) != 0) goto out;
  if (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > 64 ||
      strlen(json_string_value(id)) != json_string_length(id))
    goto out;
  if (product_sort_key_is_text(sort)) {
    if (!json_is_string(k) || strlen(json_string_value(k)) != json_string_length(k)) goto out;
    out->key_s = ps_arena_strdup(a, json_string_value(k));
  } else {
    if (!json_is_integer(k)) goto out;
    out->key_i = (int64_t)json_integer_value(k);
  }
  out->sort = sort;
  out->id = ps_arena_strdup(a, json_string_value(id));
  rc = 0;
out:
  json_decref(arr);
  return rc;
}
