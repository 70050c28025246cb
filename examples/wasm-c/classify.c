/*
 * classify: the IoT telemetry classifier of examples/iot-telemetry, in C, for the
 * nfaas `wasm` runtime (ABI: docs/wasm-abi.md). Built freestanding, without libc:
 *
 *     clang --target=wasm32 -O2 -ffreestanding -nostdlib \
 *           -Wl,--no-entry -Wl,--export=nfaas_alloc -Wl,--export=classify
 *
 * Input: one reading such as `temp=23.5` or `{"value": 42}`; the integer part of
 * the number after the last '=' or ':' is classified `ok` (< 50), `warn` (>= 50)
 * or `alarm` (>= 80). A reading with no number is an error.
 */
#include <stdint.h>

#define PAGE 65536u
#define ERROR_BIT ((uint64_t)1 << 63)

/* The linker places the heap after the stack and static data. */
extern unsigned char __heap_base;

static const char OK[] = "ok";
static const char WARN[] = "warn";
static const char ALARM[] = "alarm";
static const char NO_NUMBER[] = "no number in reading";

/* The ABI's result: (ptr << 32) | len, with the sign bit set for an error message. */
static int64_t span(const char *ptr, uint32_t len) {
    return (int64_t)(((uint64_t)(uintptr_t)ptr << 32) | len);
}

/* One event at a time: each event's bytes start at the heap base, reusing the space. */
__attribute__((export_name("nfaas_alloc")))
unsigned char *nfaas_alloc(uint32_t len) {
    uintptr_t base = (uintptr_t)&__heap_base;
    uintptr_t end = base + len;
    if (end < base)
        __builtin_trap();
    uintptr_t have = __builtin_wasm_memory_size(0) * PAGE;
    if (end > have) {
        uintptr_t pages = (end - have + PAGE - 1) / PAGE;
        if (__builtin_wasm_memory_grow(0, pages) == (uintptr_t)-1)
            __builtin_trap(); /* over the sandbox's memory limit */
    }
    return &__heap_base;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

__attribute__((export_name("classify")))
int64_t classify(const unsigned char *reading, uint32_t len) {
    const unsigned char *end = reading + len;
    const unsigned char *p = end;
    while (p > reading && p[-1] != '=' && p[-1] != ':')
        p--;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    int negative = 0;
    if (p < end && (*p == '-' || *p == '+'))
        negative = *p++ == '-';
    if (p == end || !is_digit(*p))
        return (int64_t)((uint64_t)span(NO_NUMBER, sizeof NO_NUMBER - 1) | ERROR_BIT);
    uint32_t value = 0;
    for (; p < end && is_digit(*p); p++)
        if (value < 1000000)
            value = value * 10 + (uint32_t)(*p - '0');
    if (negative || value < 50)
        return span(OK, sizeof OK - 1);
    if (value < 80)
        return span(WARN, sizeof WARN - 1);
    return span(ALARM, sizeof ALARM - 1);
}
