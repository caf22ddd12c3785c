/*
 * libvls.so's close (src/capi/ldp_close.rs): the Rust side needs to know
 * who called, the program or VPP's libraries (VCL closing one of its own
 * descriptors), which only the caller's return address tells; Rust has
 * no stable way to read it.
 *
 * The build script compiles this file with the `vpp` feature and gives
 * the cdylib the name close as an alias of vls_preload_close.
 */
int vls_preload_close_from (int fd, const void *caller);

int
vls_preload_close (int fd)
{
  return vls_preload_close_from (fd, __builtin_return_address (0));
}
