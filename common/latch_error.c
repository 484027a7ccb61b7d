#include "latch_error.h"

const char *latch_strerror(int code)
{
    switch (code) {
    case LATCH_OK:
        return "success";
#define LATCH_ERROR_TEXT(name, value, text)                                                        \
    case name:                                                                                     \
        return text;
        LATCH_ERROR_MAP(LATCH_ERROR_TEXT)
#undef LATCH_ERROR_TEXT
    default:
        return "unknown error";
    }
}

const char *latch_error_name(int code)
{
    switch (code) {
    case LATCH_OK:
        return "LATCH_OK";
#define LATCH_ERROR_NAME(name, value, text)                                                        \
    case name:                                                                                     \
        return #name;
        LATCH_ERROR_MAP(LATCH_ERROR_NAME)
#undef LATCH_ERROR_NAME
    default:
        return "LATCH_E?";
    }
}

bool latch_error_is_fatal(int code)
{
    return code == LATCH_EIO || code == LATCH_ECORRUPT;
}
