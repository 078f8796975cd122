/* error.c - names and messages of the PS_E* codes (see error.h). */
#include "polyshop/error.h"

const char *ps_strerror(int err) {
  switch (err) {
    case PS_OK: return "success";
#define PS__ERR_MSG(name, code, msg) \
  case PS_E##name: return msg;
    PS_ERRNO_MAP(PS__ERR_MSG)
#undef PS__ERR_MSG
  }
  return "unknown error";
}

const char *ps_err_name(int err) {
  switch (err) {
    case PS_OK: return "PS_OK";
#define PS__ERR_NAME(name, code, msg) \
  case PS_E##name: return "PS_E" #name;
    PS_ERRNO_MAP(PS__ERR_NAME)
#undef PS__ERR_NAME
  }
  return "PS_EUNKNOWN";
}
