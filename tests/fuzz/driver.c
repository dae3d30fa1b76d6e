/*
 * Runs a fuzz target over files without libFuzzer (any compiler): the regression run of
 * the committed corpus in `make check`. Usage: fuzz-X FILE... ; exits non-zero on a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
        int n = 0;

        for (int i = 1; i < argc; i++) {
                FILE *f = fopen(argv[i], "rb");
                uint8_t *buf;
                long len;

                if (!f) {
                        perror(argv[i]);
                        return 2;
                }
                fseek(f, 0, SEEK_END);
                len = ftell(f);
                fseek(f, 0, SEEK_SET);
                buf = malloc(len > 0 ? (size_t)len : 1);
                if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
                        fclose(f);
                        return 2;
                }
                fclose(f);
                LLVMFuzzerTestOneInput(buf, (size_t)len);
                free(buf);
                n++;
        }
        printf("%d inputs ran\n", n);
        return 0;
}
