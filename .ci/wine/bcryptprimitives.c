/* Wine 8 lacks bcryptprimitives.dll, whose ProcessPrng Rust's std uses for random numbers on
 * Windows. This stand-in, built with mingw and put next to the test executables, forwards it to
 * RtlGenRandom (advapi32's SystemFunction036). For CI under Wine only: never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
