//! owup
#![forbid(unsafe_code)]

fn main() {
    eprintln!("owup: not yet implemented");
    std::process::exit(1);
}
