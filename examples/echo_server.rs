//! TCP echo server over VPP.
//!
//! ```text
//! VCL_CONFIG=/path/to/vcl.conf cargo run --features vpp --example echo_server -- [ADDR]
//! ```
//! Without `VCL_CONFIG` it starts a private VPP and prints the `VCL_CONFIG`
//! a client should use. ADDR defaults to 127.0.0.1:7000.

mod common;

use vls::{App, TcpListener};
use vpp_harness::{finish, spawn_role, VclConf};

fn main() -> std::io::Result<()> {
    let addr = common::addr_arg(std::env::args().nth(1).as_ref(), "127.0.0.1:7000")?;
    if std::env::var_os("VCL_CONFIG").is_some() {
        App::init("echo-server")?;
        let listener = TcpListener::bind(addr)?;
        println!("echo_server: listening on {}", listener.local_addr()?);
        return common::serve_echo(&listener);
    }
    // This process only runs VPP; the server is this program again, in a
    // child process attached with the written vcl.conf.
    let vpp = common::start_private_vpp()?;
    let server_conf = vpp.write_vcl_conf("echo-server", &VclConf::default())?;
    let client_conf = vpp.write_vcl_conf("echo-client", &VclConf::default())?;
    println!(
        "run a client with:\n  VCL_CONFIG={} cargo run --features vpp --example echo_client -- {addr}",
        client_conf.display()
    );
    let server = spawn_role("echo-server", &server_conf, std::env::args().skip(1));
    finish(server, vec![])
}
