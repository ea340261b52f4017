/*
 * tinygen host harness: runs the generated model on the build machine.
 * Reads records of TG_INPUT_SIZE bytes (all inputs concatenated) from stdin until
 * EOF and writes TG_OUTPUT_SIZE bytes (all outputs concatenated) per record to stdout. Exit code 0 on
 * success; a kernel error prints the layer to stderr and exits 2; a partial
 * input record exits 3.
 */
#include <stdio.h>
#include <string.h>

#include "model.h"

void tg_profile_mark(int32_t layer) { (void)layer; }

int main(void)
{
    static int8_t in[TG_INPUT_SIZE];
    static int8_t out[TG_OUTPUT_SIZE];
    int32_t st = tg_model_init();
    if (st != 0) {
        fprintf(stderr, "tg_model_init failed: %ld (layer %ld)\n", (long)st, (long)tg_model_failed_layer());
        return 2;
    }
    for (;;) {
        size_t got = fread(in, 1, TG_INPUT_SIZE, stdin);
        if (got == 0) {
            break;
        }
        if (got != TG_INPUT_SIZE) {
            fprintf(stderr, "partial input record: %lu of %lu bytes\n", (unsigned long)got, (unsigned long)TG_INPUT_SIZE);
            return 3;
        }
        tg_model_set_input(in);
        st = tg_model_run();
        if (st != 0) {
            fprintf(stderr, "tg_model_run failed: %ld in layer %ld\n", (long)st, (long)tg_model_failed_layer());
            return 2;
        }
        tg_model_get_output(out);
        if (fwrite(out, 1, TG_OUTPUT_SIZE, stdout) != TG_OUTPUT_SIZE) {
            return 4;
        }
    }
    return 0;
}
