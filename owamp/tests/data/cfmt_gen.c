/* Generates cfmt_golden.txt: how glibc printf renders the values the report module
 * formats. Regenerate with: gcc -O0 -o /tmp/cfmt_gen cfmt_gen.c && /tmp/cfmt_gen > cfmt_golden.txt
 * Each line: the value's IEEE-754 bits in hex, then the %g, %.3g, %e, %f, %.3f, %.1f, %03.0f
 * renderings separated by '|'. */
#include <stdio.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

int main(void) {
    double v[] = {0.0, -0.0, 1.0, -1.0, 0.5, 0.125, 0.375, 2.5, 3.5, 1e-5, 1.5e-5, 0.0001,
                  0.00012345, 123456.0, 1234567.0, 999999.5, 9.9999995, 0.00099995, 1e100,
                  -1e-100, 1e-310, 0.1, 0.2, 0.3, 2.0 / 3.0, 1.0 / 3.0, 100.0, 1e6, 1e15,
                  123.456, 0.000123, 4.45e-3, -0.0009, 5e-7, 1.0058283805847168e-06,
                  2.0116567611694336e-06, 3758096384.0, 1549229375.123456, 999.5, 0.9995,
                  99.95, 9.995, 0.0625, 12.5, 7.5e-8, 6.103515625e-05, 1e21, 1.7976931348623157e308,
                  22.0 * 0.0001, 0.00051, 44.5, 0.05, 0.15, 0.25, 0.35, 0.45, INFINITY, -INFINITY, NAN};
    unsigned i;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        double x = v[i];
        uint64_t bits;
        memcpy(&bits, &x, sizeof bits);
        printf("%016llx|%g|%.3g|%e|%f|%.3f|%.1f|%03.0f\n", (unsigned long long)bits, x, x, x, x, x, x, x);
    }
    return 0;
}
