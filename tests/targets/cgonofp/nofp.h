#include <stddef.h>

/* Both built -O2 -fomit-frame-pointer (main.go's #cgo CFLAGS). */
long nofp_keep(size_t n);  /* A: keeps one block from nofp_helper, frees a temporary */
long nofp_stash(size_t n); /* A2: keeps one block from nofp_helper */
void nofp_release(void);   /* frees every kept block */
void *nofp_helper(size_t n, int tag); /* B (nofp_helper.c): mallocs */
