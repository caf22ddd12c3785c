/*
 * The variadic exec functions, for libvls.so's interposers
 * (src/capi/ldp_exec.rs): Rust cannot define a C variadic function, so
 * these build the argument vector and call the vector form, which
 * libvls.so answers to (it leaves VPP, then calls libc's). glibc's own
 * execl, execlp and execle call its internal execve directly, so without
 * these a program using them would exec without leaving VPP.
 *
 * The build script compiles this file with the `vpp` feature and gives
 * the cdylib the names execl, execlp and execle as aliases.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

/* Counts the arguments after `arg` up to the terminating null pointer. */
static size_t
vls_count_args (const char *arg, va_list ap)
{
  size_t n = 1;
  if (!arg)
    return 0;
  while (va_arg (ap, const char *))
    n++;
  return n;
}

/* Fills argv (room for n + 1) with arg and the n - 1 that follow, and the
 * terminating null pointer; returns what follows that null (execle's envp
 * when asked). */
static char *const *
vls_fill_args (char **argv, size_t n, const char *arg, va_list ap, int want_env)
{
  size_t i;
  argv[0] = (char *) arg;
  for (i = 1; i < n; i++)
    argv[i] = va_arg (ap, char *);
  argv[n] = NULL;
  if (n > 0)
    (void) va_arg (ap, char *); /* the terminating null */
  return want_env ? va_arg (ap, char *const *) : NULL;
}

#define VLS_MAX_EXEC_ARGS 65536

/* In the calling function: declares char *argv[] holding `arg` and the
 * arguments after it up to the null pointer, and sets `envp` to the one
 * after that null if `want_env`; returns -1 (E2BIG) from the calling
 * function when there are too many. A variable-length array, not malloc:
 * exec is called in forked children of threaded programs. */
#define VLS_ARGV_FROM_VARARGS(argv, arg, want_env, envp)                      \
  va_list ap;                                                                 \
  size_t n;                                                                   \
  va_start (ap, arg);                                                         \
  n = vls_count_args (arg, ap);                                               \
  va_end (ap);                                                                \
  if (n > VLS_MAX_EXEC_ARGS)                                                  \
    {                                                                         \
      errno = E2BIG;                                                          \
      return -1;                                                              \
    }                                                                         \
  char *argv[n + 1];                                                          \
  va_start (ap, arg);                                                         \
  envp = vls_fill_args (argv, n, arg, ap, want_env);                          \
  va_end (ap)

int
vls_preload_execl (const char *path, const char *arg, ...)
{
  char *const *envp;
  VLS_ARGV_FROM_VARARGS (argv, arg, 0, envp);
  (void) envp;
  return execv (path, argv);
}

int
vls_preload_execlp (const char *file, const char *arg, ...)
{
  char *const *envp;
  VLS_ARGV_FROM_VARARGS (argv, arg, 0, envp);
  (void) envp;
  return execvp (file, argv);
}

int
vls_preload_execle (const char *path, const char *arg, ...)
{
  char *const *envp;
  VLS_ARGV_FROM_VARARGS (argv, arg, 1, envp);
  return execve (path, argv, envp);
}
