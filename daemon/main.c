#include <stdio.h>
int main(void) { puts("memdrift: under construction"); return 0; }
