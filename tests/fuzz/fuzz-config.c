/* libFuzzer target: the configuration parser and its check of the whole, and the size
 * parser they rely on. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sb-size.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Config *c = NULL;
        SbReason why = { "" };
        char buf[64];
        uint64_t v;

        if (config_parse((const char *)data, size, &c, &why) == 0) {
                if (!c)
                        abort();
                why.text[0] = 0;
                if (config_check(c, &why) != 0 && !why.text[0])
                        abort();        /* ... and so does the check of the whole */
                config_free(c);
        } else if (c || !why.text[0]) {
                abort();        /* a refusal always says why, and returns nothing */
        }
        if (size < sizeof(buf)) {
                memcpy(buf, data, size);
                buf[size] = 0;
                if (sb_parse_size(buf, &v) == 0)
                        (void)sb_format_size(v, buf, sizeof(buf));
        }
        return 0;
}
