#ifndef FUZZ_SUPPORT_H
#define FUZZ_SUPPORT_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver, for fuzz targets that bring their own `main` (SwiftPM executables always do).
/// Linked only when built with -sanitize=fuzzer; a weak declaration keeps normal builds linking.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size)) __attribute__((weak));

#endif
