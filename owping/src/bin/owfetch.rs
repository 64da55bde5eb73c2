//! owfetch
#![forbid(unsafe_code)]

fn main() {
    eprintln!("owfetch: not yet implemented");
    std::process::exit(1);
}
