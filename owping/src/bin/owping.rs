//! owping
#![forbid(unsafe_code)]

fn main() {
    eprintln!("owping: not yet implemented");
    std::process::exit(1);
}
