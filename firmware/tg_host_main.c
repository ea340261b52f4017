/*
 * tinygen host harness: runs the generated model on the build machine.
 * Reads records of TG_INPUT_SIZE bytes (all inputs concatenated) from stdin until
 * EOF and writes TG_OUTPUT_SIZE bytes (all outputs concatenated) per record to stdout. Exit code 0 on
 * success; a kernel error prints the layer to stderr and exits 2; a partial
 * input record exits 3.
 *
 * model_host --dump (a build with -DTG_PROFILE): for each input record, the whole arena after each
 * layer (TG_NUM_LAYERS x TG_ARENA_SIZE bytes), so that every intermediate tensor can be compared
 * with the reference; the offsets are in manifest.json.
 *
 * model_host --selftest runs every embedded self-test vector (model_test.c) instead and prints
 * the firmware's lines (tg_main.c): TG_BOOT, TG_MISMATCH per failing vector, TG_RESULT with the
 * CRC-32 of all outputs, TG_OK or TG_FAIL; exit code 0 when every output matches, else 1.
 */
#include <stdio.h>
#include <string.h>

#include "model.h"

static int tg_dump;

/* With -DTG_PROFILE, model.c calls this before layer i and with TG_NUM_LAYERS after the last: the
 * arena then holds layer i-1's output. */
void tg_profile_mark(int32_t layer)
{
    if (tg_dump && layer > 0) {
        (void)fwrite(tg_model_arena(), 1, TG_ARENA_SIZE, stdout);
    }
}

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320), chainable like zlib.crc32(data, crc). */
static uint32_t crc32_update(uint32_t crc, const int8_t *data, uint32_t n)
{
    crc = ~crc;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= (uint8_t)data[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static int selftest(void)
{
    static int8_t out[TG_OUTPUT_SIZE];
    uint32_t crc = 0u, matched = 0u;
    printf("TG_BOOT model=%s board=host clock=0\n", TG_MODEL_HASH);
    for (uint32_t v = 0; v < tg_test_vectors; v++) {
        int32_t st = tg_model_invoke(tg_test_input[v], out);
        if (st != 0) {
            printf("TG_ERROR run=%ld\nTG_FAIL\n", (long)st);
            fprintf(stderr, "tg_model_run failed: %ld in layer %ld\n", (long)st, (long)tg_model_failed_layer());
            return 2;
        }
        crc = crc32_update(crc, out, TG_OUTPUT_SIZE);
        if (memcmp(out, tg_test_expected[v], TG_OUTPUT_SIZE) == 0) {
            matched++;
            continue;
        }
        for (uint32_t i = 0; i < TG_OUTPUT_SIZE; i++) {
            if (out[i] != tg_test_expected[v][i]) {
                printf("TG_MISMATCH vector=%lu index=%lu got=%d want=%d\n", (unsigned long)v, (unsigned long)i,
                       out[i], tg_test_expected[v][i]);
                break;
            }
        }
    }
    const int match = matched == tg_test_vectors && tg_test_vectors > 0u;
    printf("TG_RESULT checksum=%08lx cycles=0 match=%d vectors=%lu matched=%lu\n%s\n", (unsigned long)crc, match,
           (unsigned long)tg_test_vectors, (unsigned long)matched, match ? "TG_OK" : "TG_FAIL");
    return match ? 0 : 1;
}

int main(int argc, char **argv)
{
    static int8_t in[TG_INPUT_SIZE];
    static int8_t out[TG_OUTPUT_SIZE];
    int32_t st = tg_model_init();
    if (st != 0) {
        fprintf(stderr, "tg_model_init failed: %ld (layer %ld)\n", (long)st, (long)tg_model_failed_layer());
        return 2;
    }
    if (argc > 1 && strcmp(argv[1], "--selftest") == 0) {
        return selftest();
    }
    tg_dump = argc > 1 && strcmp(argv[1], "--dump") == 0;
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
        if (!tg_dump && fwrite(out, 1, TG_OUTPUT_SIZE, stdout) != TG_OUTPUT_SIZE) {
            return 4;
        }
    }
    return 0;
}
