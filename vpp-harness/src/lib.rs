//! # vpp-harness — a private VPP for integration tests
//!
//! Starts VPP instances of their own for the tests (and examples) of
//! programs that use VPP's host stack through VCL (`libvppcom`), points VCL
//! applications at them, runs those applications in processes of their
//! own, and always stops and cleans up.
//!
//! [`VppInstance::start`] launches `bin/vpp` of an installed VPP with a
//! generated `startup.conf` in a fresh directory of its own: unique
//! CLI/API/stats socket paths, a unique shared-memory API prefix, 4 KiB pages
//! everywhere (no hugepages, no root-only set-up), no plugins unless asked
//! ([`VppOptions`]), and the session layer enabled. It waits until VPP
//! answers on its CLI socket and its application socket exists, and
//! starts another VPP if the clock of this one does not keep time (see
//! [`VppInstance::start_with`]). Instances started at the same time, by
//! one test binary or several, do not see each other. Dropping an
//! instance — also while a test panics — stops VPP (SIGTERM, then
//! SIGKILL), removes its directory and its `/dev/shm` files, and prints
//! VPP's log if the thread is panicking. VPP also gets SIGTERM if
//! the thread that started it dies without dropping it.
//!
//! A VCL application is pointed at an instance with a `vcl.conf` written by
//! [`VppInstance::write_vcl_conf`] (pass its path in `VCL_CONFIG`);
//! [`VclConf`] chooses cut-through or VPP's TCP/UDP stack, app namespaces
//! and extra `vcl { }` lines. [`VppInstance::vppctl`] runs CLI commands;
//! [`VppInstance::setup_loopback`] and
//! [`VppInstance::setup_stack_namespaces`] give sessions something to cross
//! VPP's IP stack on.
//!
//! This crate needs no VPP headers or libraries: it only runs processes and
//! writes files, so it builds anywhere; running it needs an installed VPP.
//!
//! ## Which VPP
//!
//! [`VppInstall::discover`] (used by [`VppInstance::start`]) looks at
//! `VPP_PREFIX`, then pkg-config's `vppcom` package, then `/usr` — the order
//! in which `vpp-sys` finds the libvppcom it links. A program linked with
//! libvppcom should start the VPP it linked, whatever the environment says
//! at run time: [`VppInstance::start_from_prefix`]`(vpp_sys::VPP_PREFIX)`.
//! With [`EXTERNAL_VPP_ENV`] set, instances attach to a VPP that is already
//! running (e.g. in another container) instead of starting one.
//!
//! ## One VCL application per process
//!
//! VCL allows one application per process, and VPP does not connect an
//! application to its own listener over cut-through. So a test runs each
//! VCL peer in a process of its own: [`run_isolated`] runs a test's body in
//! a child process (the same test binary, filtered to that test) against a
//! fresh VPP, and [`run_pair`] runs a server body and a client body in two
//! children against one VPP; the parent fails the test unless they pass
//! within [`CHILD_TIMEOUT`]. A program (an example, a benchmark) does the
//! same with [`spawn_role`], [`role()`](fn@role) and [`finish`].
//! [`wait_output_with_timeout`] waits for any child with a deadline, and
//! prints the stacks of a child it kills ([`thread_stacks`]).
//!
//! ## Unmodified programs under LDP
//!
//! VPP's LDP library runs programs that know nothing of VPP (plain libc
//! sockets and epoll) over its host stack. [`Preloads`] gives the two
//! `LD_PRELOAD` values: `libvcl_ldpreload.so` alone (libvppcom's own, C,
//! locked-sessions layer) and vls-rs' `libvls.so` before it (the Rust layer
//! in its place); [`under_ldp`] puts one and a `vcl.conf` on a command.
//! [`ProcessGroup`] runs a server in a process group that is killed whole
//! when it is dropped (also when a test panics); [`Nginx`] writes an
//! `nginx.conf` in the instance's directory and starts nginx serving a
//! static file, and [`Wrk`] measures it with wrk, with a time limit
//! ([`WrkResult`]: requests, requests per second, errors).
//!
//! ```no_run
//! use std::path::Path;
//! use vpp_harness::{Nginx, Preloads, VclConf, VppInstance, Wrk};
//!
//! # fn main() -> std::io::Result<()> {
//! let vpp = VppInstance::start()?;
//! let preloads = Preloads::new(vpp.install(), Path::new("target/release/libvls.so"))?;
//! let nginx = Nginx::new("127.0.0.1:8080".parse().unwrap());
//! let _server = nginx.start(&vpp, &VclConf::default(), &preloads.rust, &[])?;
//! let client_conf = vpp.write_vcl_conf("wrk", &VclConf::default())?;
//! let run = Wrk { connections: 16, ..Wrk::new(&nginx.url(), &preloads.rust, &client_conf) }.run()?;
//! println!("{:.0} requests/s, {} errors", run.result.rps, run.result.errors);
//! # Ok(())
//! # }
//! // `_server` is dropped here: nginx is killed, then VPP stops.
//! ```
//!
//! ## Example
//!
//! An integration test of a program that uses VCL: one VPP, the program
//! under test as a server in one process, and a client in another.
//!
//! ```no_run
//! use std::process::Command;
//! use vpp_harness::{wait_output_with_timeout, VclConf, VppInstance};
//!
//! # fn main() -> std::io::Result<()> {
//! let vpp = VppInstance::start()?; // VPP_PREFIX, pkg-config `vppcom`, /usr
//! println!("{}", vpp.vppctl("show version")?);
//! // Two app namespaces, so that client and server talk through VPP's
//! // TCP stack instead of cut-through.
//! let (srv, cli) = vpp.setup_stack_namespaces()?;
//! let server_conf = vpp.write_vcl_conf("server", &VclConf::in_namespace(&srv))?;
//! let client_conf = vpp.write_vcl_conf("client", &VclConf::in_namespace(&cli))?;
//!
//! let mut server = Command::new("my-server")
//!     .arg(format!("{}:8080", srv.addr))
//!     .env("VCL_CONFIG", &server_conf)
//!     .spawn()?;
//! let client = Command::new("my-client")
//!     .arg(format!("{}:8080", srv.addr))
//!     .env("VCL_CONFIG", &client_conf)
//!     .stdout(std::process::Stdio::piped())
//!     .stderr(std::process::Stdio::piped())
//!     .spawn()?;
//! let out = wait_output_with_timeout(client, std::time::Duration::from_secs(30))?;
//! server.kill()?;
//! assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
//! # Ok(())
//! # }
//! // `vpp` is dropped here: VPP stops and its files go, also after a panic.
//! ```
//!
//! Test bodies that call VCL themselves run in child processes:
//!
//! ```no_run
//! use vpp_harness::{cut_through, run_pair, VppInstall};
//!
//! // In `tests/echo.rs`, under `#[test]`:
//! fn echo_over_cut_through() {
//!     let vpp = VppInstall::discover().expect("an installed VPP");
//!     run_pair(
//!         &vpp,
//!         "echo_over_cut_through", // the test's own name: the children run it
//!         cut_through,
//!         || { /* server: attach (VCL_CONFIG is set), listen, echo */ },
//!         || { /* client: attach, connect, check the echo */ },
//!     );
//! }
//! # echo_over_cut_through();
//! ```
//!
//! The crate's feature `vpp` only turns on its own tests that start a real
//! VPP (`cargo test -p vpp-harness --features vpp`); the library is the
//! same with and without it.

mod child;
mod install;
mod instance;
mod isolated;
mod pattern;
mod programs;
mod role;
mod vcl_conf;

pub use child::{
    die_with_parent, in_child, run_test_in_child, thread_stacks, wait_output_with_timeout, CHILD_ENV,
};
pub use install::{VppInstall, FALLBACK_PREFIX, VPP_PREFIX_ENV};
pub use instance::{VppInstance, VppOptions, EXTERNAL_VPP_ENV, VPP_COREDUMP_ENV};
pub use isolated::{
    cut_through, run_isolated, run_pair, run_pair_outcome, through_stack, PairOutcome, CHILD_TIMEOUT,
    STACK_SERVER,
};
pub use pattern::{pattern, Rng};
pub use programs::{
    find_program, parse_wrk, under_ldp, vcl_ldpreload, Nginx, Preloads, ProcessGroup, Wrk, WrkResult, WrkRun,
    VCL_LDPRELOAD,
};
pub use role::{finish, role, spawn_role, stop, vpp_pid, ROLE_ENV, VPP_PID_ENV};
pub use vcl_conf::{AppNamespace, VclConf};
