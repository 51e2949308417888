/*
 * Replays a fuzz corpus through LLVMFuzzerTestOneInput without libFuzzer,
 * so every build (gcc, ASan) runs the fuzz target's checks on the committed
 * seeds and on any crash reproducer added to the corpus.
 *
 *   test_json_pb_fuzz_replay <corpus-dir>
 *
 * Exit status 0 when every file ran (the target aborts on a failed check),
 * 1 when the directory is missing or empty.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf == NULL) {
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
        return 1;
    }
    DIR *dir = opendir(argv[1]);
    if (dir == NULL) {
        perror(argv[1]);
        return 1;
    }
    struct dirent *e;
    int count = 0;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        if (run_file(path) != 0) {
            closedir(dir);
            return 1;
        }
        count++;
    }
    closedir(dir);
    printf("replayed %d inputs\n", count);
    return count > 0 ? 0 : 1;
}
