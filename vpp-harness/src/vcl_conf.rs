//! The `vcl.conf` of a VCL application: [`VclConf`], and the app namespaces
//! it may attach through ([`AppNamespace`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// Contents of a client `vcl.conf`; [`Default`] gives local and global scope,
/// eventfd-signalled message queues and 4 MB fifos.
#[derive(Debug, Clone)]
pub struct VclConf {
    /// `app-scope-local`: sessions to listeners of the same VPP go
    /// cut-through (shared-memory fifos, no TCP stack).
    pub scope_local: bool,
    /// `app-scope-global`: sessions through VPP's IP stack.
    pub scope_global: bool,
    /// `use-mq-eventfd`.
    pub use_mq_eventfd: bool,
    /// Rx and tx fifo size in bytes.
    pub fifo_size: u32,
    /// App namespace to attach to (id, secret); `None` for the default one.
    pub namespace: Option<(String, u64)>,
    /// Extra lines inside `vcl { }`, e.g. `"multi-thread-workers"`.
    pub extra: Vec<String>,
}

impl Default for VclConf {
    fn default() -> Self {
        VclConf {
            scope_local: true,
            scope_global: true,
            use_mq_eventfd: true,
            fifo_size: 4 << 20,
            namespace: None,
            extra: Vec::new(),
        }
    }
}

impl VclConf {
    /// Only global scope: connections to the instance's own addresses go
    /// through VPP's TCP/UDP stack instead of cut-through.
    pub fn through_stack() -> Self {
        VclConf { scope_local: false, ..Self::default() }
    }

    /// Attaches through app namespace `ns` (see
    /// [`setup_stack_namespaces`](crate::VppInstance::setup_stack_namespaces)),
    /// global scope only.
    pub fn in_namespace(ns: &AppNamespace) -> Self {
        VclConf { scope_local: false, namespace: Some((ns.id.clone(), ns.secret)), ..Self::default() }
    }

    /// Adds one line inside `vcl { }`.
    pub fn with(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    /// Renders the file for an instance whose default app socket is
    /// `app_socket` (a namespace's socket lies next to it, named by its id).
    pub fn render(&self, app_socket: &Path) -> String {
        let mut s = String::from("vcl {\n");
        match &self.namespace {
            None => {
                let _ = writeln!(s, "  app-socket-api {}", app_socket.display());
            }
            Some((id, secret)) => {
                let sock = app_socket.with_file_name(id);
                let _ = writeln!(s, "  app-socket-api {}", sock.display());
                let _ = writeln!(s, "  namespace-id {id}");
                let _ = writeln!(s, "  namespace-secret {secret}");
            }
        }
        let _ = writeln!(s, "  rx-fifo-size {}", self.fifo_size);
        let _ = writeln!(s, "  tx-fifo-size {}", self.fifo_size);
        if self.scope_local {
            s.push_str("  app-scope-local\n");
        }
        if self.scope_global {
            s.push_str("  app-scope-global\n");
        }
        if self.use_mq_eventfd {
            s.push_str("  use-mq-eventfd\n");
        }
        for line in &self.extra {
            let _ = writeln!(s, "  {line}");
        }
        s.push_str("}\n");
        s
    }
}

/// An app namespace created by
/// [`VppInstance::setup_stack_namespaces`](crate::VppInstance::setup_stack_namespaces).
#[derive(Debug, Clone)]
pub struct AppNamespace {
    /// Namespace id (also the name of its app socket).
    pub id: String,
    /// Namespace secret.
    pub secret: u64,
    /// The address of the namespace's interface.
    pub addr: Ipv4Addr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcl_conf_renders_scopes_and_extra_lines() {
        let c = VclConf::through_stack().with("multi-thread-workers").render(Path::new("/x/sock"));
        assert!(c.contains("app-socket-api /x/sock\n"));
        assert!(!c.contains("app-scope-local"));
        assert!(c.contains("app-scope-global"));
        assert!(c.contains("  multi-thread-workers\n"));
        assert!(c.starts_with("vcl {") && c.trim_end().ends_with('}'));
    }
}
