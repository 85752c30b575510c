//! Print the tree of a topology file (or the default): the view `cxlvmm check` shows.
//!
//! `cargo run -p fabric --example print_topology -- examples/switch-4.toml`

fn main() {
    let topo = match std::env::args().nth(1) {
        Some(path) => {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{path}: {e}");
                    std::process::exit(2);
                }
            };
            match fabric::Topology::from_toml_str(&text) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{path}: {e}");
                    std::process::exit(1);
                }
            }
        }
        None => fabric::Topology::default_topology(),
    };
    print!("{topo}");
}
