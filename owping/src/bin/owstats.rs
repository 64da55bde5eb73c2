//! owstats
#![forbid(unsafe_code)]

fn main() {
    eprintln!("owstats: not yet implemented");
    std::process::exit(1);
}
